"""What a person sees of a batch before and while it runs: the launch preview (what would be called, what skipped and
why, the wallet reservation it needs) and the live progress (counters, pace, the calls under way).

The preview runs the real launch (`service.create`) inside a savepoint and rolls it back, so it can never disagree
with what launching does: the same checks, the same skipped entries, the same estimate. The progress is one
statement (repository.progress), cheap enough to refresh every second for every watched batch.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from voice_service.auth import Principal
from voice_service.batches import progress_repository as progress_repo
from voice_service.batches import repository as repo
from voice_service.batches import service
from voice_service.batches.schemas import BatchCounts, BatchCreate
from voice_service.billing import service as billing
from voice_service.billing import wallet
from voice_service.errors import NotFound

__all__ = ["BatchPreview", "BatchProgress", "LiveCall", "SkipReason", "preview", "progress"]

FINAL_STATUSES = frozenset({"completed", "cancelled"})


class SkipReason(msgspec.Struct, frozen=True):
    outcome: str
    message: str | None
    entries: int


class BatchPreview(msgspec.Struct, frozen=True, kw_only=True):
    calls: int  # entries that will be dialled
    skipped: int
    skip_reasons: list[SkipReason]
    estimate: Decimal  # reserved from the wallet at launch
    minutes_per_call: int  # the estimate's assumption
    currency: str
    available: Decimal  # the wallet's available balance now
    enforce: bool  # a launch the wallet cannot cover is refused

    @property
    def shortfall(self) -> Decimal:
        return max(self.estimate - self.available, Decimal(0))

    @property
    def covered(self) -> bool:
        return not self.enforce or self.shortfall == 0


async def preview(conn: asyncpg.Connection, principal: Principal, data: BatchCreate, *, settings: Any) -> BatchPreview:
    """What launching `data` now would do, without doing it (raises what launching would raise, except for a wallet
    that cannot cover it: that is part of the answer)."""
    unenforced = msgspec.structs.replace(settings, enforce_wallet_balance=False)
    # A savepoint by hand: the request's transaction was begun with BEGIN (db.tenant_tx), where asyncpg's
    # conn.transaction() cannot nest.
    await conn.execute("SAVEPOINT batch_preview")
    try:
        batch = await service.create(conn, principal, data, settings=unenforced)
        reasons = [SkipReason(outcome=r["outcome"] or "skipped", message=r["message"], entries=r["entries"])
                   for r in await progress_repo.skipped_reasons(conn, principal.tenant_id, batch.id)]
        numbers = await repo.numbers_by_ids(conn, principal.tenant_id, batch.from_number_ids[:1])
        estimate = await wallet.estimate_call_cost(
            conn, principal.tenant_id, numbers[0]["provider"], batch.counts.queued,
            minutes=service.ESTIMATE_MINUTES_PER_CALL, settings=settings,
        )
    finally:
        await conn.execute("ROLLBACK TO SAVEPOINT batch_preview; RELEASE SAVEPOINT batch_preview")
    counts = batch.counts
    held = await billing.get_wallet(conn, principal, settings.enforce_wallet_balance)
    return BatchPreview(
        calls=counts.queued, skipped=counts.skipped, skip_reasons=reasons, estimate=estimate,
        minutes_per_call=service.ESTIMATE_MINUTES_PER_CALL, currency=held.currency,
        available=Decimal(held.available_balance), enforce=settings.enforce_wallet_balance,
    )


class LiveCall(msgspec.Struct, frozen=True):
    entry_id: uuid.UUID
    position: int
    phone: str | None
    entry_status: str
    attempts: int
    call_id: uuid.UUID | None = None
    call_status: str | None = None
    started_at: datetime | None = None
    created_at: datetime | None = None


class BatchProgress(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    name: str | None
    status: str
    counts: BatchCounts
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    live_calls: list[LiveCall]
    at: datetime  # when these figures were read

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def done(self) -> int:
        """Entries that will not be dialled again (ended one way or another)."""
        c = self.counts
        return c.completed + c.failed + c.skipped + c.cancelled

    @property
    def dialled(self) -> int:
        """Entries whose calls are over (completed or failed): the pace counts these."""
        return self.counts.completed + self.counts.failed

    @property
    def remaining(self) -> int:
        c = self.counts
        return c.queued + c.in_progress + c.retrying

    @property
    def calls_per_minute(self) -> float | None:
        """The pace since the batch started (None before any call is over)."""
        if self.started_at is None or self.dialled == 0:
            return None
        end = self.completed_at or self.at
        minutes = max((end - self.started_at).total_seconds(), 1.0) / 60
        return self.dialled / minutes

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the pace so far (None when finished or the pace is not known yet)."""
        pace = self.calls_per_minute
        if self.finished or not pace or self.remaining == 0:
            return None
        return self.remaining / pace * 60

    @property
    def percent_done(self) -> int:
        total = self.counts.total
        return 100 if total == 0 else min(100, round(self.done * 100 / total))


_live_calls = msgspec.convert


async def progress(conn: asyncpg.Connection, principal: Principal, batch_id: uuid.UUID, *,
                   live_limit: int = 50) -> BatchProgress:
    row = await progress_repo.progress(conn, principal.tenant_id, batch_id, live_limit=live_limit)
    if row is None:
        raise NotFound("batch not found")
    return BatchProgress(
        id=row["id"], name=row["name"], status=row["status"],
        counts=BatchCounts(total=row["total_calls"], queued=row["queued_calls"], in_progress=row["in_progress_calls"],
                           retrying=row["retrying_calls"], completed=row["completed_calls"],
                           failed=row["failed_calls"], skipped=row["skipped_calls"],
                           cancelled=row["cancelled_calls"]),
        created_at=row["created_at"], started_at=row["started_at"], completed_at=row["completed_at"],
        updated_at=row["updated_at"], at=row["read_at"],
        live_calls=_live_calls(row["live_calls"], list[LiveCall], strict=False),
    )
