"""`voice-service serve --workers 2`: two processes answer on one port, each its own instance, and SIGTERM stops
both cleanly; with no DATABASE_URL the embedded PostgreSQL is started once, shared, and stopped at the end."""

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
import psutil

from voice_service.simulator import Scenario, Simulator

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _serve(
    env: dict[str, str], workers: int, *, drop: tuple[str, ...] = (), port: int | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = port or _free_port()
    full = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "WARNING"}
    for name in drop:
        full.pop(name, None)
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "voice-service"), "serve", "--workers", str(workers), env=full, cwd=ROOT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        yield proc, base
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _health_from_every_worker(proc: asyncio.subprocess.Process, base: str, workers: int) -> dict[int, Any]:
    """/health over fresh connections until every worker has answered (each connection lands on one of them)."""
    seen: dict[int, Any] = {}
    deadline = time.monotonic() + 120
    while len(seen) < workers:
        assert proc.returncode is None, "voice-service serve exited"
        assert time.monotonic() < deadline, f"only workers {sorted(seen)} answered"
        with contextlib.suppress(httpx.TransportError):
            async with httpx.AsyncClient(base_url=base) as fresh:  # a new connection each time
                r = await fresh.get("/health")
                if r.status_code == 200:
                    body = r.json()
                    seen[body["worker"]] = body
                    continue
        await asyncio.sleep(0.2)
    return seen


async def test_two_workers_serve_one_port_and_stop_on_sigterm(pg_dsn: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": pg_dsn, "DATA_DIR": str(tmp_path), "RUN_WORKERS": "true", "DRAIN_TIMEOUT_SECONDS": "2"}
    async with _serve(env, 2) as (proc, base):
        seen = await _health_from_every_worker(proc, base, 2)
        assert sorted(seen) == [0, 1]
        pids = {body["pid"] for body in seen.values()}
        instances = {body["instance"] for body in seen.values()}
        assert len(pids) == 2 and len(instances) == 2, seen
        children = {p.pid for p in psutil.Process(proc.pid).children()}
        assert pids <= children  # the workers are the supervisor's own processes
        # Both keep answering while both live: 40 fresh connections reach both.
        answered: set[int] = set()
        for _ in range(40):
            async with httpx.AsyncClient(base_url=base) as fresh:
                answered.add((await fresh.get("/health")).json()["pid"])
        assert answered == pids

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        for pid in pids:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        with contextlib.suppress(httpx.TransportError):
            await httpx.AsyncClient(base_url=base).get("/health")
            raise AssertionError("the port still answers after SIGTERM")


async def test_embedded_database_is_started_once_and_stopped_after_the_workers(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path), "RUN_WORKERS": "false", "DRAIN_TIMEOUT_SECONDS": "2"}
    async with _serve(env, 2, drop=("DATABASE_URL",)) as (proc, base):
        seen = await _health_from_every_worker(proc, base, 2)
        assert all(body["database"] == "ok" for body in seen.values())
        postmaster = tmp_path / "pg" / "postmaster.pid"
        assert postmaster.exists()
        pg_pid = int(postmaster.read_text().split()[0])
        # One server for both workers, started by the supervisor (not by either worker).
        assert psutil.Process(pg_pid).ppid() not in {body["pid"] for body in seen.values()}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        deadline = time.monotonic() + 20
        while psutil.pid_exists(pg_pid) and psutil.Process(pg_pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the embedded PostgreSQL outlived the service"
            await asyncio.sleep(0.2)


async def test_sigterm_drains_the_live_calls_of_every_worker(pg_dsn: str, make_tenant: Any,
                                                             admin_conn: asyncpg.Connection) -> None:
    account, token = "ACsimulator0000000000000000000000", "simulator-dev-token"
    tenant = await make_tenant()
    port = _free_port()
    async with Simulator(service_url=f"http://127.0.0.1:{port}", twilio_accounts={account: token}) as sim:
        env = {"DATABASE_URL": pg_dsn, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "SIMULATOR_BASE_URL": sim.base_url, "SIMULATOR_ACCOUNT_SID": account,
               "SIMULATOR_AUTH_TOKEN": token, "RUN_WORKERS": "false", "CONVERSATION_ENGINE": "false",
               "ENFORCE_WALLET_BALANCE": "false", "DRAIN_TIMEOUT_SECONDS": "6", "LOG_JSON": "false"}
        async with _serve(env, 2, port=port) as (proc, base):
            seen = await _health_from_every_worker(proc, base, 2)
            async with httpx.AsyncClient(base_url=base, headers=tenant.headers, timeout=30) as api:
                agent = (await api.post("/v1/agents", json={"name": "Drain"})).json()
                phone = f"+1415556{uuid.uuid4().int % 10000:04d}"
                number = (await api.post("/v1/numbers", json={"phone_number": phone, "provider": "simulator"})).json()
                short, long = [f"+4420797{i:05d}" for i in range(10)], [f"+4420798{i:05d}" for i in range(2)]
                for to in short:  # finish on their own during the drain
                    sim.scenarios[to] = Scenario(ring_seconds=0.0, talk_seconds=4.0, hangup_after=0.1)
                for to in long:  # outlast it: hung up by the service
                    sim.scenarios[to] = Scenario(ring_seconds=0.0, talk_seconds=60.0, hangup_after=None)
                for to in short + long:
                    r = await api.post("/v1/calls", json={"agent_id": agent["id"], "from_number_id": number["id"],
                                                          "to": to})
                    assert r.status_code == 201, r.text
                calls = {to: await sim.wait_for_call(lambda c, t=to: c.to == t, timeout=60) for to in short + long}
                deadline = time.monotonic() + 60
                while not all(c.media.send_times for c in calls.values()):
                    assert time.monotonic() < deadline, "not every call's media connected"
                    await asyncio.sleep(0.1)
                # The media sockets are spread over both workers (12 sockets: all on one is a 1-in-2048 chance).
                per_worker = {pid: sum(1 for c in psutil.Process(pid).net_connections("tcp")
                                       if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)
                              for pid in (body["pid"] for body in seen.values())}
                assert all(count >= 1 for count in per_worker.values()), per_worker

                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                refused = await api.post("/v1/calls", json={"agent_id": agent["id"],
                                                            "from_number_id": number["id"], "to": "+442079900000"})
                assert refused.status_code == 503, refused.text  # whichever worker answers is draining
                assert await asyncio.wait_for(proc.wait(), 60) == 0
            for to in short:
                await calls[to].finished(30)
                assert calls[to].media.ended_by == "caller", (to, calls[to].media.ended_by)
            for to in long:
                await calls[to].finished(30)
                assert calls[to].media.ended_by in ("service", "hangup"), (to, calls[to].media.ended_by)
    rows = await admin_conn.fetch("SELECT to_e164, metadata->>'end_reason' AS reason FROM voice_call_logs "
                                  "WHERE tenant_id = $1", tenant.id)
    reasons = {r["to_e164"]: r["reason"] for r in rows}
    assert all(reasons.get(to) == "shutdown" for to in long), reasons
