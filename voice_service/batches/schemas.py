"""Batch schemas: `BatchCreate` / `EntriesAdd` in, `Batch`, `BatchEntry`, `EntriesAdded` out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from voice_service.openapi import example
from voice_service.schemas import AgentRef, FreeJson, Name, check_free_json

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


@example({
    "name": "March follow-ups",
    "agent_id": 7,
    "from_number_ids": ["4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d"],
    "entries": [
        {"lead_id": "5e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b"},
        {"phone": "+14155550199", "first_name": "Ann", "company_name": "Initech", "variables": {"plan": "pro"}},
    ],
    "timezone": "America/Los_Angeles",
    "calling_window": {"start": "09:00", "end": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"]},
    "max_concurrency": 10,
    "retry": {"max_attempts": 3, "retry_on": ["no_answer", "busy"], "backoff_seconds": [900, 3600]},
    "variables": {"campaign": "spring"},
})
class BatchCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A batch of outbound calls, one per entry, paced and retried by the service."""

    agent_id: Annotated[AgentRef, Meta(description="The agent on every call.")]
    entries: Entries
    name: Annotated[Name | None, Meta(description="Shown in lists and events.")] = None
    from_number_id: Annotated[uuid.UUID | None, Meta(description="A number to call from (or give "
                                                                 "`from_number_ids`).")] = None
    from_number_ids: Annotated[list[uuid.UUID], Meta(max_length=50, description="Numbers the batch rotates "
                                                                                "through (with `from_number_id`, "
                                                                                "if given, first).")] = []
    voice_id: Annotated[uuid.UUID | None, Meta(description="Speak with this voice instead of the agent's.")] = None
    start_at: Annotated[Annotated[datetime, Meta(tz=True)] | None,
                        Meta(description="Start dialling then (with a time zone); default: now.")] = None
    timezone: Annotated[TimeZone, Meta(description="The calling window's zone for entries without their own.")] = (
        "UTC"
    )
    calling_window: Annotated[CallingWindow | None, Meta(description="Hours in which calls may start, in each "
                                                                     "lead's local time; null: any time.")] = None
    max_concurrency: Annotated[Annotated[int, Meta(ge=1, le=1000)] | None,
                               Meta(description="Live calls at most at once; null: no per-batch limit (the "
                                                "tenant's cap still applies).")] = 10
    calls_per_second: Annotated[Annotated[float, Meta(gt=0, le=100)] | None,
                                Meta(description="Call starts per second per from-number; null: the carrier's "
                                                 "default (Twilio 1).")] = None
    retry: Annotated[RetryPolicy, Meta(description="When and how often an entry is called again.")] = (
        msgspec.field(default_factory=RetryPolicy)
    )
    variables: Annotated[FreeJson, Meta(description="Prompt variables for every call (an entry's own win).")] = {}
    metadata: Annotated[FreeJson, Meta(description="Your own data, returned as sent (at most 16 KB).")] = {}

    def __post_init__(self) -> None:
        check_free_json({"variables": self.variables, "metadata": self.metadata})
        check_free_json({f"entries[{i}].variables": e.variables for i, e in enumerate(self.entries) if e.variables})


@example({"entries": [{"phone": "+14155550123", "first_name": "Bo"}]})
class EntriesAdd(msgspec.Struct, forbid_unknown_fields=True):
    entries: Entries

    def __post_init__(self) -> None:
        check_free_json({f"entries[{i}].variables": e.variables for i, e in enumerate(self.entries) if e.variables})


@example({"hangup_live": True})
class BatchCancel(msgspec.Struct, forbid_unknown_fields=True):
    """POST /v1/batches/{id}/cancel (the body is optional)."""

    hangup_live: Annotated[bool, Meta(description="true: the batch's calls that are ringing or talking are hung "
                                                  "up too (end_reason `batch_cancelled`).")] = False


class BatchCounts(msgspec.Struct):
    total: int
    queued: int
    in_progress: int
    retrying: int
    completed: int
    failed: int
    skipped: int
    cancelled: int


@example({
    "id": "0b8f3e0c-5d2a-4c7e-9f1a-2b3c4d5e6f70", "name": "March follow-ups", "status": "running", "agent_id": 7,
    "voice_id": None, "from_number_ids": ["4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d"], "start_at": None,
    "timezone": "America/Los_Angeles",
    "calling_window": {"start": "09:00", "end": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"]},
    "max_concurrency": 10, "calls_per_second": None,
    "retry": {"max_attempts": 3, "retry_on": ["no_answer", "busy"], "backoff_seconds": [900, 3600]},
    "variables": {"campaign": "spring"}, "total_calls": 2, "completed_calls": 0, "failed_calls": 0,
    "counts": {"total": 2, "queued": 1, "in_progress": 1, "retrying": 0, "completed": 0, "failed": 0,
               "skipped": 0, "cancelled": 0},
    "initiated_by_user_id": None, "metadata": {}, "created_at": "2025-03-04T15:20:00.000Z",
    "updated_at": "2025-03-04T15:20:00.020Z", "started_at": "2025-03-04T15:20:00.010Z", "completed_at": None,
})
class Batch(msgspec.Struct):
    """A batch with its settings and progress counters."""

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


# What happened to an entry's latest attempt (or why it was skipped). An attempt is `completed` (the batch's
# `completed` count) only when it reached the callee: answered or voicemail.
EntryOutcome = Literal[
    # attempts
    "answered",  # the callee answered and the agent held the conversation
    "voicemail",  # an answering machine took the call (carrier's machine detection)
    "no_answer",  # it rang out, or the carrier gave up before an answer
    "busy",  # busy, or rejected by the callee
    "cancelled",  # hung up before an answer (the batch was cancelled, or a hang-up was requested)
    "failed",  # never spoke to the callee: the carrier refused the call, or the service could not set up or run the
    # conversation before the agent said anything; error_message says why (the call's end reason and its detail)
    "dispatch_interrupted",  # the dispatcher stopped while placing the call; it was not placed again
    # skipped entries
    "invalid_phone",
    "no_phone",
    "lead_not_found",
    "duplicate",
    "do_not_call",
]


OUTCOME_DESCRIPTION = (
    "What happened to the entry's latest attempt, or why it was skipped. Attempts: `answered` (the callee answered "
    "and the agent held the conversation), `voicemail` (an answering machine took it), `no_answer`, `busy` (busy or "
    "rejected), `cancelled` (hung up before an answer), `failed` (never spoke to the callee: the carrier refused the "
    "call, or the service could not set up or run the conversation before the agent said anything; "
    "`error_message` gives the call's end reason and its detail), `dispatch_interrupted` (the dispatcher stopped "
    "while placing it; not placed again). Only `answered` and `voicemail` count as `completed`. Skipped entries: "
    "`invalid_phone`, `no_phone`, `lead_not_found`, `duplicate`, `do_not_call`. Null while an attempt is pending."
)


@example({"id": "6f1e2d3c-4b5a-4968-8776-655443322110", "batch_id": "0b8f3e0c-5d2a-4c7e-9f1a-2b3c4d5e6f70",
          "position": 1, "lead_id": "5e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b", "phone": "+14155550199",
          "status": "retrying", "outcome": "no_answer", "error_message": "no answer", "attempts": 1,
          "last_call_id": "0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b", "next_attempt_at": "2025-03-04T15:35:00Z",
          "timezone": "America/Los_Angeles", "variables": {"first_name": "Ann"},
          "created_at": "2025-03-04T15:20:00Z", "updated_at": "2025-03-04T15:21:10Z"})
class BatchEntry(msgspec.Struct):
    """One number to call in a batch, and how its attempts went."""

    id: uuid.UUID
    batch_id: uuid.UUID
    position: int
    lead_id: uuid.UUID | None
    phone: str | None
    status: EntryStatus
    outcome: Annotated[EntryOutcome | None, Meta(description=OUTCOME_DESCRIPTION)]
    # Why the attempt did not complete, in words: e.g. "the agent could not speak to the callee (setup_failed: not
    # configured: DEEPGRAM_API_KEY (speech-to-text))".
    error_message: Annotated[
        str | None, Meta(description="Why the latest attempt did not complete, or why the entry was skipped.")
    ]
    attempts: int
    last_call_id: uuid.UUID | None
    next_attempt_at: datetime | None
    timezone: str
    variables: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@example({"added": 1, "skipped": 0, "batch": Batch.__openapi_example__})  # type: ignore[attr-defined]
class EntriesAdded(msgspec.Struct):
    added: int
    skipped: int
    batch: Batch
