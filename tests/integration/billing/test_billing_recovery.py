"""A billing job that fails is retried and ends visibly: the call says why (`metadata.billing_error`, with the
attempts), a later attempt bills it, and after the last attempt the call says it gave up. Nothing stays unbilled
after a restart: the workers' start-up sweep re-enqueues every final call that has no bill (whatever lost its job)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from tests.support.pipeline import (
    NoLlm,
    drop_jobs,
    insert_call,
    jobs_for,
    sample_meter,
    wait_for,
    worker,
)
from voice_service import workers
from voice_service.billing import jobs as billing_jobs
from voice_service.billing import recovery
from voice_service.billing.pipeline import POST_CALL_JOB, call_payload
from voice_service.call_analysis.service import ANALYSIS_JOB
from voice_service.composition import open_runtime
from voice_service.runtime import Runtime
from voice_service.settings import Settings

_dec = msgspec.json.Decoder()
CALL_START = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as rt:
        rt.analysis_llm = NoLlm()
        rt.billing_retry = recovery.BillingRetryPolicy(base_delay_seconds=30, factor=2, max_attempts=3)
        yield rt


@pytest.fixture(autouse=True)
async def _no_leftover_jobs(admin_conn: asyncpg.Connection) -> AsyncIterator[None]:
    yield
    await drop_jobs(admin_conn, POST_CALL_JOB, ANALYSIS_JOB, "events.deliver", "billing.reconcile")


async def call_row(admin: asyncpg.Connection, call_id: uuid.UUID) -> dict[str, Any]:
    row = await admin.fetchrow("SELECT cost, metadata FROM voice_call_logs WHERE id = $1", call_id)
    return {"cost": row["cost"], "metadata": _dec.decode(row["metadata"])}


async def broken_call(admin: asyncpg.Connection, tenant_id: uuid.UUID) -> tuple[uuid.UUID, datetime]:
    """A final call whose usage meter cannot be read (a row written by hand, or by a buggy writer)."""
    call_id, created_at = await insert_call(admin, tenant_id, created_at=CALL_START, meter=sample_meter())
    await admin.execute(
        "UPDATE voice_call_logs SET metadata = jsonb_set(metadata, '{usage,stt}', '\"garbage\"') WHERE id = $1",
        call_id,
    )
    return call_id, created_at


async def test_a_failing_billing_job_is_retried_and_says_why(
    runtime: Runtime, tenant: Any, admin_conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    call_id, created_at = await broken_call(admin_conn, tenant.id)
    payload = call_payload(tenant.id, call_id, created_at)

    with caplog.at_level(logging.ERROR, logger="voice_service.billing"):
        await billing_jobs.post_call_job(runtime, payload)  # the failure is handled, not lost
    row = await call_row(admin_conn, call_id)
    error = row["metadata"]["billing_error"]
    assert row["cost"] is None
    assert error["attempts"] == 1 and error["gave_up"] is False and "usage" in error["message"]
    assert datetime.fromisoformat(error["next_attempt_at"]) > datetime.now(UTC) + timedelta(seconds=25)
    assert any("billing failed" in r.getMessage() for r in caplog.records)
    [retry] = await jobs_for(admin_conn, POST_CALL_JOB, call_id)
    assert retry["execute_after"] > datetime.now(UTC) + timedelta(seconds=25)
    retry_payload = _dec.decode(retry["payload"])
    assert retry_payload["attempt"] == 2

    # Someone repairs the row; the retry bills the call and the error goes away.
    await admin_conn.execute(
        "UPDATE voice_call_logs SET metadata = jsonb_set(metadata, '{usage,stt}', '[]') WHERE id = $1", call_id
    )
    await drop_jobs(admin_conn, POST_CALL_JOB)
    await billing_jobs.post_call_job(runtime, retry_payload)
    row = await call_row(admin_conn, call_id)
    assert row["cost"] is not None and "billing_error" not in row["metadata"]
    assert row["metadata"]["billing"]["usage_event_id"]


async def test_after_the_last_attempt_the_call_says_billing_gave_up(
    runtime: Runtime, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    call_id, created_at = await broken_call(admin_conn, tenant.id)
    await billing_jobs.post_call_job(runtime, call_payload(tenant.id, call_id, created_at, attempt=3))
    error = (await call_row(admin_conn, call_id))["metadata"]["billing_error"]
    assert error["attempts"] == 3 and error["gave_up"] is True and error.get("next_attempt_at") is None
    assert await jobs_for(admin_conn, POST_CALL_JOB, call_id) == []


async def test_restart_re_enqueues_every_unbilled_final_call(
    runtime: Runtime, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    # Calls whose post-call job was lost (the old crash deleted it): final, never billed, nothing queued.
    lost, lost_at = await insert_call(admin_conn, tenant.id, created_at=CALL_START, meter=sample_meter())
    given_up, _ = await insert_call(admin_conn, tenant.id, created_at=CALL_START, meter=sample_meter())
    await admin_conn.execute(
        "UPDATE voice_call_logs SET metadata = metadata || '{\"billing_error\": {\"attempts\": 3, \"gave_up\": true}}'"
        " WHERE id = $1",
        given_up,
    )
    live_call, _ = await insert_call(admin_conn, tenant.id, media_ended=False)  # still on the line: not final
    assert await jobs_for(admin_conn, POST_CALL_JOB, lost) == []

    # The periodic sweep leaves a call that gave up alone; the start-up sweep (a restart) tries it again.
    await recovery.sweep_unbilled(runtime, include_given_up=False)
    assert len(await jobs_for(admin_conn, POST_CALL_JOB, lost)) == 1
    assert await jobs_for(admin_conn, POST_CALL_JOB, given_up) == []
    assert await jobs_for(admin_conn, POST_CALL_JOB, live_call) == []
    await workers.maintenance_once(runtime, starting=True)
    assert len(await jobs_for(admin_conn, POST_CALL_JOB, given_up)) == 1
    assert len(await jobs_for(admin_conn, POST_CALL_JOB, lost)) == 1  # not twice

    async with worker(runtime, [POST_CALL_JOB]):

        async def billed() -> bool:
            return (await call_row(admin_conn, lost))["cost"] is not None

        await wait_for(billed)
    assert lost_at == CALL_START
