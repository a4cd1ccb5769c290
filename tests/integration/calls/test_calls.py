"""POST /v1/calls, GET /v1/calls(/{id}) and hang-up, against the real service and the simulator.

Checks what a user of the API meets: the request is validated against the tenant's own agents, numbers, voices
and leads (another tenant's ids are unknown), permissions apply, Idempotency-Key replays the first response
(and refuses another body), lists filter and page newest first, and hanging up is idempotent.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from tests.support.calls import agent_and_number as _agent_and_number
from tests.support.calls import phone as _phone
from tests.support.calls import problem as _problem
from voice_service.calls import service
from voice_service.simulator import Scenario
from voice_service.simulator.harness import until


async def _wait_status(
    api: httpx.AsyncClient, tenant: Any, call_id: str, statuses: set[str]
) -> dict[str, Any]:
    for _ in range(300):
        call: dict[str, Any] = (await api.get(f"/v1/calls/{call_id}", headers=tenant.headers)).json()
        if call["status"] in statuses:
            return call
        await asyncio.sleep(0.05)
    raise AssertionError(f"call stayed {call['status']}")


async def test_the_request_is_checked_against_the_tenant(api: httpx.AsyncClient, make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    agent_a, number_a = await _agent_and_number(api, a)
    agent_b, number_b = await _agent_and_number(api, b)
    _, inactive = await _agent_and_number(api, a, status="inactive")
    base = {"agent_id": agent_a, "from_number_id": number_a, "to": _phone()}
    _problem(
        await api.post("/v1/calls", json={**base, "agent_id": agent_b}, headers=a.headers), 422, "agent_id"
    )
    _problem(
        await api.post("/v1/calls", json={**base, "from_number_id": number_b}, headers=a.headers),
        422,
        "from_number_id",
    )
    _problem(
        await api.post("/v1/calls", json={**base, "from_number_id": inactive}, headers=a.headers),
        422,
        "from_number_id",
    )
    _problem(
        await api.post("/v1/calls", json={**base, "voice_id": str(uuid.uuid4())}, headers=a.headers),
        422,
        "voice_id",
    )
    _problem(
        await api.post("/v1/calls", json={**base, "lead_id": str(uuid.uuid4())}, headers=a.headers),
        422,
        "lead_id",
    )
    _problem(
        await api.post(
            "/v1/calls", json={"agent_id": agent_a, "from_number_id": number_a}, headers=a.headers
        ),
        422,
        "to",
    )
    _problem(await api.post("/v1/calls", json={**base, "to": "+19999999999"}, headers=a.headers), 422, "to")
    _problem(await api.post("/v1/calls", json={**base, "to": "555-1234"}, headers=a.headers), 400, "to")
    _problem(await api.post("/v1/calls", json={**base, "colour": "blue"}, headers=a.headers), 400)
    # Nothing was created by the refusals, in either tenant.
    assert (await api.get("/v1/calls", headers=a.headers)).json()["items"] == []
    # Another tenant's call is a 404, not a 403.
    r = await api.post(
        "/v1/calls", json={"agent_id": agent_b, "from_number_id": number_b, "to": _phone()}, headers=b.headers
    )
    assert r.status_code == 201, r.text
    _problem(await api.get(f"/v1/calls/{r.json()['id']}", headers=a.headers), 404)


async def test_calling_a_lead(stack: Any, api: httpx.AsyncClient, tenant: Any) -> None:
    agent, number = await _agent_and_number(api, tenant)
    lead_phone = _phone()
    lead = (
        await api.post("/v1/leads", json={"phone": lead_phone, "first_name": "Grace"}, headers=tenant.headers)
    ).json()
    r = await api.post(
        "/v1/calls",
        json={"agent_id": agent, "from_number_id": number, "lead_id": lead["id"]},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    assert (r.json()["to"], r.json()["lead_id"]) == (lead_phone, lead["id"])
    dnc = (
        await api.post("/v1/leads", json={"phone": _phone(), "do_not_call": True}, headers=tenant.headers)
    ).json()
    body = _problem(
        await api.post(
            "/v1/calls",
            json={"agent_id": agent, "from_number_id": number, "lead_id": dnc["id"]},
            headers=tenant.headers,
        ),
        403,
        "lead_id",
    )
    assert "do_not_call" in body["detail"]


async def test_roles_and_voice_permissions(api: httpx.AsyncClient, tenant: Any) -> None:
    agent, number = await _agent_and_number(api, tenant)
    viewer = (
        await api.post("/v1/api-keys", json={"name": "v", "role": "viewer"}, headers=tenant.headers)
    ).json()
    member = (
        await api.post(
            "/v1/api-keys",
            json={"name": "m", "role": "member", "user_email": f"m{uuid.uuid4().hex[:6]}@example.com"},
            headers=tenant.headers,
        )
    ).json()
    body = {"agent_id": agent, "from_number_id": number, "to": _phone()}
    _problem(
        await api.post("/v1/calls", json=body, headers={"Authorization": f"Bearer {viewer['key']}"}), 403
    )
    as_member = {"Authorization": f"Bearer {member['key']}"}
    _problem(await api.post("/v1/calls", json=body, headers=as_member), 403, "from_number_id")
    r = await api.post(
        "/v1/voice-permissions",
        json={"user_id": member["user_id"], "number_id": number},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    r = await api.post("/v1/calls", json=body, headers=as_member)
    assert r.status_code == 201, r.text
    assert r.json()["initiated_by_user_id"] == member["user_id"]
    # Viewers read call logs.
    listed = await api.get("/v1/calls", headers={"Authorization": f"Bearer {viewer['key']}"})
    assert [c["id"] for c in listed.json()["items"]] == [r.json()["id"]]


async def test_idempotency_key(stack: Any, api: httpx.AsyncClient, tenant: Any) -> None:
    sim, _ = stack
    agent, number = await _agent_and_number(api, tenant)
    body = {"agent_id": agent, "from_number_id": number, "to": _phone(), "variables": {"plan": "pro"}}
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}", **tenant.headers}
    first = await api.post("/v1/calls", json=body, headers=key)
    assert first.status_code == 201, first.text
    again = await api.post("/v1/calls", json=body, headers=key)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    other = await api.post("/v1/calls", json={**body, "to": _phone()}, headers=key)
    _problem(other, 409, "Idempotency-Key")
    calls = (await api.get("/v1/calls", headers=tenant.headers)).json()["items"]
    assert [c["id"] for c in calls] == [first.json()["id"]]
    assert len([c for c in sim.calls.values() if c.to == body["to"]]) == 1  # placed once
    assert first.json()["metadata"]["variables"] == {"plan": "pro"}


async def test_list_filters_and_pages_newest_first(stack: Any, api: httpx.AsyncClient, tenant: Any) -> None:
    sim, _ = stack
    agent, number = await _agent_and_number(api, tenant)
    busy_to = _phone()
    sim.scenarios[busy_to] = Scenario(answer="busy", ring_seconds=0.05)
    made = []
    for to in (_phone(), busy_to, _phone()):
        r = await api.post(
            "/v1/calls", json={"agent_id": agent, "from_number_id": number, "to": to}, headers=tenant.headers
        )
        made.append(r.json()["id"])
    await _wait_status(api, tenant, made[1], {"declined"})
    page1 = (await api.get("/v1/calls?limit=2", headers=tenant.headers)).json()
    assert [c["id"] for c in page1["items"]] == made[:0:-1] and page1["next_cursor"]
    page2 = (await api.get(f"/v1/calls?limit=2&cursor={page1['next_cursor']}", headers=tenant.headers)).json()
    assert [c["id"] for c in page2["items"]] == [made[0]] and page2["next_cursor"] is None
    declined = (await api.get("/v1/calls?status=declined", headers=tenant.headers)).json()["items"]
    assert [(c["id"], c["end_reason"]) for c in declined] == [(made[1], "busy")]
    assert (await api.get("/v1/calls?direction=inbound", headers=tenant.headers)).json()["items"] == []
    by_agent = (await api.get(f"/v1/calls?agent_id={agent}", headers=tenant.headers)).json()["items"]
    assert len(by_agent) == 3
    _problem(await api.get("/v1/calls?status=lost", headers=tenant.headers), 400)


async def test_hangup_is_idempotent(
    stack: Any, api: httpx.AsyncClient, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    sim, svc = stack
    runtime = svc.app.state.runtime
    agent, number = await _agent_and_number(api, tenant)
    to = _phone()
    sim.scenarios[to] = Scenario(talk_seconds=20, hangup_after=None)
    r = await api.post(
        "/v1/calls", json={"agent_id": agent, "from_number_id": number, "to": to}, headers=tenant.headers
    )
    call_id = uuid.UUID(r.json()["id"])
    await _wait_status(api, tenant, str(call_id), {"ongoing"})
    await until(lambda: svc.live_calls.get(call_id) is not None)
    await service.hangup_call(runtime, tenant.id, call_id)  # a live session: it ends the call itself
    sim_call = await (await sim.wait_for_call(lambda c: c.to == to)).finished()
    assert sim_call.hangup_requested.is_set() and sim_call.media.ended_by in ("service", "hangup")
    ended = await _wait_status(api, tenant, str(call_id), {"ended"})
    assert ended["end_reason"] == "hangup_requested"
    # Hanging up an ended call is success, and changes nothing.
    before = await admin_conn.fetchrow("SELECT * FROM voice_call_logs WHERE id = $1", call_id)
    await service.hangup_call(runtime, tenant.id, call_id)
    assert await admin_conn.fetchrow("SELECT * FROM voice_call_logs WHERE id = $1", call_id) == before


async def test_a_new_call_is_billed_even_if_its_end_never_arrives(
    api: httpx.AsyncClient, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    """Creating a call schedules the post-call job for after the agent's longest call plus 10 minutes."""
    agent = (
        await api.post(
            "/v1/agents", json={"name": "Brief", "config": {"max_call_seconds": 300}}, headers=tenant.headers
        )
    ).json()
    _, number = await _agent_and_number(api, tenant)
    r = await api.post(
        "/v1/calls",
        json={"agent_id": agent["id"], "from_number_id": number, "to": _phone()},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    call_id = r.json()["id"]
    try:
        row = await admin_conn.fetchrow(
            "SELECT created, execute_after, payload FROM pgqueuer WHERE entrypoint = 'billing.post_call' "
            "AND dedupe_key = $1 AND status = 'queued'",
            f"post_call_timeout:{call_id}",
        )
        assert row is not None
        payload = msgspec.json.decode(row["payload"])
        assert (payload["call_id"], payload["tenant_id"], payload["timeout"]) == (
            call_id,
            str(tenant.id),
            True,
        )
        assert (row["execute_after"] - row["created"]).total_seconds() == pytest.approx(300 + 600, abs=5)
    finally:
        await admin_conn.execute(
            "DELETE FROM pgqueuer WHERE dedupe_key = $1 AND status = 'queued'", f"post_call_timeout:{call_id}"
        )
