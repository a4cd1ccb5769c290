"""Billing jobs: the post-call billing step, the call analysis and the provider-price reconciliation."""

from __future__ import annotations

from typing import Any

from voice_service.billing.analysis import run_analysis
from voice_service.billing.pipeline import (
    ANALYSIS_JOB,
    POST_CALL_JOB,
    RECONCILE_JOB,
    finalize_call,
    parse_payload,
    reconcile_call,
)
from voice_service.db import tenant_tx
from voice_service.runtime import Runtime
from voice_service.workers import job


@job(POST_CALL_JOB, concurrency_limit=32)
async def post_call_job(runtime: Runtime, payload: dict[str, Any]) -> None:
    tenant_id, call_id, created_at = parse_payload(payload)
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        await finalize_call(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)


@job(ANALYSIS_JOB, concurrency_limit=32)
async def analysis_job(runtime: Runtime, payload: dict[str, Any]) -> None:
    tenant_id, call_id, created_at = parse_payload(payload)
    await run_analysis(
        runtime,
        tenant_id=tenant_id,
        call_id=call_id,
        call_created_at=created_at,
        rerun=int(payload.get("rerun", 0)),
    )


@job(RECONCILE_JOB, concurrency_limit=8)
async def reconcile_job(runtime: Runtime, payload: dict[str, Any]) -> None:
    tenant_id, call_id, created_at = parse_payload(payload)
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        await reconcile_call(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)
