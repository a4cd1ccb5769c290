"""API benchmark: GET /v1/agents/{id} and a 50-item list page through the real service (auth + RLS transaction +
query), against a bare Litestar endpoint that returns the same JSON from memory, in the same run.

One uvicorn worker for each server; the load generator runs in its own process. Usage:
    .venv/bin/python -m bench.bench_api [--seconds 8] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import asyncpg
import httpx

from bench._common import database, free_port, load, python_server, service, table
from voice_service.migrations import migrate
from voice_service.tenancy.service import create_tenant

BASELINE = r'''
import json, sys
import uvicorn
from litestar import Litestar, get
ONE = json.loads(open(sys.argv[2]).read())
PAGE = json.loads(open(sys.argv[3]).read())

@get("/ping")
async def ping() -> dict:
    return {"ok": True}

@get("/v1/agents/{agent_id:int}")
async def one(agent_id: int) -> dict:
    return ONE

@get("/v1/agents")
async def page() -> dict:
    return PAGE

uvicorn.run(Litestar([ping, one, page]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
'''


async def _setup(dsn: str) -> str:
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        _, key = await create_tenant(conn, "bench")
    finally:
        await conn.close()
    return key


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    with database() as dsn:
        key = asyncio.run(_setup(dsn))
        h = {"Authorization": f"Bearer {key}"}
        port = free_port()
        rows = []
        with service(dsn, port):
            base = f"http://127.0.0.1:{port}"
            ids = [httpx.post(f"{base}/v1/agents", headers=h, json={
                "name": f"Agent {i}", "system_instructions": "Be concise and friendly. " * 8,
                "outbound_starter_prompt": "Hi {{first_name}}, this is Ava from Acme.",
                "analysis_schema": {"type": "object", "properties": {"budget": {"type": "number"}}},
            }).json()["id"] for i in range(60)]
            one = httpx.get(f"{base}/v1/agents/{ids[0]}", headers=h).json()
            page = httpx.get(f"{base}/v1/agents?limit=50", headers=h).json()
            assert len(page["items"]) == 50
            load(port, f"/v1/agents/{ids[0]}", h, seconds=2, connections=args.connections)  # warm-up
            rows.append(("service GET /v1/agents/{id}", load(port, f"/v1/agents/{ids[0]}", h, seconds=args.seconds,
                                                              connections=args.connections)))
            rows.append(("service GET /v1/agents?limit=50", load(port, "/v1/agents?limit=50", h,
                                                                  seconds=args.seconds, connections=args.connections)))
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f1, \
                tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f2:
            json.dump(one, f1)
            json.dump(page, f2)
        bport = free_port()
        code = BASELINE.replace("sys.argv[2]", repr(f1.name)).replace("sys.argv[3]", repr(f2.name))
        with python_server(code, bport):
            load(bport, f"/v1/agents/{ids[0]}", seconds=2, connections=args.connections)
            rows.append(("baseline (memory) GET /v1/agents/{id}", load(bport, f"/v1/agents/{ids[0]}",
                                                                        seconds=args.seconds,
                                                                        connections=args.connections)))
            rows.append(("baseline (memory) GET /v1/agents?limit=50", load(bport, "/v1/agents?limit=50",
                                                                            seconds=args.seconds,
                                                                            connections=args.connections)))
    print(table(rows))
    by = dict(rows)
    for what in ("GET /v1/agents/{id}", "GET /v1/agents?limit=50"):
        s, b = by[f"service {what}"], by[f"baseline (memory) {what}"]
        print(f"ratio {what}: throughput service/baseline = {s['rps'] / b['rps']:.2f}, "
              f"p50 {s['p50_ms'] / b['p50_ms']:.1f}x, p99 {s['p99_ms'] / b['p99_ms']:.1f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
