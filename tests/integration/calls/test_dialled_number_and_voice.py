"""Checks apply to what is really used: the voice a call speaks with (the agent's default when `voice_id` is left
out) must be one the member may use, and a number whose lead opted out (do_not_call) is never dialled, whether it
is named by `lead_id`, by `to`, or by a batch entry whose lead changed since the batch was made."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support.batches import entries, launch, setup_tenant, tick, unique_phone
from tests.support.calls import agent_and_number, problem
from tests.support.calls import phone as new_phone
from voice_service.runtime import Runtime

# Single calls go through the calls domain's simulated stack (calls/conftest.py); batches through the in-process
# dispatcher, whose clock and queued jobs are reset after each test.
pytestmark = pytest.mark.usefixtures("batch_cleanup")


async def _member(api: Any, tenant: Any, number: str) -> dict[str, str]:
    key = (
        await api.post(
            "/v1/api-keys",
            json={"name": "m", "role": "member", "user_email": f"m{uuid.uuid4().hex[:8]}@example.com"},
            headers=tenant.headers,
        )
    ).json()
    r = await api.post(
        "/v1/voice-permissions", json={"user_id": key["user_id"], "number_id": number}, headers=tenant.headers
    )
    assert r.status_code == 201, r.text
    return {"user_id": key["user_id"], "key": key["key"]}


async def test_a_member_cannot_use_a_voice_by_leaving_voice_id_out(api: httpx.AsyncClient, tenant: Any) -> None:
    voice = (
        await api.post("/v1/voices", json={"provider": "openai", "provider_voice_id": "alloy"}, headers=tenant.headers)
    ).json()
    agent = (
        await api.post("/v1/agents", json={"name": "Ava", "voice_id": voice["id"]}, headers=tenant.headers)
    ).json()
    _, number = await agent_and_number(api, tenant)
    member = await _member(api, tenant, number)
    as_member = {"Authorization": f"Bearer {member['key']}"}
    body = {"agent_id": agent["id"], "from_number_id": number, "to": new_phone()}

    # Named: refused (as before). Left out: the agent's default voice is the one used, so refused too.
    problem(await api.post("/v1/calls", json={**body, "voice_id": voice["id"]}, headers=as_member), 403, "voice_id")
    problem(await api.post("/v1/calls", json=body, headers=as_member), 403, "voice_id")
    assert (await api.get("/v1/calls", headers=tenant.headers)).json()["items"] == []

    granted = await api.post(
        "/v1/voice-permissions",
        json={"user_id": member["user_id"], "voice_id": voice["id"]},
        headers=tenant.headers,
    )
    assert granted.status_code == 201, granted.text
    r = await api.post("/v1/calls", json=body, headers=as_member)
    assert r.status_code == 201, r.text
    assert r.json()["voice_id"] == voice["id"]


async def test_a_do_not_call_number_is_refused_by_to_as_by_lead_id(api: httpx.AsyncClient, tenant: Any) -> None:
    agent, number = await agent_and_number(api, tenant)
    phone = new_phone()
    dnc = await api.post("/v1/leads", json={"phone": phone, "do_not_call": True}, headers=tenant.headers)
    assert dnc.status_code == 201, dnc.text
    other = (await api.post("/v1/leads", json={"phone": new_phone()}, headers=tenant.headers)).json()
    base = {"agent_id": agent, "from_number_id": number}

    problem(await api.post("/v1/calls", json={**base, "lead_id": dnc.json()["id"]}, headers=tenant.headers), 403)
    body = problem(await api.post("/v1/calls", json={**base, "to": phone}, headers=tenant.headers), 403, "to")
    assert "do_not_call" in body["detail"]
    # A callable lead, with the opted-out number as `to`: the number dialled decides.
    problem(
        await api.post("/v1/calls", json={**base, "lead_id": other["id"], "to": phone}, headers=tenant.headers),
        403,
        "to",
    )
    assert (await api.get("/v1/calls", headers=tenant.headers)).json()["items"] == []
    # Lifting the opt-out (an explicit PATCH) makes the number callable again.
    r = await api.patch(f"/v1/leads/{dnc.json()['id']}", json={"do_not_call": False}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (await api.post("/v1/calls", json={**base, "to": phone}, headers=tenant.headers)).status_code == 201


async def test_a_batch_member_cannot_use_the_agents_default_voice_without_permission(
    client: Any, tenant: Any, runtime: Runtime
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    voice = (
        await client.post(
            "/v1/voices", json={"provider": "openai", "provider_voice_id": "alloy"}, headers=tenant.headers
        )
    ).json()
    agent = (
        await client.post("/v1/agents", json={"name": "Ava", "voice_id": voice["id"]}, headers=tenant.headers)
    ).json()
    member = await _member(client, tenant, setup["number_ids"][0])
    r = await client.post(
        "/v1/batches",
        json={"agent_id": agent["id"], "from_number_id": setup["number_ids"][0], "entries": [{"phone": new_phone()}]},
        headers={"Authorization": f"Bearer {member['key']}"},
    )
    problem(r, 403, "voice_id")


async def test_a_batch_never_dials_a_number_that_opted_out_after_its_lead_changed(
    client: Any, tenant: Any, runtime: Runtime, placer: Any
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    first, second = unique_phone(), unique_phone()
    batch = await launch(client, tenant, setup, [{"phone": first}, {"phone": second}], max_concurrency=5)
    [entry, _] = sorted(await entries(client, tenant, batch["id"]), key=lambda e: e["position"])
    # The entry's lead moves to another number; then the number the entry will dial opts out on a new lead.
    moved = await client.patch(f"/v1/leads/{entry['lead_id']}", json={"phone": unique_phone()}, headers=tenant.headers)
    assert moved.status_code == 200, moved.text
    dnc = await client.post("/v1/leads", json={"phone": first, "do_not_call": True}, headers=tenant.headers)
    assert dnc.status_code == 201, dnc.text

    placed = await tick(runtime, tenant, batch)
    assert [p.entry_id for p in placed] != [] and all(p.entry_id != uuid.UUID(entry["id"]) for p in placed)
    skipped = await entries(client, tenant, batch["id"], "skipped")
    assert [(s["id"], s["outcome"]) for s in skipped] == [(entry["id"], "do_not_call")]
