"""Web-call rules: creating a browser call to an agent, admitting its socket, and ending it.

A web call is an ordinary call log row (direction `web`, no carrier: provider, numbers and provider call id are
null) driven by the same conversation engine as a phone call. What differs is only the leg: there is no carrier
to place the call or to report its final status, so

* creating it checks what placing a call checks (the agent is the tenant's, a member may use its voice, the lead
  exists) plus the wallet (a public web page must not run calls on an empty wallet), stores a single-use token
  that expires in TOKEN_TTL, and schedules `EXPIRE_JOB` for a call whose socket never comes;
* its socket admits one client: the token is claimed like a carrier's media token, the call becomes ongoing;
* its end is the end of the media: `ended` records both ends at once (media_ended_at and provider_final_at), so
  the post-call pipeline (billing of STT, LLM and TTS — no telephony leg is metered —, analysis) starts at once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from providers.telephony.base import TERMINAL_STATUSES, CallStatus
from voice_service.agents import service as agents
from voice_service.auth import Principal
from voice_service.billing import service as billing
from voice_service.calls import repository as calls_repo
from voice_service.calls.lifecycle import finalize_after, hash_token, new_media_token
from voice_service.calls.listeners import CallListeners
from voice_service.calls.media import claim_media, media_connected
from voice_service.calls.schemas import CallInfo, CallRef
from voice_service.db import system_tx, tenant_tx
from voice_service.enqueue import enqueue
from voice_service.errors import PaymentRequired, ValidationFailed
from voice_service.runtime import Runtime
from voice_service.settings import Settings
from voice_service.tenancy.service import check_call_permission
from voice_service.webcalls.schemas import WebCall, WebCallCreate

log = logging.getLogger(__name__)

__all__ = [
    "DIRECTION",
    "EXPIRE_JOB",
    "TOKEN_TTL",
    "SocketTarget",
    "connect",
    "create",
    "end_reason_of",
    "ended",
    "expire_unconnected",
    "socket_path",
    "socket_target",
    "socket_url",
]

DIRECTION = "web"
# The browser opens the socket right after its server (or the console) created the call: a token that waits
# longer than this was not going to be used by the page it was made for.
TOKEN_TTL = timedelta(seconds=60)
EXPIRE_JOB = "webcalls.expire"
_EXPIRE_AFTER = TOKEN_TTL + timedelta(seconds=30)

# The media session's end reasons that mean "the person in the browser hung up".
_CALLER_ENDED = {"media_stopped": "caller_hung_up", "media_closed": "caller_hung_up"}


def socket_path(call_id: uuid.UUID) -> str:
    return f"/v1/web-calls/{call_id}/socket"


def socket_url(settings: Settings, call_id: uuid.UUID) -> str:
    base = settings.public_base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return base + socket_path(call_id)


def end_reason_of(session_reason: str | None) -> str:
    """The call's end_reason for the way its media session ended."""
    if session_reason is None:
        return "internal_error"
    return _CALLER_ENDED.get(session_reason, session_reason)


# --- creating ---


async def _check_wallet(conn: asyncpg.Connection, principal: Principal, settings: Settings) -> None:
    if not settings.enforce_wallet_balance:
        return
    wallet = await billing.get_wallet(conn, principal, True)
    if Decimal(wallet.available_balance) <= 0:
        raise PaymentRequired(
            f"the wallet's available balance is {wallet.available_balance} {wallet.currency}; web calls are billed "
            "like phone calls (speech recognition, the LLM and speech synthesis): top the wallet up first"
        )


async def create(runtime: Runtime, principal: Principal, data: WebCallCreate) -> WebCall:
    """Create the call (status `pending`) and its socket token. 404 for an agent that is not the tenant's."""
    tenant_id = principal.tenant_id
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        agent = await agents.get(conn, principal, data.agent_id)
        await check_call_permission(conn, principal, number_id=None, voice_id=agent.voice_id)
        if data.lead_id is not None and await calls_repo.get_lead(conn, tenant_id, data.lead_id) is None:
            raise ValidationFailed(f"lead {data.lead_id} does not exist", field="lead_id")
        await _check_wallet(conn, principal, runtime.settings)
        metadata: dict[str, Any] = {"web": {"allowed_origins": list(dict.fromkeys(data.allowed_origins))}}
        if data.variables:
            metadata["variables"] = dict(data.variables)
        row = await calls_repo.insert_call(
            conn,
            tenant_id,
            {
                "initiated_by_user_id": principal.user_id,
                "lead_id": data.lead_id,
                "agent_id": agent.id,
                "voice_id": agent.voice_id,
                "status": CallStatus.PENDING.value,
                "direction": DIRECTION,
                "metadata": metadata,
            },
        )
        ref = CallRef(id=row["id"], created_at=row["created_at"], tenant_id=tenant_id)
        await runtime.call_listeners.schedule_finalize_timeout(
            conn,
            tenant_id=tenant_id,
            call_id=ref.id,
            call_created_at=ref.created_at,
            after=finalize_after(agent.config),
        )
        token = new_media_token()
        expires_at = datetime.now(UTC) + TOKEN_TTL
        await calls_repo.store_media_token(
            conn, tenant_id, ref.id, ref.created_at, hash_token(token), expires_at
        )
        await enqueue(
            conn,
            EXPIRE_JOB,
            _payload(ref),
            dedupe_key=f"web_call_expire:{ref.id}",
            delay=_EXPIRE_AFTER,
        )
    return WebCall(
        call_id=ref.id,
        agent_id=agent.id,
        status=CallStatus.PENDING.value,
        socket_url=socket_url(runtime.settings, ref.id),
        token=token,
        token_expires_at=expires_at,
    )


# --- the socket ---


@dataclass(frozen=True)
class SocketTarget:
    """The web call a socket asks for, looked up before the socket is accepted."""

    ref: CallRef
    allowed_origins: tuple[str, ...]


async def socket_target(runtime: Runtime, call_id: uuid.UUID) -> SocketTarget | None:
    """The web call `call_id` if it is still waiting for its socket; None otherwise (unknown, not a web call,
    connected already or over)."""
    async with system_tx(runtime.pool) as conn:
        found = await calls_repo.find_by_id(conn, call_id)
    if found is None or found["provider"] is not None:
        return None
    tenant_id = found["tenant_id"]
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        row = await calls_repo.get_call(conn, tenant_id, call_id)
    if row is None or row["direction"] != DIRECTION or row["status"] != CallStatus.PENDING.value:
        return None
    web = (row["metadata"] or {}).get("web") or {}
    return SocketTarget(
        ref=CallRef(id=call_id, created_at=row["created_at"], tenant_id=tenant_id),
        allowed_origins=tuple(str(o) for o in web.get("allowed_origins") or ()),
    )


async def connect(
    runtime: Runtime, target: SocketTarget, token: str | None, origin: str | None
) -> CallInfo | None:
    """Claim the call's single-use token and make the call ongoing; None for a wrong, used or expired token, or a
    call that ended meanwhile."""
    ref = await claim_media(runtime, str(target.ref.id), token)
    if ref is None:
        return None
    info = await media_connected(runtime, ref)
    if info is not None and origin:
        async with tenant_tx(runtime.pool, ref.tenant_id) as conn:
            await calls_repo.patch_metadata(
                conn,
                ref.tenant_id,
                ref.id,
                ref.created_at,
                {"web": {"allowed_origins": list(target.allowed_origins), "origin": origin[:200]}},
            )
    return info


async def _notify_end(
    listeners: CallListeners, conn: asyncpg.Connection, ref: CallRef, *, final: bool, progress: bool
) -> None:
    if final:
        await listeners.on_final(
            conn, tenant_id=ref.tenant_id, call_id=ref.id, call_created_at=ref.created_at
        )
    if progress:
        await listeners.on_progress(
            conn, tenant_id=ref.tenant_id, call_id=ref.id, call_created_at=ref.created_at
        )


async def ended(
    runtime: Runtime,
    ref: CallRef,
    *,
    reason: str,
    inbound_audio_seconds: float,
    dropped_audio_seconds: float = 0.0,
) -> bool:
    """The web call's media has ended: with no carrier to report a final status, the call ends here (both ends
    recorded, so the post-call pipeline runs now). Returns whether the call became terminal here.
    `dropped_audio_seconds`: caller audio the client sent ahead of real time, not listened to (metadata)."""
    now = datetime.now(UTC)
    async with tenant_tx(runtime.pool, ref.tenant_id) as conn:
        state = await calls_repo.lock_state(conn, ref.tenant_id, ref.id, ref.created_at)
        if state is None:
            return False
        fields: dict[str, Any] = {}
        patch: dict[str, Any] = {
            "media_end_reason": reason,
            "media_inbound_seconds": round(inbound_audio_seconds, 3),
        }
        if dropped_audio_seconds:
            patch["web_audio_dropped_seconds"] = round(dropped_audio_seconds, 3)
        if state["media_ended_at"] is None:
            fields["media_ended_at"] = now
        if state["provider_final_at"] is None:
            fields["provider_final_at"] = now
        became_terminal = CallStatus(state["status"]) not in TERMINAL_STATUSES
        if became_terminal:
            fields.update(status=CallStatus.ENDED.value, ended_at=now)
            if state["started_at"] is not None:
                fields["duration_seconds"] = max(0, int((now - state["started_at"]).total_seconds()))
            patch["end_reason"] = reason
        await calls_repo.update_call(conn, ref.tenant_id, ref.id, ref.created_at, fields, patch)
        await _notify_end(
            runtime.call_listeners, conn, ref, final=became_terminal, progress=bool(fields.keys() & _ENDS)
        )
    return became_terminal


_ENDS = {"media_ended_at", "provider_final_at"}


# --- a socket that never came ---


def _payload(ref: CallRef) -> dict[str, Any]:
    return {
        "tenant_id": str(ref.tenant_id),
        "call_id": str(ref.id),
        "call_created_at": ref.created_at.isoformat(),
    }


def _ref(payload: Mapping[str, Any]) -> CallRef:
    return CallRef(
        id=uuid.UUID(payload["call_id"]),
        created_at=datetime.fromisoformat(payload["call_created_at"]),
        tenant_id=uuid.UUID(payload["tenant_id"]),
    )


async def expire_unconnected(runtime: Runtime, payload: Mapping[str, Any]) -> bool:
    """The job run once the token has expired: a web call still waiting for its socket is cancelled (end_reason
    `not_connected`; billed at nothing). Returns whether it was."""
    ref = _ref(payload)
    now = datetime.now(UTC)
    async with tenant_tx(runtime.pool, ref.tenant_id) as conn:
        state = await calls_repo.lock_state(conn, ref.tenant_id, ref.id, ref.created_at)
        if state is None or state["status"] != CallStatus.PENDING.value:
            return False
        fields: dict[str, Any] = {
            "status": CallStatus.CANCELLED.value,
            "ended_at": now,
            "duration_seconds": 0,
            "provider_final_at": now,
        }
        await calls_repo.update_call(
            conn, ref.tenant_id, ref.id, ref.created_at, fields, {"end_reason": "not_connected"}
        )
        await _notify_end(runtime.call_listeners, conn, ref, final=True, progress=True)
    log.info("web call cancelled: its socket never connected", extra={"call": str(ref.id)})
    return True
