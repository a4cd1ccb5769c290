"""Post-call pipeline benchmark: calls finalised, billed and analysed per second (LLM mocked in-process), with one
and with two worker processes, the database time per call (p50/p99), and ledger debits per second on one hot wallet.

    .venv/bin/python -m bench.bench_pipeline [--calls 2000] [--debits 3000]

Uses DATABASE_URL if set (a scratch database is created on that server and dropped afterwards), else an embedded
PostgreSQL in a temporary directory. Each worker is a separate process with its own pool, as `voice-service worker`
runs; it serves only the billing entrypoints. Per call the pipeline runs two jobs: the billing step (cost breakdown,
usage event, ledger debit, outbox event in one transaction) and the analysis (LLM answer mocked, stored and billed
in a second transaction). "DB time per call" is the wall time of those jobs' database work (the mocked LLM answers
instantly, so each job is database round trips plus the Python between them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from analysis.usage import UsageMeter
from providers.llm.base import UsageEvent
from voice_service import workers
from voice_service.billing import wallet
from voice_service.billing.pipeline import (
    POST_CALL_JOB,
    call_payload,
    finalize_call,
    parse_payload,
)
from voice_service.call_analysis.service import ANALYSIS_JOB, run_analysis
from voice_service.composition import open_runtime
from voice_service.db import EmbeddedPostgres, init_connection, tenant_tx
from voice_service.enqueue import enqueue_many
from voice_service.migrations import migrate
from voice_service.settings import load_settings
from voice_service.tenancy.service import create_tenant

ROOT = Path(__file__).resolve().parent.parent
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

ANSWER = _enc.encode(
    {
        "summary": "Ann agreed to a demo on Tuesday.",
        "sentiment": "positive",
        "lead_category": "hot",
        "success_evaluation": {"success": True, "score": 9, "reason": "Booked."},
        "lead_extraction": {"email": "ann@example.com"},
    }
).decode()
SCHEMA = {"type": "object", "properties": {"email": {"type": "string"}}}
TRANSCRIPT = [
    {
        "role": "agent",
        "text": "Hi, this is Sam from Acme. Can I book you a demo?",
        "start_ms": 0,
        "end_ms": 2500,
        "interrupted": False,
    },
    {
        "role": "user",
        "text": "Yes, Tuesday works. My email is ann@example.com.",
        "start_ms": 2600,
        "end_ms": 5000,
        "interrupted": False,
    },
]


class MockLlm:
    """Answers at once with a valid analysis and realistic token counts (no network, no delay)."""

    name = "openai"
    model = "gpt-4o-mini"

    async def complete_json(
        self, messages: list[dict], *, schema: dict, schema_name: str, model: str | None = None
    ) -> tuple[str, UsageEvent | None]:
        return ANSWER, UsageEvent(prompt_tokens=1800, completion_tokens=120, model="gpt-4o-mini-2024-07-18")

    def stream_chat(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def _meter() -> dict[str, Any]:
    m = UsageMeter()
    m.set_telephony("twilio", 97.3, direction="outbound", country="US")
    m.add_stt("deepgram", "nova-3", 95.0)
    m.add_llm("openai", "gpt-4o-mini-2024-07-18", 9800, 420)
    m.add_tts("deepgram", "aura-2-thalia-en", 780)
    return m.to_builtins()


# ---------------------------------------------------------------------------------------------------------------
# Worker process


async def worker_main(dsn: str, out: str) -> None:
    from pgqueuer import AsyncpgPoolDriver, Job, Queries, QueueManager

    settings = load_settings(
        env={},
        database_url=dsn,
        log_json=False,
        log_level="WARNING",
        pool_max_size=20,
        openai_api_key="sk-bench",
    )
    timings: dict[str, list[float]] = {"post_call": [], "analysis": []}
    async with open_runtime(settings, apply_migrations=False) as runtime:
        runtime.analysis_llm = MockLlm()
        qm = QueueManager(Queries(AsyncpgPoolDriver(await workers.queue_pool(runtime))))

        @qm.entrypoint(POST_CALL_JOB, concurrency_limit=32)
        async def post_call(job: Job) -> None:
            tenant_id, call_id, created_at = parse_payload(_dec.decode(job.payload))
            t0 = time.perf_counter()
            async with tenant_tx(runtime.pool, tenant_id) as conn:
                await finalize_call(
                    conn,
                    listeners=runtime.billing_listeners,
                    tenant_id=tenant_id,
                    call_id=call_id,
                    call_created_at=created_at,
                )
            timings["post_call"].append(time.perf_counter() - t0)

        @qm.entrypoint(ANALYSIS_JOB, concurrency_limit=32)
        async def analyze(job: Job) -> None:
            tenant_id, call_id, created_at = parse_payload(_dec.decode(job.payload))
            t0 = time.perf_counter()
            await run_analysis(runtime, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)
            timings["analysis"].append(time.perf_counter() - t0)

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, qm.shutdown.set)
        await qm.run(dequeue_timeout=timedelta(seconds=1), batch_size=20, max_concurrent_tasks=64)
    await asyncio.to_thread(Path(out).write_bytes, _enc.encode(timings))


# ---------------------------------------------------------------------------------------------------------------
# Driver


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def seed_calls(
    admin: asyncpg.Connection, tenant_id: uuid.UUID, agent_id: int, n: int
) -> list[dict[str, Any]]:
    rows = await admin.fetch(
        """
        INSERT INTO voice_call_logs (id, tenant_id, created_at, provider, status, direction, started_at, ended_at,
            duration_seconds, media_ended_at, provider_final_at, transcripts, metadata, agent_id, answered_by, to_e164)
        SELECT uuid_v7(c), $1, c, 'twilio', 'ended', 'outbound', c, c + interval '97 seconds', 97,
               c + interval '97 seconds', c + interval '98 seconds', $2::jsonb, $3::jsonb, $4, 'human',
               '+12125550123'
        FROM (SELECT now() - (g * interval '1 millisecond') AS c FROM generate_series(1, $5) g) t
        RETURNING id, created_at
        """,
        tenant_id,
        _enc.encode(TRANSCRIPT).decode(),
        _enc.encode({"usage": _meter()}).decode(),
        agent_id,
        n,
    )
    return [call_payload(tenant_id, r["id"], r["created_at"]) for r in rows]


async def run_round(dsn: str, n_calls: int, n_workers: int, n_tenants: int) -> dict[str, Any]:
    admin = await asyncpg.connect(dsn)
    try:
        tenants: list[uuid.UUID] = []
        payloads: list[dict[str, Any]] = []
        for t in range(n_tenants):
            tenant_id, _ = await create_tenant(admin, f"bench-{uuid.uuid4().hex[:8]}")
            agent_id = await admin.fetchval(
                "INSERT INTO voice_agents (tenant_id, name, analysis_schema, config) VALUES ($1, 'Bench', $2::jsonb, "
                '\'{"goal": "book a demo"}\') RETURNING id',
                tenant_id,
                _enc.encode(SCHEMA).decode(),
            )
            share = n_calls // n_tenants + (1 if t < n_calls % n_tenants else 0)
            payloads += await seed_calls(admin, tenant_id, agent_id, share)
            tenants.append(tenant_id)
        # Interleave tenants, as concurrent batches of several tenants would arrive.
        payloads.sort(key=lambda p: p["call_id"][-6:])
        await init_connection(admin)  # the pool's jsonb codec, for the billing code below
        for tenant_id in tenants:
            async with admin.transaction():
                await wallet.topup(admin, tenant_id, Decimal(1_000_000), idempotency_key="bench")

        tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
        outs = [tmp / f"worker{i}.json" for i in range(n_workers)]
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.bench_pipeline", "--worker", dsn, str(o), cwd=ROOT
            )
            for o in outs
        ]
        await asyncio.sleep(2.0)  # let the workers start (imports, pool) before the clock starts
        started = time.perf_counter()
        async with admin.transaction():
            await enqueue_many(admin, POST_CALL_JOB, payloads)
        billed_at = None
        while True:
            billed, analysed = await admin.fetchrow(
                "SELECT (SELECT count(*) FROM voice_call_logs WHERE tenant_id = ANY ($1) AND cost IS NOT NULL),"
                "       (SELECT count(*) FROM voice_call_analysis WHERE tenant_id = ANY ($1) AND status = 'completed')",
                tenants,
            )
            now = time.perf_counter()
            if billed_at is None and billed >= n_calls:
                billed_at = now
            if analysed >= n_calls:
                break
            if now - started > 600:
                raise RuntimeError(f"timed out: billed {billed}, analysed {analysed}")
            await asyncio.sleep(0.05)
        finished = time.perf_counter()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            await asyncio.wait_for(p.wait(), timeout=60)
        timings: dict[str, list[float]] = {"post_call": [], "analysis": []}
        for o in outs:
            for k, v in _dec.decode(await asyncio.to_thread(o.read_bytes)).items():
                timings[k].extend(v)
        check = await admin.fetchrow(
            "SELECT count(*) AS n, sum(amount) AS total FROM billing_ledger_transactions "
            "WHERE tenant_id = ANY ($1) AND transaction_type = 'debit'",
            tenants,
        )
        assert check["n"] == 2 * n_calls, check  # one debit per call, one per analysis
        per_call = [
            a + b for a, b in zip(sorted(timings["post_call"]), sorted(timings["analysis"]), strict=False)
        ]
        return {
            "workers": n_workers,
            "calls": n_calls,
            "tenants": n_tenants,
            "billed_per_s": n_calls / ((billed_at or finished) - started),
            "finalised_per_s": n_calls / (finished - started),
            "post_call_ms": (pct(timings["post_call"], 50) * 1e3, pct(timings["post_call"], 99) * 1e3),
            "analysis_ms": (pct(timings["analysis"], 50) * 1e3, pct(timings["analysis"], 99) * 1e3),
            "db_per_call_ms": (pct(per_call, 50) * 1e3, pct(per_call, 99) * 1e3),
        }
    finally:
        await admin.close()


async def serial_pass(dsn: str, n_calls: int) -> dict[str, Any]:
    """Both pipeline steps for each call, one call at a time in this process: database time without queueing."""
    settings = load_settings(
        env={},
        database_url=dsn,
        log_json=False,
        log_level="WARNING",
        pool_min_size=1,
        pool_max_size=2,
        openai_api_key="sk-bench",
    )
    admin = await asyncpg.connect(dsn)
    try:
        tenant_id, _ = await create_tenant(admin, f"bench-serial-{uuid.uuid4().hex[:8]}")
        agent_id = await admin.fetchval(
            "INSERT INTO voice_agents (tenant_id, name, analysis_schema) VALUES ($1, 'Bench', $2::jsonb) RETURNING id",
            tenant_id,
            _enc.encode(SCHEMA).decode(),
        )
        payloads = await seed_calls(admin, tenant_id, agent_id, n_calls)
    finally:
        await admin.close()
    per_call: list[float] = []
    async with open_runtime(settings, apply_migrations=False) as runtime:
        runtime.analysis_llm = MockLlm()
        started = time.perf_counter()
        for payload in payloads:
            t, call_id, created_at = parse_payload(payload)
            t0 = time.perf_counter()
            async with tenant_tx(runtime.pool, t) as conn:
                await finalize_call(
                    conn, listeners=runtime.billing_listeners, tenant_id=t, call_id=call_id, call_created_at=created_at
                )
            await run_analysis(runtime, tenant_id=t, call_id=call_id, call_created_at=created_at)
            per_call.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    return {"per_s": n_calls / elapsed, "p50_ms": pct(per_call, 50) * 1e3, "p99_ms": pct(per_call, 99) * 1e3}


async def hot_wallet(dsn: str, n_debits: int, concurrency: int) -> dict[str, Any]:
    settings = load_settings(
        env={},
        database_url=dsn,
        log_json=False,
        log_level="WARNING",
        pool_min_size=1,
        pool_max_size=concurrency,
    )
    admin = await asyncpg.connect(dsn)
    try:
        tenant_id, _ = await create_tenant(admin, f"bench-wallet-{uuid.uuid4().hex[:8]}")
    finally:
        await admin.close()
    async with open_runtime(settings, apply_migrations=False) as runtime:
        async with tenant_tx(runtime.pool, tenant_id) as conn:
            await wallet.topup(conn, tenant_id, Decimal(1_000_000), idempotency_key="bench")
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n_debits):
            queue.put_nowait(i)
        latencies: list[float] = []

        async def run() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                t0 = time.perf_counter()
                async with tenant_tx(runtime.pool, tenant_id) as conn:
                    await wallet.post(
                        conn,
                        tenant_id,
                        transaction_type="debit",
                        amount=Decimal("-0.012345"),
                        idempotency_key=f"debit:bench:{i}",
                        reference_type="usage_event",
                    )
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(run() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        async with tenant_tx(runtime.pool, tenant_id) as conn:
            balance = await conn.fetchval(
                "SELECT current_balance FROM billing_wallets WHERE tenant_id = $1", tenant_id
            )
        assert balance == Decimal(1_000_000) - n_debits * Decimal("0.012345"), balance
    return {
        "debits": n_debits,
        "concurrency": concurrency,
        "per_s": n_debits / elapsed,
        "p50_ms": pct(latencies, 50) * 1e3,
        "p99_ms": pct(latencies, 99) * 1e3,
    }


async def main(args: argparse.Namespace) -> None:
    server_dsn = os.environ.get("DATABASE_URL")
    embedded = None
    if not server_dsn:
        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="bench-pg-")), cleanup_mode="delete")
        server_dsn = embedded.start()
    dbname = f"bench_{uuid.uuid4().hex[:8]}"
    root = await asyncpg.connect(server_dsn)
    await root.execute(f'CREATE DATABASE "{dbname}"')
    await root.close()
    from urllib.parse import urlsplit, urlunsplit

    dsn = urlunsplit(urlsplit(server_dsn)._replace(path="/" + dbname))
    try:
        await migrate(dsn)
        print(f"post-call pipeline, {args.calls} calls per round, LLM mocked in-process")
        sp = await serial_pass(dsn, min(args.calls, 500))
        print(
            f"  serial, no queue (database time per call: billing tx + analysis txs): p50 {sp['p50_ms']:.1f} ms, "
            f"p99 {sp['p99_ms']:.1f} ms ({sp['per_s']:.0f} calls/s on one connection)"
        )
        for n_tenants, n_workers in ((1, 1), (1, 2), (8, 1), (8, 2)):
            r = await run_round(dsn, args.calls, n_workers, n_tenants)
            print(
                f"  {n_workers} worker process(es), {n_tenants} tenant wallet(s): billed {r['billed_per_s']:.0f} calls/s, billed+analysed "
                f"{r['finalised_per_s']:.0f} calls/s; per call p50/p99: billing job "
                f"{r['post_call_ms'][0]:.1f}/{r['post_call_ms'][1]:.1f} ms, analysis job "
                f"{r['analysis_ms'][0]:.1f}/{r['analysis_ms'][1]:.1f} ms, both "
                f"{r['db_per_call_ms'][0]:.1f}/{r['db_per_call_ms'][1]:.1f} ms"
            )
        for concurrency in (1, 16):
            w = await hot_wallet(dsn, args.debits, concurrency)
            print(
                f"hot wallet, {w['debits']} debits, {concurrency} concurrent: {w['per_s']:.0f} debits/s "
                f"(p50 {w['p50_ms']:.2f} ms, p99 {w['p99_ms']:.2f} ms per debit transaction)"
            )
    finally:
        root = await asyncpg.connect(server_dsn)
        await root.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await root.close()
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        asyncio.run(worker_main(sys.argv[2], sys.argv[3]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--calls", type=int, default=2000)
        parser.add_argument("--debits", type=int, default=3000)
        asyncio.run(main(parser.parse_args()))
