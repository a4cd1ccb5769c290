"""Retention: a tenant's recording settings, and the purge job that deletes recordings past their retention.

`retention_days` (per tenant, NULL = keep forever) counts from the call's creation. The purge job runs hourly
while any tenant has a retention period: each run first enqueues the next one (its dedupe key names the hour it
is for, so however many runs and settings changes ask, one job per hour exists), then deletes, per tenant and
oldest first, the recordings that are due — each like an API deletion (file first, then the call; audited by
`voice_call.recording_deleted` with reason "retention"). Setting a retention period enqueues a run for now.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from voice_service.calls import repository as calls_repo
from voice_service.db import system_tx, tenant_tx
from voice_service.enqueue import enqueue
from voice_service.errors import AppError
from voice_service.recordings import repository as repo
from voice_service.recordings.schemas import RecordingSettings, RecordingSettingsUpdate
from voice_service.recordings.service import delete_recording
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["PURGE_JOB", "get_settings", "purge_expired", "put_settings", "run_purge", "schedule_purge"]

PURGE_JOB = "recordings.purge"
PURGE_INTERVAL = timedelta(hours=1)
_BATCH = 200


async def get_settings(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> RecordingSettings:
    row = await repo.get_settings(conn, tenant_id)
    if row is None:
        return RecordingSettings(retention_days=None, updated_at=None)
    return RecordingSettings(retention_days=row["retention_days"], updated_at=row["updated_at"])


async def put_settings(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, data: RecordingSettingsUpdate
) -> RecordingSettings:
    row = await repo.put_settings(conn, tenant_id, data.retention_days)
    if data.retention_days is not None:
        await schedule_purge(conn, now=datetime.now(UTC), immediately=True)
    return RecordingSettings(retention_days=row["retention_days"], updated_at=row["updated_at"])


def _hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def schedule_purge(conn: asyncpg.Connection, *, now: datetime, immediately: bool = False) -> None:
    """Enqueue the purge for this hour (`immediately`) or the next one; a run already queued for it is kept."""
    run_at = _hour(now) if immediately else _hour(now) + PURGE_INTERVAL
    delay = max(timedelta(0), run_at - now)
    await enqueue(conn, PURGE_JOB, {"run_at": run_at.isoformat()}, dedupe_key=f"{PURGE_JOB}:{run_at.isoformat()}",
                  delay=delay)


async def run_purge(runtime: Runtime, *, now: datetime | None = None) -> int:
    """The job: schedule the next run (while any tenant keeps recordings for a limited time), then purge."""
    now = now or datetime.now(UTC)
    async with system_tx(runtime.pool) as conn:
        tenants = await repo.retention_tenants(conn)
        if tenants:
            await schedule_purge(conn, now=now)
    return await purge_expired(runtime, now=now, tenants=[(r["tenant_id"], r["retention_days"]) for r in tenants])


async def purge_expired(
    runtime: Runtime, *, now: datetime, tenants: list[tuple[uuid.UUID, int]] | None = None
) -> int:
    """Delete every recording past its tenant's retention; returns how many were deleted."""
    if tenants is None:
        async with system_tx(runtime.pool) as conn:
            tenants = [(r["tenant_id"], r["retention_days"]) for r in await repo.retention_tenants(conn)]
    deleted = 0
    for tenant_id, days in tenants:
        before = now - timedelta(days=days)
        while True:
            async with tenant_tx(runtime.pool, tenant_id) as conn:
                due = await calls_repo.calls_with_recording_before(conn, tenant_id, before, _BATCH)
            for row in due:
                try:
                    await delete_recording(runtime, tenant_id, row["id"], reason="retention", retention_days=days)
                except AppError as exc:  # storage unavailable: the next hourly run tries again
                    log.warning("recording purge stopped", extra={"tenant": str(tenant_id), "detail": exc.detail})
                    return deleted
                deleted += 1
            if len(due) < _BATCH:
                break
    if deleted:
        log.info("recordings past retention deleted", extra={"count": deleted})
    return deleted
