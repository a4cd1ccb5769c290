"""Event and webhook-endpoint schemas: `Event` (pull feed), `WebhookEndpoint`, `WebhookEndpointCreate`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from voice_service.openapi import example

EventType = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")]


@example({"id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a", "seq": 4711, "type": "voice_call.ended",
          "aggregate_type": "voice_call", "aggregate_id": "0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b",
          "data": {"call_id": "0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b", "status": "ended", "end_reason": "completed"},
          "created_at": "2025-03-04T15:22:41.120Z"})
class Event(msgspec.Struct):
    """One event of the feed. Its `data` is the type's payload: see `GET /v1/event-types`."""

    id: Annotated[uuid.UUID, Meta(description="The event id (also a webhook's `webhook-id`): dedupe on it.")]
    seq: int
    type: Annotated[str, Meta(description="The event type.", examples=["voice_call.ended"])]
    aggregate_type: Annotated[str, Meta(description="`voice_call` or `batch`.")]
    aggregate_id: Annotated[uuid.UUID | None, Meta(description="The call's or batch's id.")]
    data: Annotated[dict[str, Any], Meta(description="The payload; its schema is the type's (GET "
                                                     "/v1/event-types).")]
    created_at: datetime


@example({"items": [], "next_cursor": "1882734.4711"})
class EventPage(msgspec.Struct):
    items: list[Event]
    next_cursor: Annotated[str | None, Meta(description="Pass back as `cursor`; present even on the last page "
                                                        "(poll again with it later: the feed only grows).")]


_ENDPOINT = {"id": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", "url": "https://hooks.example.com/voice",
             "description": "CRM sync", "event_types": ["voice_call.analyzed", "voice_call.ended"], "status": "active",
             "consecutive_failures": 0, "disabled_at": None, "disabled_reason": None,
             "created_at": "2025-03-01T09:00:00Z", "updated_at": "2025-03-01T09:00:00Z"}


@example(_ENDPOINT)
class WebhookEndpoint(msgspec.Struct):
    """A webhook endpoint (never its secret)."""

    id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    status: str
    consecutive_failures: int
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


@example({**_ENDPOINT, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
class WebhookEndpointCreated(WebhookEndpoint):
    secret: str  # whsec_…; shown here only


@example({"url": "https://hooks.example.com/voice", "event_types": ["voice_call.ended", "voice_call.analyzed"],
          "description": "CRM sync"})
class WebhookEndpointCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Where to POST events, and which."""

    url: Annotated[str, Meta(min_length=8, max_length=2048, pattern=r"^https?://[^\s/]+",
                             description="An https:// URL on a public address.")]
    event_types: Annotated[list[EventType], Meta(max_length=50, description="The types to send (GET "
                                                                             "/v1/event-types); [] = every "
                                                                             "type.")] = []
    description: Annotated[Annotated[str, Meta(max_length=2000)] | None, Meta(description="A note for people.")] = None


class DeliveryAttempt(msgspec.Struct):
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int | None
    at: datetime


@example({"id": "7c6b5a49-3827-4165-9f4e-3d2c1b0a9f8e", "event_id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
          "event_type": "voice_call.ended", "status": "succeeded", "attempts": 2,
          "next_attempt_at": "2025-03-04T15:22:46Z", "last_status_code": 200, "last_error": None,
          "delivered_at": "2025-03-04T15:22:46.400Z", "created_at": "2025-03-04T15:22:41.120Z",
          "log": [{"attempt": 1, "status_code": 502, "error": "HTTP 502", "duration_ms": 120,
                   "at": "2025-03-04T15:22:41.300Z"},
                  {"attempt": 2, "status_code": 200, "error": None, "duration_ms": 85,
                   "at": "2025-03-04T15:22:46.400Z"}]})
class WebhookDelivery(msgspec.Struct):
    """One event's delivery to the endpoint, with every attempt."""

    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    log: list[DeliveryAttempt]
