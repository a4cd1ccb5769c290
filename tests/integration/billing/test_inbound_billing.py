"""Inbound calls go through the whole post-call pipeline, like outbound ones: a caller dials one of the service's
numbers through the simulator (Twilio's wire format, and Vonage's), the conversation runs on the fake Deepgram /
OpenAI / TTS servers, and then the billing and analysis jobs (real pgqueuer workers) finalise the call: cost and
breakdown on the call, the usage event and its ledger debit, `voice_call.cost_recorded` and `voice_call.analyzed`.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from tests.fakes.openai import ToolCall, ToolCalls
from tests.support.conversation import (
    Fakes,
    analysis_reply,
    billed_and_analysed,
    caller_wav,
    conversation_overrides,
    inbound_number,
    settled,
)
from tests.support.pipeline import worker
from voice_service.billing.pipeline import POST_CALL_JOB, RECONCILE_JOB
from voice_service.call_analysis.service import ANALYSIS_JOB
from voice_service.simulator import Scenario


@pytest.fixture
def make_tenant(make_tenant: Any) -> Any:
    """These tests place and answer calls, which reserve their estimated cost: their tenants have credit."""
    return functools.partial(make_tenant, credit="100")

CALLER = "+14155550123"
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


@pytest.fixture(scope="module")
def stack_overrides(fakes: Fakes) -> dict[str, Any]:
    """The module's stack on the fake providers (tests/integration/conftest.py), whose LLM also answers the
    post-call analysis."""
    fakes.openai.responder = analysis_reply
    return conversation_overrides(fakes.url)


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_inbound_call_is_billed_and_analysed(
    stack: Any,
    engine: None,
    fakes: Fakes,
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    provider: str,
) -> None:
    sim, svc = stack
    fakes.reset(
        script=["I'd like a table for two tonight."],
        replies=[ToolCalls([ToolCall("end_call", {"reason": "booked"})], text="Booked. Goodbye!")],
    )
    _, phone = await inbound_number(api, tenant, provider)
    wav = caller_wav(tmp_path, [("silence", 1.2), ("speech", 0.8), ("silence", 6.0)])
    sim_call = await sim.inbound_call(
        provider,
        to=phone,
        from_=CALLER,
        account_sid=svc.settings.twilio_account_sid,
        scenario=Scenario(wav=wav, hangup_after=None),
        timeout=40,
    )
    assert sim_call.answer_status == 200 and sim_call.final_status == "completed"
    call_id = sim_call.custom_parameters["call_id"]
    row = await settled(admin_conn, call_id)
    assert row["direction"] == "inbound" and row["from_e164"] == CALLER

    async with worker(svc.app.state.runtime, [POST_CALL_JOB, ANALYSIS_JOB, RECONCILE_JOB]):
        billed = await billed_and_analysed(admin_conn, tenant.id, call_id)

    assert billed["cost"] is not None and billed["cost"] > 0 and billed["currency"] == "USD"
    telephony = [i for i in billed["items"] if i["category"] == "telephony"]
    assert [(i["provider"], i.get("direction")) for i in telephony][:1] == [(provider, "inbound")]
    assert {i["category"] for i in billed["items"]} >= {"telephony", "stt", "llm", "tts"}
    assert "billing_error" not in billed["metadata"]
    # The call's usage event and its ledger debit, and the analysis's own.
    keys = [u["idempotency_key"] for u in billed["usage"]]
    assert keys[0] == f"voice_call:{call_id}" and any(k.startswith("voice_call_analysis:") for k in keys)
    assert all(u["ledger_transaction_id"] is not None for u in billed["usage"] if u["total_cost"] != Decimal(0))
    events = [e for e in billed["events"] if e in ("voice_call.cost_recorded", "voice_call.analyzed")]
    assert events == ["voice_call.cost_recorded", "voice_call.analyzed"]
    # The API shows the bill too.
    r = await api.get(f"/v1/calls/{call_id}", headers=tenant.headers)
    assert r.status_code == 200 and Decimal(r.json()["cost"]) == billed["cost"]

