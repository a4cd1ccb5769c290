"""The batches' call listeners: the calls domain runs them (through the Runtime's CallListeners, assembled by the
composition root) inside its own transaction when a batch call changes state.

`on_call_final` (a call reached ended/declined/cancelled/failed for the first time): the entry takes the
attempt's outcome (completed, failed, or retrying per the batch's retry policy — never for a do-not-call lead),
the call's concurrency slot is freed (the entry leaves `dialing`/`in_progress`, the counters follow), the next
dispatch tick is enqueued, and the batch completes once no entry is waiting or live.

`on_call_answered` (the call became ongoing): the entry shows `in_progress` instead of `dialing`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from voice_service.batches import dispatcher
from voice_service.batches import repository as repo
from voice_service.calls import repository as calls_repo

__all__ = ["on_call_answered", "on_call_final"]


async def on_call_final(
    conn: asyncpg.Connection, *, tenant_id: uuid.UUID, call_id: uuid.UUID, call_created_at: datetime
) -> None:
    await dispatcher.attempt_ended(
        conn, tenant_id=tenant_id, call_id=call_id, call_created_at=call_created_at
    )


async def on_call_answered(
    conn: asyncpg.Connection, *, tenant_id: uuid.UUID, call_id: uuid.UUID, call_created_at: datetime
) -> None:
    call = await calls_repo.attempt_state(conn, tenant_id, call_id, call_created_at)
    if call is None or call["batch_entry_id"] is None:
        return
    await repo.mark_in_progress(conn, tenant_id, call["batch_entry_id"], call_id)
