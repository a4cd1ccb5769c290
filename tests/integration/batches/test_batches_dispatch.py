"""Batches dispatched for real: the service under uvicorn, the simulator carrier placing and answering the calls
(signed status webhooks, media sockets), dispatch in `voice-service serve` (API and workers in one process) or in
`voice-service worker` processes.

What must hold: never more live calls than the batch's limit (counted at the simulator: from the place-call request
to the end of the call's media), every entry ends, the counters add up, no (entry, attempt) is dialled twice —
with two worker processes, and when a worker is SIGKILLed mid-batch and another takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from tests.support.batches import (
    OFFLINE,
    QUICK_CALL,
    assert_counts_add_up,
    credit,
    distinct_phones,
    unique_phone,
)
from voice_service.runtime import Runtime
from voice_service.settings import Settings
from voice_service.simulator import SimCall, Simulator
from voice_service.simulator.harness import RunningService, running_service

ROOT = Path(__file__).resolve().parents[3]
class TimedSimulator(Simulator):
    """Records when each place-call request arrived, to count live calls over time; `place_delay` holds the
    place-call response back (a slow carrier API), so a worker can be killed while a request is in flight."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.placed_at: dict[str, float] = {}
        self.our_ids: dict[str, str] = {}  # simulator call id -> our call id (from the status callback URL)
        self.place_delay = 0.0

    def received_call_ids(self) -> set[str]:
        """Our call ids whose place-call request reached the carrier."""
        return set(self.our_ids.values())

    async def register(self, call: SimCall) -> None:
        self.placed_at[call.id] = time.time()
        self.our_ids[call.id] = call.request.get("StatusCallback", "").split("call_id=")[-1]
        await super().register(call)
        if self.place_delay:
            await asyncio.sleep(self.place_delay)

    def max_live(self, calls: list[SimCall]) -> int:
        """Most calls between their place-call request and the end of their media at any moment."""
        events = sorted(
            [(self.placed_at[c.id], 1) for c in calls] + [(c.ended_at or time.time(), -1) for c in calls],
            key=lambda e: (e[0], e[1]),
        )
        live = peak = 0
        for _, step in events:
            live += step
            peak = max(peak, live)
        return peak


@pytest.fixture(scope="module")
async def simulator(settings: Settings) -> AsyncIterator[TimedSimulator]:
    async with TimedSimulator(
        twilio_accounts={settings.simulator_account_sid: settings.simulator_auth_token},
        default_scenario=QUICK_CALL,
    ) as sim:
        yield sim


def _service_settings(settings: Settings, sim: Simulator, *, workers: bool) -> Any:
    def make(base_url: str) -> Settings:
        return msgspec.structs.replace(
            settings,
            public_base_url=base_url,
            simulator_base_url=sim.base_url,
            run_workers=workers,
            **OFFLINE,
            pool_max_size=30,
            drain_timeout_seconds=2.0,
        )

    return make


@contextlib.asynccontextmanager
async def service(settings: Settings, sim: Simulator, *, workers: bool) -> AsyncIterator[RunningService]:
    async with running_service(_service_settings(settings, sim, workers=workers)) as svc:
        yield svc


def _env(dsn: str, settings: Settings, base_url: str, sim: Simulator, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": dsn,
        "PUBLIC_BASE_URL": base_url,
        "SIMULATOR_BASE_URL": sim.base_url,
        "SIMULATOR_ACCOUNT_SID": settings.simulator_account_sid,
        "SIMULATOR_AUTH_TOKEN": settings.simulator_auth_token,
        "LOG_LEVEL": "WARNING",
        "LOG_JSON": "false",
        "POOL_MAX_SIZE": "20",
        "DRAIN_TIMEOUT_SECONDS": "2",
        "CONVERSATION_ENGINE": "false",  # dispatch is under test here, not conversations
        **{k.upper(): v for k, v in OFFLINE.items()},
        "DEEPGRAM_API_KEY": "dg-test",
        "OPENAI_API_KEY": "sk-test",
        **extra,
    }


@contextlib.asynccontextmanager
async def _process(command: str, env: dict[str, str], *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    # The console script, as deployed (`python -m voice_service.cli` would not see the commands domains register).
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "voice-service"), command, *args, env=env, cwd=ROOT
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def worker_process(
    dsn: str, svc: RunningService, sim: Simulator
) -> contextlib.AbstractAsyncContextManager[Any]:
    """`voice-service worker` against the test database."""
    return _process("worker", _env(dsn, svc.settings, svc.base_url, sim))


@contextlib.asynccontextmanager
async def serve_process(dsn: str, settings: Settings, sim: Simulator) -> AsyncIterator[str]:
    """`voice-service serve` (API and workers in one process, as `make run` starts it); yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    env = _env(dsn, settings, base_url, sim, HOST="127.0.0.1", PORT=str(port), RUN_WORKERS="true")
    async with _process("serve", env, "--workers", "1") as proc:  # one process (serve's default: one per core)
        async with httpx.AsyncClient(base_url=base_url) as client:
            deadline = time.monotonic() + 60
            while True:
                assert proc.returncode is None, "voice-service serve exited"
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "voice-service serve did not come up"
                await asyncio.sleep(0.2)
        yield base_url


async def _setup(
    client: httpx.AsyncClient, tenant_headers: dict[str, str], pool: asyncpg.Pool, tenant_id: uuid.UUID
) -> dict[str, Any]:
    # Dispatch is under test: the calls are not recorded (an encode job per call would compete for the CPU).
    agent = await client.post(
        "/v1/agents", json={"name": "Dialer", "config": {"recording_enabled": False}}, headers=tenant_headers
    )
    number = await client.post(
        "/v1/numbers",
        json={"phone_number": unique_phone("+1212"), "provider": "simulator"},
        headers=tenant_headers,
    )
    assert agent.status_code == number.status_code == 201, (agent.text, number.text)
    await credit(pool, tenant_id)
    return {"agent_id": agent.json()["id"], "from_number_id": number.json()["id"]}


async def _launch(
    client: httpx.AsyncClient, headers: dict[str, str], setup: dict[str, Any], n: int, concurrency: int
) -> dict[str, Any]:
    body = {**setup, "max_concurrency": concurrency, "entries": [{"phone": p} for p in distinct_phones(n)]}
    r = await client.post("/v1/batches", json=body, headers=headers, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _wait_finished(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    batch_id: str,
    *,
    within: float,
    on_progress: Any = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        b = (await client.get(f"/v1/batches/{batch_id}", headers=headers)).json()
        if b["status"] == "completed":
            return b  # type: ignore[no-any-return]
        if on_progress is not None:
            await on_progress(b)
        assert time.monotonic() < deadline, f"batch not finished in {within} s: {b['counts']}"
        await asyncio.sleep(0.25)


async def _check_dialled_once(admin: asyncpg.Connection, sim: TimedSimulator, batch_id: str) -> list[SimCall]:
    """Every call of the batch reached the simulator at most once, and no (entry, attempt) has two calls."""
    rows = await admin.fetch(
        "SELECT id, batch_entry_id, attempt FROM voice_call_logs WHERE batch_id = $1", uuid.UUID(batch_id)
    )
    ours = {str(r["id"]) for r in rows}
    assert len({(r["batch_entry_id"], r["attempt"]) for r in rows}) == len(rows)
    sim_calls = [
        c
        for c in sim.calls.values()
        if c.custom_parameters.get("call_id") in ours
        or c.request.get("StatusCallback", "").split("call_id=")[-1] in ours
    ]
    dialled = [c.request.get("StatusCallback", "").split("call_id=")[-1] for c in sim_calls]
    assert len(dialled) == len(set(dialled)), "a call was placed twice"
    return sim_calls


async def test_thousand_entries_never_exceed_the_concurrency_limit(
    settings: Settings,
    simulator: TimedSimulator,
    runtime: Runtime,
    make_tenant: Any,
    pg_dsn: str,
    admin_conn: asyncpg.Connection,
) -> None:
    tenant = await make_tenant()
    peak_db = 0

    async def progress(b: dict[str, Any]) -> None:
        nonlocal peak_db
        assert b["counts"]["in_progress"] <= 10
        peak_db = max(peak_db, b["counts"]["in_progress"])

    async with serve_process(pg_dsn, settings, simulator) as url, httpx.AsyncClient(base_url=url) as client:
        setup = await _setup(client, tenant.headers, runtime.pool, tenant.id)
        batch = await _launch(client, tenant.headers, setup, 1000, 10)
        done = await _wait_finished(client, tenant.headers, batch["id"], within=90, on_progress=progress)
    assert done["counts"]["completed"] == 1000, done["counts"]
    assert_counts_add_up(done)
    calls = await _check_dialled_once(admin_conn, simulator, batch["id"])
    assert len(calls) == 1000
    assert simulator.max_live(calls) <= 10
    assert peak_db == 10  # the limit was reached, not just respected


async def test_two_worker_processes_hold_the_same_caps(
    settings: Settings,
    simulator: TimedSimulator,
    runtime: Runtime,
    make_tenant: Any,
    pg_dsn: str,
    admin_conn: asyncpg.Connection,
) -> None:
    tenant = await make_tenant()
    async with (
        service(settings, simulator, workers=False) as svc,
        httpx.AsyncClient(base_url=svc.base_url) as client,
    ):
        setup = await _setup(client, tenant.headers, runtime.pool, tenant.id)
        async with worker_process(pg_dsn, svc, simulator), worker_process(pg_dsn, svc, simulator):
            batch = await _launch(client, tenant.headers, setup, 200, 6)
            done = await _wait_finished(client, tenant.headers, batch["id"], within=60)
    assert done["counts"]["completed"] == 200
    assert_counts_add_up(done)
    calls = await _check_dialled_once(admin_conn, simulator, batch["id"])
    assert len(calls) == 200
    assert simulator.max_live(calls) <= 6
    # Both processes dispatched: the entries' claims carry two different leases.
    claimers = await admin_conn.fetchval(
        "SELECT count(DISTINCT claimed_by) FROM voice_call_batch_entries WHERE batch_id = $1",
        uuid.UUID(batch["id"]),
    )
    assert claimers == 2


async def test_a_killed_worker_loses_no_entry_and_dials_none_twice(
    settings: Settings,
    simulator: TimedSimulator,
    runtime: Runtime,
    make_tenant: Any,
    pg_dsn: str,
    admin_conn: asyncpg.Connection,
) -> None:
    tenant = await make_tenant()
    async with (
        service(settings, simulator, workers=False) as svc,
        httpx.AsyncClient(base_url=svc.base_url) as client,
    ):
        setup = await _setup(client, tenant.headers, runtime.pool, tenant.id)
        async with worker_process(pg_dsn, svc, simulator) as first:
            batch = await _launch(client, tenant.headers, setup, 200, 8)
            deadline = time.monotonic() + 30
            while (await client.get(f"/v1/batches/{batch['id']}", headers=tenant.headers)).json()["counts"][
                "completed"
            ] < 40:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            # Kill it while place-call requests are in flight: the carrier has the calls (the simulator holds
            # their responses), the worker has not recorded their ids. Those attempts must not be placed again.
            simulator.place_delay = 1.0
            in_flight: set[str] = set()
            while not in_flight:
                unplaced = await admin_conn.fetch(
                    "SELECT c.id FROM voice_call_batch_entries e JOIN voice_call_logs c ON c.id = e.last_call_id "
                    "WHERE e.batch_id = $1 AND e.status = 'dialing' AND c.provider_call_id IS NULL",
                    uuid.UUID(batch["id"]),
                )
                in_flight = {str(r["id"]) for r in unplaced} & simulator.received_call_ids()
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            simulator.place_delay = 0.0
        async with worker_process(pg_dsn, svc, simulator):
            done = await _wait_finished(client, tenant.headers, batch["id"], within=90)
    assert_counts_add_up(done)
    calls = await _check_dialled_once(admin_conn, simulator, batch["id"])
    received = simulator.received_call_ids()
    assert in_flight <= received
    assert simulator.max_live(calls) <= 8
    # One call row per entry: no attempt was placed twice. A call whose request reached the carrier before the kill
    # was finished by the carrier's signed status callbacks (they carry our call id); one the worker had claimed
    # but not yet sent (it died in between) cannot be told apart from a lost response, so it ends `failed` /
    # dispatch_interrupted, never dialled. Every entry reaches an end: none is lost.
    rows = await admin_conn.fetch(
        "SELECT id, batch_entry_id, attempt, status, metadata->>'end_reason' AS end_reason FROM voice_call_logs "
        "WHERE batch_id = $1",
        uuid.UUID(batch["id"]),
    )
    assert len(rows) == 200 and len({r["batch_entry_id"] for r in rows}) == 200
    assert all(r["attempt"] == 1 for r in rows)
    for r in rows:
        if str(r["id"]) in received:
            assert r["status"] == "ended", dict(r)
        else:
            assert (r["status"], r["end_reason"]) == ("failed", "dispatch_interrupted"), dict(r)
    c = done["counts"]
    assert len(calls) == len(received & {str(r["id"]) for r in rows}) == c["completed"]
    assert (c["completed"] + c["failed"], c["queued"], c["in_progress"], c["retrying"]) == (200, 0, 0, 0), c
    assert c["failed"] <= 8  # at most the claims the killed worker held
    # Both workers dispatched.
    assert (
        await admin_conn.fetchval(
            "SELECT count(DISTINCT claimed_by) FROM voice_call_batch_entries WHERE batch_id = $1",
            uuid.UUID(batch["id"]),
        )
        == 2
    )
