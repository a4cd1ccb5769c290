"""Call schemas: the call log as the API shows it, the one-call request, and the small refs services pass."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from voice_service.openapi import example
from voice_service.schemas import E164, AgentRef, FreeJson, check_free_json

CallStatusName = Literal["pending", "ringing", "ongoing", "ended", "declined", "cancelled", "failed"]
Direction = Literal["inbound", "outbound", "web"]


class CallRef(msgspec.Struct, frozen=True):
    """Enough to find a call log row fast: its id, partition key and tenant."""

    id: uuid.UUID
    created_at: datetime
    tenant_id: uuid.UUID


class TranscriptTurn(msgspec.Struct, kw_only=True):
    """One turn of the conversation. Offsets are milliseconds from the start of the call's media (the answer)."""

    role: Literal["agent", "user"]  # user: the person on the phone
    # What was said: the caller's words, or the agent's whole line (also when the caller cut it off).
    text: str
    # An agent turn the caller cut off (`interrupted`): the part the caller actually heard; null otherwise.
    heard: str | None = None
    start_ms: int
    end_ms: int
    interrupted: bool = False


class CostItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One item of the call's cost breakdown, as billed: `quantity` `unit`s at `unit_price` each cost `cost`
    (in the call's currency). `unit` `adjustment` is a carrier's reported price reconciled with the estimate."""

    category: str  # telephony, stt, llm, tts
    provider: str
    model: str | None
    unit: str  # minute, token, character, adjustment, …
    quantity: Decimal
    unit_price: Decimal
    cost: Decimal
    direction: str | None = None  # llm: input | output | cached_input; telephony: outbound | inbound | transfer
    warning: str | None = None  # no_price: no catalog row priced this usage (cost 0)
    estimated: bool = False  # LLM tokens counted by the service (a stream cut short reported none)
    leg: str | None = None  # telephony: "transfer" for the leg the carrier dialled when the call was transferred
    price_id: str | None = None  # the pricing catalog row applied


class CarrierPrice(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the carrier itself charged for the call, as it reported it (Vonage: in its `completed` event)."""

    amount: Decimal
    currency: str  # the carrier account's currency (Vonage: VONAGE_ACCOUNT_CURRENCY)
    # true: the breakdown's telephony items add up to it (an `adjustment` item); false: it could not be (e.g. in
    # another currency than the bill) and is kept here beside the estimate: `reason` says why.
    reconciled: bool
    reason: str | None = None


@example({"id": "0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b", "status": "ended", "direction": "outbound", "agent_id": 7,
          "voice_id": "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", "lead_id": "5e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b",
          "from_number_id": "4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d", "from": "+14155550142", "to": "+14155550199",
          "batch_id": None, "batch_entry_id": None, "attempt": 1, "provider": "twilio",
          "provider_call_id": "CA0123456789abcdef0123456789abcdef", "answered_by": "human",
          "end_reason": "completed", "started_at": "2025-03-04T15:20:09.480Z",
          "ended_at": "2025-03-04T15:22:41.002Z", "duration_seconds": 152, "cost": "0.042310", "currency": "USD",
          "initiated_by_user_id": None, "metadata": {"variables": {"first_name": "Ann"}},
          "created_at": "2025-03-04T15:20:01.120Z", "updated_at": "2025-03-04T15:22:55.310Z",
          "recording_url": "/v1/calls/0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b/recording",
          "transcripts": [
              {"role": "agent", "text": "Hi Ann, this is Maya from Initech. Is now a good time?", "heard": None,
               "start_ms": 420, "end_ms": 3900, "interrupted": False},
              {"role": "user", "text": "Sure, go ahead.", "heard": None, "start_ms": 4300, "end_ms": 5200,
               "interrupted": False}],
          "cost_breakdown": [
              {"category": "telephony", "provider": "twilio", "model": None, "unit": "minute", "quantity": "3",
               "unit_price": "0.0140", "cost": "0.042000", "direction": "outbound"},
              {"category": "llm", "provider": "openai", "model": "gpt-4o-mini", "unit": "token", "quantity": "2060",
               "unit_price": "0.00000015", "cost": "0.000310", "direction": "input"}]})
class Call(msgspec.Struct, kw_only=True):
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
    # metadata.end_reason: agent_ended, caller_hangup, busy, no_answer, setup_failed, stt_failed, transferred, a
    # provider error code, …
    end_reason: str | None
    # What the end reason alone does not say, when the service knows: e.g. for setup_failed, the settings missing.
    end_reason_detail: str | None = None
    started_at: datetime | None
    ended_at: datetime | None
    duration_seconds: int | None
    cost: Decimal | None  # null until the call is billed (shortly after it ends)
    currency: str | None
    # The carrier's own price for the call, once it reported one and the call was billed; null otherwise.
    carrier_price: CarrierPrice | None = None
    initiated_by_user_id: uuid.UUID | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    # `/v1/calls/{id}/recording` once the call's recording is stored; null while there is none (recording off,
    # not encoded yet, failed: see metadata.recording_error, or deleted).
    recording_url: str | None = None
    # Only in GET /v1/calls/{id} (and the POST response), not in lists.
    transcripts: list[TranscriptTurn] | UnsetType = UNSET
    cost_breakdown: list[CostItem] | UnsetType = UNSET


@example({"agent_id": 7, "from_number_id": "4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d", "to": "+14155550199",
          "variables": {"first_name": "Ann"}})
class CallCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Place one outbound call: to a number (`to`) or to a lead (its phone), or both (`to` wins, the lead is
    linked)."""

    agent_id: Annotated[AgentRef, Meta(description="The agent that talks.", examples=[7])]
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
