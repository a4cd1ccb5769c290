"""The service as `make run` starts it without speech or LLM providers (no DEEPGRAM_API_KEY, no OPENAI_API_KEY).

It says so once at start-up, naming the missing settings. Calls still connect; the agent cannot speak, so each ends
`setup_failed`, and the call's `end_reason_detail` names the missing setting. Such a call is still finalised and
billed (its telephony) and analysed (without an LLM) — inbound ones too, through either carrier. A batch whose
calls all end that way counts them as failed, each entry saying why.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.batches import credit, distinct_phones, unique_phone
from tests.support.conversation import billed_and_analysed, conversation_overrides, inbound_number, settled
from tests.support.pipeline import wait_for, worker
from voice_service.batches import dispatcher
from voice_service.billing.pipeline import POST_CALL_JOB, RECONCILE_JOB
from voice_service.call_analysis.service import ANALYSIS_JOB
from voice_service.settings import Settings
from voice_service.simulator import Scenario, Simulator
from voice_service.simulator.harness import RunningService, simulated_stack

CALLER = "+14155550123"
MISSING = ("DEEPGRAM_API_KEY", "OPENAI_API_KEY")


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
async def bare(settings: Settings) -> AsyncIterator[tuple[Simulator, RunningService, list[logging.LogRecord]]]:
    """The service with the conversation engine on (as `make run` has it) and no speech/LLM credentials."""
    overrides = conversation_overrides("http://127.0.0.1:9")
    overrides.update(
        deepgram_api_key=None,
        openai_api_key=None,
        deepgram_base_url="wss://api.deepgram.com",
        deepgram_http_url="https://api.deepgram.com",
        openai_base_url="https://api.openai.com/v1",
        conversation_engine=True,
    )
    captured = Captured()
    logger = logging.getLogger("voice_service")
    logger.addHandler(captured)
    try:
        async with simulated_stack(settings, **overrides) as (sim, svc):
            logger.removeHandler(captured)
            yield sim, svc, captured.records
    finally:
        logger.removeHandler(captured)


@pytest.fixture
async def api(bare: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bare[1].base_url, timeout=30) as client:
        yield client


def test_start_up_says_once_which_settings_are_missing(bare: Any) -> None:
    warnings = [r for r in bare[2] if "not configured" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in bare[2]]
    message = warnings[0].getMessage()
    assert all(name in message for name in MISSING), message
    assert "setup_failed" in message


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_inbound_call_without_providers_is_billed_and_says_why(
    bare: Any, api: httpx.AsyncClient, tenant: Any, admin_conn: asyncpg.Connection, provider: str
) -> None:
    """What the README's first call does: the conversation cannot start (setup_failed, naming the missing
    settings); the call is still finalised and billed (its telephony), and analysed without an LLM."""
    sim, svc, _ = bare
    _, phone = await inbound_number(api, tenant, provider)
    sim_call = await sim.inbound_call(
        provider,
        to=phone,
        from_=CALLER,
        account_sid=svc.settings.twilio_account_sid,
        scenario=Scenario(talk_seconds=1.0, hangup_after=None),
        timeout=40,
    )
    assert sim_call.answer_status == 200 and sim_call.final_status == "completed"
    call_id = sim_call.custom_parameters["call_id"]
    row = await settled(admin_conn, call_id)
    assert row["direction"] == "inbound" and row["metadata"]["end_reason"] == "setup_failed"

    async with worker(svc.app.state.runtime, [POST_CALL_JOB, ANALYSIS_JOB, RECONCILE_JOB]):
        billed = await billed_and_analysed(admin_conn, tenant.id, call_id)
    assert billed["cost"] is not None and "billing_error" not in billed["metadata"]
    [telephony] = [i for i in billed["items"] if i["category"] == "telephony"]
    assert (telephony["provider"], telephony["direction"]) == (provider, "inbound")
    assert billed["usage"][0]["idempotency_key"] == f"voice_call:{call_id}"
    events = [e for e in billed["events"] if e in ("voice_call.cost_recorded", "voice_call.analyzed")]
    assert events == ["voice_call.cost_recorded", "voice_call.analyzed"]

    r = await api.get(f"/v1/calls/{call_id}", headers=tenant.headers)
    call = r.json()
    assert r.status_code == 200 and Decimal(call["cost"]) == billed["cost"]
    assert call["end_reason"] == "setup_failed"
    assert all(name in call["end_reason_detail"] for name in MISSING), call["end_reason_detail"]


async def test_a_batch_of_calls_that_could_not_set_up_counts_them_failed(
    bare: Any, api: httpx.AsyncClient, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    _, svc, _ = bare
    runtime = svc.app.state.runtime
    h = tenant.headers
    agent = await api.post("/v1/agents", json={"name": "Dialer", "outbound_starter_prompt": "Hi!"}, headers=h)
    number = await api.post(
        "/v1/numbers", json={"phone_number": unique_phone("+1212"), "provider": "simulator"}, headers=h
    )
    assert agent.status_code == number.status_code == 201, (agent.text, number.text)
    await credit(runtime.pool, tenant.id)
    body = {
        "agent_id": agent.json()["id"],
        "from_number_ids": [number.json()["id"]],
        "entries": [{"phone": p} for p in distinct_phones(4, "+14153")],
    }
    r = await api.post("/v1/batches", json=body, headers=h)
    assert r.status_code == 201, r.text
    batch_id = r.json()["id"]

    async def finished() -> bool:
        b = (await api.get(f"/v1/batches/{batch_id}", headers=h)).json()
        return b["status"] == "completed"

    async with worker(runtime, [dispatcher.JOB]):
        await wait_for(finished, within=40)
    batch = (await api.get(f"/v1/batches/{batch_id}", headers=h)).json()
    assert (batch["counts"]["completed"], batch["counts"]["failed"]) == (0, 4), batch["counts"]
    assert (batch["completed_calls"], batch["failed_calls"]) == (0, 4)
    entries = (await api.get(f"/v1/batches/{batch_id}/entries", headers=h)).json()["items"]
    assert len(entries) == 4
    for entry in entries:
        assert (entry["status"], entry["outcome"]) == ("failed", "failed"), entry
        assert "setup_failed" in entry["error_message"] and "DEEPGRAM_API_KEY" in entry["error_message"], entry
        call = (await api.get(f"/v1/calls/{entry['last_call_id']}", headers=h)).json()
        assert (call["status"], call["end_reason"]) == ("ended", "setup_failed")
    assert uuid.UUID(batch_id)
