"""How other domains react to a call's changes: a typed list of callables the calls domain invokes.

The calls domain sits below billing and batches, so it cannot import them; the composition root
(`voice_service.composition`) builds one CallListeners from their functions and carries it on the Runtime. Every
field is required and every listener is called with keywords, so renaming one on either side is an import or type
error at start-up, never a call that silently stops happening.

All of them run on the caller's connection, inside the transaction that changed the call row (which is locked).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import asyncpg

from voice_service.settings import Settings


class CallHook(Protocol):
    async def __call__(
        self, conn: asyncpg.Connection, *, tenant_id: uuid.UUID, call_id: uuid.UUID, call_created_at: datetime
    ) -> None: ...


class FinalizeScheduler(Protocol):
    async def __call__(
        self,
        conn: asyncpg.Connection,
        *,
        tenant_id: uuid.UUID,
        call_id: uuid.UUID,
        call_created_at: datetime,
        after: timedelta,
    ) -> None: ...


class CallReserver(Protocol):
    async def __call__(
        self,
        conn: asyncpg.Connection,
        *,
        settings: Settings,
        tenant_id: uuid.UUID,
        call_id: uuid.UUID,
        provider: str,
        direction: str,
    ) -> None: ...


@dataclass(frozen=True, kw_only=True)
class CallListeners:
    # The call became ongoing (batches: its entry shows in_progress).
    on_answered: CallHook
    # The call reached a terminal status for the first time (batches: the attempt's outcome, the next tick).
    on_final: CallHook
    # media_ended_at or provider_final_at was just recorded (billing: the post-call job once both ends are in).
    on_progress: CallHook
    # A provider price arrived after the call was billed (billing: reconciliation).
    on_provider_price: CallHook
    # A call was created (billing: bill it after `after` even if its end never arrives).
    schedule_finalize_timeout: FinalizeScheduler
    # A call outside any batch is about to be placed or answered (billing: reserve its estimated cost on the wallet,
    # released when it is billed; raises PaymentRequired when the wallet cannot cover it and enforcement is on).
    reserve_call: CallReserver
