"""Shared benchmark helpers: a database to run against, service subprocesses, and a keep-alive HTTP load generator.

The load generator is a minimal HTTP/1.1 client on raw asyncio streams, run in its own process so it does not share
the server's core; the same generator measures the service and the baseline in one run, so their ratio is fair.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def database() -> Iterator[str]:
    """DATABASE_URL if set, else an embedded PostgreSQL in a temp dir (stopped and deleted afterwards)."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from voice_service.db import EmbeddedPostgres

    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="voice-bench-")), cleanup_mode="delete")
    try:
        yield server.start()
    finally:
        server.stop()


def wait_http(port: int, path: str = "/health", timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server on :{port} did not come up")


@contextlib.contextmanager
def service(dsn: str, port: int, *, workers: int = 1, cpus: str | None = None,
            **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`voice-service serve --workers N` in a subprocess (pinned to `cpus`, a taskset list, when given), stopped
    with SIGTERM at the end."""
    full_env = {**os.environ, "DATABASE_URL": dsn, "PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING",
                "RUN_WORKERS": "false", **env}
    pin = ["taskset", "-c", cpus] if cpus else []
    proc = subprocess.Popen([*pin, sys.executable, "-m", "voice_service.cli", "serve", "--workers", str(workers)],
                            env=full_env, cwd=ROOT)
    try:
        wait_http(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def python_server(code: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", code, str(port)], cwd=ROOT)
    try:
        wait_http(port, "/ping")
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


async def _worker(port: int, request: bytes, deadline: float, lat: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if status >= 400:
                errors.append(status)
    finally:
        writer.close()


def _load(port: int, path: str, headers: dict[str, str], seconds: float, connections: int, out: Any) -> None:
    hdr = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{hdr}\r\n".encode()
    lat: list[float] = []
    errors: list[int] = []

    async def main() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*[_worker(port, request, deadline, lat, errors) for _ in range(connections)])

    t0 = time.perf_counter()
    asyncio.run(main())
    out.put((lat, errors, time.perf_counter() - t0))


def load(port: int, path: str, headers: dict[str, str] | None = None, *, seconds: float = 8.0,
         connections: int = 16) -> dict[str, float]:
    """Closed-loop load from a separate process; returns requests/s and latency percentiles (ms)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_load, args=(port, path, headers or {}, seconds, connections, q))
    p.start()
    lat, errors, elapsed = q.get()
    p.join()
    lat.sort()
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[int(len(lat) * 0.99) - 1],
        "requests": float(len(lat)),
        "errors": float(len(errors)),
    }


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    out = [f"{'case':46} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"]
    for name, r in rows:
        out.append(f"{name:46} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:7.0f}")
    return "\n".join(out)
