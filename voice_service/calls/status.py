"""Provider status events (ringing, answered, completed, busy, …) applied to the call log.

The status only moves up STATUS_RANK and a duplicate or older event (Twilio's SequenceNumber) changes nothing; the
provider's final event is applied once and brings the end time, duration, answering-machine result, end reason and
price. An event is matched to its call by our call id (in the callback URL) or by the provider's call id.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from providers.telephony.base import TERMINAL_STATUSES, CallStatus, StatusEvent, is_status_advance
from voice_service.calls import legs
from voice_service.calls import repository as repo
from voice_service.calls.lifecycle import notify as _notify
from voice_service.db import Row, system_tx, tenant_tx
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["StatusOutcome", "apply_status_event", "plan_status_update"]


class StatusOutcome(msgspec.Struct, frozen=True):
    applied: bool  # something changed
    status: str  # the call's status afterwards
    became_terminal: bool


def plan_status_update(
    state: Row, ev: StatusEvent, now: datetime
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(column updates, metadata patch, became_terminal) for applying `ev` to a call in `state`.

    Nothing when the event is a duplicate or older than one applied (Twilio SequenceNumber), and the status
    only moves up STATUS_RANK. The provider's final event is applied once (provider_final_at): it brings the
    end time, duration, AMD result, end reason and price even when the call had already ended on our side."""
    fields: dict[str, Any] = {}
    patch: dict[str, Any] = {}
    if ev.sequence is not None:
        if ev.sequence <= state["status_sequence"]:
            return fields, patch, False
        fields["status_sequence"] = ev.sequence
    current = CallStatus(state["status"])
    advance = is_status_advance(current, ev.status)
    if advance:
        fields["status"] = ev.status.value
    started_at = state["started_at"]
    if ev.status is CallStatus.ONGOING and started_at is None:
        started_at = fields["started_at"] = ev.occurred_at or now
    if ev.answered_by and state["answered_by"] is None:
        fields["answered_by"] = ev.answered_by[:50]
    if ev.is_final and state["provider_final_at"] is None:
        fields["provider_final_at"] = now
        ended_at = ev.occurred_at or state["ended_at"] or now
        fields["ended_at"] = ended_at
        duration = ev.duration_seconds
        if duration is None and started_at is not None:
            duration = max(0, int((ended_at - started_at).total_seconds()))
        fields["duration_seconds"] = duration if duration is not None else 0
        if started_at is None and duration:
            # The "answered" callback was lost or came late: the provider's duration dates the answer.
            fields["started_at"] = ended_at - timedelta(seconds=duration)
        patch["provider_status"] = ev.raw_status
        if ev.end_reason and (advance or "end_reason" not in (state["metadata"] or {})):
            patch["end_reason"] = ev.end_reason
        if ev.sip_response_code is not None:
            patch["sip_response_code"] = ev.sip_response_code
    if ev.price is not None:
        patch["provider_price"] = {"amount": str(ev.price), "currency": ev.price_currency}
    meta = state["metadata"] or {}
    if ev.conversation_id and "provider_conversation_id" not in meta:
        # Vonage: every leg of the call shares it; a transfer's dialled leg is known by it (legs.py).
        patch["provider_conversation_id"] = ev.conversation_id
    patch = {key: value for key, value in patch.items() if meta.get(key) != value}
    return fields, patch, advance and ev.status in TERMINAL_STATUSES


async def apply_status_event(runtime: Runtime, ev: StatusEvent) -> StatusOutcome | None:
    """Apply a verified status webhook. None when it is about no call we know (logged; answer 2xx anyway)."""
    if ev.leg == "transfer":
        # The leg the carrier dialled for a transfer: recorded on the transferred call, its status unchanged.
        recorded = await legs.apply_transfer_leg(runtime, ev)
        return StatusOutcome(applied=recorded, status=ev.status.value, became_terminal=False) if recorded else None
    async with system_tx(runtime.pool) as conn:
        loc = await _locate(conn, ev)
    if loc is None:
        log.warning(
            "status webhook for an unknown call",
            extra={
                "provider": ev.provider,
                "provider_call_id": ev.provider_call_id,
                "call": ev.call_id,
                "status": ev.raw_status,
            },
        )
        return None
    tenant_id, call_id, created_at, known_provider_call_id = loc
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        if known_provider_call_id is None:
            await repo.record_provider_id(
                conn, tenant_id, call_id, created_at, ev.provider, ev.provider_call_id
            )
        state = await repo.lock_state(conn, tenant_id, call_id, created_at)
        if state is None:
            return None
        fields, patch, became_terminal = plan_status_update(state, ev, datetime.now(UTC))
        if not fields and not patch:
            return StatusOutcome(applied=False, status=state["status"], became_terminal=False)
        await repo.update_call(conn, tenant_id, call_id, created_at, fields, patch)
        await _notify(
            runtime.call_listeners,
            conn,
            tenant_id,
            call_id,
            created_at,
            progress="provider_final_at" in fields,
            final=became_terminal,
            answered=fields.get("status") == CallStatus.ONGOING.value,
            late_price="provider_price" in patch and state["cost"] is not None,
        )
        return StatusOutcome(
            applied=True, status=fields.get("status", state["status"]), became_terminal=became_terminal
        )


async def _locate(
    conn: asyncpg.Connection, ev: StatusEvent
) -> tuple[uuid.UUID, uuid.UUID, datetime, str | None] | None:
    if ev.call_id:
        try:
            call_id = uuid.UUID(ev.call_id)
        except ValueError:
            call_id = None
        row = await repo.find_by_id(conn, call_id) if call_id is not None else None
        if row is not None:
            if row["provider"] != ev.provider:
                log.warning(
                    "status webhook from another provider than the call's",
                    extra={"call": str(call_id), "provider": ev.provider, "call_provider": row["provider"]},
                )
                return None
            known = row["provider_call_id"]
            if known is not None and known != ev.provider_call_id:
                # Vonage posts the events of every leg (the WebSocket leg too) to the call's event URL.
                log.info(
                    "status webhook for another leg of the call",
                    extra={"call": str(call_id), "provider_call_id": ev.provider_call_id},
                )
                return None
            return row["tenant_id"], row["call_id"], row["call_created_at"], known
    row = await repo.find_by_provider_id(conn, ev.provider, ev.provider_call_id)
    if row is None:
        return None
    return row["tenant_id"], row["call_id"], row["call_created_at"], ev.provider_call_id
