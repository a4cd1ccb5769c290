"""Call analysis jobs: one analysis run per job (see service.py)."""

from __future__ import annotations

from typing import Any

from voice_service.billing.pipeline import parse_payload
from voice_service.call_analysis.service import ANALYSIS_JOB, run_analysis
from voice_service.jobs import JobSpec
from voice_service.runtime import Runtime


async def analysis_job(runtime: Runtime, payload: dict[str, Any]) -> None:
    tenant_id, call_id, created_at = parse_payload(payload)
    await run_analysis(
        runtime,
        tenant_id=tenant_id,
        call_id=call_id,
        call_created_at=created_at,
        rerun=int(payload.get("rerun", 0)),
    )


JOBS: list[JobSpec] = [JobSpec(ANALYSIS_JOB, analysis_job, concurrency=32)]
