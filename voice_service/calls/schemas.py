"""Call schemas: the call log as the API shows it, the one-call request, and the small refs services pass."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec

from voice_service.schemas import E164, FreeJson, check_free_json

CallStatusName = Literal["pending", "ringing", "ongoing", "ended", "declined", "cancelled", "failed"]
Direction = Literal["inbound", "outbound", "web"]


class CallRef(msgspec.Struct, frozen=True):
    """Enough to find a call log row fast: its id, partition key and tenant."""

    id: uuid.UUID
    created_at: datetime
    tenant_id: uuid.UUID


class Call(msgspec.Struct):
    id: uuid.UUID
    status: str
    direction: str
    agent_id: int | None
    voice_id: uuid.UUID | None
    lead_id: uuid.UUID | None
    from_number_id: uuid.UUID | None
    from_: str | None = msgspec.field(name="from")
    to: str | None
    batch_id: uuid.UUID | None
    batch_entry_id: uuid.UUID | None
    attempt: int
    provider: str | None
    provider_call_id: str | None
    answered_by: str | None
    end_reason: (
        str | None
    )  # metadata.end_reason: busy, no_answer, media_disconnected, a provider error code, …
    started_at: datetime | None
    ended_at: datetime | None
    duration_seconds: int | None
    cost: Decimal | None
    currency: str | None
    initiated_by_user_id: uuid.UUID | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    # `/v1/calls/{id}/recording` once the call's recording is stored; null while there is none (recording off,
    # not encoded yet, failed: see metadata.recording_error, or deleted).
    recording_url: str | None = None


class CallCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Place one outbound call: to a number (`to`) or to a lead (its phone), or both (`to` wins, the lead is
    linked)."""

    agent_id: int
    from_number_id: uuid.UUID
    to: E164 | None = None
    lead_id: uuid.UUID | None = None
    voice_id: uuid.UUID | None = None
    variables: FreeJson = {}

    def __post_init__(self) -> None:
        check_free_json({"variables": self.variables})


class CallInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a live media session knows about its call (the conversation engine starts from this)."""

    tenant_id: uuid.UUID
    call_id: uuid.UUID
    call_created_at: datetime
    agent_id: int | None
    lead_id: uuid.UUID | None
    direction: str
    variables: dict[str, Any]
    voice_id: uuid.UUID | None
    provider: str | None
    provider_call_id: str | None
    from_e164: str | None
    to_e164: str | None
    batch_id: uuid.UUID | None = None
    batch_entry_id: uuid.UUID | None = None

    @property
    def ref(self) -> CallRef:
        return CallRef(id=self.call_id, created_at=self.call_created_at, tenant_id=self.tenant_id)


class CallStats(msgspec.Struct, frozen=True):
    """Figures over the calls created since a moment (the console's "today"), and the calls live now."""

    live: int
    total: int
    answered: int  # over, after being answered (they reached `ongoing`)
    unanswered: int  # over without an answer: declined (busy, no answer, rejected)
    avg_duration_seconds: float | None  # over answered calls that ended

    @property
    def answer_rate(self) -> float | None:
        """Answered among the calls that rang; calls that could not be placed (failed) or were cancelled before
        an answer are neither."""
        rang = self.answered + self.unanswered
        return self.answered / rang if rang else None
