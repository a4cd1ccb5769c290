"""Call lifecycle rules: create and place calls, apply provider status events, media start/end, hang-up.

The call log's status follows the provider's events and never moves backwards (STATUS_RANK); a duplicate or
out-of-order webhook changes nothing. Two moments end a call: the media socket closing (media_ended_at) and the
provider's final status (provider_final_at). Other domains react through the Runtime's CallListeners (see
listeners.py), each in the transaction that changed the call: whenever either end is recorded, `on_progress`
(billing's post-call trigger); the first time a call reaches a terminal status, `on_final` (batches); when it
becomes ongoing, `on_answered` (batches). A provider price that arrives after the call was billed goes to
`on_provider_price` (billing's reconciliation). Creating a call runs `schedule_finalize_timeout` (the agent's
max_call_seconds + FINALIZE_GRACE), so a call whose end never arrives is billed anyway.

Placing a call talks to the provider outside any transaction: the call row (and its media token) is committed
first, because the provider may call back before `place_call` returns.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from providers.telephony.base import (
    STATUS_RANK,
    TERMINAL_STATUSES,
    CallStatus,
    PlaceCallRequest,
    ProviderError,
    StatusEvent,
    is_status_advance,
)
from voice_service.auth import Principal
from voice_service.calls import live
from voice_service.calls import repository as repo
from voice_service.calls.listeners import CallListeners
from voice_service.calls.schemas import Call, CallCreate, CallInfo, CallRef, CallStats
from voice_service.carriers.clients import get_provider
from voice_service.carriers.urls import answer_url, media_url, status_url
from voice_service.db import system_tx, tenant_tx
from voice_service.errors import Forbidden, NotFound, ValidationFailed
from voice_service.leads.repository import phone_opted_out
from voice_service.pagination import Page, check_limit, decode_cursor, page_from_rows
from voice_service.phones import parse_phone, require_phone
from voice_service.runtime import Runtime
from voice_service.settings import Settings
from voice_service.tenancy.service import check_call_permission

log = logging.getLogger(__name__)

__all__ = [
    "MEDIA_TOKEN_TTL",
    "StatusOutcome",
    "apply_status_event",
    "claim_media",
    "create_call",
    "create_outbound",
    "get_call",
    "hangup_call",
    "list_calls",
    "media_connected",
    "media_ended",
    "place_call",
    "plan_status_update",
    "start_inbound_call",
]

# An outbound call rings for up to ~60 s before its stream opens; a queued call can wait a little more.
MEDIA_TOKEN_TTL = timedelta(minutes=15)
DEFAULT_RING_TIMEOUT_SECONDS = 30
DEFAULT_MAX_CALL_SECONDS = 900  # agents' config.max_call_seconds default
# Past the longest a call may last: the finalize-timeout job bills a call whose end never arrived.
FINALIZE_GRACE = timedelta(minutes=10)

_ROW_DECODE = msgspec.convert


def _call(row: asyncpg.Record) -> Call:
    data = dict(row)
    data["from"] = data.pop("from_e164")
    data["to"] = data.pop("to_e164")
    return _ROW_DECODE(data, Call)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_media_token() -> str:
    return secrets.token_urlsafe(24)


# --- other domains' reactions (the Runtime's CallListeners) ---


async def _notify(
    listeners: CallListeners,
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    *,
    progress: bool,
    final: bool,
    answered: bool = False,
    late_price: bool = False,
) -> None:
    if answered:
        await listeners.on_answered(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)
    if final:
        await listeners.on_final(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)
    if progress:
        await listeners.on_progress(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)
    elif late_price:
        # (on_progress reconciles a price that comes with the final status itself.)
        await listeners.on_provider_price(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)


def finalize_after(agent_config: Mapping[str, Any] | None) -> timedelta:
    """When the finalize-timeout job of a call with this agent config runs, counted from the call's creation."""
    seconds = (agent_config or {}).get("max_call_seconds") or DEFAULT_MAX_CALL_SECONDS
    return timedelta(seconds=int(seconds)) + FINALIZE_GRACE


async def _schedule_finalize_timeout(
    listeners: CallListeners,
    conn: asyncpg.Connection,
    ref: CallRef,
    agent_id: int | None,
    agent_config: Mapping[str, Any] | None,
) -> None:
    if agent_config is None and agent_id is not None:
        agent = await repo.get_agent(conn, ref.tenant_id, agent_id)
        agent_config = agent["config"] if agent is not None else None
    await listeners.schedule_finalize_timeout(
        conn,
        tenant_id=ref.tenant_id,
        call_id=ref.id,
        call_created_at=ref.created_at,
        after=finalize_after(agent_config),
    )


# --- creating and placing calls ---


def _number_e164(number: Mapping[str, Any]) -> str:
    e164 = number.get("e164") or number.get("phone_number")
    if not e164:
        raise ValueError("from_number needs an `e164` (or `phone_number`) value")
    return str(e164)


async def create_call(
    conn: asyncpg.Connection,
    *,
    listeners: CallListeners,
    tenant_id: uuid.UUID,
    initiated_by_user_id: uuid.UUID | None,
    agent_id: int | None,
    from_number: Mapping[str, Any],
    to_e164: str,
    lead_id: uuid.UUID | None,
    voice_id: uuid.UUID | None,
    variables: Mapping[str, Any],
    direction: str = "outbound",
    batch_id: uuid.UUID | None = None,
    batch_entry_id: uuid.UUID | None = None,
    attempt: int = 1,
    metadata: Mapping[str, Any] | None = None,
    from_e164: str | None = None,
    status: str = "pending",
    provider_call_id: str | None = None,
    agent_config: Mapping[str, Any] | None = None,
) -> CallRef:
    """Insert the call log row (UUIDv7 id) in the caller's transaction. `from_number` is the tenant's number
    (a numbers row or dict with id, e164/phone_number, provider); `from_e164` overrides the presented caller
    (inbound calls: the caller's number). Also schedules the call's finalize timeout
    (`listeners.schedule_finalize_timeout`), from the agent's max_call_seconds (`agent_config` when the caller has
    it; otherwise the agent is read)."""
    to_phone = parse_phone(to_e164)
    meta = dict(metadata or {})
    if variables:
        meta["variables"] = dict(variables)
    fields: dict[str, Any] = {
        "initiated_by_user_id": initiated_by_user_id,
        "lead_id": lead_id,
        "agent_id": agent_id,
        "voice_id": voice_id,
        "from_number_id": from_number.get("id"),
        "to_country_code": to_phone.country_code if to_phone else None,
        "to_base_number": to_phone.base_number if to_phone else None,
        "to_e164": to_e164,
        "from_e164": from_e164 if from_e164 is not None else _number_e164(from_number),
        "batch_id": batch_id,
        "batch_entry_id": batch_entry_id,
        "provider": from_number.get("provider"),
        "attempt": attempt,
        "status": status,
        "direction": direction,
        "metadata": meta,
    }
    if provider_call_id is not None:
        fields["provider_call_id"] = provider_call_id
    row = await repo.insert_call(conn, tenant_id, fields)
    ref = CallRef(id=row["id"], created_at=row["created_at"], tenant_id=tenant_id)
    if provider_call_id is not None and fields["provider"]:
        await repo.record_provider_id(
            conn, tenant_id, ref.id, ref.created_at, fields["provider"], provider_call_id
        )
    await _schedule_finalize_timeout(listeners, conn, ref, agent_id, agent_config)
    return ref


async def _mint_token(conn: asyncpg.Connection, ref: CallRef) -> str:
    token = new_media_token()
    await repo.store_media_token(
        conn, ref.tenant_id, ref.id, ref.created_at, hash_token(token), datetime.now(UTC) + MEDIA_TOKEN_TTL
    )
    return token


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


# --- the API's one-call flow ---


async def create_outbound(
    conn: asyncpg.Connection, listeners: CallListeners, principal: Principal, data: CallCreate, *, settings: Settings
) -> CallRef:
    """Check the request (permissions on the number and the voice the call will use, tenant ownership, number
    active, the number dialled not opted out), create the call and reserve its estimated cost on the wallet
    (`listeners.reserve_call`: PaymentRequired when the wallet cannot cover it, and nothing is created)."""
    tenant_id = principal.tenant_id
    await check_call_permission(conn, principal, number_id=data.from_number_id, voice_id=data.voice_id)
    agent = await repo.get_agent(conn, tenant_id, data.agent_id)
    if agent is None:
        raise ValidationFailed(f"agent {data.agent_id} does not exist", field="agent_id")
    voice_id = data.voice_id or agent["voice_id"]
    if voice_id != data.voice_id:  # the agent's default voice: the one the call speaks with
        await check_call_permission(conn, principal, number_id=None, voice_id=voice_id)
    number = await repo.get_number(conn, tenant_id, data.from_number_id)
    if number is None:
        raise ValidationFailed(f"number {data.from_number_id} does not exist", field="from_number_id")
    if number["status"] != "active":
        raise ValidationFailed(f"number {number['e164']} is {number['status']}", field="from_number_id")
    if data.voice_id is not None and not await repo.voice_exists(conn, tenant_id, data.voice_id):
        raise ValidationFailed(f"voice {data.voice_id} does not exist", field="voice_id")
    to = data.to
    if data.lead_id is not None:
        lead = await repo.get_lead(conn, tenant_id, data.lead_id)
        if lead is None:
            raise ValidationFailed(f"lead {data.lead_id} does not exist", field="lead_id")
        if lead["do_not_call"]:
            raise Forbidden("this lead asked not to be called (do_not_call)", field="lead_id")
        to = to or lead["phone"]
    if to is None:
        raise ValidationFailed("give `to` (E.164) or a `lead_id` with a phone", field="to")
    phone = require_phone(to, "to")
    if await phone_opted_out(conn, tenant_id, phone.e164):
        raise Forbidden("the lead with this number asked not to be called (do_not_call)", field="to")
    ref = await create_call(
        conn,
        listeners=listeners,
        tenant_id=tenant_id,
        initiated_by_user_id=principal.user_id,
        agent_id=data.agent_id,
        from_number=number,
        to_e164=phone.e164,
        lead_id=data.lead_id,
        voice_id=voice_id,
        variables=data.variables,
        agent_config=agent["config"] or {},
    )
    await listeners.reserve_call(conn, settings=settings, tenant_id=tenant_id, call_id=ref.id,
                                 provider=number["provider"], direction="outbound")
    return ref


async def get_call(conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID) -> Call:
    row = await repo.get_call(conn, tenant_id, call_id)
    if row is None:
        raise NotFound(f"call {call_id} not found")
    return _call(row)


async def list_calls(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, limit: int, cursor: str | None, filters: Mapping[str, Any]
) -> Page[Call]:
    check_limit(limit)
    after = decode_cursor(cursor) if cursor else None
    rows = await repo.list_calls(conn, tenant_id, limit=limit, after=after, filters=filters)
    return page_from_rows(rows, limit, _call)


# --- provider status events ---


class StatusOutcome(msgspec.Struct, frozen=True):
    applied: bool  # something changed
    status: str  # the call's status afterwards
    became_terminal: bool


def plan_status_update(
    state: Mapping[str, Any], ev: StatusEvent, now: datetime
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
    patch = {key: value for key, value in patch.items() if meta.get(key) != value}
    return fields, patch, advance and ev.status in TERMINAL_STATUSES


async def apply_status_event(runtime: Runtime, ev: StatusEvent) -> StatusOutcome | None:
    """Apply a verified status webhook. None when it is about no call we know (logged; answer 2xx anyway)."""
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


# --- inbound calls ---


class InboundAnswer(msgspec.Struct, frozen=True):
    call_id: uuid.UUID
    token: str


async def start_inbound_call(
    runtime: Runtime, *, provider: str, to_e164: str, from_e164: str | None, provider_call_id: str
) -> InboundAnswer | None:
    """Route a call to the number's tenant and default agent; None when nobody takes calls on `to_e164`. A new call
    reserves its estimated cost on the tenant's wallet (`reserve_call`): PaymentRequired (and no call) when the
    wallet cannot cover it, for the caller to answer with the carrier's polite rejection."""
    async with system_tx(runtime.pool) as conn:
        route = await conn.fetchrow("SELECT * FROM route_inbound_number($1)", to_e164)
        known = await repo.find_by_provider_id(conn, provider, provider_call_id)
    if route is None:
        log.warning(
            "inbound call to an unknown or inactive number", extra={"to": to_e164, "provider": provider}
        )
        return None
    if route["provider"] != provider:
        log.warning(
            "inbound call through another provider than the number's",
            extra={"to": to_e164, "provider": provider, "number_provider": route["provider"]},
        )
        return None
    if route["default_agent_id"] is None:
        log.warning("inbound call to a number without a default agent", extra={"to": to_e164})
        return None
    tenant_id = route["tenant_id"]
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        if known is not None and known["tenant_id"] == tenant_id:
            # The provider retried its answer webhook: same call, a fresh token.
            ref = CallRef(id=known["call_id"], created_at=known["call_created_at"], tenant_id=tenant_id)
        else:
            agent = await repo.get_agent(conn, tenant_id, route["default_agent_id"])
            number = {"id": route["number_id"], "e164": to_e164, "provider": provider}
            ref = await create_call(
                conn,
                listeners=runtime.call_listeners,
                tenant_id=tenant_id,
                initiated_by_user_id=None,
                agent_id=route["default_agent_id"],
                from_number=number,
                to_e164=to_e164,
                lead_id=None,
                voice_id=agent["voice_id"] if agent is not None else None,
                variables={},
                direction="inbound",
                from_e164=(from_e164 or "anonymous")[:64],
                status=CallStatus.RINGING.value,
                provider_call_id=provider_call_id,
                agent_config=(agent["config"] or {}) if agent is not None else None,
            )
            await runtime.call_listeners.reserve_call(conn, settings=runtime.settings, tenant_id=tenant_id,
                                                      call_id=ref.id, provider=provider, direction="inbound")
        token = await _mint_token(conn, ref)
    return InboundAnswer(call_id=ref.id, token=token)


# --- media ---


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


# --- figures (the operator console's overview) ---


async def stats_since(conn: asyncpg.Connection, tenant_id: uuid.UUID, since: datetime) -> CallStats:
    row = await repo.stats_since(conn, tenant_id, since)
    avg = row["avg_duration"]
    return CallStats(live=row["live"], total=row["total"], answered=row["answered"], unanswered=row["unanswered"],
                     avg_duration_seconds=None if avg is None else float(avg))
