"""The batch progress view's live stream against the real service under uvicorn: 200 open consoles watching one
batch cost the database at most one query a second for that batch, every console sees each change without
reloading, and the streams end by themselves when the batch is over."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from tests.support.batches import unique_phone
from tests.support.console import Console, fund
from voice_service.settings import Settings
from voice_service.simulator.harness import RunningService, running_service

WATCHERS = 201  # three kinds of console, 67 of each
WINDOW_SECONDS = 4.0


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[RunningService]:
    def make(base_url: str) -> Settings:
        return msgspec.structs.replace(settings, public_base_url=base_url, pool_max_size=10)

    async with running_service(make) as svc:
        yield svc


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, str]]:
    """Every SQL statement the service sends, with when (the service runs in this process and loop)."""
    seen: list[tuple[float, str]] = []
    for name in ("execute", "fetch", "fetchrow", "fetchval"):
        original = getattr(asyncpg.connection.Connection, name)

        def make(orig: Any) -> Any:
            async def counted(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
                seen.append((time.monotonic(), query))
                return await orig(self, query, *args, **kwargs)
            return counted

        monkeypatch.setattr(asyncpg.connection.Connection, name, make(original))
    return seen


class Watcher:
    """One open console page's event stream: the progress fragments it received, in order."""

    def __init__(self) -> None:
        self.fragments: list[str] = []
        self.events: list[str] = []
        self.ended = asyncio.Event()

    async def run(self, http: httpx.AsyncClient, path: str) -> None:
        try:
            async with http.stream("GET", path, headers={"Accept": "text/event-stream"}) as r:
                assert r.status_code == 200
                event, data = "", []
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif not line and event:
                        self.events.append(event)
                        if event == "progress":
                            self.fragments.append("\n".join(data))
                        event, data = "", []
        finally:
            self.ended.set()


def _status(fragment: str) -> str:
    m = re.search(r'class="badge badge-(\w+)"', fragment)
    assert m is not None
    return m.group(1)


async def _running_batch(api: httpx.AsyncClient, tenant: Any, pg_dsn: str) -> dict[str, Any]:
    """A funded tenant's batch of three calls through the simulator carrier."""
    h = tenant.headers
    agent = (await api.post("/v1/agents", json={"name": "Dialer"}, headers=h)).json()
    number = (await api.post("/v1/numbers", json={"phone_number": unique_phone("+1212"), "provider": "simulator"},
                             headers=h)).json()
    await fund(pg_dsn, tenant.id)
    r = await api.post("/v1/batches", json={"agent_id": agent["id"], "from_number_id": number["id"],
                                            "entries": [{"phone": unique_phone()} for _ in range(3)]}, headers=h)
    assert r.status_code == 201, r.text
    batch: dict[str, Any] = r.json()
    return batch


async def test_two_hundred_consoles_cost_one_query_a_second(service: RunningService, tenant: Any, pg_dsn: str,
                                                            statements: list[tuple[float, str]]) -> None:
    base = service.base_url
    async with httpx.AsyncClient(base_url=base, timeout=30) as api:
        h = tenant.headers
        batch = await _running_batch(api, tenant, pg_dsn)

        viewer_key = (await api.post("/v1/api-keys", json={"name": "Wallboard", "role": "viewer"}, headers=h)).json()

    # The consoles are of three kinds (two time zones, and a viewer without the controls): still one producer.
    third = WATCHERS // 3
    limits = httpx.Limits(max_connections=third + 10, max_keepalive_connections=third + 10)
    clients = [httpx.AsyncClient(base_url=base, timeout=60, limits=limits) for _ in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        for http in clients:
            await stack.enter_async_context(http)
        for http, key, zone in zip(clients, (tenant.key, tenant.key, viewer_key["key"]),
                                   ("Europe/Berlin", "America/New_York", "Asia/Tokyo"), strict=True):
            assert (await Console(http).sign_in(key)).status_code == 303
            http.cookies.set("console_tz", zone, domain="127.0.0.1", path="/console")
        watchers = [Watcher() for _ in range(3 * third)]
        async with asyncio.TaskGroup() as tasks:
            for i, w in enumerate(watchers):
                tasks.create_task(w.run(clients[i % 3], f"/console/live/batches/{batch['id']}"))
            deadline = time.monotonic() + 30
            while not all(w.fragments for w in watchers):
                assert time.monotonic() < deadline, "not every console got the progress"
                await asyncio.sleep(0.05)
            # Every console is watching: count what the batch costs the database over a few seconds.
            start = time.monotonic()
            await asyncio.sleep(WINDOW_SECONDS)
            end = time.monotonic()
            window = [q for at, q in statements if start <= at <= end]
            progress_reads = [q for q in window if "FROM voice_call_batches b" in q]
            assert 1 <= len(progress_reads) <= WINDOW_SECONDS + 1, len(progress_reads)
            # BEGIN+tenant, the read, COMMIT, and the NOTIFY that hands the value to the service's other instances
            assert len(window) <= 4 * (WINDOW_SECONDS + 1), window
            assert all(_status(w.fragments[-1]) == "running" for w in watchers)
            # Each kind of console got its own page: its zone's times, and the controls only where it may act.
            assert all(("Cancel the batch" in w.fragments[-1]) == (i % 3 != 2) for i, w in enumerate(watchers))

            # A change reaches every console without a reload, and a batch that is over ends the streams.
            async with httpx.AsyncClient(base_url=base, timeout=30) as api:
                r = await api.post(f"/v1/batches/{batch['id']}/cancel", headers=tenant.headers)
                assert r.status_code == 200, r.text
            await asyncio.wait_for(asyncio.gather(*(w.ended.wait() for w in watchers)), 15)
        for w in watchers:
            assert _status(w.fragments[-1]) == "cancelled"
            assert w.events[-1] == "done"
            assert 'data-figure="cancelled">3<' in w.fragments[-1]
        # Nobody watches: the producer stops after its current interval, and nothing is read any more.
        hub = service.app.state.console_hub
        deadline = time.monotonic() + 5
        while hub.topics:
            assert time.monotonic() < deadline, "the batch's producer kept running with nobody watching"
            await asyncio.sleep(0.05)
        stopped = len(statements)
        await asyncio.sleep(2 * 1.0)
        assert not [q for _, q in statements[stopped:] if "FROM voice_call_batches b" in q]


@pytest.fixture
async def pair(settings: Settings) -> AsyncIterator[tuple[RunningService, RunningService]]:
    """Two instances of the service on one database, as `serve --workers 2` (or two hosts) runs them."""
    def make(base_url: str) -> Settings:
        return msgspec.structs.replace(settings, public_base_url=base_url, pool_max_size=10)

    async with running_service(make) as a, running_service(make) as b:
        yield a, b


async def _signed_in(stack: contextlib.AsyncExitStack, svc: RunningService, key: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
    http = await stack.enter_async_context(httpx.AsyncClient(base_url=svc.base_url, timeout=60, limits=limits))
    assert (await Console(http).sign_in(key)).status_code == 303
    return http


async def _until_all(watchers: list[Watcher], status: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not all(w.fragments and _status(w.fragments[-1]) == status for w in watchers):
        assert time.monotonic() < deadline, f"not every console shows the batch {status}"
        await asyncio.sleep(0.05)


async def test_consoles_on_two_instances_share_one_producer_that_hands_over(
        pair: tuple[RunningService, RunningService], tenant: Any, pg_dsn: str,
        statements: list[tuple[float, str]]) -> None:
    a, b = pair
    hubs = (a.app.state.console_hub, b.app.state.console_hub)
    async with httpx.AsyncClient(base_url=a.base_url, timeout=30) as api:
        h = tenant.headers
        batch = await _running_batch(api, tenant, pg_dsn)
        path = f"/console/live/batches/{batch['id']}"

        async with contextlib.AsyncExitStack() as stack:
            clients = [await _signed_in(stack, svc, tenant.key) for svc in (a, b)]
            on = [[Watcher() for _ in range(40)] for _ in (a, b)]
            tasks = [[asyncio.create_task(w.run(http, path)) for w in watchers]
                     for watchers, http in zip(on, clients, strict=True)]
            try:
                await _until_all(on[0] + on[1], "running", within=30)
                # Eighty consoles on two instances: one instance reads the batch, once a second, for all of them.
                assert sorted(hub.leads for hub in hubs) == [0, 1]
                start = time.monotonic()
                await asyncio.sleep(WINDOW_SECONDS)
                reads = [q for at, q in statements if start <= at <= time.monotonic() and "FROM voice_call_batches b" in q]
                assert 1 <= len(reads) <= WINDOW_SECONDS + 1, len(reads)

                # Everyone on the producing instance closes the page: the other instance takes over within a few
                # seconds, and its consoles still see each change.
                leader = 0 if hubs[0].leads else 1
                follower = 1 - leader
                for task in tasks[leader]:
                    task.cancel()
                await asyncio.gather(*tasks[leader], return_exceptions=True)
                r = await api.post(f"/v1/batches/{batch['id']}/pause", headers=h)
                assert r.status_code == 200, r.text
                await _until_all(on[follower], "paused")
                assert hubs[follower].leads == 1
                deadline = time.monotonic() + 5
                while hubs[leader].topics:
                    assert time.monotonic() < deadline, "the instance nobody watches on kept its producer"
                    await asyncio.sleep(0.05)
                start = time.monotonic()
                await asyncio.sleep(WINDOW_SECONDS)
                reads = [q for at, q in statements if start <= at <= time.monotonic() and "FROM voice_call_batches b" in q]
                assert 1 <= len(reads) <= WINDOW_SECONDS + 1, len(reads)

                # A console opened again on the first instance follows the producer on the second.
                late = Watcher()
                late_task = asyncio.create_task(late.run(clients[leader], path))
                await _until_all([late], "paused")
                assert hubs[leader].leads == 0

                r = await api.post(f"/v1/batches/{batch['id']}/cancel", headers=h)
                assert r.status_code == 200, r.text
                await asyncio.wait_for(asyncio.gather(*tasks[follower], late_task), 15)
                for w in [*on[follower], late]:
                    assert _status(w.fragments[-1]) == "cancelled" and w.events[-1] == "done"
            finally:
                for task in (*tasks[0], *tasks[1]):
                    task.cancel()
