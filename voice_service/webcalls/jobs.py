"""Web-call jobs: cancelling a web call whose socket never connected (see service.py)."""

from __future__ import annotations

from typing import Any

from voice_service.jobs import JobSpec
from voice_service.runtime import Runtime
from voice_service.webcalls.service import EXPIRE_JOB, expire_unconnected


async def expire_job(runtime: Runtime, payload: dict[str, Any]) -> None:
    await expire_unconnected(runtime, payload)


JOBS: list[JobSpec] = [JobSpec(EXPIRE_JOB, expire_job, concurrency=8)]
