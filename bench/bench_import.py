"""Benchmark: POST /v1/leads/import with 100,000 rows, through uvicorn on 127.0.0.1, against a real PostgreSQL.

Uses DATABASE_URL when set (a tenant of its own is created there), else an embedded PostgreSQL in a temporary
directory that is deleted afterwards. Prints rows/second for CSV (median of 3 runs: the first inserts, the later
ones update every row) and for JSON (same scheme, another set of phones), plus the in-process parse/validate
rate that bounds both.

    .venv/bin/python -m bench.bench_import [--rows 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from voice_service.db import EmbeddedPostgres
from voice_service.leads import importer
from voice_service.migrations import migrate
from voice_service.tenancy.service import create_tenant

HEADER = [
    "phone",
    "first_name",
    "last_name",
    "email",
    "company_name",
    "stage",
    "status",
    "priority",
    "estimated_value",
    "currency",
    "timezone",
    "source",
]
ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"]


def make_rows(prefix: str, n: int, run: int) -> list[list[Any]]:
    # prefix + 6 digits: "+14152" gives +1 415 200-0000 … 209-9999, all valid US numbers.
    return [
        [
            f"{prefix}{i:06d}",
            f"First{i}",
            f"Last{run}",
            f"lead{i}@example.com",
            f"Company {i % 5000}",
            ("new", "contacted", "qualified")[i % 3],
            "open",
            i % 5,
            f"{(i % 100_000) / 100:.2f}",
            "USD",
            ZONES[i % 4],
            "bench",
        ]
        for i in range(n)
    ]


def to_csv(rows: list[list[Any]]) -> bytes:
    lines = [",".join(HEADER)]
    lines += [",".join(str(v) for v in row) for row in rows]  # no field needs quoting
    return ("\n".join(lines) + "\n").encode()


def to_json(rows: list[list[Any]]) -> bytes:
    return json.dumps([dict(zip(HEADER, row, strict=True)) for row in rows]).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_healthy(client: httpx.AsyncClient, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}")
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the service did not become healthy within 60 s")


async def timed_import(
    client: httpx.AsyncClient, headers: dict[str, str], body: bytes, content_type: str
) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    r = await client.post("/v1/leads/import", content=body, headers={**headers, "Content-Type": content_type})
    elapsed = time.perf_counter() - start
    r.raise_for_status()
    return elapsed, r.json()


async def series(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    label: str,
    prefix: str,
    n: int,
    runs: int,
    encode: Any,
    content_type: str,
) -> float:
    rates = []
    for run in range(runs):
        body = encode(make_rows(prefix, n, run))
        elapsed, report = await timed_import(client, headers, body, content_type)
        assert report["received"] == n and report["rejected"] == 0, report
        expected = (n, 0) if run == 0 else (0, n)
        assert (report["inserted"], report["updated"]) == expected, report
        rates.append(n / elapsed)
        kind = "insert" if run == 0 else "update"
        print(
            f"  {label} run {run + 1} ({kind}): {elapsed:6.2f} s  {n / elapsed:9,.0f} rows/s  "
            f"({len(body) / 1e6:.1f} MB)"
        )
    return statistics.median(rates)


async def run(dsn: str, data_dir: str, rows: int, runs: int) -> None:
    await migrate(dsn)
    admin = await asyncpg.connect(dsn)
    try:
        tenant_id, key = await create_tenant(admin, f"bench-import-{int(time.time())}")
    finally:
        await admin.close()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "RUN_WORKERS": "false",
        "LOG_LEVEL": "WARNING",
        "DATA_DIR": data_dir,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "voice_service.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        env=env,
    )
    try:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            await wait_healthy(client, proc)
            print(f"POST /v1/leads/import, {rows:,} rows, uvicorn on 127.0.0.1:{port}, tenant {tenant_id}")
            csv_rate = await series(client, headers, "CSV ", "+14152", rows, runs, to_csv, "text/csv")
            json_rate = await series(
                client, headers, "JSON", "+16462", rows, runs, to_json, "application/json"
            )
        print(f"CSV  import: {csv_rate:,.0f} rows/s (median of {runs})")
        print(f"JSON import: {json_rate:,.0f} rows/s (median of {runs})")
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def main(rows: int, runs: int) -> None:
    sample = to_csv(make_rows("+13122", rows, 0))
    start = time.perf_counter()
    parsed = importer.parse("text/csv", {}, sample)
    parse_s = time.perf_counter() - start
    assert len(parsed.records) == rows
    print(f"parse + validate in process (CSV, no database): {rows / parse_s:,.0f} rows/s ({parse_s:.2f} s)")

    dsn = os.environ.get("DATABASE_URL")
    if dsn:
        asyncio.run(run(dsn, tempfile.gettempdir(), rows, runs))
        return
    tmp = Path(tempfile.mkdtemp(prefix="voice-bench-pg-"))
    server = EmbeddedPostgres(tmp, cleanup_mode="delete")
    try:
        asyncio.run(run(server.start(), str(tmp), rows, runs))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    main(args.rows, args.runs)
