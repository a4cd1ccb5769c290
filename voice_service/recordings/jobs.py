"""The recordings domain's jobs: encode-and-store one call's recording, and the hourly retention purge."""

from __future__ import annotations

import uuid
from typing import Any

from voice_service.jobs import JobSpec
from voice_service.recordings.purge import PURGE_JOB, run_purge
from voice_service.recordings.service import ENCODE_JOB, encode_and_store
from voice_service.runtime import Runtime

__all__ = ["JOBS", "encode_recording", "purge_recordings"]


async def encode_recording(runtime: Runtime, payload: dict[str, Any]) -> None:
    await encode_and_store(
        runtime,
        uuid.UUID(payload["tenant_id"]),
        uuid.UUID(payload["call_id"]),
        attempt=int(payload.get("attempt", 1)),
    )


async def purge_recordings(runtime: Runtime, payload: dict[str, Any]) -> None:
    await run_purge(runtime)


JOBS: list[JobSpec] = [
    JobSpec(ENCODE_JOB, encode_recording, concurrency=2),
    JobSpec(PURGE_JOB, purge_recordings, concurrency=1),
]
