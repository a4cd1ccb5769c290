"""Event jobs: one webhook delivery attempt per job (see delivery.py)."""

from __future__ import annotations

import uuid
from typing import Any

from voice_service.events.delivery import deliver
from voice_service.events.outbox import DELIVER_JOB
from voice_service.jobs import JobSpec
from voice_service.runtime import Runtime


async def deliver_job(runtime: Runtime, payload: dict[str, Any]) -> None:
    await deliver(runtime, uuid.UUID(payload["tenant_id"]), uuid.UUID(payload["delivery_id"]))


JOBS: list[JobSpec] = [JobSpec(DELIVER_JOB, deliver_job, concurrency=50)]
