"""Batch jobs on pgqueuer: the dispatch tick (see dispatcher.py)."""

from __future__ import annotations

import uuid
from typing import Any

from voice_service.batches import dispatcher
from voice_service.jobs import JobSpec
from voice_service.runtime import Runtime


async def dispatch(runtime: Runtime, payload: dict[str, Any]) -> None:
    await dispatcher.run_tick(runtime, uuid.UUID(payload["tenant_id"]), uuid.UUID(payload["batch_id"]))


JOBS: list[JobSpec] = [JobSpec(dispatcher.JOB, dispatch)]
