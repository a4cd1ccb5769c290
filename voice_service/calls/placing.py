"""Placing an outbound call through its number's carrier, and hanging a call up.

The call row (created with lifecycle.create_call) and its media token are committed before the carrier is asked
to place the call, because the carrier may call back before `place_call` returns; so `place_call` runs outside any
transaction. A carrier's refusal ends the call `failed` with the carrier's reason.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from providers.telephony.base import TERMINAL_STATUSES, CallStatus, PlaceCallRequest, ProviderError
from voice_service.calls import live
from voice_service.calls import repository as repo
from voice_service.calls.lifecycle import mint_token as _mint_token
from voice_service.calls.lifecycle import notify as _notify
from voice_service.calls.listeners import CallListeners
from voice_service.calls.schemas import CallRef
from voice_service.carriers.clients import get_provider
from voice_service.carriers.urls import answer_url, media_url, status_url
from voice_service.db import tenant_tx
from voice_service.errors import NotFound
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_RING_TIMEOUT_SECONDS", "hangup_call", "place_call"]

DEFAULT_RING_TIMEOUT_SECONDS = 30


async def _fail_call(
    listeners: CallListeners, conn: asyncpg.Connection, ref: CallRef, exc: ProviderError
) -> None:
    state = await repo.lock_state(conn, ref.tenant_id, ref.id, ref.created_at)
    if state is None:
        return
    now = datetime.now(UTC)
    error = {
        "code": exc.code,
        "message": exc.message[:1000],
        "status": exc.status,
        "retryable": exc.retryable,
    }
    became_terminal = CallStatus(state["status"]) not in TERMINAL_STATUSES
    fields: dict[str, Any] = {}
    patch: dict[str, Any] = {"provider_error": error}
    if became_terminal:
        fields.update(status=CallStatus.FAILED.value, ended_at=now, duration_seconds=0)
        patch["end_reason"] = exc.code
    if state["provider_final_at"] is None:
        # The provider's final word on this call is the error: nothing will call back.
        fields["provider_final_at"] = now
    await repo.update_call(conn, ref.tenant_id, ref.id, ref.created_at, fields, patch)
    await _notify(
        listeners,
        conn,
        ref.tenant_id,
        ref.id,
        ref.created_at,
        progress="provider_final_at" in fields,
        final=became_terminal,
    )


async def place_call(runtime: Runtime, ref: CallRef) -> None:
    """Place a pending call through its number's provider. Call OUTSIDE any transaction.

    Records the provider's call id, or ends the call `failed` with metadata.end_reason = the ProviderError
    code (metadata.provider_error has the message and whether a retry may succeed). A call that is no longer
    pending (placed already, or hung up meanwhile) is left alone."""
    settings = runtime.settings
    async with tenant_tx(runtime.pool, ref.tenant_id) as conn:
        info = await repo.place_info(conn, ref.tenant_id, ref.id, ref.created_at)
        if info is None:
            raise NotFound(f"call {ref.id} not found")
        if info["status"] != CallStatus.PENDING.value or info["provider_call_id"] is not None:
            log.info(
                "place_call: call is not pending, not placing",
                extra={"call": str(ref.id), "status": info["status"]},
            )
            return
        token = await _mint_token(conn, ref)
    provider_name = info["provider"]
    config = info["agent_config"] or {}
    try:
        provider = await get_provider(runtime, provider_name)
        result = await provider.place_call(
            PlaceCallRequest(
                call_id=str(ref.id),
                to=info["to_e164"],
                from_=info["from_e164"],
                answer_url=answer_url(settings, provider_name, ref.id),
                status_url=status_url(settings, provider_name, ref.id),
                media_url=media_url(settings, provider_name),
                token=token,
                machine_detection=True,
                timeout_seconds=DEFAULT_RING_TIMEOUT_SECONDS,
                time_limit_seconds=config.get("max_call_seconds"),
            )
        )
    except ProviderError as exc:
        log.warning(
            "place_call failed",
            extra={
                "call": str(ref.id),
                "provider": provider_name,
                "code": exc.code,
                "detail": exc.message[:300],
            },
        )
        async with tenant_tx(runtime.pool, ref.tenant_id) as conn:
            await _fail_call(runtime.call_listeners, conn, ref, exc)
        return
    except Exception as exc:
        # Unknown failures (a bug, a misconfiguration) must not leave the call pending either.
        log.exception("place_call crashed", extra={"call": str(ref.id)})
        async with tenant_tx(runtime.pool, ref.tenant_id) as conn:
            await _fail_call(
                runtime.call_listeners, conn, ref, ProviderError("unknown", f"{type(exc).__name__}: {exc}")
            )
        raise
    async with tenant_tx(runtime.pool, ref.tenant_id) as conn:
        await repo.record_provider_id(
            conn, ref.tenant_id, ref.id, ref.created_at, provider_name, result.provider_call_id
        )
        state = await repo.lock_state(conn, ref.tenant_id, ref.id, ref.created_at)
        cancelled_meanwhile = state is not None and state["status"] == CallStatus.CANCELLED.value
    if cancelled_meanwhile:
        await provider.hangup(result.provider_call_id)


async def hangup_call(runtime: Runtime, tenant_id: uuid.UUID, call_id: uuid.UUID) -> None:
    """End a call. Idempotent: a call that has ended (or never got placed) is success."""
    session = live.registry_of(runtime).get(call_id)
    if session is not None:
        await session.hangup("hangup_requested")
        return
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        row = await repo.get_call(conn, tenant_id, call_id)
        if row is None:
            raise NotFound(f"call {call_id} not found")
        status = CallStatus(row["status"])
        if status in TERMINAL_STATUSES:
            return
        if row["provider_call_id"] is None:
            # Not placed yet (or being placed right now: place_call hangs up once it sees this).
            ref = CallRef(id=call_id, created_at=row["created_at"], tenant_id=tenant_id)
            await repo.update_call(
                conn,
                tenant_id,
                call_id,
                ref.created_at,
                {"status": CallStatus.CANCELLED.value, "ended_at": datetime.now(UTC)},
                {"end_reason": "hangup_requested"},
            )
            await _notify(
                runtime.call_listeners, conn, tenant_id, call_id, ref.created_at, progress=False, final=True
            )
            return
        provider_name, provider_call_id = row["provider"], row["provider_call_id"]
    provider = await get_provider(runtime, provider_name)
    await provider.hangup(provider_call_id)
