"""How other domains react to a call being billed: a typed list of callables the billing domain invokes.

Billing sits below the call analysis, so it cannot import it; the composition root (`voice_service.composition`)
builds one BillingListeners and carries it on the Runtime. The field is required and called with keywords, so
renaming it on either side is an import or type error at start-up, never a step silently skipped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg


class BilledHook(Protocol):
    async def __call__(
        self,
        conn: asyncpg.Connection,
        *,
        tenant_id: uuid.UUID,
        call_id: uuid.UUID,
        call_created_at: datetime,
        lead_id: uuid.UUID | None,
    ) -> None: ...


@dataclass(frozen=True, kw_only=True)
class BillingListeners:
    # The call's cost was just recorded, inside finalize_call's transaction (call analysis: its pending row and
    # the analysis job, so both exist exactly when the bill does).
    on_call_billed: BilledHook
