"""Batch schemas: `BatchCreate` / `EntriesAdd` in, `Batch`, `BatchEntry`, `EntriesAdded` out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from voice_service.schemas import FreeJson, Name, check_free_json

MAX_ENTRIES = 10_000

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ClockTime = Annotated[str, Meta(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$", description="local time HH:MM")]
RetryReason = Literal["no_answer", "busy", "failed", "voicemail"]
TimeZone = Annotated[
    str, Meta(min_length=1, max_length=64, description="IANA time zone, e.g. America/New_York")
]
BatchStatus = Literal["scheduled", "running", "paused", "completed", "cancelled"]
EntryStatus = Literal[
    "queued", "dialing", "in_progress", "retrying", "completed", "failed", "skipped", "cancelled"
]


class CallingWindow(msgspec.Struct, forbid_unknown_fields=True):
    """Hours in which calls may start, in each lead's local time ([start, end), same day)."""

    start: ClockTime
    end: ClockTime
    days: Annotated[list[Weekday], Meta(min_length=1, max_length=7)] = msgspec.field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    )


class RetryPolicy(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    max_attempts: Annotated[int, Meta(ge=1, le=10, description="attempts per entry, the first included")] = 1
    retry_on: Annotated[list[RetryReason], Meta(max_length=4)] = msgspec.field(
        default_factory=lambda: ["no_answer", "busy"]
    )
    # The i-th retry waits backoff_seconds[i - 1] after the previous attempt ended; the last value repeats.
    backoff_seconds: Annotated[
        list[Annotated[int, Meta(ge=0, le=7 * 86400)]], Meta(min_length=1, max_length=10)
    ] = msgspec.field(default_factory=lambda: [900])


class EntryIn(msgspec.Struct, forbid_unknown_fields=True):
    """A lead by id, or a phone row upserted as a lead (by phone)."""

    lead_id: uuid.UUID | None = None
    # Not pattern-checked here: an invalid phone becomes a skipped entry, not a rejected batch.
    phone: Annotated[str, Meta(max_length=64)] | None = None
    first_name: Annotated[str, Meta(max_length=200)] | None = None
    last_name: Annotated[str, Meta(max_length=200)] | None = None
    email: Annotated[str, Meta(max_length=320)] | None = None
    company_name: Annotated[str, Meta(max_length=200)] | None = None
    timezone: TimeZone | None = None
    variables: FreeJson = {}


Entries = Annotated[
    list[EntryIn],
    Meta(min_length=1, max_length=MAX_ENTRIES, description=f"at most {MAX_ENTRIES:,} per request"),
]


class BatchCreate(msgspec.Struct, forbid_unknown_fields=True):
    agent_id: Annotated[int, Meta(ge=1)]
    entries: Entries
    name: Name | None = None
    from_number_id: uuid.UUID | None = None
    # Numbers the batch rotates through (with from_number_id, if given, first).
    from_number_ids: Annotated[list[uuid.UUID], Meta(max_length=50)] = []
    voice_id: uuid.UUID | None = None
    start_at: Annotated[datetime, Meta(tz=True)] | None = None
    timezone: TimeZone = "UTC"
    calling_window: CallingWindow | None = None
    # null = no per-batch limit (the tenant's concurrent-call cap still applies).
    max_concurrency: Annotated[int, Meta(ge=1, le=1000)] | None = 10
    # Per from-number; null = the provider's default (Twilio 1).
    calls_per_second: Annotated[float, Meta(gt=0, le=100)] | None = None
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    variables: FreeJson = {}
    metadata: FreeJson = {}

    def __post_init__(self) -> None:
        check_free_json({"variables": self.variables, "metadata": self.metadata})
        check_free_json({f"entries[{i}].variables": e.variables for i, e in enumerate(self.entries) if e.variables})


class EntriesAdd(msgspec.Struct, forbid_unknown_fields=True):
    entries: Entries

    def __post_init__(self) -> None:
        check_free_json({f"entries[{i}].variables": e.variables for i, e in enumerate(self.entries) if e.variables})


class BatchCancel(msgspec.Struct, forbid_unknown_fields=True):
    """POST /v1/batches/{id}/cancel (the body is optional)."""

    # true: the batch's calls that are ringing or talking are hung up too (end_reason `batch_cancelled`).
    hangup_live: bool = False


class BatchCounts(msgspec.Struct):
    total: int
    queued: int
    in_progress: int
    retrying: int
    completed: int
    failed: int
    skipped: int
    cancelled: int


class Batch(msgspec.Struct):
    id: uuid.UUID
    name: str | None
    status: BatchStatus
    agent_id: int
    voice_id: uuid.UUID | None
    from_number_ids: list[uuid.UUID]
    start_at: datetime | None
    timezone: str
    calling_window: CallingWindow | None
    max_concurrency: int | None
    calls_per_second: float | None
    retry: RetryPolicy
    variables: dict[str, Any]
    # Seed counters (total_calls counts every entry, skipped ones included) and the full breakdown.
    total_calls: int
    completed_calls: int
    failed_calls: int
    counts: BatchCounts
    initiated_by_user_id: uuid.UUID | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class BatchEntry(msgspec.Struct):
    id: uuid.UUID
    batch_id: uuid.UUID
    position: int
    lead_id: uuid.UUID | None
    phone: str | None
    status: EntryStatus
    # The latest attempt's result, or why the entry was skipped.
    outcome: str | None
    error_message: str | None
    attempts: int
    last_call_id: uuid.UUID | None
    next_attempt_at: datetime | None
    timezone: str
    variables: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class EntriesAdded(msgspec.Struct):
    added: int
    skipped: int
    batch: Batch
