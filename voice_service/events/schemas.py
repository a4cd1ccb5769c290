"""Event and webhook-endpoint schemas: `Event` (pull feed), `WebhookEndpoint`, `WebhookEndpointCreate`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from voice_service.openapi import example

EventType = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")]


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


class EventPage(msgspec.Struct):
    items: list[Event]
    next_cursor: Annotated[str | None, Meta(description="Pass back as `cursor`; present even on the last page "
                                                        "(poll again with it later: the feed only grows).")]


class WebhookEndpoint(msgspec.Struct):
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
    description: Annotated[str, Meta(max_length=2000)] | None = None


class DeliveryAttempt(msgspec.Struct):
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int | None
    at: datetime


class WebhookDelivery(msgspec.Struct):
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
