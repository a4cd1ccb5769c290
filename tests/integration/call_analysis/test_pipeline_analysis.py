"""The analysis job: OpenAI mocked at the transport (respx), strict schema, retry once on invalid output, failures
retried later, no-LLM categorisation, do-not-call, batch counters, billing of the analysis, rerun API."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from tests.support.analysis import AGENT_SCHEMA, analysis_row, analysis_usage, answer, billed_call, completion
from tests.support.pipeline import (
    credit,
    insert_agent,
    insert_batch,
    insert_call,
    insert_lead,
    jobs_for,
    sample_meter,
)
from voice_service.call_analysis.service import ANALYSIS_JOB, run_analysis
from voice_service.runtime import Runtime

_dec = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()
async def test_completed_analysis_is_stored_billed_and_published(
    tenant: Any, runtime: Runtime, openai: Any, admin_conn: asyncpg.Connection
) -> None:
    await credit(runtime, tenant.id, "5")
    lead = await insert_lead(admin_conn, tenant.id)
    agent = await insert_agent(admin_conn, tenant.id, analysis_schema=AGENT_SCHEMA)
    batch_id, [entry] = await insert_batch(admin_conn, tenant.id, agent)
    call_id, created_at = await billed_call(
        admin_conn, runtime, tenant, agent_id=agent, lead_id=lead, batch_id=batch_id, batch_entry_id=entry
    )
    openai.mock(return_value=completion(answer(), 1000, 100))

    status = await run_analysis(runtime, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at)
    assert status == "completed"

    request = _dec.decode(openai.calls.last.request.content)
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["strict"] is True
    assert "Tuesday at 10 works" in request["messages"][-1]["content"]
    assert "Book a demo" in request["messages"][-1]["content"]  # the agent's goal

    row = await analysis_row(admin_conn, call_id)
    assert (row["status"], row["sentiment"], row["lead_category"], row["error"]) == (
        "completed",
        "positive",
        "hot",
        None,
    )
    assert row["lead_extraction"] == {"email": "ann@example.com", "meeting_day": "tuesday"}
    assert row["success_evaluation"]["success"] is True
    # gpt-4o-mini list price: 1000 × 0.15/1M + 100 × 0.60/1M = 0.00015 + 0.00006
    assert row["cost"] == Decimal("0.000210")
    [usage] = await analysis_usage(admin_conn, tenant.id)
    assert usage["idempotency_key"] == f"voice_call_analysis:{row['id']}"
    assert usage["total_cost"] == Decimal("0.000210") and usage["status"] == "charged"
    assert await admin_conn.fetchval(
        "SELECT amount FROM billing_ledger_transactions WHERE id = $1", usage["ledger_transaction_id"]
    ) == Decimal("-0.000210")
    event = await admin_conn.fetchrow(
        "SELECT payload FROM domain_events WHERE aggregate_id = $1 AND event_type = 'voice_call.analyzed'",
        call_id,
    )
    assert _dec.decode(event["payload"])["lead_category"] == "hot"
    entry_md = _dec.decode(
        await admin_conn.fetchval("SELECT metadata FROM voice_call_batch_entries WHERE id = $1", entry)
    )
    assert entry_md["analysis"]["lead_category"] == "hot"
    batch_md = _dec.decode(
        await admin_conn.fetchval("SELECT metadata FROM voice_call_batches WHERE id = $1", batch_id)
    )
    assert batch_md["analysis_counts"] == {"hot": 1}
    assert not await admin_conn.fetchval("SELECT do_not_call FROM leads WHERE id = $1", lead)

    # A duplicate job changes nothing.
    assert (
        await run_analysis(runtime, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at)
        == "skipped"
    )
    assert len(await analysis_usage(admin_conn, tenant.id)) == 1
    assert openai.call_count == 1


async def test_do_not_call_marks_the_lead(
    tenant: Any, runtime: Runtime, openai: Any, admin_conn: asyncpg.Connection
) -> None:
    lead = await insert_lead(admin_conn, tenant.id)
    call_id, created_at = await billed_call(admin_conn, runtime, tenant, lead_id=lead)
    openai.mock(return_value=completion(answer("do_not_call")))
    await run_analysis(runtime, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at)
    row = await admin_conn.fetchrow(
        "SELECT do_not_call, do_not_call_at, do_not_call_reason FROM leads WHERE id = $1", lead
    )
    assert (
        row["do_not_call"] and row["do_not_call_at"] is not None and str(call_id) in row["do_not_call_reason"]
    )


async def test_schema_violation_is_retried_once_then_stored_with_the_error(
    tenant: Any, runtime: Runtime, openai: Any, admin_conn: asyncpg.Connection
) -> None:
    call_id, created_at = await billed_call(admin_conn, runtime, tenant)
    bad = answer(meeting_day="someday")  # not in the agent schema's enum
    openai.mock(side_effect=[completion(bad, 1000, 100), completion(bad, 1200, 100)])

    assert (
        await run_analysis(runtime, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at)
        == "completed"
    )
    assert openai.call_count == 2
    retry_messages = _dec.decode(openai.calls[1].request.content)["messages"]
    assert (
        "does not validate" in retry_messages[-1]["content"]
        and "meeting_day" in retry_messages[-1]["content"]
    )
    row = await analysis_row(admin_conn, call_id)
    assert row["status"] == "completed" and "lead_extraction.meeting_day" in row["error"]
    assert row["lead_extraction"]["meeting_day"] == "someday"
    # Both attempts' tokens are billed: (1000 + 1200) × 0.15/1M + 200 × 0.60/1M
    assert row["cost"] == Decimal("0.000450")
    assert [u["total_cost"] for u in await analysis_usage(admin_conn, tenant.id)] == [Decimal("0.000450")]


@pytest.mark.parametrize("failure", ["not_json", "http_500"])
async def test_llm_failure_leaves_the_call_billed_and_retries_later(
    tenant: Any, runtime: Runtime, openai: Any, admin_conn: asyncpg.Connection, failure: str
) -> None:
    call_id, created_at = await billed_call(admin_conn, runtime, tenant)
    if failure == "not_json":
        openai.mock(return_value=completion("Sure! Here is the analysis: positive.", 900, 20))
    else:
        openai.mock(
            return_value=httpx.Response(500, json={"error": {"message": "boom", "type": "server_error"}})
        )

    assert (
        await run_analysis(runtime, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at)
        == "failed"
    )
    row = await analysis_row(admin_conn, call_id)
    assert row["status"] == "failed"
    assert row["error"].startswith("invalid_json" if failure == "not_json" else "llm_error: openai HTTP 500")
    assert await admin_conn.fetchval("SELECT cost FROM voice_call_logs WHERE id = $1", call_id) is not None
    [retry] = [
        j
        for j in await jobs_for(admin_conn, ANALYSIS_JOB, call_id)
        if j["dedupe_key"] != f"analysis:{call_id}"
    ]
    assert retry["dedupe_key"] == f"analysis_retry:{call_id}:1"
    assert (retry["execute_after"] - datetime.now(UTC)).total_seconds() > 20  # base delay 30 s
    # Tokens spent on an unusable answer are billed too (an HTTP error spends none).
    spent = await analysis_usage(admin_conn, tenant.id)
    assert [u["total_cost"] for u in spent] == ([Decimal("0.000147")] if failure == "not_json" else [])

    # The retry, once the LLM is back, completes the analysis.
    openai.mock(return_value=completion(answer()), side_effect=None)
    assert (
        await run_analysis(runtime, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at)
        == "completed"
    )
    row = await analysis_row(admin_conn, call_id)
    assert row["status"] == "completed" and row["error"] is None and row["metadata"]["attempts"] == 2


async def test_repeated_failures_stop_after_the_policy_limit(
    tenant: Any, runtime: Runtime, openai: Any, admin_conn: asyncpg.Connection
) -> None:
    call_id, created_at = await billed_call(admin_conn, runtime, tenant)
    openai.mock(return_value=httpx.Response(503, json={"error": {"message": "overloaded"}}))
    for failures in (1, 2, 3):
        await run_analysis(runtime, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at)
        keys = sorted(
            j["dedupe_key"]
            for j in await jobs_for(admin_conn, ANALYSIS_JOB, call_id)
            if j["dedupe_key"].startswith("analysis_retry:")
        )
        assert keys == [f"analysis_retry:{call_id}:{n}" for n in range(1, min(failures, 2) + 1)]
    assert (await analysis_row(admin_conn, call_id))["metadata"]["failures"] == 3


async def test_calls_without_caller_speech_skip_the_llm(
    tenant: Any, runtime: Runtime, openai: Any, admin_conn: asyncpg.Connection
) -> None:
    agent_only = [
        {
            "role": "agent",
            "text": "Hi, this is Sam from Acme.",
            "start_ms": 0,
            "end_ms": 2000,
            "interrupted": False,
        }
    ]
    call_id, created_at = await billed_call(
        admin_conn, runtime, tenant, transcripts=agent_only, answered_by="machine_end_beep"
    )
    assert (
        await run_analysis(runtime, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at)
        == "completed"
    )
    assert openai.call_count == 0
    row = await analysis_row(admin_conn, call_id)
    assert (row["lead_category"], row["sentiment"], row["cost"]) == ("voicemail", "neutral", Decimal(0))
    assert await analysis_usage(admin_conn, tenant.id) == []


async def test_analysis_api_get_and_rerun(
    client: Any, make_tenant: Any, runtime: Runtime, openai: Any, admin_conn: asyncpg.Connection
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    call_id, created_at = await billed_call(admin_conn, runtime, tenant)
    r = await client.get(f"/v1/calls/{call_id}/analysis", headers=tenant.headers)
    assert r.status_code == 200 and r.json()["status"] == "pending"

    openai.mock(return_value=completion(answer("warm")))
    await run_analysis(runtime, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at)
    r = await client.get(f"/v1/calls/{call_id}/analysis", headers=tenant.headers)
    assert r.json()["lead_category"] == "warm" and r.json()["cost"] == "0.000210"
    assert (await client.get(f"/v1/calls/{call_id}/analysis", headers=other.headers)).status_code == 404
    assert (
        await client.post(f"/v1/calls/{call_id}/analysis/rerun", headers=other.headers)
    ).status_code == 404

    r = await client.post(f"/v1/calls/{call_id}/analysis/rerun", headers=tenant.headers)
    assert r.status_code == 202 and r.json()["status"] == "pending"
    [job] = [j for j in await jobs_for(admin_conn, ANALYSIS_JOB, call_id) if "rerun" in j["dedupe_key"]]
    openai.mock(return_value=completion(answer("hot")))
    await run_analysis(
        runtime,
        tenant_id=tenant.id,
        call_id=call_id,
        call_created_at=created_at,
        rerun=_dec.decode(job["payload"])["rerun"],
    )
    r = await client.get(f"/v1/calls/{call_id}/analysis", headers=tenant.headers)
    assert (r.json()["status"], r.json()["lead_category"], r.json()["attempts"]) == ("completed", "hot", 2)
    keys = [u["idempotency_key"] for u in await analysis_usage(admin_conn, tenant.id)]
    assert keys == [f"voice_call_analysis:{r.json()['id']}", f"voice_call_analysis:{r.json()['id']}:2"]

    unbilled, _ = await insert_call(admin_conn, tenant.id, meter=sample_meter())
    r = await client.post(f"/v1/calls/{unbilled}/analysis/rerun", headers=tenant.headers)
    assert r.status_code == 409
