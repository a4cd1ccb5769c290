"""Call schemas: the call log as the API shows it, the one-call request, and the small refs services pass."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from voice_service.openapi import example
from voice_service.schemas import E164, FreeJson, check_free_json

CallStatusName = Literal["pending", "ringing", "ongoing", "ended", "declined", "cancelled", "failed"]
Direction = Literal["inbound", "outbound", "web"]


class CallRef(msgspec.Struct, frozen=True):
    """Enough to find a call log row fast: its id, partition key and tenant."""

    id: uuid.UUID
    created_at: datetime
    tenant_id: uuid.UUID


@example({"id": "0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b", "status": "ended", "direction": "outbound", "agent_id": 7,
          "voice_id": "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", "lead_id": "5e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b",
          "from_number_id": "4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d", "from": "+14155550142", "to": "+14155550199",
          "batch_id": None, "batch_entry_id": None, "attempt": 1, "provider": "twilio",
          "provider_call_id": "CA0123456789abcdef0123456789abcdef", "answered_by": "human",
          "end_reason": "completed", "started_at": "2025-03-04T15:20:09.480Z",
          "ended_at": "2025-03-04T15:22:41.002Z", "duration_seconds": 152, "cost": "0.042310", "currency": "USD",
          "initiated_by_user_id": None, "metadata": {"variables": {"first_name": "Ann"}},
          "created_at": "2025-03-04T15:20:01.120Z", "updated_at": "2025-03-04T15:22:55.310Z",
          "recording_url": "/v1/calls/0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b/recording"})
class Call(msgspec.Struct):
    """A call log: who called whom with which agent, how it went, what it cost."""

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


@example({"agent_id": 7, "from_number_id": "4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d", "to": "+14155550199",
          "variables": {"first_name": "Ann"}})
class CallCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Place one outbound call: to a number (`to`) or to a lead (its phone), or both (`to` wins, the lead is
    linked)."""

    agent_id: Annotated[int, Meta(description="The agent that talks.", examples=[7])]
    from_number_id: Annotated[uuid.UUID, Meta(description="The tenant's number the call comes from (its carrier "
                                                          "places it).")]
    to: Annotated[E164 | None, Meta(description="The number to call; or give `lead_id`.")] = None
    lead_id: Annotated[uuid.UUID | None, Meta(description="The lead called: its phone when `to` is not given, "
                                                          "and the call is linked to it.")] = None
    voice_id: Annotated[uuid.UUID | None, Meta(description="Speak with this voice instead of the agent's.")] = None
    variables: Annotated[FreeJson, Meta(description="Values for the prompts' `{{placeholders}}` (a lead's "
                                                    "first_name, last_name, company_name, email are there "
                                                    "already).")] = {}

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
