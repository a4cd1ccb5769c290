"""Event and webhook-endpoint schemas: `Event` (pull feed), `WebhookEndpoint`, `WebhookEndpointCreate`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

EventType = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")]


class Event(msgspec.Struct):
    id: uuid.UUID
    seq: int
    type: str
    aggregate_type: str
    aggregate_id: uuid.UUID | None
    data: dict[str, Any]
    created_at: datetime


class EventPage(msgspec.Struct):
    items: list[Event]
    # Pass back as `after`; present even on the last page (poll again with it later: the feed only grows).
    next_cursor: str | None


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


class WebhookEndpointCreate(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, Meta(min_length=8, max_length=2048, pattern=r"^https?://[^\s/]+")]
    event_types: Annotated[list[EventType], Meta(max_length=50)] = []  # [] = every event type
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
