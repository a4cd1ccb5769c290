"""The calls domain's public face: the API's one-call flow (check a request and create the call, read and list
calls, the console's figures), and the call lifecycle's entry points, which live in their own modules:
lifecycle.py (the call row, media tokens, the other domains' reactions), placing.py (place, hang up), status.py
(provider status events), inbound.py (a carrier hands us a call), media.py (the media stream starts and ends).
Other domains import them from here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from voice_service.auth import Principal
from voice_service.calls import reports_repository as reports
from voice_service.calls import repository as repo
from voice_service.calls.inbound import InboundAnswer, start_inbound_call
from voice_service.calls.lifecycle import MEDIA_TOKEN_TTL, create_call
from voice_service.calls.listeners import CallListeners
from voice_service.calls.media import claim_media, media_connected, media_ended
from voice_service.calls.placing import hangup_call, place_call
from voice_service.calls.schemas import Call, CallCreate, CallRef, CallStats
from voice_service.calls.status import StatusOutcome, apply_status_event, plan_status_update
from voice_service.errors import Forbidden, NotFound, ValidationFailed
from voice_service.leads.repository import phone_opted_out
from voice_service.pagination import Page, check_limit, decode_cursor, page_from_rows
from voice_service.phones import require_phone
from voice_service.settings import Settings
from voice_service.tenancy.service import check_call_permission

__all__ = [
    "MEDIA_TOKEN_TTL",
    "InboundAnswer",
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
    "stats_since",
]

_ROW_DECODE = msgspec.convert


def _turn(stored: Mapping[str, Any], lines: Mapping[int, str]) -> dict[str, Any]:
    """A stored transcript entry as the API shows it (see conversation/records.py for how the engine stores them:
    an agent turn cut off keeps what was heard, and metadata.cut_off_lines the whole line, by the turn's start)."""
    agent = stored.get("role") == "agent"
    interrupted = bool(stored.get("interrupted"))
    text = str(stored.get("text") or "")
    start_ms = int(stored.get("start_ms") or 0)
    return {
        "role": "agent" if agent else "user",  # stored as "caller" (or "user")
        "text": lines.get(start_ms, text) if agent and interrupted else text,
        "heard": text if interrupted and agent else None,
        "start_ms": start_ms,
        "end_ms": int(stored.get("end_ms") or 0),
        "interrupted": interrupted,
    }


def _call(row: asyncpg.Record) -> Call:
    data = dict(row)
    data["from"] = data.pop("from_e164")
    data["to"] = data.pop("to_e164")
    if "transcripts" in data:
        cut_off = (data["metadata"] or {}).get("cut_off_lines") or []
        lines = {
            int(c["start_ms"]): str(c["text"]) for c in cut_off if isinstance(c, Mapping) and "start_ms" in c
        }
        data["transcripts"] = [_turn(t, lines) for t in data["transcripts"] or [] if isinstance(t, Mapping)]
        data["cost_breakdown"] = data["cost_breakdown"] or []
    return _ROW_DECODE(data, Call, strict=False)


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
    """The call's whole record, transcript and cost breakdown included."""
    row = await repo.get_call(conn, tenant_id, call_id, detail=True)
    if row is None:
        raise NotFound(f"call {call_id} not found")
    return _call(row)


async def list_calls(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    filters: Mapping[str, Any],
    *,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> Page[Call]:
    check_limit(limit)
    after = decode_cursor(cursor) if cursor else None
    rows = await repo.list_calls(conn, tenant_id, limit=limit, after=after, filters=filters,
                                 created_after=created_after, created_before=created_before)
    return page_from_rows(rows, limit, _call)


# --- figures (the operator console's overview) ---


async def stats_since(conn: asyncpg.Connection, tenant_id: uuid.UUID, since: datetime) -> CallStats:
    row = await reports.stats_since(conn, tenant_id, since)
    avg = row["avg_duration"]
    return CallStats(live=row["live"], total=row["total"], answered=row["answered"], unanswered=row["unanswered"],
                     avg_duration_seconds=None if avg is None else float(avg))
