"""The event catalog: every event type the service emits, what it means, and its payload (`data`) as a Struct.

The emitting domains build their payloads with these Structs (calls/call_events.py, batches/events.py) or emit dicts
of the same shape (billing, call analysis, recordings; tests/integration/test_event_catalog.py checks real events
against the schemas). The catalog is served at `GET /v1/event-types` and documented in the OpenAPI document's
`webhooks` section: one entry per type, whose body is the envelope a webhook endpoint receives.
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union

import msgspec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    PathItem,
    Reference,
    RequestBody,
)
from msgspec import Meta

from voice_service.openapi import example

CallStatus = Literal["pending", "ringing", "ongoing", "ended", "declined", "cancelled", "failed"]
BatchStatus = Literal["scheduled", "running", "paused", "completed", "cancelled"]
Money = Annotated[str, Meta(description="A decimal amount as a string (never a float), e.g. \"0.042310\".",
                            examples=["0.042310"])]
_CALL_ID = "0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b"
_BATCH_ID = "0b8f3e0c-5d2a-4c7e-9f1a-2b3c4d5e6f70"
_LEAD_ID = "5e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b"


# --- call lifecycle ---------------------------------------------------------------------------------------------


class CallEventData(msgspec.Struct, kw_only=True):
    """What every call lifecycle event says about the call."""

    call_id: Annotated[uuid.UUID, Meta(description="The call (`GET /v1/calls/{call_id}`).")]
    status: Annotated[CallStatus, Meta(description="The call's status when the event was written.")]
    direction: Literal["inbound", "outbound"]
    agent_id: Annotated[int | None, Meta(description="The agent on the call.")]
    lead_id: Annotated[uuid.UUID | None, Meta(description="The lead called, when the call is to a lead.")]
    batch_id: Annotated[uuid.UUID | None, Meta(description="The batch the call belongs to, if any.")]
    batch_entry_id: uuid.UUID | None
    from_: Annotated[str | None, Meta(description="The calling number (E.164).")] = msgspec.field(name="from")
    to: Annotated[str | None, Meta(description="The called number (E.164).")]
    provider: Annotated[str | None, Meta(description="The carrier: twilio, vonage, simulator, …")]
    attempt: Annotated[int, Meta(description="The batch attempt number (1 for the first call of an entry).")]
    created_at: datetime
    started_at: Annotated[datetime | None, Meta(description="When the call was answered.")]


_CALL_EXAMPLE: dict[str, Any] = {
    "call_id": _CALL_ID, "status": "ongoing", "direction": "outbound", "agent_id": 7, "lead_id": _LEAD_ID,
    "batch_id": _BATCH_ID, "batch_entry_id": "6f1e2d3c-4b5a-4968-8776-655443322110", "from": "+14155550142",
    "to": "+14155550199", "provider": "twilio", "attempt": 1, "created_at": "2025-03-04T15:20:01.120Z",
    "started_at": "2025-03-04T15:20:09.480Z",
}


@example({**_CALL_EXAMPLE, "answered_by": "human"})
class VoiceCallStartedData(CallEventData, kw_only=True):
    """The callee answered (or an inbound call was connected): the conversation starts."""

    answered_by: Annotated[str | None, Meta(description="The carrier's answering-machine detection result "
                                                         "(human, machine_start, …), when known.")] = None


@example({**_CALL_EXAMPLE, "status": "ended", "ended_at": "2025-03-04T15:22:41.002Z", "duration_seconds": 152,
          "end_reason": "completed", "answered_by": "human"})
class VoiceCallEndedData(CallEventData, kw_only=True):
    """The call is over, whatever its outcome."""

    ended_at: datetime | None = None
    duration_seconds: Annotated[int | None, Meta(description="Seconds from answer to end (0 if never "
                                                             "answered).")] = None
    end_reason: Annotated[str | None, Meta(description="Why it ended, e.g. `completed`, `busy`, `no_answer`, "
                                                       "`rejected`, `media_disconnected`, `silence_timeout`, "
                                                       "`max_duration`, `transferred`, `setup_failed`, "
                                                       "`hangup_requested`, `batch_cancelled`, `dispatch_error`, "
                                                       "or a carrier error code.")] = None
    answered_by: str | None = None


class ProviderErrorData(msgspec.Struct):
    code: Annotated[str, Meta(description="The error code (also the call's `end_reason`).",
                              examples=["invalid_number"])]
    message: str
    retryable: Annotated[bool, Meta(description="Whether placing the call again may succeed.")] = False


@example({**_CALL_EXAMPLE, "status": "failed", "started_at": None, "ended_at": "2025-03-04T15:20:01.410Z",
          "duration_seconds": 0, "end_reason": "invalid_number",
          "error": {"code": "invalid_number", "message": "The 'To' number +1415555 is not a valid phone number.",
                    "retryable": False}})
class VoiceCallFailedData(VoiceCallEndedData, kw_only=True):
    """The call could not be completed because of an error (the carrier refused it, or it could not be placed)."""

    error: Annotated[ProviderErrorData | None, Meta(description="The carrier's error, when it gave one.")] = None


# --- billing, analysis, recordings (emitted by their domains) ---------------------------------------------------


class CostItemData(msgspec.Struct):
    category: Annotated[str, Meta(description="stt, llm, tts, telephony, analysis, …")]
    provider: str
    model: str | None
    unit: Annotated[str, Meta(description="What is counted: second, minute, token, character, …")]
    quantity: Annotated[str, Meta(description="A decimal, as a string.")]
    unit_price: Money
    cost: Money
    price_id: Annotated[str, Meta(description="The price row applied.")] | None = None
    direction: Annotated[str, Meta(description="input/output (tokens) or inbound/outbound (minutes), when the "
                                               "price depends on it.")] | None = None
    warning: Annotated[str, Meta(description="Why this item could not be priced normally (e.g. no price "
                                             "row).")] | None = None
    estimated: Annotated[bool, Meta(description="The quantity is an estimate (the provider did not report "
                                                "it).")] = False


@example({"call_id": _CALL_ID, "usage_event_id": "8c7b6a59-4837-4261-9504-a3b2c1d0e9f8",
          "feature_key": "voice-agent", "cost": "0.042310", "currency": "USD",
          "items": [{"category": "telephony", "provider": "twilio", "model": None, "unit": "minute",
                     "quantity": "3", "unit_price": "0.014000", "cost": "0.042000"}],
          "status": "ended", "direction": "outbound", "duration_seconds": 152, "agent_id": 7, "lead_id": _LEAD_ID,
          "batch_id": _BATCH_ID})
class VoiceCallCostRecordedData(msgspec.Struct, kw_only=True):
    """The call was priced and billed: one usage event, one wallet debit."""

    call_id: uuid.UUID
    usage_event_id: Annotated[uuid.UUID, Meta(description="`GET /v1/billing/usage-events?call_id=`.")]
    feature_key: str
    cost: Money
    currency: str
    items: Annotated[list[CostItemData], Meta(description="The cost breakdown, one item per priced usage.")]
    status: CallStatus
    direction: Literal["inbound", "outbound"]
    duration_seconds: int | None
    agent_id: int | None
    lead_id: uuid.UUID | None
    batch_id: uuid.UUID | None


@example({"call_id": _CALL_ID, "usage_event_id": "8c7b6a59-4837-4261-9504-a3b2c1d0e9f8",
          "adjustment": "0.001200", "cost": "0.043510", "currency": "USD",
          "item": {"category": "telephony", "provider": "twilio", "model": None, "unit": "adjustment",
                   "quantity": "1", "unit_price": "0.001200", "cost": "0.001200"}})
class VoiceCallCostAdjustedData(msgspec.Struct, kw_only=True):
    """The carrier's own price arrived after the call was billed: the difference was charged or refunded."""

    call_id: uuid.UUID
    usage_event_id: uuid.UUID
    adjustment: Annotated[Money, Meta(description="Added to the call's cost (negative: refunded).")]
    cost: Annotated[Money, Meta(description="The call's cost after the adjustment.")]
    currency: str
    item: CostItemData


@example({"call_id": _CALL_ID, "analysis_id": "3a2b1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d",
          "summary": "Ann asked for a demo next Tuesday.", "sentiment": "positive", "lead_category": "interested",
          "success_evaluation": {"success": True, "reason": "demo booked"},
          "lead_extraction": {"budget": 5000}, "validation_error": None, "cost": "0.000410", "currency": "USD",
          "lead_id": _LEAD_ID, "batch_id": _BATCH_ID})
class VoiceCallAnalyzedData(msgspec.Struct, kw_only=True):
    """The post-call analysis is ready (`GET /v1/calls/{call_id}/analysis`)."""

    call_id: uuid.UUID
    analysis_id: uuid.UUID
    summary: str | None
    sentiment: str | None
    lead_category: str | None
    success_evaluation: dict[str, Any] | None
    lead_extraction: Annotated[dict[str, Any] | None, Meta(description="Fields of the agent's analysis "
                                                                         "schema.")]
    validation_error: Annotated[str | None, Meta(description="Why `lead_extraction` did not match the agent's "
                                                             "schema, when it did not.")]
    cost: Money
    currency: str
    lead_id: uuid.UUID | None
    batch_id: uuid.UUID | None


@example({"call_id": _CALL_ID, "recording_url": f"/v1/calls/{_CALL_ID}/recording", "format": "mp3",
          "content_type": "audio/mpeg", "bytes": 760320, "duration_ms": 152040, "channels": ["caller", "agent"],
          "sample_rate": 16000, "bit_rate": 40000, "stored_at": "2025-03-04T15:22:55.310Z"})
class VoiceCallRecordingReadyData(msgspec.Struct, kw_only=True):
    """The call's recording is stored and can be downloaded."""

    call_id: uuid.UUID
    recording_url: Annotated[str, Meta(description="Path of the recording on this API (bearer auth).")]
    format: str
    content_type: str
    bytes: int
    duration_ms: int
    channels: Annotated[list[str], Meta(description="Left to right: caller, agent.")]
    sample_rate: int
    bit_rate: int
    stored_at: datetime


@example({"call_id": _CALL_ID, "reason": "api",
          "deleted_by": {"kind": "api_key", "user_id": None, "api_key_id": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"},
          "bytes": 760320, "duration_ms": 152040})
class VoiceCallRecordingDeletedData(msgspec.Struct, kw_only=True):
    """The call's recording was deleted (the audit record of the deletion)."""

    call_id: uuid.UUID
    reason: Annotated[Literal["api", "retention"], Meta(description="`api`: DELETE on the recording; "
                                                                     "`retention`: the tenant's retention.")]
    retention_days: int | None = None
    deleted_by: Annotated[dict[str, Any] | None, Meta(description="Who deleted it (reason `api`).")] = None
    bytes: int | None = None
    duration_ms: int | None = None


# --- batches ----------------------------------------------------------------------------------------------------


class BatchCountsData(msgspec.Struct):
    total: int
    queued: int
    in_progress: int
    retrying: int
    completed: int
    failed: int
    skipped: int
    cancelled: int


_BATCH_EXAMPLE: dict[str, Any] = {
    "batch_id": _BATCH_ID, "name": "March follow-ups", "status": "running", "agent_id": 7,
    "counts": {"total": 500, "queued": 380, "in_progress": 12, "retrying": 8, "completed": 90, "failed": 6,
               "skipped": 4, "cancelled": 0},
    "started_at": "2025-03-04T15:20:00.010Z", "completed_at": None,
}


class BatchEventData(msgspec.Struct, kw_only=True):
    """A batch and its counters when the event was written."""

    batch_id: uuid.UUID
    name: str | None
    status: BatchStatus
    agent_id: int | None
    counts: Annotated[BatchCountsData, Meta(description="Entries by status; they add up to `total`.")]
    started_at: datetime | None
    completed_at: Annotated[datetime | None, Meta(description="When it completed or was cancelled.")]


@example(_BATCH_EXAMPLE)
class BatchStartedData(BatchEventData, kw_only=True):
    """The batch placed its first call."""


@example(_BATCH_EXAMPLE)
class BatchProgressData(BatchEventData, kw_only=True):
    """The batch's counters moved (an attempt ended). At most one every few seconds per batch: the last counts
    come with batch.completed or batch.cancelled."""


@example({**_BATCH_EXAMPLE, "status": "completed", "completed_at": "2025-03-04T18:02:11.500Z",
          "counts": {"total": 500, "queued": 0, "in_progress": 0, "retrying": 0, "completed": 461, "failed": 31,
                     "skipped": 8, "cancelled": 0}})
class BatchCompletedData(BatchEventData, kw_only=True):
    """Every entry of the batch is done (completed, failed, skipped or cancelled)."""


@example({**_BATCH_EXAMPLE, "status": "cancelled", "completed_at": "2025-03-04T16:00:00.000Z",
          "counts": {"total": 500, "queued": 0, "in_progress": 3, "retrying": 0, "completed": 120, "failed": 9,
                     "skipped": 4, "cancelled": 364}})
class BatchCancelledData(BatchEventData, kw_only=True):
    """The batch was cancelled: no new calls start; calls already live may still finish."""


# --- the catalog ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventTypeSpec:
    type: str
    aggregate_type: str
    data: builtins.type[msgspec.Struct]

    @property
    def description(self) -> str:
        return " ".join((self.data.__doc__ or "").split())


EVENT_TYPES: dict[str, EventTypeSpec] = {
    spec.type: spec
    for spec in (
        EventTypeSpec("voice_call.started", "voice_call", VoiceCallStartedData),
        EventTypeSpec("voice_call.ended", "voice_call", VoiceCallEndedData),
        EventTypeSpec("voice_call.failed", "voice_call", VoiceCallFailedData),
        EventTypeSpec("voice_call.cost_recorded", "voice_call", VoiceCallCostRecordedData),
        EventTypeSpec("voice_call.cost_adjusted", "voice_call", VoiceCallCostAdjustedData),
        EventTypeSpec("voice_call.analyzed", "voice_call", VoiceCallAnalyzedData),
        EventTypeSpec("voice_call.recording_ready", "voice_call", VoiceCallRecordingReadyData),
        EventTypeSpec("voice_call.recording_deleted", "voice_call", VoiceCallRecordingDeletedData),
        EventTypeSpec("batch.started", "batch", BatchStartedData),
        EventTypeSpec("batch.progress", "batch", BatchProgressData),
        EventTypeSpec("batch.completed", "batch", BatchCompletedData),
        EventTypeSpec("batch.cancelled", "batch", BatchCancelledData),
    )
}


def payload(data: msgspec.Struct) -> dict[str, Any]:
    """The jsonb payload of an event from its Struct."""
    out: dict[str, Any] = msgspec.to_builtins(data)
    return out


# --- the webhooks' bodies, documented -----------------------------------------------------------------------------


class _Envelope(msgspec.Struct, kw_only=True):
    id: Annotated[uuid.UUID, Meta(description="The event id (also the `webhook-id` header): dedupe on it.")]
    timestamp: Annotated[datetime, Meta(description="When the event was written.")]
    seq: Annotated[int, Meta(description="The outbox sequence number.")]
    aggregate_type: Annotated[str, Meta(description="`voice_call` or `batch`.")]
    aggregate_id: Annotated[uuid.UUID | None, Meta(description="The call's or batch's id.")]


def _envelope(spec: EventTypeSpec) -> type[msgspec.Struct]:
    name = "".join(part.title() for part in spec.type.replace(".", "_").split("_")) + "Event"
    cls = msgspec.defstruct(name, [("data", spec.data)], bases=(_Envelope,), kw_only=True,
                            tag_field="type", tag=spec.type, module=__name__)
    cls.__doc__ = f"The webhook body of a `{spec.type}` event. {spec.description}"
    return cls


ENVELOPES: dict[str, type[msgspec.Struct]] = {name: _envelope(spec) for name, spec in EVENT_TYPES.items()}


if TYPE_CHECKING:
    AnyEventEnvelope: TypeAlias = msgspec.Struct  # one of ENVELOPES' classes: the checker sees their base
else:
    AnyEventEnvelope = Union[tuple(ENVELOPES.values())]  # noqa: UP007 - built at run time


def _example_envelope(spec: EventTypeSpec) -> Any:
    return msgspec.convert(
        {"type": spec.type, "id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a", "timestamp": "2025-03-04T15:22:41.120Z",
         "seq": 4711, "aggregate_type": spec.aggregate_type,
         "aggregate_id": spec.data.__openapi_example__.get("call_id")  # type: ignore[attr-defined]
         or spec.data.__openapi_example__.get("batch_id"),  # type: ignore[attr-defined]
         "data": spec.data.__openapi_example__},  # type: ignore[attr-defined]
        AnyEventEnvelope,
    )


def event_types() -> list[EventTypeInfo]:
    return [
        EventTypeInfo(type=spec.type, description=spec.description, aggregate_type=spec.aggregate_type,
                      data_schema=msgspec.json.schema(spec.data), example=_example_envelope(spec))
        for spec in EVENT_TYPES.values()
    ]


@example({"type": "voice_call.ended", "description": "The call is over, whatever its outcome.",
          "aggregate_type": "voice_call", "data_schema": {
              "title": "VoiceCallEndedData", "type": "object", "required": ["status"],
              "properties": {"status": {"type": "string"}, "end_reason": {"type": "string"}}},
          "example": {"type": "voice_call.ended", "id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
                      "timestamp": "2025-03-04T15:22:41.120Z", "seq": 4711, "aggregate_type": "voice_call",
                      "aggregate_id": _CALL_ID,
                      "data": VoiceCallEndedData.__openapi_example__}})  # type: ignore[attr-defined]
class EventTypeInfo(msgspec.Struct, kw_only=True):
    """One event type: what it means, and its payload."""

    type: Annotated[str, Meta(description="The event type (the `type` of events and webhook bodies).",
                              examples=["voice_call.ended"])]
    description: str
    aggregate_type: Annotated[str, Meta(description="What `aggregate_id` is the id of: `voice_call` or "
                                                    "`batch`.")]
    data_schema: Annotated[dict[str, Any], Meta(description="JSON Schema (2020-12) of the event's `data`.")]
    example: Annotated[AnyEventEnvelope, Meta(description="An example webhook body of this type (a pull-feed "
                                                          "item has the same `type`, `id`, `seq` and `data`).")]


def webhooks_for_openapi() -> dict[str, PathItem | Reference]:
    """The OpenAPI `webhooks` section: one POST per event type, its body the envelope's component (the components
    exist because GET /v1/event-types returns every envelope as an example)."""
    out: dict[str, PathItem | Reference] = {}
    for name, spec in EVENT_TYPES.items():
        envelope = ENVELOPES[name]
        out[name] = PathItem(post=Operation(
            operation_id=f"webhook_{name.replace('.', '_')}",
            summary=spec.description.split(". ")[0].rstrip("."),
            description=f"{spec.description}\n\nSent to every webhook endpoint subscribed to `{name}` (or to every "
                        "type), signed with the Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`, "
                        "`webhook-signature`); the same events are in `GET /v1/events`. Answer 2xx within 10 s; "
                        "other answers are retried with backoff.",
            tags=["events"],
            request_body=RequestBody(
                required=True,
                content={"application/json": OpenAPIMediaType(
                    schema=Reference(ref=f"#/components/schemas/{envelope.__name__}"))},
            ),
            responses={"2XX": OpenAPIResponse(description="Received (any 2xx status).")},
        ))
    return out
