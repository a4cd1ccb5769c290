"""Enqueueing background jobs on the caller's connection, inside its transaction (a leaf: nothing of the app).

A job exists exactly when the rows that need it were committed. Every domain that needs a job enqueues it here by
its entrypoint name; the runner (`voice_service.workers`) knows which handler serves each name.

The app's database role cannot touch the job tables (they hold every tenant's jobs, and only the worker role
dequeues them): it enqueues through `enqueue_jobs()` (sql/0075_service_roles.sql), pgqueuer's own enqueue statement
run as the owner, which stamps each job with the transaction's tenant and refuses a payload naming another tenant.
A job outside any tenant (no `tenant_id` in its payload) is a system job.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import msgspec

__all__ = ["decode_payload", "enqueue", "enqueue_many"]

_payload_encoder = msgspec.json.Encoder()
_payload_decoder = msgspec.json.Decoder()
_ENQUEUE = "SELECT job_ord, job_id FROM enqueue_jobs($1::int[], $2::text[], $3::bytea[], $4::interval[], $5::text[])"


async def enqueue(conn: asyncpg.Connection, entrypoint: str, payload: dict[str, Any], *,
                  dedupe_key: str | None = None, delay: timedelta | None = None, priority: int = 0) -> int | None:
    """Enqueue on `conn` (inside its transaction); the job's id. With a dedupe_key, a job already queued/picked is
    kept and None returned."""
    rows = await conn.fetch(_ENQUEUE, [priority], [entrypoint], [_payload_encoder.encode(payload)], [delay],
                            [dedupe_key])
    return int(rows[0]["job_id"]) if rows else None


async def enqueue_many(conn: asyncpg.Connection, entrypoint: str, payloads: list[dict[str, Any]], *,
                       delays: list[timedelta | None] | None = None) -> None:
    if not payloads:
        return
    n = len(payloads)
    await conn.execute(_ENQUEUE, [0] * n, [entrypoint] * n, [_payload_encoder.encode(p) for p in payloads],
                       delays or [None] * n, [None] * n)


def decode_payload(raw: bytes | None) -> dict[str, Any]:
    """A job's payload as enqueue() wrote it (an empty payload reads as {})."""
    return _payload_decoder.decode(raw) if raw else {}
