"""What keeps every final call billed when billing goes wrong: retries with backoff, a visible error, and a sweep.

A post-call job that fails (a bug, a row it cannot read, the database going away half-way) rolls its transaction
back; then `record_failure` writes `metadata.billing_error` on the call (`message`, `attempts`, `last_attempt_at`,
`next_attempt_at`, `gave_up`) and queues the next attempt after the policy's backoff, until `max_attempts`: then the
call says billing gave up, and an error is logged. A successful run removes `billing_error`.

`sweep_unbilled` finds the final calls that have no bill (across tenants, through the SECURITY DEFINER function
`unbilled_final_calls`, sql/0070) and enqueues their post-call job (deduplicated, so a queued one is not doubled).
The workers run it when they start (a restart re-enqueues whatever lost its job, those that gave up included: a
restart often ships the fix) and with their periodic maintenance (those that gave up stay as they are).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from voice_service.billing.pipeline import POST_CALL_JOB, call_payload
from voice_service.calls import repository as calls_repo
from voice_service.db import system_tx, tenant_tx
from voice_service.enqueue import enqueue
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_POLICY", "BillingRetryPolicy", "policy_of", "record_failure", "sweep_unbilled"]

SWEEP_PAGE = 500
# A call that became final this recently still has its own job on the way (enqueued with the final status).
SETTLED_FOR = timedelta(minutes=1)


@dataclass(frozen=True)
class BillingRetryPolicy:
    base_delay_seconds: float = 30.0
    factor: float = 4.0
    max_attempts: int = 6  # 30 s, 2 min, 8 min, 32 min, ~2 h between them: about 2.7 hours in all

    def delay(self, attempts: int) -> timedelta:
        """Wait after the `attempts`-th failed attempt."""
        return timedelta(seconds=self.base_delay_seconds * self.factor ** (attempts - 1))


DEFAULT_POLICY = BillingRetryPolicy()


def policy_of(runtime: Runtime) -> BillingRetryPolicy:
    return runtime.billing_retry or DEFAULT_POLICY


async def record_failure(
    runtime: Runtime,
    *,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    call_created_at: datetime,
    attempt: int,
    error: BaseException,
) -> None:
    """The call says billing failed (and when it tries again, or that it gave up); the next attempt is queued."""
    policy = policy_of(runtime)
    now = datetime.now(UTC)
    gave_up = attempt >= policy.max_attempts
    next_at = None if gave_up else now + policy.delay(attempt)
    message = f"{type(error).__name__}: {error}"[:1000]
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        await calls_repo.patch_metadata(
            conn,
            tenant_id,
            call_id,
            call_created_at,
            {
                "billing_error": {
                    "message": message,
                    "attempts": attempt,
                    "last_attempt_at": now.isoformat(),
                    "next_attempt_at": None if next_at is None else next_at.isoformat(),
                    "gave_up": gave_up,
                }
            },
        )
        if next_at is not None:
            await enqueue(
                conn,
                POST_CALL_JOB,
                call_payload(tenant_id, call_id, call_created_at, attempt=attempt + 1),
                # Its own key per attempt: the failing job still holds post_call:<id> while it is picked.
                dedupe_key=f"post_call_retry:{call_id}:{attempt + 1}",
                delay=next_at - now,
            )
    if gave_up:
        log.error(
            "billing failed; giving up on this call",
            extra={"call": str(call_id), "attempts": attempt, "error": message},
        )
    else:
        log.error(
            "billing failed; retrying later",
            extra={"call": str(call_id), "attempts": attempt,
                   "retry_at": None if next_at is None else next_at.isoformat(), "error": message},
        )


async def sweep_unbilled(runtime: Runtime, *, include_given_up: bool, settled_for: timedelta = SETTLED_FOR) -> int:
    """Enqueue the post-call job of every final call without a bill (every tenant); returns how many were found."""
    found = 0
    after: tuple[datetime, uuid.UUID] | None = None
    settled_before = datetime.now(UTC) - settled_for
    while True:
        async with system_tx(runtime.pool) as conn:
            rows = await calls_repo.unbilled_final_calls(
                conn, settled_before=settled_before, include_given_up=include_given_up, after=after, limit=SWEEP_PAGE
            )
        # A job is enqueued in its tenant's transaction (enqueue_jobs() refuses a payload of another tenant).
        by_tenant: dict[uuid.UUID, list[asyncpg.Record]] = {}
        for row in rows:
            by_tenant.setdefault(row["tenant_id"], []).append(row)
        for tenant_id, tenant_rows in by_tenant.items():
            async with tenant_tx(runtime.pool, tenant_id) as conn:
                for row in tenant_rows:
                    await enqueue(
                        conn,
                        POST_CALL_JOB,
                        call_payload(row["tenant_id"], row["call_id"], row["call_created_at"]),
                        dedupe_key=f"post_call:{row['call_id']}",
                    )
        found += len(rows)
        if len(rows) < SWEEP_PAGE:
            break
        after = (rows[-1]["call_created_at"], rows[-1]["call_id"])
    if found:
        log.info("unbilled calls re-enqueued for billing", extra={"count": found})
    return found
