"""Read views of the call log for people (the console): one call's full record — the call, its transcript (turns with
their offsets in the call's media), its cost breakdown with the total, its per-turn latencies — and the call list
filtered by the calls' analysis (sentiment, lead category).

Read from the call row through the calls repository (`transcripts` and `cost_breakdown` columns, the latency
summary in `metadata.latency`). Stored transcripts name the caller's side `caller`; `user` (the read model's name
for it) is accepted too, so pages can show either.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from analysis.pricing import CostBreakdown, CostItem
from voice_service.calls import reports_repository as reports
from voice_service.calls.schemas import Call
from voice_service.calls.service import get_call
from voice_service.errors import NotFound
from voice_service.pagination import Page, check_limit, decode_cursor, page_from_rows

__all__ = ["CallDetail", "TranscriptTurn", "TurnLatency", "get_call_detail", "list_calls_by_analysis"]


class TranscriptTurn(msgspec.Struct, frozen=True, kw_only=True):
    role: str  # agent | caller (or user)
    text: str
    start_ms: int = 0
    end_ms: int = 0
    interrupted: bool = False
    heard: str | None = None  # what the caller heard of an interrupted agent turn, when recorded

    @property
    def by_agent(self) -> bool:
        return self.role == "agent"


class TurnLatency(msgspec.Struct, frozen=True, kw_only=True):
    turn: int
    trigger: str = ""
    stt_final_ms: float | None = None
    llm_first_token_ms: float | None = None
    tts_first_byte_ms: float | None = None
    response_ms: float | None = None
    first_audio_ms: float | None = None


class CallDetail(msgspec.Struct, frozen=True, kw_only=True):
    call: Call
    transcript: list[TranscriptTurn]
    cost_items: list[CostItem]
    cost_total: Decimal
    currency: str
    latencies: list[TurnLatency]
    latency_summary: dict[str, Any]


def _latencies(metadata: dict[str, Any]) -> tuple[list[TurnLatency], dict[str, Any]]:
    latency = metadata.get("latency")
    if not isinstance(latency, dict):
        return [], {}
    try:
        turns = msgspec.convert(latency.get("turns") or [], list[TurnLatency], strict=False)
    except msgspec.ValidationError:
        turns = []
    summary = latency.get("summary")
    return turns, summary if isinstance(summary, dict) else {}


async def get_call_detail(conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID) -> CallDetail:
    call = await get_call(conn, tenant_id, call_id)
    row = await reports.conversation_of(conn, tenant_id, call_id)
    if row is None:
        raise NotFound(f"call {call_id} not found")
    try:
        transcript = msgspec.convert(row["transcripts"] or [], list[TranscriptTurn], strict=False)
    except msgspec.ValidationError:
        transcript = []  # a row written by an older engine: shown as no transcript rather than an error page
    currency = row["currency"] or "USD"
    breakdown = CostBreakdown.from_json_items(row["cost_breakdown"] or [], currency)
    latencies, summary = _latencies(call.metadata)
    return CallDetail(call=call, transcript=sorted(transcript, key=lambda t: t.start_ms), cost_items=breakdown.items,
                      cost_total=breakdown.total, currency=currency, latencies=latencies, latency_summary=summary)


async def list_calls_by_analysis(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, limit: int, cursor: str | None, filters: Mapping[str, Any], *,
    sentiment: str | None, category: str | None,
) -> Page[Call]:
    """Like `service.list_calls` (same cursor), for the calls whose analysis has this sentiment and/or category."""
    rows = await reports.page_by_analysis(conn, tenant_id, limit=check_limit(limit),
                                       after=decode_cursor(cursor) if cursor else None, filters=filters,
                                       sentiment=sentiment, category=category)
    return page_from_rows(rows, limit, _to_call)


def _to_call(row: asyncpg.Record) -> Call:
    data = dict(row)
    data["from"] = data.pop("from_e164")
    data["to"] = data.pop("to_e164")
    return msgspec.convert(data, Call)
