"""The call log's side of the media stream (the socket itself is telephony/media.py): the one-time token that
opens it, the call becoming ongoing when it attaches, and the end of the stream, which may end the call."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from providers.telephony.base import STATUS_RANK, TERMINAL_STATUSES, CallStatus, ProviderError
from voice_service.calls import repository as repo
from voice_service.calls.lifecycle import hash_token
from voice_service.calls.lifecycle import notify as _notify
from voice_service.calls.schemas import CallInfo, CallRef
from voice_service.carriers.clients import get_provider
from voice_service.db import system_tx, tenant_tx
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["claim_media", "media_connected", "media_ended"]


async def claim_media(runtime: Runtime, call_id: str | None, token: str | None) -> CallRef | None:
    """Consume the one-time media token; None for a missing, wrong, reused or expired one."""
    if not call_id or not token:
        return None
    try:
        cid = uuid.UUID(call_id)
    except ValueError:
        return None
    async with system_tx(runtime.pool) as conn:
        row = await repo.claim_media_token(conn, cid, hash_token(token))
    if row is None:
        return None
    return CallRef(id=cid, created_at=row["call_created_at"], tenant_id=row["tenant_id"])


async def media_connected(runtime: Runtime, ref: CallRef, *, stream_id: str | None = None) -> CallInfo | None:
    """The media socket is attached: the call is ongoing (if it was not yet). None if the call has ended."""
    async with tenant_tx(runtime.pool, ref.tenant_id) as conn:
        state = await repo.lock_state(conn, ref.tenant_id, ref.id, ref.created_at)
        if state is None:
            return None
        status = CallStatus(state["status"])
        if status in TERMINAL_STATUSES:
            return None
        fields: dict[str, Any] = {}
        if STATUS_RANK[status] < STATUS_RANK[CallStatus.ONGOING]:
            fields["status"] = CallStatus.ONGOING.value
        if state["started_at"] is None:
            fields["started_at"] = datetime.now(UTC)
        patch = {"media_stream_id": stream_id} if stream_id else None
        await repo.update_call(conn, ref.tenant_id, ref.id, ref.created_at, fields, patch)
        if "status" in fields:
            await _notify(
                runtime.call_listeners,
                conn,
                ref.tenant_id,
                ref.id,
                ref.created_at,
                progress=False,
                final=False,
                answered=True,
            )
    meta = state["metadata"] or {}
    return CallInfo(
        tenant_id=ref.tenant_id,
        call_id=ref.id,
        call_created_at=ref.created_at,
        agent_id=state["agent_id"],
        lead_id=state["lead_id"],
        direction=state["direction"],
        variables=dict(meta.get("variables") or {}),
        voice_id=state["voice_id"],
        provider=state["provider"],
        provider_call_id=state["provider_call_id"],
        from_e164=state["from_e164"],
        to_e164=state["to_e164"],
        batch_id=state["batch_id"],
        batch_entry_id=state["batch_entry_id"],
    )


async def media_ended(
    runtime: Runtime, ref: CallRef, *, reason: str, hang_up: bool, inbound_audio_seconds: float | None = None
) -> bool:
    """Record the end of the media stream. With `hang_up` (socket dropped, we hung up, shutdown) the call also
    ends now with metadata.end_reason = `reason`, and the provider is told to hang up. Returns whether the
    call became terminal here."""
    now = datetime.now(UTC)
    async with tenant_tx(runtime.pool, ref.tenant_id) as conn:
        state = await repo.lock_state(conn, ref.tenant_id, ref.id, ref.created_at)
        if state is None:
            return False
        fields: dict[str, Any] = {}
        patch: dict[str, Any] = {"media_end_reason": reason}
        if inbound_audio_seconds is not None:
            patch["media_inbound_seconds"] = round(inbound_audio_seconds, 3)
        if state["media_ended_at"] is None:
            fields["media_ended_at"] = now
        became_terminal = False
        if hang_up and CallStatus(state["status"]) not in TERMINAL_STATUSES:
            became_terminal = True
            fields.update(status=CallStatus.ENDED.value, ended_at=now)
            if state["started_at"] is not None:
                fields["duration_seconds"] = max(0, int((now - state["started_at"]).total_seconds()))
            patch["end_reason"] = reason
        elif hang_up and "end_reason" not in (state["metadata"] or {}):
            # We ended the call, but the provider's final status (which our hang-up or socket close prompted)
            # was applied first and named no reason: the call still ended for ours.
            patch["end_reason"] = reason
        await repo.update_call(conn, ref.tenant_id, ref.id, ref.created_at, fields, patch)
        await _notify(
            runtime.call_listeners,
            conn,
            ref.tenant_id,
            ref.id,
            ref.created_at,
            progress="media_ended_at" in fields,
            final=became_terminal,
        )
        provider_name, provider_call_id = state["provider"], state["provider_call_id"]
    if hang_up and provider_name and provider_call_id:
        try:
            provider = await get_provider(runtime, provider_name)
            await provider.hangup(provider_call_id)
        except ProviderError as exc:
            log.warning(
                "hang-up after media end failed",
                extra={"call": str(ref.id), "code": exc.code, "detail": exc.message[:300]},
            )
    return became_terminal
