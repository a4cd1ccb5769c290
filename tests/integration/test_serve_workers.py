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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _serve(
    env: dict[str, str], workers: int, *, drop: tuple[str, ...] = ()
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = _free_port()
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
