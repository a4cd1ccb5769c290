"""The batch dispatcher: one `batches.dispatch` job ("tick") claims due entries of one batch and places their calls.

A tick runs in two steps:

1. The claim transaction locks the batch row, takes the tenant's dispatch lock, checks every limit against the
   database (batch live calls vs max_concurrency, tenant live calls vs its cap minus the inbound reserve, the
   calling window per time zone, calls-per-second slots in `dispatch_pacing`), picks due entries with
   SKIP LOCKED, inserts one pending call row per entry (`calls.service.create_call`) and marks the entries
   `dialing` with their attempt number. It enqueues the follow-up tick in the same transaction: at once when
   more is due and capacity is left, later (delayed job) for a start time, a window opening, a retry backoff
   or a pacing slot. A finishing call enqueues a tick too (hooks.py), so a batch at its concurrency limit
   advances as calls end, without polling.
2. After commit, the calls are placed (`calls.service.place_call`, concurrently, each at its pacing slot).

Crash safety. A claim commits the attempt and its call row before the provider is asked, so a re-run tick never
dials the same attempt again: it finds the entry `dialing`, not due. A claim is recorded with the claiming
process's lease, a session advisory lock that PostgreSQL releases when the process dies (SIGKILL included).
If the process died after the carrier accepted the call, the carrier's status callbacks (they carry our call id)
drive the call and its entry to the end as usual. If nothing has moved the call after GRACE_SECONDS — still
`pending`, no provider call id — and its lease is gone (or STUCK_SECONDS passed), a later tick ends it `failed`
(end_reason `dispatch_interrupted`): the process may have died before or after sending the request, so the
attempt is not placed again; the retry policy decides, as for any failed attempt, whether a new attempt (a new
call row) follows. Claims of live processes are never touched.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from voice_service.batches import events as batch_events
from voice_service.batches import policy
from voice_service.batches import repository as repo
from voice_service.billing import pipeline as billing
from voice_service.billing import wallet
from voice_service.calls import repository as calls_repo
from voice_service.calls.call_events import call_ended
from voice_service.calls.schemas import CallRef
from voice_service.calls.service import create_call, place_call
from voice_service.db import tenant_tx
from voice_service.enqueue import enqueue
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

JOB = "batches.dispatch"
CHUNK = 50  # entries one tick claims at most; a full chunk enqueues the next tick at once (another worker)
PACING_HORIZON = timedelta(seconds=1)  # pacing slots a tick claims ahead (it waits for each slot)
GRACE_SECONDS = 30.0  # a claim younger than this is never recovered (carrier callbacks come within seconds)
STUCK_SECONDS = 600.0  # a claim of a live process still unplaced after this long is recovered too
SWEEP_SECONDS = 5.0  # a batch's dialing entries are checked for dead claims at most this often
TENANT_FULL_RETRY = timedelta(seconds=2)  # the tenant cap is held by other batches: look again after this
DEFAULT_TENANT_MAX_CONCURRENT_CALLS = 50
DEFAULT_RESERVED_CONCURRENCY = 2

Clock = Callable[[], datetime]
Placer = Callable[[Runtime, CallRef], Awaitable[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


_clock: Clock = _utcnow


def now() -> datetime:
    """The dispatcher's clock (windows, start times, retry times)."""
    return _clock()


def set_clock(clock: Clock | None) -> None:
    """Replace the clock (tests); None restores the real one."""
    global _clock
    _clock = clock or _utcnow


def payload(tenant_id: uuid.UUID, batch_id: uuid.UUID) -> dict[str, str]:
    return {"tenant_id": str(tenant_id), "batch_id": str(batch_id)}


def _placer(runtime: Runtime) -> Placer:
    """`runtime.batch_placer` when a test set one; placing through the call's provider otherwise."""
    return runtime.batch_placer or place_call


# --- the process lease ---


@dataclass
class DispatchLease:
    id: int
    conn: asyncpg.Connection


async def lease_id(runtime: Runtime) -> int:
    """This process's dispatcher lease: a session advisory lock (LEASE_LOCK_CLASS, id) on a connection of its own,
    held while the process lives; claims record the id."""
    lease = runtime.dispatch_lease
    if lease is not None and not lease.conn.is_closed():
        return lease.id
    async with runtime.dispatch_lease_lock:
        lease = runtime.dispatch_lease
        if lease is not None and not lease.conn.is_closed():
            return lease.id
        conn = await asyncpg.connect(
            runtime.dsn,
            server_settings={"role": "voice_app", "application_name": "voice-service dispatcher lease"},
        )
        runtime.exit_stack.push_async_callback(conn.close)
        while True:
            candidate = secrets.randbelow(2**31 - 2) + 1
            if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", repo.LEASE_LOCK_CLASS, candidate):
                break
        runtime.dispatch_lease = DispatchLease(candidate, conn)
        return candidate


# --- one tick ---


@dataclass
class Placement:
    ref: CallRef
    entry_id: uuid.UUID
    at: datetime  # pacing slot (dispatcher clock)


@dataclass
class TickResult:
    claimed: int = 0
    skipped: int = 0
    recovered: int = 0
    placements: list[Placement] = field(default_factory=list)
    claim_seconds: float = 0.0
    started: float = 0.0  # time.perf_counter() when the tick began (job pick-up)


async def run_tick(runtime: Runtime, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> TickResult:
    result = TickResult(started=time.perf_counter())
    lease = await lease_id(runtime)
    at = now()
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        await _claim(conn, runtime, tenant_id, batch_id, at, lease, result)
    result.claim_seconds = time.perf_counter() - result.started
    if result.placements:
        await _place_all(runtime, tenant_id, batch_id, result.placements)
    return result


def _tenant_caps(runtime: Runtime, row: asyncpg.Record | None) -> tuple[int, int]:
    settings = runtime.settings
    cap = getattr(settings, "tenant_max_concurrent_calls", DEFAULT_TENANT_MAX_CONCURRENT_CALLS)
    reserved = getattr(settings, "tenant_reserved_concurrency", DEFAULT_RESERVED_CONCURRENCY)
    if row is not None:
        cap = row["max_concurrent_calls"] if row["max_concurrent_calls"] is not None else cap
        reserved = row["reserved_concurrency"] if row["reserved_concurrency"] is not None else reserved
    return int(cap), int(reserved)


def _account_cps(runtime: Runtime, provider: str) -> float:
    return float(
        getattr(runtime.settings, f"{provider}_account_cps", policy.PROVIDER_DEFAULT_CPS.get(provider, 0.0))
    )


async def _claim(
    conn: asyncpg.Connection,
    runtime: Runtime,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    at: datetime,
    lease: int,
    result: TickResult,
) -> None:
    b = await repo.get_batch(conn, tenant_id, batch_id, lock=True)
    if b is None:
        return
    swept = b["swept_at"]
    if b["in_progress_calls"] and (
        swept is None or (datetime.now(UTC) - swept).total_seconds() >= SWEEP_SECONDS
    ):
        result.recovered = await _recover(conn, tenant_id, b, at)
        await repo.set_swept(conn, tenant_id, batch_id)
        # A claim too young to judge may be one a dead process left; if it were the batch's last live call,
        # nothing else would wake the batch up: come back when it can be judged.
        oldest = await repo.oldest_unplaced_claim(conn, tenant_id, batch_id)
        if oldest is not None:
            due = max(
                oldest + timedelta(seconds=GRACE_SECONDS + 1) - datetime.now(UTC),
                timedelta(seconds=SWEEP_SECONDS),
            )
            await _wake(conn, tenant_id, batch_id, b["wake_at"], at + due, at)
    if result.recovered:
        b = await repo.get_batch(conn, tenant_id, batch_id)
        assert b is not None
    if b["status"] not in ("scheduled", "running"):
        return
    wake_at = b["wake_at"]
    if wake_at is not None and wake_at <= at:
        await repo.set_wake(conn, tenant_id, batch_id, None)
        wake_at = None
    if b["start_at"] is not None and b["start_at"] > at:
        await _wake(conn, tenant_id, batch_id, wake_at, b["start_at"], at)
        return
    if b["status"] == "scheduled":
        await repo.start_batch(conn, tenant_id, batch_id)
    if b["queued_calls"] + b["retrying_calls"] == 0:
        await maybe_complete(conn, tenant_id, batch_id)
        return

    want = CHUNK
    if b["max_concurrency"] is not None:
        want = min(want, b["max_concurrency"] - b["in_progress_calls"])
    if want <= 0:
        return  # a finishing call enqueues the next tick
    await repo.lock_tenant_dispatch(conn, tenant_id)
    load = await repo.tenant_load(conn, tenant_id)
    cap, reserved = _tenant_caps(runtime, load)
    tenant_free = cap - reserved - load["live_calls"]
    if tenant_free <= 0:
        await _wake(conn, tenant_id, batch_id, wake_at, at + TENANT_FULL_RETRY, at)
        return
    want = min(want, tenant_free)

    window = policy.Window.from_json(b["calling_window"])
    state = policy.window_state(window, b["timezones"], at)
    if window is not None and not state.open_zones:
        await _wake(conn, tenant_id, batch_id, wake_at, state.next_open, at)
        return
    numbers = [n for n in await _numbers(conn, tenant_id, b) if n["status"] == "active"]
    if not numbers:
        log.warning("batch paused: none of its from-numbers is active", extra={"batch": str(batch_id)})
        await repo.set_status(conn, tenant_id, batch_id, "paused")
        return

    # Leads who opted out since the batch was created are skipped here; claim again for the places they took.
    callable_rows: list[asyncpg.Record] = []
    exhausted = False
    while len(callable_rows) < want and not exhausted:
        asked = want - len(callable_rows)
        rows = await repo.claim_entries(
            conn,
            tenant_id,
            batch_id,
            at,
            None if window is None else state.open_zones,
            asked,
            exclude=[r["id"] for r in callable_rows],
        )
        exhausted = len(rows) < asked
        blocked = [r["id"] for r in rows if r["do_not_call"]]
        callable_rows += [r for r in rows if not r["do_not_call"]]
        if blocked:
            await repo.skip_entries(
                conn, tenant_id, blocked, "do_not_call", "the lead asked not to be called"
            )
            result.skipped += len(blocked)
        else:
            break

    taken = 0
    pacing_wait: datetime | None = None
    if callable_rows:
        keys = [[f"number:{n['id']}", f"account:{n['provider']}"] for n in numbers]
        rates: dict[str, float] = {}
        for n, (number_key, account_key) in zip(numbers, keys, strict=True):
            rates[number_key] = float(
                b["calls_per_second"] or policy.PROVIDER_DEFAULT_CPS.get(n["provider"], 0.0)
            )
            rates[account_key] = _account_cps(runtime, n["provider"])
        paced = [k for k, r in rates.items() if r > 0]
        next_free: dict[str, datetime | None] = dict(await repo.lock_pacing(conn, paced))
        before = dict(next_free)
        slots = policy.plan_slots(
            len(callable_rows),
            numbers=keys,
            rates=rates,
            next_free=next_free,
            start_index=b["rotation"],
            now=at,
            horizon=PACING_HORIZON,
        )
        await _create_calls(
            conn, runtime, tenant_id, b, callable_rows[: len(slots)], slots, numbers, lease, result
        )
        taken = len(slots)
        await repo.update_pacing(
            conn, {k: v for k, v in next_free.items() if v is not None and v != before.get(k)}
        )
        await repo.after_claim(conn, tenant_id, batch_id, taken)
        if b["started_at"] is None:  # after_claim just set it
            await batch_events.batch_started(conn, tenant_id, batch_id)
        if taken < len(callable_rows):
            pacing_wait = min((v for k, v in next_free.items() if k in paced and v is not None), default=at)
    result.claimed = taken

    capacity_left = (
        b["max_concurrency"] is None or b["in_progress_calls"] + taken < b["max_concurrency"]
    ) and tenant_free - taken > 0
    if pacing_wait is not None:
        await _wake(conn, tenant_id, batch_id, wake_at, pacing_wait, at)
    elif not exhausted and capacity_left:
        await enqueue(conn, JOB, payload(tenant_id, batch_id))
    elif exhausted:
        # Nothing more is due now: come back for the next start/retry time or window opening.
        nxt = await repo.next_due(conn, tenant_id, batch_id, at)
        if state.next_open is not None and (nxt is None or state.next_open < nxt):
            nxt = state.next_open
        await _wake(conn, tenant_id, batch_id, wake_at, nxt, at)
    if result.skipped and not taken:
        await maybe_complete(conn, tenant_id, batch_id)


async def _numbers(conn: asyncpg.Connection, tenant_id: uuid.UUID, b: asyncpg.Record) -> list[asyncpg.Record]:
    ids = list(b["from_number_ids"])
    rows = {r["id"]: r for r in await repo.numbers_by_ids(conn, tenant_id, ids)}
    return [rows[i] for i in ids if i in rows]


async def _create_calls(
    conn: asyncpg.Connection,
    runtime: Runtime,
    tenant_id: uuid.UUID,
    b: asyncpg.Record,
    rows: list[asyncpg.Record],
    slots: list[policy.Slot],
    numbers: list[asyncpg.Record],
    lease: int,
    result: TickResult,
) -> None:
    entry_ids: list[uuid.UUID] = []
    call_ids: list[uuid.UUID] = []
    base_vars: Mapping[str, Any] = b["variables"] or {}
    for row, slot in zip(rows, slots, strict=True):
        ref = await create_call(
            conn,
            listeners=runtime.call_listeners,
            tenant_id=tenant_id,
            initiated_by_user_id=b["initiated_by_user_id"],
            agent_id=b["agent_id"],
            from_number=numbers[slot.number_index],
            to_e164=row["phone"],
            lead_id=row["lead_id"],
            voice_id=b["voice_id"],
            variables={**base_vars, **(row["variables"] or {})},
            batch_id=b["id"],
            batch_entry_id=row["id"],
            attempt=row["attempts"] + 1,
        )
        entry_ids.append(row["id"])
        call_ids.append(ref.id)
        result.placements.append(Placement(ref, row["id"], slot.at))
    await repo.mark_dialing(conn, tenant_id, entry_ids, call_ids, lease)


async def _wake(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    current: datetime | None,
    at: datetime | None,
    now_: datetime,
) -> None:
    """Make sure a tick runs at `at`: a delayed job, unless one is already due no later than that."""
    if at is None or (current is not None and now_ < current <= at):
        return
    await repo.set_wake(conn, tenant_id, batch_id, at)
    await enqueue(conn, JOB, payload(tenant_id, batch_id), delay=max(at - now_, timedelta(0)))


# --- placing ---


async def _place_all(
    runtime: Runtime, tenant_id: uuid.UUID, batch_id: uuid.UUID, placements: list[Placement]
) -> None:
    placer = _placer(runtime)
    async with asyncio.TaskGroup() as tg:
        for p in placements:
            tg.create_task(_place_one(runtime, placer, tenant_id, batch_id, p))


async def _place_one(
    runtime: Runtime, placer: Placer, tenant_id: uuid.UUID, batch_id: uuid.UUID, p: Placement
) -> None:
    wait = (p.at - now()).total_seconds()
    if wait > 0:
        await asyncio.sleep(wait)
        # Cancelling stops dialling at once, calls claimed for a later pacing slot included.
        async with tenant_tx(runtime.pool, tenant_id) as conn:
            b = await repo.get_batch(conn, tenant_id, batch_id)
            if b is None or b["status"] == "cancelled":
                await end_unplaced(
                    conn, tenant_id, p.ref.id, p.ref.created_at, "cancelled", "batch_cancelled"
                )
                return
    try:
        await placer(runtime, p.ref)
    except Exception:
        # place_call ends the call itself on any failure before re-raising; this covers a placer that did not.
        log.exception("placing a batch call failed", extra={"call": str(p.ref.id), "batch": str(batch_id)})
        async with tenant_tx(runtime.pool, tenant_id) as conn:
            await end_unplaced(conn, tenant_id, p.ref.id, p.ref.created_at, "failed", "dispatch_error")


async def end_unplaced(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    status: str,
    end_reason: str,
) -> bool:
    """End a call that was never placed and apply the result to its entry (lock order: call, then batch)."""
    call = await calls_repo.attempt_state(conn, tenant_id, call_id, created_at, lock=True)
    if call is None or call["status"] != "pending" or call["provider_call_id"] is not None:
        return False
    if not await calls_repo.end_unplaced(conn, tenant_id, call_id, created_at, status, end_reason):
        return False
    await call_ended(conn, tenant_id, call_id, created_at)
    await _billing_progress(conn, tenant_id, call_id, created_at)
    await attempt_ended(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)
    return True


async def _billing_progress(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID, created_at: datetime
) -> None:
    """The call ended here, not through the calls domain: billing's post-call trigger runs as it would there."""
    await billing.on_call_progress(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)


# --- attempt results (also reached from hooks.on_call_final) ---


async def _recover(conn: asyncpg.Connection, tenant_id: uuid.UUID, b: asyncpg.Record, at: datetime) -> int:
    rows = await repo.interrupted_claims(
        conn, tenant_id, b["id"], grace_seconds=GRACE_SECONDS, stuck_seconds=STUCK_SECONDS
    )
    recovered = 0
    for r in rows:
        if await calls_repo.end_unplaced(
            conn, tenant_id, r["call_id"], r["call_created_at"], "failed", "dispatch_interrupted"
        ):
            log.warning(
                "batch call claimed by a dispatcher that is gone: ended as dispatch_interrupted",
                extra={"batch": str(b["id"]), "entry": str(r["entry_id"]), "call": str(r["call_id"])},
            )
            await call_ended(conn, tenant_id, r["call_id"], r["call_created_at"])
            await _billing_progress(conn, tenant_id, r["call_id"], r["call_created_at"])
            await attempt_ended(
                conn, tenant_id=tenant_id, call_id=r["call_id"], call_created_at=r["call_created_at"], at=at
            )
            recovered += 1
    return recovered


_MESSAGES = {
    "answered": "answered",
    "voicemail": "voicemail",
    "no_answer": "no answer",
    "busy": "busy",
    "failed": "the call failed",
    "cancelled": "the call was cancelled",
    "dispatch_interrupted": "the dispatcher stopped while placing the call; not placed again for this attempt",
}


def _attempt_message(outcome: str, end_reason: str | None, detail: str | None) -> str:
    """Why an attempt did not complete, in words: the outcome, then the call's end reason and its detail."""
    if outcome == "failed" and end_reason in policy.SERVICE_FAILURES:
        message = "the agent could not speak to the callee"
    else:
        message = _MESSAGES.get(outcome, outcome)
    if end_reason and end_reason not in (outcome, "busy", "no_answer"):
        message = f"{message} ({end_reason}{': ' + detail if detail else ''})"
    return message[:1000]


async def attempt_ended(
    conn: asyncpg.Connection,
    *,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    call_created_at: datetime,
    at: datetime | None = None,
) -> None:
    """Apply a call's terminal status to its batch entry (idempotent: only the entry's current attempt counts)."""
    call = await calls_repo.attempt_state(conn, tenant_id, call_id, call_created_at)
    if call is None or call["batch_id"] is None or call["batch_entry_id"] is None:
        return
    b = await repo.get_batch(conn, tenant_id, call["batch_id"], lock=True)
    if b is None:
        return
    e = await repo.lock_entry(conn, tenant_id, call["batch_entry_id"])
    if e is None or e["last_call_id"] != call_id or e["status"] not in ("dialing", "in_progress"):
        return
    if call["status"] not in ("ended", "declined", "cancelled", "failed"):
        return
    outcome = policy.classify(
        call["status"], call["answered_by"], call["end_reason"], agent_spoke=call["agent_spoke"]
    )
    at = at or now()
    decision = policy.after_attempt(
        outcome,
        attempts=e["attempts"],
        policy=policy.RetryPolicy.from_json(b["retry_policy"]),
        do_not_call=e["do_not_call"],
        batch_status=b["status"],
        now=at,
    )
    message = None
    if decision.status != "completed":
        message = _attempt_message(outcome, call["end_reason"], call["end_reason_detail"])
    await repo.finish_attempt(
        conn,
        tenant_id,
        e["id"],
        status=decision.status,
        outcome=outcome,
        next_attempt_at=decision.next_attempt_at,
        error_message=message,
    )
    await batch_events.batch_progress(conn, tenant_id, b["id"])
    if b["status"] not in ("scheduled", "running"):
        await maybe_complete(conn, tenant_id, b["id"])
        return
    if decision.status == "retrying":
        await _wake(conn, tenant_id, b["id"], b["wake_at"], decision.next_attempt_at, at)
    elif b["queued_calls"] + b["retrying_calls"] > 0:
        await enqueue(conn, JOB, payload(tenant_id, b["id"]))  # a slot is free
    else:
        await maybe_complete(conn, tenant_id, b["id"])


async def maybe_complete(conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> bool:
    """Complete the batch (and release its wallet reservation) when no entry is waiting or live. The batch row is
    locked first: two transactions finishing its last calls (or a dispatch run and a call's end) complete it once."""
    b = await repo.get_batch(conn, tenant_id, batch_id, lock=True)
    if b is None:
        return False
    if b["queued_calls"] + b["retrying_calls"] + b["in_progress_calls"] > 0:
        return False
    if b["status"] in ("scheduled", "running", "paused"):
        done = await repo.set_status(conn, tenant_id, batch_id, "completed", finished=True)
        await batch_events.batch_completed(conn, tenant_id, done)
    if b["status"] != "completed":
        await release_reservation(conn, tenant_id, batch_id)
    return True


async def release_reservation(conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> None:
    await wallet.release_batch_reservation(conn, tenant_id=tenant_id, batch_id=batch_id)
