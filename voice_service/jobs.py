"""What a background job is: its entrypoint name, its handler and its concurrency limit.

Each domain's `jobs.py` exposes `JOBS: list[JobSpec]`; the runner (`voice_service.workers`) imports those modules
by name in code and serves every spec. A handler gets the process Runtime and the decoded payload.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from voice_service.runtime import Runtime

Handler = Callable[[Runtime, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class JobSpec:
    name: str  # the pgqueuer entrypoint, stored with every queued job: renaming it orphans queued jobs
    handler: Handler
    concurrency: int = 0  # jobs of this name running at once across every worker process (0: no limit)
