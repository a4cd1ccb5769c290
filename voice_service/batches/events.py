"""The batch lifecycle events: `batch.started` (first call placed), `batch.progress` (counters moved; at most one
every PROGRESS_INTERVAL per batch), `batch.completed`, `batch.cancelled`.

Each is written through the outbox in the transaction that makes the change. batch.progress is rate-limited on the
batch row itself (`progress_event_at`, see repository.take_progress_slot), so any number of workers finishing
calls of one batch write at most one per interval between them; the final counts come with batch.completed or
batch.cancelled.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from voice_service.batches import repository as repo
from voice_service.events.catalog import (
    BatchCancelledData,
    BatchCompletedData,
    BatchCountsData,
    BatchProgressData,
    BatchStartedData,
    payload,
)
from voice_service.events.outbox import emit

__all__ = ["PROGRESS_INTERVAL", "batch_cancelled", "batch_completed", "batch_progress", "batch_started"]

PROGRESS_INTERVAL = timedelta(seconds=5)


def _data(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "batch_id": row["id"],
        "name": row["name"],
        "status": row["status"],
        "agent_id": row["agent_id"],
        "counts": BatchCountsData(
            total=row["total_calls"],
            queued=row["queued_calls"],
            in_progress=row["in_progress_calls"],
            retrying=row["retrying_calls"],
            completed=row["completed_calls"],
            failed=row["failed_calls"],
            skipped=row["skipped_calls"],
            cancelled=row["cancelled_calls"],
        ),
        "started_at": row["started_at"],
        "completed_at": row["completed_at"],
    }


async def _emit(conn: asyncpg.Connection, tenant_id: uuid.UUID, event_type: str, row: asyncpg.Record,
                data: Any) -> None:
    await emit(conn, tenant_id=tenant_id, event_type=event_type, aggregate_type="batch", aggregate_id=row["id"],
               payload=payload(data))


async def batch_started(conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> None:
    row = await repo.get_batch(conn, tenant_id, batch_id)
    if row is not None:
        await _emit(conn, tenant_id, "batch.started", row, BatchStartedData(**_data(row)))


async def batch_progress(conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> None:
    """A progress event, unless the batch had one less than PROGRESS_INTERVAL ago."""
    row = await repo.take_progress_slot(conn, tenant_id, batch_id, PROGRESS_INTERVAL)
    if row is not None:
        await _emit(conn, tenant_id, "batch.progress", row, BatchProgressData(**_data(row)))


async def batch_completed(conn: asyncpg.Connection, tenant_id: uuid.UUID, row: asyncpg.Record) -> None:
    """`row`: the batch as its status was set to completed."""
    await _emit(conn, tenant_id, "batch.completed", row, BatchCompletedData(**_data(row)))


async def batch_cancelled(conn: asyncpg.Connection, tenant_id: uuid.UUID, row: asyncpg.Record) -> None:
    await _emit(conn, tenant_id, "batch.cancelled", row, BatchCancelledData(**_data(row)))
