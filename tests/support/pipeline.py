"""Shared helpers for the billing / pipeline / events tests (no tests here): call rows built directly, a Runtime,
a worker limited to chosen job entrypoints, and row snapshots."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
from pgqueuer import AsyncpgPoolDriver, Job, Queries, QueueManager

from analysis.usage import UsageMeter
from providers.llm.base import LlmError, UsageEvent
from voice_service import workers
from voice_service.billing import wallet
from voice_service.db import tenant_tx
from voice_service.runtime import Runtime

_decoder = msgspec.json.Decoder()


class NoLlm:
    """An LlmProvider that refuses: a test runtime must never reach a real LLM."""

    name = "openai"
    model = "gpt-4o-mini"

    async def complete_json(
        self, messages: list[dict], *, schema: dict, schema_name: str, model: str | None = None
    ) -> tuple[str, UsageEvent | None]:
        raise LlmError("no LLM in this test", retryable=False)

    def stream_chat(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


async def insert_agent(
    admin: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    analysis_schema: dict[str, Any] | None = None,
    goal: str = "Book a demo",
) -> int:
    return await admin.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO voice_agents (tenant_id, name, agent_instructions, language, analysis_schema, config) "
        "VALUES ($1, 'Sales', 'Sell the product politely.', 'en', $2, $3) RETURNING id",
        tenant_id,
        msgspec.json.encode(analysis_schema or {}).decode(),
        msgspec.json.encode({"goal": goal}).decode(),
    )


async def insert_lead(admin: asyncpg.Connection, tenant_id: uuid.UUID) -> uuid.UUID:
    return await admin.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO leads (tenant_id, first_name, phone) VALUES ($1, 'Ann', $2) RETURNING id",
        tenant_id,
        f"+1415{uuid.uuid4().int % 10_000_000:07d}",
    )


def sample_meter() -> UsageMeter:
    meter = UsageMeter()
    meter.set_telephony("twilio", 125.4, direction="outbound", country="US")
    meter.add_stt("deepgram", "nova-3", 118.25)
    meter.add_llm("openai", "gpt-4o-mini-2024-07-18", 12345, 678)
    meter.add_tts("elevenlabs", "eleven_flash_v2_5", 1234)
    return meter


SAMPLE_TRANSCRIPT = [
    {
        "role": "agent",
        "text": "Hi, this is Sam from Acme. Do you have a minute?",
        "start_ms": 0,
        "end_ms": 2500,
        "interrupted": False,
    },
    {
        "role": "user",
        "text": "Sure, what is it about?",
        "start_ms": 2600,
        "end_ms": 4000,
        "interrupted": False,
    },
    {
        "role": "agent",
        "text": "We help teams automate calls. Can I book a demo?",
        "start_ms": 4100,
        "end_ms": 7000,
        "interrupted": False,
    },
    {
        "role": "user",
        "text": "Yes, Tuesday at 10 works. My email is ann@example.com.",
        "start_ms": 7200,
        "end_ms": 9900,
        "interrupted": False,
    },
]


async def insert_call(
    admin: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    created_at: datetime | None = None,
    meter: UsageMeter | None = None,
    status: str = "ended",
    provider: str = "twilio",
    transcripts: list[dict[str, Any]] | None = None,
    agent_id: int | None = None,
    lead_id: uuid.UUID | None = None,
    batch_id: uuid.UUID | None = None,
    batch_entry_id: uuid.UUID | None = None,
    answered_by: str | None = "human",
    media_ended: bool = True,
    provider_final: bool = True,
    started: bool = True,
    metadata: dict[str, Any] | None = None,
) -> tuple[uuid.UUID, datetime]:
    """A call row as the telephony code leaves it (created_at defaults to now; the id is its UUIDv7)."""
    md = dict(metadata or {})
    if meter is not None:
        md["usage"] = meter.to_builtins()
    row = await admin.fetchrow(
        """
        INSERT INTO voice_call_logs (id, tenant_id, created_at, provider, status, direction, started_at, ended_at,
            duration_seconds, media_ended_at, provider_final_at, transcripts, metadata, agent_id, lead_id, batch_id,
            batch_entry_id, answered_by, to_e164)
        SELECT uuid_v7(c), $1, c, $3, $4, 'outbound', CASE WHEN $14 THEN c END, c + interval '125 seconds', 125,
               CASE WHEN $5 THEN c + interval '125 seconds' END, CASE WHEN $6 THEN c + interval '126 seconds' END,
               $7, $8, $9, $10, $11, $12, $13, '+14155550100'
        FROM (SELECT coalesce($2::timestamptz, now()) AS c) t
        RETURNING id, created_at
        """,
        tenant_id,
        created_at,
        provider,
        status,
        media_ended,
        provider_final,
        msgspec.json.encode(transcripts if transcripts is not None else SAMPLE_TRANSCRIPT).decode(),
        msgspec.json.encode(md).decode(),
        agent_id,
        lead_id,
        batch_id,
        batch_entry_id,
        answered_by,
        started,
    )
    return row["id"], row["created_at"]


async def insert_batch(
    admin: asyncpg.Connection, tenant_id: uuid.UUID, agent_id: int, n_entries: int = 1
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    batch_id = await admin.fetchval(
        "INSERT INTO voice_call_batches (tenant_id, agent_id, status, total_calls) VALUES ($1, $2, 'running', $3) "
        "RETURNING id",
        tenant_id,
        agent_id,
        n_entries,
    )
    entries = [
        await admin.fetchval(
            "INSERT INTO voice_call_batch_entries (tenant_id, batch_id, phone, status) "
            "VALUES ($1, $2, '+14155550100', 'completed') RETURNING id",
            tenant_id,
            batch_id,
        )
        for _ in range(n_entries)
    ]
    return batch_id, entries


async def credit(runtime: Runtime, tenant_id: uuid.UUID, amount: str) -> None:
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        await wallet.topup(conn, tenant_id, Decimal(amount), idempotency_key=f"test:{uuid.uuid4()}")


async def jobs_for(
    admin: asyncpg.Connection, entrypoint: str, call_id: uuid.UUID | str
) -> list[asyncpg.Record]:
    """Queued/picked jobs of `entrypoint` whose payload names the call."""
    rows = await admin.fetch(
        "SELECT id, entrypoint, dedupe_key, payload, execute_after, status FROM pgqueuer "
        "WHERE entrypoint = $1 AND status IN ('queued', 'picked')",
        entrypoint,
    )
    return [r for r in rows if _decoder.decode(r["payload"]).get("call_id") == str(call_id)]


async def drop_jobs(admin: asyncpg.Connection, *entrypoints: str) -> None:
    await admin.execute(
        "DELETE FROM pgqueuer WHERE entrypoint = ANY ($1) AND status = 'queued'", list(entrypoints)
    )


@contextlib.asynccontextmanager
async def worker(runtime: Runtime, entrypoints: list[str]) -> AsyncIterator[QueueManager]:
    """A pgqueuer worker serving only `entrypoints` (other domains' queued jobs are not this test's business)."""
    registry = workers.job_registry()
    qm = QueueManager(Queries(AsyncpgPoolDriver(runtime.pool)))
    for name in entrypoints:
        handler, limit = registry[name].handler, registry[name].concurrency

        def make(h: Callable[[Runtime, dict[str, Any]], Awaitable[None]]) -> Callable[[Job], Awaitable[None]]:
            async def run(j: Job) -> None:
                await h(runtime, _decoder.decode(j.payload) if j.payload else {})

            return run

        qm.entrypoint(name, concurrency_limit=limit)(make(handler))
    task = asyncio.create_task(qm.run(dequeue_timeout=timedelta(seconds=1), batch_size=10))
    try:
        yield qm
    finally:
        qm.shutdown.set()
        await asyncio.wait_for(task, timeout=10)


async def wait_for(predicate: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Poll `predicate` until it holds; fail the test after `within` seconds."""
    try:
        async with asyncio.timeout(within):
            # Polls the database: there is no in-process event to wait on.
            for _ in itertools.count():
                if await predicate():
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"condition not met within {within} s") from None
