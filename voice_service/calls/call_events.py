"""The call lifecycle events: `voice_call.started` (answered), `voice_call.ended` (any final status, with the end
reason) and `voice_call.failed` (also sent, after `ended`, when the final status is `failed`).

Written through the outbox in the transaction that changes the call's status, so an event exists exactly when
its change was committed, once per call (the status only moves forward). The same place counts the ended calls
for /metrics (`voice_calls_total{status}`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from voice_service.calls import repository as repo
from voice_service.events.catalog import (
    ProviderErrorData,
    VoiceCallEndedData,
    VoiceCallFailedData,
    VoiceCallStartedData,
    payload,
)
from voice_service.events.outbox import emit
from voice_service.observability import CALLS_ENDED

__all__ = ["call_answered", "call_ended"]


def _common(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "call_id": row["id"],
        "status": row["status"],
        "direction": row["direction"],
        "agent_id": row["agent_id"],
        "lead_id": row["lead_id"],
        "batch_id": row["batch_id"],
        "batch_entry_id": row["batch_entry_id"],
        "from_": row["from_e164"],
        "to": row["to_e164"],
        "provider": row["provider"],
        "attempt": row["attempt"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
    }


async def _emit(conn: asyncpg.Connection, tenant_id: uuid.UUID, event_type: str, row: asyncpg.Record,
                data: Any) -> None:
    await emit(conn, tenant_id=tenant_id, event_type=event_type, aggregate_type="voice_call",
               aggregate_id=row["id"], payload=payload(data))


async def call_answered(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID, created_at: datetime
) -> None:
    row = await repo.lifecycle_state(conn, tenant_id, call_id, created_at)
    if row is None:
        return
    await _emit(conn, tenant_id, "voice_call.started", row,
                VoiceCallStartedData(**_common(row), answered_by=row["answered_by"]))


async def call_ended(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID, created_at: datetime
) -> None:
    """The call just reached its final status (in this transaction)."""
    row = await repo.lifecycle_state(conn, tenant_id, call_id, created_at)
    if row is None:
        return
    meta = row["metadata"] or {}
    ended: dict[str, Any] = {
        **_common(row),
        "ended_at": row["ended_at"],
        "duration_seconds": row["duration_seconds"],
        "end_reason": meta.get("end_reason"),
        "answered_by": row["answered_by"],
    }
    await _emit(conn, tenant_id, "voice_call.ended", row, VoiceCallEndedData(**ended))
    if row["status"] == "failed":
        error = meta.get("provider_error")
        await _emit(conn, tenant_id, "voice_call.failed", row, VoiceCallFailedData(
            **ended,
            error=None if not error else ProviderErrorData(code=str(error.get("code")),
                                                           message=str(error.get("message") or ""),
                                                           retryable=bool(error.get("retryable"))),
        ))
    CALLS_ENDED.labels(row["status"]).inc()
