"""Helpers for the batch tests: tenant setup through the API, wallet credit, launching a batch and running one
dispatcher tick in-process, a placer that records instead of dialling, finishing calls the way the telephony
webhooks do, and invariant checks."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg

from voice_service.batches import hooks
from voice_service.batches.dispatcher import Placement, run_tick
from voice_service.billing import wallet
from voice_service.db import tenant_tx
from voice_service.runtime import Runtime


def unique_phone(prefix: str = "+1415") -> str:
    # +1 415 2xx-xxxx: valid US numbers in one time zone.
    return f"{prefix}2{uuid.uuid4().int % 1_000_000:06d}"


def distinct_phones(n: int, prefix: str = "+14152") -> list[str]:
    """n different valid numbers (random ones collide: 1,000 draws from a million do so about half the time)."""
    start = uuid.uuid4().int % (1_000_000 - n)
    return [f"{prefix}{start + i:06d}" for i in range(n)]


async def credit(pool: asyncpg.Pool, tenant_id: uuid.UUID, amount: str = "100000") -> None:
    async with tenant_tx(pool, tenant_id) as conn:
        await wallet.topup(conn, tenant_id, Decimal(amount), idempotency_key=f"test-credit-{uuid.uuid4()}")


async def setup_tenant(
    client: Any, tenant: Any, pool: asyncpg.Pool, *, numbers: int = 1, provider: str = "simulator"
) -> dict[str, Any]:
    """An agent and `numbers` active numbers of `provider`, and a funded wallet."""
    h = tenant.headers
    agent = await client.post("/v1/agents", json={"name": "Dialer"}, headers=h)
    assert agent.status_code == 201, agent.text
    ids = []
    for _ in range(numbers):
        r = await client.post(
            "/v1/numbers", json={"phone_number": unique_phone("+1212"), "provider": provider}, headers=h
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    await credit(pool, tenant.id)
    return {"agent_id": agent.json()["id"], "number_ids": ids}


class RecordingPlacer:
    """A batch placer that records what the dispatcher would place, with when (nothing is dialled)."""

    def __init__(self) -> None:
        self.placed: list[tuple[Any, float]] = []

    async def __call__(self, runtime: Runtime, ref: Any) -> None:
        import time

        self.placed.append((ref, time.perf_counter()))


async def launch(
    client: Any, tenant: Any, setup: dict[str, Any], entries: list[dict[str, Any]], **options: Any
) -> dict[str, Any]:
    body = {
        "agent_id": setup["agent_id"],
        "from_number_id": setup["number_ids"][0],
        "entries": entries,
        **options,
    }
    r = await client.post("/v1/batches", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def entries(client: Any, tenant: Any, batch_id: str, status: str | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        r = await client.get(f"/v1/batches/{batch_id}/entries", params=params, headers=tenant.headers)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return items


async def tick(runtime: Runtime, tenant: Any, batch: dict[str, Any]) -> list[Placement]:
    result = await run_tick(runtime, tenant.id, uuid.UUID(batch["id"]))
    return result.placements


async def finish_call(
    runtime: Runtime,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: Any,
    status: str,
    *,
    answered_by: str | None = None,
    end_reason: str | None = None,
) -> None:
    """End a call as the telephony status webhook does: terminal status, then the batches hook, one transaction."""
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        await conn.execute(
            """UPDATE voice_call_logs SET status = $4, answered_by = $5, ended_at = now(),
                      provider_call_id = COALESCE(provider_call_id, 'CA' || replace(id::text, '-', '')),
                      metadata = metadata || jsonb_build_object('end_reason', $6::text)
               WHERE tenant_id = $1 AND id = $2 AND created_at = $3""",
            tenant_id,
            call_id,
            created_at,
            status,
            answered_by,
            end_reason,
        )
        await hooks.on_call_final(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)


def assert_counts_add_up(batch: dict[str, Any]) -> None:
    c = batch["counts"]
    parts = (
        c["queued"]
        + c["in_progress"]
        + c["retrying"]
        + c["completed"]
        + c["failed"]
        + c["skipped"]
        + c["cancelled"]
    )
    assert parts == c["total"] == batch["total_calls"], c
    assert c["completed"] == batch["completed_calls"] and c["failed"] == batch["failed_calls"], batch


async def entry_statuses(admin: asyncpg.Connection, batch_id: Any) -> dict[str, int]:
    rows = await admin.fetch(
        "SELECT status, count(*) AS n FROM voice_call_batch_entries WHERE batch_id = $1 GROUP BY status",
        uuid.UUID(str(batch_id)),
    )
    return {r["status"]: r["n"] for r in rows}


async def drop_batch_jobs(admin: asyncpg.Connection, tenant_id: uuid.UUID) -> None:
    """Dispatch jobs the in-process tests leave queued (no worker runs them) must not reach later tests' workers."""
    await admin.execute(
        """DELETE FROM pgqueuer WHERE entrypoint = 'batches.dispatch'
           AND convert_from(payload, 'UTF8')::jsonb->>'tenant_id' = $1""",
        str(tenant_id),
    )
