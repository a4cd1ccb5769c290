"""The leg a carrier dials when a call is transferred: its statuses, recorded on the transferred call for billing.

A transfer (conversation/services.py) gives the carrier a status URL for the dialled leg: the call's own status
webhook with `leg=transfer`. Twilio posts the child call's status callback there (signed URL; its ParentCallSid is
the call's CallSid); Vonage posts the connected leg's events (its own uuid; the signed body's conversation_uuid is
the call's, which the call recorded from its own signed events, while the URL's call_id is unsigned and only a
hint). Each checked status updates `metadata.transfer_leg` {provider_call_id, to, status, final, duration_seconds,
price}; once the leg is final, billing bills it — with the call if the call is not billed yet, else through the
late-price listener (billing's reconciliation job).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from providers.telephony.base import StatusEvent
from voice_service.calls import repository as repo
from voice_service.db import system_tx, tenant_tx
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["apply_transfer_leg"]


def _belongs(ev: StatusEvent, provider_call_id: str | None, metadata: dict[str, Any]) -> bool:
    if ev.parent_provider_call_id is not None:
        return provider_call_id is not None and ev.parent_provider_call_id == provider_call_id
    conversation = metadata.get("provider_conversation_id")
    return ev.conversation_id is not None and conversation is not None and ev.conversation_id == conversation


async def apply_transfer_leg(runtime: Runtime, ev: StatusEvent) -> bool:
    """Record a dialled leg's status on its transferred call; False when it is about no call of ours."""
    try:
        call_id = uuid.UUID(ev.call_id or "")
    except ValueError:
        log.warning("transfer leg status for an unknown call", extra={"provider": ev.provider, "call": ev.call_id})
        return False
    async with system_tx(runtime.pool) as conn:
        row = await repo.find_by_id(conn, call_id)
    if row is None or row["provider"] != ev.provider:
        log.warning("transfer leg status for an unknown call", extra={"provider": ev.provider, "call": ev.call_id})
        return False
    tenant_id, created_at = row["tenant_id"], row["call_created_at"]
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        state = await repo.lock_state(conn, tenant_id, call_id, created_at)
        if state is None:
            return False
        metadata = state["metadata"] or {}
        if not _belongs(ev, state["provider_call_id"], metadata):
            log.warning(
                "transfer leg status that does not belong to the call",
                extra={"call": str(call_id), "leg": ev.provider_call_id},
            )
            return False
        leg = dict(metadata.get("transfer_leg") or {})
        if leg.get("final"):
            return True  # a repeat of the leg's final status: nothing changes
        leg.update(
            provider_call_id=ev.provider_call_id,
            to=ev.to or metadata.get("transfer_to"),
            status=ev.raw_status,
            final=ev.is_final,
        )
        if ev.is_final:
            leg["duration_seconds"] = ev.duration_seconds or 0
            leg["ended_at"] = (ev.occurred_at or datetime.now(UTC)).isoformat()
        if ev.price is not None:
            leg["price"] = {"amount": str(ev.price), "currency": ev.price_currency}
        await repo.patch_metadata(conn, tenant_id, call_id, created_at, {"transfer_leg": leg})
        if ev.is_final and state["cost"] is not None:
            # Billed already (the call's own final status came first): the leg is billed on its own.
            await runtime.call_listeners.on_provider_price(
                conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at
            )
    return True
