"""A transferred call is billed to its end: after the agent transfers it (Twilio <Dial>, Vonage transfer), the
conversation engine stops metering, but the carrier's parent leg goes on until the dialled party hangs up, and the
dialled leg is a call of its own. Both are billed from the carrier's final statuses: the parent leg for its whole
duration, the dialled leg (its status callback / events, which the simulator sends as the carriers do) as its own
telephony item (`leg: transfer`) at the outbound rate of the target's country."""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from tests.fakes.openai import ToolCall, ToolCalls
from tests.support.conversation import (
    SALES,
    TARGETS,
    Fakes,
    analysis_reply,
    call,
    caller_wav,
    conversation_overrides,
    place,
    settled,
)
from tests.support.pipeline import wait_for, worker
from voice_service.billing.pipeline import POST_CALL_JOB, RECONCILE_JOB
from voice_service.simulator import Scenario


@pytest.fixture
def make_tenant(make_tenant: Any) -> Any:
    """These tests place and answer calls, which reserve their estimated cost: their tenants have credit."""
    return functools.partial(make_tenant, credit="100")

_dec = msgspec.json.Decoder()
TARGET_TALKS = 3.0


@pytest.fixture(scope="module")
def stack_overrides(fakes: Fakes) -> dict[str, Any]:
    """The module's stack on the fake providers (tests/integration/conftest.py), whose LLM also answers the
    post-call analysis."""
    fakes.openai.responder = analysis_reply
    return conversation_overrides(fakes.url)


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_a_transferred_call_is_billed_for_both_legs_to_their_end(
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
        script=["Can I talk to someone in sales?"],
        replies=[ToolCalls([ToolCall("transfer_call", {"target": "Sales"})])],
    )
    to, request = await place(api, tenant, provider, config=TARGETS)
    wav = caller_wav(tmp_path, [("silence", 1.0), ("speech", 0.8), ("silence", 6.0)])
    call_id, sim_call = await call(
        api, tenant, sim, to, request, Scenario(wav=wav, hangup_after=None, transferred_seconds=TARGET_TALKS)
    )
    assert sim_call.transferred_to == SALES and sim_call.final_status == "completed"
    [leg] = sim_call.dialled_legs
    assert leg.to == SALES and leg.final_status == "completed" and leg.duration is not None
    await settled(admin_conn, call_id)

    async with worker(svc.app.state.runtime, [POST_CALL_JOB, RECONCILE_JOB]):

        async def both_legs_billed() -> bool:
            row = await admin_conn.fetchrow(
                "SELECT cost, cost_breakdown FROM voice_call_logs WHERE id = $1", uuid.UUID(call_id)
            )
            items = _dec.decode(row["cost_breakdown"]) if row["cost"] is not None else []
            return any(i.get("leg") == "transfer" for i in items)

        await wait_for(both_legs_billed, within=20)

    r = await api.get(f"/v1/calls/{call_id}", headers=tenant.headers)
    shown = r.json()
    telephony = [i for i in shown["cost_breakdown"] if i["category"] == "telephony" and i["unit"] != "adjustment"]
    parent = [i for i in telephony if i.get("leg") is None]
    dialled = [i for i in telephony if i.get("leg") == "transfer"]
    assert len(parent) == 1 and len(dialled) == 1, shown["cost_breakdown"]
    assert (dialled[0]["provider"], dialled[0]["direction"]) == (provider, "outbound")
    usage = _dec.decode(
        await admin_conn.fetchval(
            "SELECT metadata FROM billing_usage_events WHERE tenant_id = $1 AND idempotency_key = $2",
            tenant.id,
            f"voice_call:{call_id}",
        )
    )
    # The parent leg is billed for the carrier's whole duration, the transferred part included.
    assert usage["usage"]["telephony"]["seconds"] >= sim_call.duration >= TARGET_TALKS
    leg_usage = shown["metadata"]["transfer_leg"]
    assert leg_usage["to"] == SALES and leg_usage["duration_seconds"] == leg.duration
    assert leg_usage["provider_call_id"] == leg.id
