"""Enqueueing background jobs on the caller's connection, inside its transaction (a leaf: nothing of the app).

A job exists exactly when the rows that need it were committed. Every domain that needs a job enqueues it here by
its entrypoint name; the runner (`voice_service.workers`) knows which handler serves each name.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import msgspec
from pgqueuer import AsyncpgDriver, Queries

__all__ = ["decode_payload", "enqueue", "enqueue_many"]

_payload_encoder = msgspec.json.Encoder()
_payload_decoder = msgspec.json.Decoder()


async def enqueue(conn: asyncpg.Connection, entrypoint: str, payload: dict[str, Any], *,
                  dedupe_key: str | None = None, delay: timedelta | None = None, priority: int = 0) -> int | None:
    """Enqueue on `conn` (inside its transaction). With a dedupe_key, a job already queued/picked is kept."""
    queries = Queries(AsyncpgDriver(conn))
    ids = await queries.enqueue(entrypoint, _payload_encoder.encode(payload), priority=priority,
                                execute_after=delay, dedupe_key=dedupe_key, on_conflict="skip")
    return int(ids[0]) if ids and ids[0] is not None else None


async def enqueue_many(conn: asyncpg.Connection, entrypoint: str, payloads: list[dict[str, Any]], *,
                       delays: list[timedelta | None] | None = None) -> None:
    if not payloads:
        return
    queries = Queries(AsyncpgDriver(conn))
    await queries.enqueue([entrypoint] * len(payloads), [_payload_encoder.encode(p) for p in payloads],
                          [0] * len(payloads), execute_after=delays)


def decode_payload(raw: bytes | None) -> dict[str, Any]:
    """A job's payload as enqueue() wrote it (an empty payload reads as {})."""
    return _payload_decoder.decode(raw) if raw else {}
