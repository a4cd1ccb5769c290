"""GET /v1/calls/{id} is the call's whole record: its transcript (who said what, when, and what the caller heard of an
agent turn cut off) and its cost breakdown (the items as billed) beside cost and currency. The list leaves those
two out, and its OpenAPI description says so."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest

from tests.support.pipeline import NoLlm, drop_jobs, insert_call, sample_meter
from voice_service.billing import pipeline
from voice_service.billing.pipeline import POST_CALL_JOB
from voice_service.call_analysis.service import ANALYSIS_JOB
from voice_service.composition import open_runtime
from voice_service.db import tenant_tx
from voice_service.runtime import Runtime
from voice_service.settings import Settings

_dec = msgspec.json.Decoder()

# As the conversation engine stores it: caller turns are "caller"; an agent turn cut off keeps what was heard in
# `text`, and metadata.cut_off_lines the whole line it was saying (by the turn's start).
LINE = "Hi, this is Sam from Acme. Do you have a minute to talk about your phone bill?"
STORED = [
    {"role": "agent", "text": "Hi, this is Sam from Acme.", "start_ms": 0, "end_ms": 1900, "interrupted": True},
    {"role": "caller", "text": "Sorry, who is this?", "start_ms": 1700, "end_ms": 2900, "interrupted": False},
    {"role": "agent", "text": "Sam, from Acme.", "start_ms": 3300, "end_ms": 4400, "interrupted": False},
    {"role": "user", "text": "Not interested, bye.", "start_ms": 4700, "end_ms": 5900, "interrupted": False},
]


@pytest.fixture(scope="module")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as rt:
        rt.analysis_llm = NoLlm()
        yield rt


@pytest.fixture(autouse=True)
async def _no_leftover_jobs(admin_conn: asyncpg.Connection) -> AsyncIterator[None]:
    yield
    await drop_jobs(admin_conn, POST_CALL_JOB, ANALYSIS_JOB, "events.deliver")


async def test_the_call_record_has_its_transcript_and_cost_breakdown(
    client: Any, runtime: Runtime, tenant: Any, make_tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    call_id, created_at = await insert_call(
        admin_conn, tenant.id, meter=sample_meter(), transcripts=STORED,
        metadata={"cut_off_lines": [{"start_ms": 0, "text": LINE}]},
    )
    async with tenant_tx(runtime.pool, tenant.id) as conn:
        billed = await pipeline.finalize_call(
            conn,
            listeners=runtime.billing_listeners,
            tenant_id=tenant.id,
            call_id=call_id,
            call_created_at=created_at,
        )
    assert billed is not None

    r = await client.get(f"/v1/calls/{call_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    call = r.json()
    assert call["transcripts"] == [
        {"role": "agent", "text": LINE, "heard": "Hi, this is Sam from Acme.", "start_ms": 0,
         "end_ms": 1900, "interrupted": True},
        {"role": "user", "text": "Sorry, who is this?", "heard": None, "start_ms": 1700, "end_ms": 2900,
         "interrupted": False},
        {"role": "agent", "text": "Sam, from Acme.", "heard": None, "start_ms": 3300, "end_ms": 4400,
         "interrupted": False},
        {"role": "user", "text": "Not interested, bye.", "heard": None, "start_ms": 4700, "end_ms": 5900,
         "interrupted": False},
    ]
    stored = _dec.decode(
        await admin_conn.fetchval("SELECT cost_breakdown FROM voice_call_logs WHERE id = $1", call_id)
    )
    assert len(call["cost_breakdown"]) == len(stored) == 4 + 1  # telephony, stt, llm in + out, tts
    for shown, kept in zip(call["cost_breakdown"], stored, strict=True):
        for key in ("category", "provider", "model", "unit"):
            assert shown[key] == kept[key]
        for key in ("quantity", "unit_price", "cost"):
            assert Decimal(shown[key]) == Decimal(kept[key])
        assert shown.get("direction") == kept.get("direction")
    assert Decimal(call["cost"]) == billed.total == sum(Decimal(i["cost"]) for i in call["cost_breakdown"])
    assert call["currency"] == "USD"

    # The list leaves the heavy fields out (and says so in its description).
    page = (await client.get("/v1/calls", params={"limit": 5}, headers=tenant.headers)).json()
    [listed] = [c for c in page["items"] if c["id"] == str(call_id)]
    assert "transcripts" not in listed and "cost_breakdown" not in listed
    assert listed["cost"] == call["cost"]
    schema = (await client.get("/schema/openapi.json")).json()
    description = schema["paths"]["/v1/calls"]["get"]["description"]
    assert "transcripts" in description and "cost_breakdown" in description
    detail = schema["components"]["schemas"]
    assert {"transcripts", "cost_breakdown"} <= set(
        next(s for name, s in detail.items() if name == "Call")["properties"]
    )

    # Another tenant does not see it.
    other = await make_tenant()
    assert (await client.get(f"/v1/calls/{call_id}", headers=other.headers)).status_code == 404


async def test_a_call_not_billed_yet_has_an_empty_breakdown(
    client: Any, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    call_id, _ = await insert_call(admin_conn, tenant.id, transcripts=[], media_ended=False)
    call = (await client.get(f"/v1/calls/{call_id}", headers=tenant.headers)).json()
    assert (call["transcripts"], call["cost_breakdown"], call["cost"]) == ([], [], None)
    assert uuid.UUID(call["id"]) == call_id
