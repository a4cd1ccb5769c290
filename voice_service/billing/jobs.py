"""Billing jobs: the post-call billing step and the provider-price reconciliation.

A post-call run that fails is not lost: the call says why and the next attempt is queued (see recovery.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from voice_service.billing.pipeline import (
    POST_CALL_JOB,
    RECONCILE_JOB,
    finalize_call,
    parse_payload,
    reconcile_call,
)
from voice_service.billing.recovery import record_failure
from voice_service.db import tenant_tx
from voice_service.jobs import JobSpec
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)


async def post_call_job(runtime: Runtime, payload: dict[str, Any]) -> None:
    tenant_id, call_id, created_at = parse_payload(payload)
    attempt = int(payload.get("attempt", 1))
    try:
        async with tenant_tx(runtime.pool, tenant_id) as conn:
            await finalize_call(
                conn,
                listeners=runtime.billing_listeners,
                tenant_id=tenant_id,
                call_id=call_id,
                call_created_at=created_at,
            )
    except asyncio.CancelledError:
        raise  # shutdown: the job stays picked and is re-picked once its heartbeat is stale
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the call and retried (recovery.py)
        log.exception("billing failed", extra={"call": str(call_id), "attempt": attempt})
        await record_failure(
            runtime, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at, attempt=attempt, error=exc
        )


async def reconcile_job(runtime: Runtime, payload: dict[str, Any]) -> None:
    tenant_id, call_id, created_at = parse_payload(payload)
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        await reconcile_call(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)


JOBS: list[JobSpec] = [
    JobSpec(POST_CALL_JOB, post_call_job, concurrency=32),
    JobSpec(RECONCILE_JOB, reconcile_job, concurrency=8),
]
