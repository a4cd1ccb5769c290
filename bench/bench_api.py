"""API benchmark: GET /v1/agents/{id} and a 50-item list page through the real service (auth, tenant context,
query, JSON), against a bare Litestar app that returns the same JSON from memory, in the same run.

The load generator is `wrk` (C, one thread, keep-alive connections: it does not saturate before the servers do;
`apt-get install -y wrk`), pinned to other cores than the servers with `taskset`. Both servers get the same cores
and the same number of processes (`--workers`). Each figure is the median of `--repeat` runs of `--seconds`, the
service and the bare app measured back to back in each round so that the machine's load hits both alike. Both run
uvicorn with the same settings for a request (the same loop and HTTP parser, `access_log=False`), so the ratio
compares the applications only.

    .venv/bin/python -m bench.bench_api [--seconds 8] [--connections 16] [--repeat 3] [--workers 1]
        [--server-cpus 0] [--wrk-cpus 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any

import asyncpg
import httpx
import psutil

from bench._common import database, free_port, python_server, service
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

app = Litestar([ping, one, page])


def serve():
    import socket
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", int(sys.argv[1])))
    sock.listen(2048)
    # The service's uvicorn settings that bear on a request (serving._run_server): no access lines built.
    uvicorn.Server(uvicorn.Config(app, log_level="warning", backlog=2048, access_log=False)).run(sockets=[sock])


import ctypes, os, signal
for _ in range(WORKERS - 1):  # as `serve --workers`: one process per worker, SO_REUSEPORT sockets
    if os.fork() == 0:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
        serve()
        os._exit(0)
serve()
'''

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _cpu(pid: int) -> float:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(t.user + t.system for t in (p.cpu_times() for p in procs))


def wrk(url: str, *, seconds: float, connections: int, headers: dict[str, str], cpus: str | None,
        pid: int | None = None) -> dict[str, float]:
    cmd = [*(["taskset", "-c", cpus] if cpus else []), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--latency", *[a for k, v in headers.items() for a in ("-H", f"{k}: {v}")], url]
    cpu0 = _cpu(pid) if pid else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = _cpu(pid) - cpu0 if pid else float("nan")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {q: float(v) * _UNITS[u] for q, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    # The server's own CPU per request (its processes' CPU time over the run): what a request costs, whatever else
    # the machine runs at the time (throughput and latency are not).
    return {"rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"], "errors": float(errors.group(1)) if errors else 0,
            "cpu_us": 1e6 * cpu / requests if requests else float("nan")}


async def _setup(dsn: str) -> str:
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        _, key = await create_tenant(conn, "bench")
    finally:
        await conn.close()
    return key


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="processes of each server")
    ap.add_argument("--server-cpus", default="0", help="taskset cpu list for both servers ('' = no pinning)")
    ap.add_argument("--wrk-cpus", default="1", help="taskset cpu list for wrk ('' = no pinning)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    run: dict[str, Any] = {"seconds": args.seconds, "connections": args.connections, "cpus": args.wrk_cpus or None}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    cases = {"GET /v1/agents/{id}": None, "GET /v1/agents?limit=50": "/v1/agents?limit=50"}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with database() as dsn:
        key = asyncio.run(_setup(dsn))
        h = {"Authorization": f"Bearer {key}"}
        port, bport = free_port(), free_port()
        with service(dsn, port, workers=args.workers, cpus=args.server_cpus or None) as svc_proc:
            base = f"http://127.0.0.1:{port}"
            ids = [httpx.post(f"{base}/v1/agents", headers=h, json={
                "name": f"Agent {i}", "system_instructions": "Be concise and friendly. " * 8,
                "outbound_starter_prompt": "Hi {{first_name}}, this is Ava from Acme.",
                "analysis_schema": {"type": "object", "properties": {"budget": {"type": "number"}}},
            }).json()["id"] for i in range(60)]
            one = httpx.get(f"{base}/v1/agents/{ids[0]}", headers=h).json()
            page = httpx.get(f"{base}/v1/agents?limit=50", headers=h).json()
            assert len(page["items"]) == 50
            cases["GET /v1/agents/{id}"] = f"/v1/agents/{ids[0]}"
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f1, \
                    tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f2:
                json.dump(one, f1)
                json.dump(page, f2)
            code = BASELINE.replace("sys.argv[2]", repr(f1.name)).replace("sys.argv[3]", repr(f2.name)) \
                .replace("WORKERS", str(args.workers))
            pin = f"import os; os.sched_setaffinity(0, {{{args.server_cpus}}})\n" if args.server_cpus else ""
            with python_server(pin + code, bport) as bare_proc:
                pids = {port: svc_proc.pid, bport: bare_proc.pid}
                for path in cases.values():
                    for p, hdr in ((port, h), (bport, {})):
                        wrk(f"http://127.0.0.1:{p}{path}", **{**run, "seconds": 2}, headers=hdr)  # warm-up
                for _ in range(args.repeat):
                    for name, path in cases.items():
                        for label, p, hdr in (("service", port, h), ("bare", bport, {})):
                            results.setdefault((label, name), []).append(
                                wrk(f"http://127.0.0.1:{p}{path}", **run, headers=hdr, pid=pids[p]))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"wrk -t1 -c{args.connections}, {args.seconds:.0f} s x {args.repeat} (medians); servers: {args.workers} "
          f"process(es) on cpus {args.server_cpus or 'any'}, wrk on cpus {args.wrk_cpus or 'any'}")
    print(f"{'case':44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'CPU us/req':>11}")
    for (label, name), runs in results.items():
        r = _median(runs)
        print(f"{label + ' ' + name:44} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:8.0f} "
              f"{r['cpu_us']:11.0f}")
    for name, target in (("GET /v1/agents/{id}", 0.5), ("GET /v1/agents?limit=50", 0.3)):
        s, b = _median(results[("service", name)]), _median(results[("bare", name)])
        ratios = [x["rps"] / y["rps"] for x, y in zip(results[("service", name)], results[("bare", name)],
                                                         strict=True)]
        print(f"ratio {name}: service/bare throughput {s['rps'] / b['rps']:.2f} (per round: "
              f"{', '.join(f'{x:.2f}' for x in ratios)}; target >= {target}), service p99 {s['p99_ms']:.1f} ms "
              f"(target <= 20); CPU per request bare/service {b['cpu_us'] / s['cpu_us']:.2f} (the ratio a quiet, "
              f"CPU-bound machine would show; the service's database time is not in it)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
