"""Live call control as the API offers it: the rules around each command, whichever instance the request is on.

Before a command is routed (calls/control.py), the call is read in the caller's tenant: another tenant's call is a
404; a call that has ended is a 409 whose body carries `call_status` and `end_reason`. Then:

* `end` — a call with media on some instance: the engine stops and hangs up (`end_reason` the given reason,
  `ended_by_api` from the API). A call with no media to stop (not answered yet, its media already over after a
  transfer, or no instance answering for it: the one carrying it has died) is hung up through the carrier, or
  cancelled if it was not placed yet — `end` always ends the call; `note` says when it went that way.
* `say`, `transfer`, listen — need the call's media: not answered yet, or media over, is a 409 with the status;
  no instance answering (it died, or the media is just being connected) is a 503 that says so and asks to retry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from providers.telephony.base import ProviderError
from voice_service.auth import Principal
from voice_service.calls import control_repository as ctl_repo
from voice_service.calls import repository as calls_repo
from voice_service.calls.control import ListenSource, LiveControl
from voice_service.calls.control_schemas import CommandResult, ListenToken, SayRequest, TransferRequest
from voice_service.carriers.clients import get_provider
from voice_service.db import system_tx, tenant_tx
from voice_service.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from voice_service.phones import require_phone
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = [
    "LISTEN_TOKEN_TTL",
    "claim_listen_token",
    "end_batch_calls",
    "end_call",
    "mint_listen_token",
    "open_listen",
    "say",
    "transfer",
]

LISTEN_TOKEN_TTL = timedelta(seconds=60)
TERMINAL = frozenset({"ended", "declined", "cancelled", "failed"})
UNANSWERED = frozenset({"pending", "ringing"})
_BATCH_END_CONCURRENCY = 16
_NO_INSTANCE = (
    "no service instance answered for this call's media within {timeout:g} s: the instance carrying it may have "
    "stopped, or the media is still connecting; retry shortly"
)


async def _state(runtime: Runtime, tenant_id: uuid.UUID, call_id: uuid.UUID) -> asyncpg.Record:
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        row = await ctl_repo.live_state(conn, tenant_id, call_id)
    if row is None:
        raise NotFound(f"call {call_id} not found")
    return row


def _conflict(row: asyncpg.Record, detail: str) -> Conflict:
    return Conflict(detail, extensions={"call_status": row["status"], "end_reason": row["end_reason"]})


def _check_not_ended(row: asyncpg.Record) -> None:
    if row["status"] in TERMINAL:
        raise _conflict(row, f"the call has ended (status {row['status']})")


def _check_media(row: asyncpg.Record) -> None:
    _check_not_ended(row)
    if row["status"] in UNANSWERED:
        raise _conflict(row, f"the call has not been answered yet (status {row['status']})")
    if row["media_ended_at"] is not None:
        raise _conflict(row, "the call's media has ended (it was transferred, or is ending)")


async def _after_refusal(
    runtime: Runtime, control: LiveControl, row: asyncpg.Record, reply: dict[str, Any] | None
) -> None:
    """Raise what a refused or unanswered command means to the API."""
    if reply is None:
        detail = _NO_INSTANCE.format(timeout=control.command_timeout)
        raise ServiceUnavailable(detail, headers={"Retry-After": "2"})
    error = reply.get("error")
    fresh = await _state(runtime, row["tenant_id"], row["id"])
    if error == "not_controllable":
        raise _conflict(fresh, "this call is not driven by the conversation engine: it takes no say or transfer")
    _check_not_ended(fresh)
    raise _conflict(fresh, f"the call is ending (status {fresh['status']})")


# --- commands ---


async def end_call(
    runtime: Runtime, control: LiveControl, tenant_id: uuid.UUID, call_id: uuid.UUID, *, reason: str = "ended_by_api"
) -> CommandResult:
    row = await _state(runtime, tenant_id, call_id)
    _check_not_ended(row)
    note = None
    if row["status"] in UNANSWERED or row["media_ended_at"] is not None:
        note = await _end_without_media(runtime, row, reason)
    else:
        reply = await control.send(tenant_id, call_id, "end", {"reason": reason})
        if reply is None:
            note = await _end_without_media(runtime, row, reason)
            note += "; no service instance answered for its media"
    row = await _state(runtime, tenant_id, call_id)
    return CommandResult(call_id=call_id, command="end", status=row["status"], end_reason=row["end_reason"], note=note)


async def _end_without_media(runtime: Runtime, row: asyncpg.Record, reason: str) -> str:
    tenant_id, call_id, created_at = row["tenant_id"], row["id"], row["created_at"]
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        state = await calls_repo.lock_state(conn, tenant_id, call_id, created_at)
        if state is None or state["status"] in TERMINAL:
            return "the call had ended meanwhile"
        if state["provider_call_id"] is None:
            if await calls_repo.end_unplaced(conn, tenant_id, call_id, created_at, "cancelled", reason):
                await runtime.call_listeners.on_final(
                    conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at
                )
                return "the call was not placed yet: cancelled"
            # Being placed right now: place_call hangs up once it has the provider's id.
            await calls_repo.patch_metadata(conn, tenant_id, call_id, created_at, {"end_reason": reason})
            return "the call was being placed: it is hung up as soon as the carrier has it"
        # The carrier's final status names no reason of ours: record it now.
        await calls_repo.patch_metadata(conn, tenant_id, call_id, created_at, {"end_reason": reason})
        provider_name, provider_call_id = state["provider"], state["provider_call_id"]
    try:
        provider = await get_provider(runtime, provider_name)
        await provider.hangup(provider_call_id)
    except ProviderError as exc:
        log.warning("hang-up through the carrier failed", extra={"call": str(call_id), "code": exc.code})
        raise ServiceUnavailable(
            f"the carrier did not take the hang-up ({exc.code}): {exc.message[:200]}", headers={"Retry-After": "5"}
        ) from exc
    return "hung up through the carrier"


async def _route(
    runtime: Runtime, control: LiveControl, tenant_id: uuid.UUID, call_id: uuid.UUID, op: str, args: dict[str, Any]
) -> CommandResult:
    row = await _state(runtime, tenant_id, call_id)
    _check_media(row)
    reply = await control.send(tenant_id, call_id, op, args)
    if reply is None or not reply.get("ok"):
        await _after_refusal(runtime, control, row, reply)
    return CommandResult(call_id=call_id, command=op, status=row["status"])  # type: ignore[arg-type]


async def say(
    runtime: Runtime, control: LiveControl, tenant_id: uuid.UUID, call_id: uuid.UUID, data: SayRequest
) -> CommandResult:
    text = " ".join(data.text.split())
    if not text:
        raise ValidationFailed("text is empty: give the words the agent should say", field="text")
    return await _route(runtime, control, tenant_id, call_id, "say", {"text": text, "interrupt": data.interrupt})


async def transfer(
    runtime: Runtime, control: LiveControl, tenant_id: uuid.UUID, call_id: uuid.UUID, data: TransferRequest
) -> CommandResult:
    to = require_phone(data.to, "to").e164
    return await _route(runtime, control, tenant_id, call_id, "transfer", {"to": to})


async def end_batch_calls(
    runtime: Runtime, control: LiveControl, tenant_id: uuid.UUID, batch_id: uuid.UUID, *, reason: str
) -> int:
    """End every call of the batch that has not ended yet; returns how many were ended here."""
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        call_ids = await ctl_repo.batch_live_calls(conn, tenant_id, batch_id)
    limit = asyncio.Semaphore(_BATCH_END_CONCURRENCY)
    ended = 0

    async def end_one(call_id: uuid.UUID) -> None:
        nonlocal ended
        async with limit:
            try:
                await end_call(runtime, control, tenant_id, call_id, reason=reason)
                ended += 1
            except (Conflict, NotFound):
                pass  # it ended meanwhile
            except ServiceUnavailable as exc:
                log.warning("a batch call could not be ended", extra={"call": str(call_id), "detail": exc.detail})

    async with asyncio.TaskGroup() as tg:
        for call_id in call_ids:
            tg.create_task(end_one(call_id))
    return ended


# --- listening ---


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def mint_listen_token(runtime: Runtime, principal: Principal, call_id: uuid.UUID) -> ListenToken:
    row = await _state(runtime, principal.tenant_id, call_id)
    _check_not_ended(row)
    token = "vsl_" + secrets.token_urlsafe(24)
    expires_at = datetime.now(UTC) + LISTEN_TOKEN_TTL
    async with tenant_tx(runtime.pool, principal.tenant_id) as conn:
        await ctl_repo.store_listen_token(
            conn,
            principal.tenant_id,
            call_id,
            _hash(token),
            expires_at,
            api_key_id=principal.key_id,
            user_id=principal.user_id,
        )
    return ListenToken(token=token, expires_at=expires_at, listen_url=f"/v1/calls/{call_id}/listen?token={token}")


async def claim_listen_token(runtime: Runtime, call_id: uuid.UUID, token: str) -> Principal | None:
    """The principal a listen token was minted for (consumed now), or None: wrong, reused, expired, other call."""
    async with system_tx(runtime.pool) as conn:
        row = await ctl_repo.claim_listen_token(conn, call_id, _hash(token))
    if row is None:
        return None
    return Principal(
        tenant_id=row["tenant_id"], role="viewer", user_id=row["user_id"], key_id=row["api_key_id"], kind="listen_token"
    )


async def open_listen(
    runtime: Runtime, control: LiveControl, tenant_id: uuid.UUID, call_id: uuid.UUID
) -> tuple[ListenSource, str]:
    """A listen stream on the call and the call's status."""
    row = await _state(runtime, tenant_id, call_id)
    _check_media(row)
    result = await control.listen(tenant_id, call_id)
    if isinstance(result, ListenSource):
        return result, row["status"]
    await _after_refusal(runtime, control, row, result)
    raise AssertionError("unreachable")  # _after_refusal always raises


async def final_state(runtime: Runtime, tenant_id: uuid.UUID, call_id: uuid.UUID) -> dict[str, Any]:
    row = await _state(runtime, tenant_id, call_id)
    return {"status": row["status"], "end_reason": row["end_reason"]}
