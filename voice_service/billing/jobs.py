"""Billing jobs: the post-call billing step and the provider-price reconciliation."""

from __future__ import annotations

from typing import Any

from voice_service.billing.pipeline import (
    POST_CALL_JOB,
    RECONCILE_JOB,
    finalize_call,
    parse_payload,
    reconcile_call,
)
from voice_service.db import tenant_tx
from voice_service.jobs import JobSpec
from voice_service.runtime import Runtime


async def post_call_job(runtime: Runtime, payload: dict[str, Any]) -> None:
    tenant_id, call_id, created_at = parse_payload(payload)
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        await finalize_call(
            conn,
            listeners=runtime.billing_listeners,
            tenant_id=tenant_id,
            call_id=call_id,
            call_created_at=created_at,
        )


async def reconcile_job(runtime: Runtime, payload: dict[str, Any]) -> None:
    tenant_id, call_id, created_at = parse_payload(payload)
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        await reconcile_call(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)


JOBS: list[JobSpec] = [
    JobSpec(POST_CALL_JOB, post_call_job, concurrency=32),
    JobSpec(RECONCILE_JOB, reconcile_job, concurrency=8),
]
