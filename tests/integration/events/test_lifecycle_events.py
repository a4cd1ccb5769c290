"""Lifecycle events as an integrator meets them: calls placed through the real service and the simulated carrier
produce voice_call.started / voice_call.ended / voice_call.failed, batches produce batch.started / batch.progress /
batch.completed / batch.cancelled; each is in the pull feed, fanned out to subscribed webhook endpoints, and
matches the payload schema GET /v1/event-types documents. batch.progress is rate-limited per batch."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import jsonschema
import pytest

from tests.support.batches import OFFLINE, QUICK_CALL, credit
from voice_service.batches import events as batch_events
from voice_service.settings import Settings
from voice_service.simulator import Scenario, Simulator
from voice_service.simulator.harness import RunningService, simulated_stack


@pytest.fixture(scope="module")
async def stack(settings: Settings) -> AsyncIterator[tuple[Simulator, RunningService]]:
    # Workers run in the service (batch dispatch, the post-call pipeline); providers point at a closed port.
    async with simulated_stack(settings, run_workers=True, **OFFLINE) as pair:
        pair[0].default_scenario = QUICK_CALL
        yield pair


@pytest.fixture
async def api(stack: tuple[Simulator, RunningService]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack[1].base_url, timeout=30) as client:
        yield client


def _phone() -> str:
    return f"+14152{uuid.uuid4().int % 1_000_000:06d}"


async def _setup(api: httpx.AsyncClient, tenant: Any, stack: tuple[Simulator, RunningService]) -> tuple[int, str]:
    agent = (await api.post("/v1/agents", json={"name": "Ava"}, headers=tenant.headers)).json()
    number = await api.post("/v1/numbers", json={"phone_number": _phone(), "provider": "simulator"},
                            headers=tenant.headers)
    assert number.status_code == 201, number.text
    await credit(stack[1].app.state.pool, tenant.id)
    return agent["id"], number.json()["id"]


async def _events(api: httpx.AsyncClient, tenant: Any, types: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"types": types, "limit": 200, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/events", params=params, headers=tenant.headers)).json()
        out += page["items"]
        if not page["items"]:
            return out
        cursor = page["next_cursor"]


async def _schemas(api: httpx.AsyncClient, tenant: Any) -> dict[str, dict[str, Any]]:
    r = await api.get("/v1/event-types", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return {t["type"]: t["data_schema"] for t in r.json()}


def _check(event: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> None:
    jsonschema.validate(event["data"], schemas[event["type"]])


async def _wait_call(api: httpx.AsyncClient, tenant: Any, call_id: str, statuses: set[str]) -> dict[str, Any]:
    call: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal call
        call = (await api.get(f"/v1/calls/{call_id}", headers=tenant.headers)).json()
        return call["status"] in statuses

    for _ in range(400):
        if await done():
            return call
        await _sleep()
    raise AssertionError(f"call stayed {call.get('status')}")


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.05)


async def test_call_lifecycle_events_in_the_feed_and_the_webhooks(
    stack: tuple[Simulator, RunningService], api: httpx.AsyncClient, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    sim, _ = stack
    hook = await api.post("/v1/webhook-endpoints", headers=tenant.headers, json={
        "url": "https://hooks.example.com/lifecycle",
        "event_types": ["voice_call.started", "voice_call.ended", "voice_call.failed"]})
    assert hook.status_code == 201, hook.text
    before = await _ended_counts(api)
    agent, number = await _setup(api, tenant, stack)
    answered_to, refused_to = _phone(), _phone()
    sim.scenarios[answered_to] = Scenario(talk_seconds=0.2, hangup_after=0.1)
    sim.scenarios[refused_to] = Scenario(rest_status=400)
    calls = {}
    for to in (answered_to, refused_to):
        r = await api.post("/v1/calls", json={"agent_id": agent, "from_number_id": number, "to": to},
                           headers=tenant.headers)
        assert r.status_code == 201, r.text
        calls[to] = r.json()["id"]
    answered = await _wait_call(api, tenant, calls[answered_to], {"ended", "declined", "failed", "cancelled"})
    refused = await _wait_call(api, tenant, calls[refused_to], {"failed"})
    assert answered["status"] == "ended" and refused["status"] == "failed"

    events = await _events(api, tenant, "voice_call.started,voice_call.ended,voice_call.failed")
    by_call: dict[str, list[str]] = {}
    for e in events:
        by_call.setdefault(e["data"]["call_id"], []).append(e["type"])
        assert e["aggregate_type"] == "voice_call" and e["aggregate_id"] == e["data"]["call_id"]
    # Once each, in the order they happened; a failed call is ended, then failed.
    assert by_call[calls[answered_to]] == ["voice_call.started", "voice_call.ended"]
    assert by_call[calls[refused_to]] == ["voice_call.ended", "voice_call.failed"]
    ended = next(e["data"] for e in events
                 if e["type"] == "voice_call.ended" and e["data"]["call_id"] == calls[answered_to])
    assert ended["status"] == "ended" and ended["end_reason"] == answered["end_reason"]
    assert ended["to"] == answered_to and ended["agent_id"] == agent and ended["duration_seconds"] is not None
    failed = next(e["data"] for e in events if e["type"] == "voice_call.failed")
    assert failed["status"] == "failed" and failed["error"]["code"] == refused["end_reason"]
    schemas = await _schemas(api, tenant)
    for e in events:
        _check(e, schemas)

    # Push: every one of them has a delivery to the subscribed endpoint.
    delivered = await admin_conn.fetch(
        "SELECT event_id FROM webhook_deliveries WHERE endpoint_id = $1", uuid.UUID(hook.json()["id"]))
    assert {str(r["event_id"]) for r in delivered} == {e["id"] for e in events}

    # Every event of the call, whichever domain wrote it (billing's cost_recorded too), matches the catalog.
    async def billed() -> bool:
        return bool(await _events(api, tenant, "voice_call.cost_recorded"))

    for _ in range(200):
        if await billed():
            break
        await _sleep()
    everything = await _events(api, tenant, ",".join(schemas))
    assert "voice_call.cost_recorded" in {e["type"] for e in everything}
    for e in everything:
        _check(e, schemas)

    # /metrics counts the calls where they end, by final status.
    after = await _ended_counts(api)
    assert after.get("ended", 0) - before.get("ended", 0) >= 1
    assert after.get("failed", 0) - before.get("failed", 0) >= 1


async def _ended_counts(api: httpx.AsyncClient) -> dict[str, float]:
    text = (await api.get("/metrics")).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("voice_calls_total{"):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            out[status] = float(line.rsplit(" ", 1)[1])
    return out


async def _batch(api: httpx.AsyncClient, tenant: Any, agent: int, number: str, n: int,
                 **extra: Any) -> dict[str, Any]:
    body = {"agent_id": agent, "from_number_id": number, "entries": [{"phone": _phone()} for _ in range(n)],
            **extra}
    r = await api.post("/v1/batches", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _wait_batch(api: httpx.AsyncClient, tenant: Any, batch_id: str) -> dict[str, Any]:
    for _ in range(600):
        b: dict[str, Any] = (await api.get(f"/v1/batches/{batch_id}", headers=tenant.headers)).json()
        if b["status"] == "completed":
            return b
        await _sleep()
    raise AssertionError(f"batch not completed: {b['counts']}")


@pytest.mark.parametrize("interval", [timedelta(hours=1), timedelta(0)], ids=["rate-limited", "every-change"])
async def test_batch_lifecycle_events(
    stack: tuple[Simulator, RunningService], api: httpx.AsyncClient, make_tenant: Any,
    admin_conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, interval: timedelta,
) -> None:
    monkeypatch.setattr(batch_events, "PROGRESS_INTERVAL", interval)
    tenant = await make_tenant()
    agent, number = await _setup(api, tenant, stack)
    batch = await _batch(api, tenant, agent, number, 4, max_concurrency=2)
    done = await _wait_batch(api, tenant, batch["id"])
    assert done["counts"]["completed"] == 4

    events = [e for e in await _events(api, tenant, "batch.started,batch.progress,batch.completed,batch.cancelled")
              if e["aggregate_id"] == batch["id"]]
    types = [e["type"] for e in events]
    # The feed is in transaction order: two calls ending together may list the other call's progress after the
    # completion its transaction did not see; started comes first and completed once.
    assert types[0] == "batch.started" and types.count("batch.completed") == 1, types
    progress = [e for e in events if e["type"] == "batch.progress"]
    # One attempt ends per call: with the interval not yet passed, only the first of them writes an event.
    assert len(progress) == (1 if interval else 4), types
    completed = next(e for e in events if e["type"] == "batch.completed")["data"]
    assert completed["status"] == "completed" and completed["counts"] == done["counts"]
    assert completed["completed_at"] is not None
    schemas = await _schemas(api, tenant)
    for e in events:
        _check(e, schemas)


async def test_cancelling_a_batch_writes_batch_cancelled(
    stack: tuple[Simulator, RunningService], api: httpx.AsyncClient, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    agent, number = await _setup(api, tenant, stack)
    # Not due for centuries: nothing is dialled before the cancel.
    batch = await _batch(api, tenant, agent, number, 3, start_at="2999-01-01T00:00:00Z")
    r = await api.post(f"/v1/batches/{batch['id']}/cancel", headers=tenant.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    again = await api.post(f"/v1/batches/{batch['id']}/cancel", headers=tenant.headers)
    assert again.status_code == 200
    events = await _events(api, tenant, "batch.started,batch.progress,batch.completed,batch.cancelled")
    mine = [e for e in events if e["aggregate_id"] == batch["id"]]
    assert [e["type"] for e in mine] == ["batch.cancelled"]  # once, though cancelled twice
    assert mine[0]["data"]["counts"]["cancelled"] == 3
    _check(mine[0], await _schemas(api, tenant))
