"""The tenant wallet: ledger postings (top-ups, debits, adjustments), reservations and cost estimates.

A reservation holds an estimated cost until it is billed: a batch's (released share by share as its calls are
debited, the rest when it ends) or a single call's (POST /v1/calls, an inbound call: released when the call is
billed). Either is refused with 402 when the available balance cannot cover it and ENFORCE_WALLET_BALANCE is on.

Every change locks the wallet row (SELECT … FOR UPDATE) for the rest of the caller's transaction, so concurrent
postings serialise and each ledger row's balance_before is the previous row's balance_after. Postings are
idempotent by key: posting the same key again returns the first row and changes nothing. The available balance
is current - reserved; current may go negative (calls are billed after they end), reserved may not.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from analysis.pricing import MONEY_QUANTUM, PriceRow, price_usage
from analysis.usage import UsageMeter
from voice_service.billing import repository as repo
from voice_service.db import init_connection
from voice_service.errors import PaymentRequired, ValidationFailed
from voice_service.settings import Settings

ZERO = Decimal(0)


@dataclass(frozen=True)
class Posting:
    ledger: asyncpg.Record
    created: bool  # False: the key had been posted before, nothing changed
    released: Decimal = ZERO  # reservation released together with a debit


def money(value: Decimal | str | int) -> Decimal:
    return Decimal(value).quantize(MONEY_QUANTUM)


async def post(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    transaction_type: str,
    amount: Decimal,
    idempotency_key: str,
    reference_type: str | None = None,
    reference_id: uuid.UUID | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    release_batch: uuid.UUID | None = None,
) -> Posting:
    """Append one ledger row moving `amount` (signed: debits negative) and update the wallet balance.

    `release_batch`: a debit for a call of that batch also releases the call's share of the batch reservation.
    """
    existing = await repo.ledger_by_key(conn, tenant_id, idempotency_key)
    if existing is not None:
        return Posting(existing, created=False)
    amount = money(amount)
    wallet = await repo.lock_wallet(conn, tenant_id)
    before = wallet["current_balance"]
    after = before + amount
    row = await repo.insert_ledger(
        conn,
        tenant_id,
        wallet_id=wallet["id"],
        transaction_type=transaction_type,
        amount=amount,
        balance_before=before,
        balance_after=after,
        reference_type=reference_type,
        reference_id=reference_id,
        idempotency_key=idempotency_key,
        description=description,
        metadata=metadata or {},
    )
    if row is None:  # posted by a concurrent transaction that committed while we waited for the wallet lock
        existing = await repo.ledger_by_key(conn, tenant_id, idempotency_key)
        assert existing is not None
        return Posting(existing, created=False)
    reserved = wallet["reserved_balance"]
    released = ZERO
    if release_batch is not None and amount < 0:
        released = await _release_share(conn, tenant_id, release_batch, -amount)
        reserved -= released
    await repo.set_wallet_balances(conn, tenant_id, wallet["id"], current=after, reserved=reserved)
    return Posting(row, created=True, released=released)


async def _release_share(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID, cost: Decimal
) -> Decimal:
    reservation = await repo.lock_reservation(conn, tenant_id, batch_id)
    if reservation is None or reservation["status"] != "active":
        return ZERO
    share = reservation["per_call"] if reservation["per_call"] is not None else cost
    release: Decimal = min(reservation["remaining"], share)
    if release > 0:
        await repo.update_reservation(
            conn, tenant_id, reservation["id"], remaining=reservation["remaining"] - release, released=False
        )
    return release


async def topup(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    amount: Decimal,
    *,
    idempotency_key: str,
    description: str | None = None,
    reference_type: str = "manual",
    metadata: dict[str, Any] | None = None,
) -> Posting:
    if money(amount) <= 0:
        raise ValidationFailed("a top-up amount must be positive", field="amount")
    return await post(
        conn,
        tenant_id,
        transaction_type="topup",
        amount=amount,
        idempotency_key=idempotency_key,
        reference_type=reference_type,
        description=description,
        metadata=metadata,
    )


def _refusal(what: str, amount: Decimal, wallet: asyncpg.Record) -> PaymentRequired:
    available = wallet["current_balance"] - wallet["reserved_balance"]
    shortfall = amount - available
    return PaymentRequired(
        f"the wallet cannot cover {what}: estimated cost {amount} {wallet['currency']}, available "
        f"balance {money(available)} (balance {wallet['current_balance']}, reserved "
        f"{wallet['reserved_balance']}); top up at least {shortfall} {wallet['currency']}",
        errors=[
            {
                "field": "wallet",
                "message": "insufficient balance",
                "required": str(amount),
                "available": str(money(available)),
                "shortfall": str(shortfall),
                "currency": wallet["currency"],
            }
        ],
    )


async def _reserve(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    amount: Decimal,
    *,
    enforce: bool,
    batch_id: uuid.UUID | None = None,
    call_id: uuid.UUID | None = None,
    n_calls: int | None = None,
) -> asyncpg.Record:
    amount = money(amount)
    if amount < 0:
        raise ValidationFailed("a reservation cannot be negative", field="amount")
    wallet = await repo.lock_wallet(conn, tenant_id)
    existing = (
        await repo.lock_reservation(conn, tenant_id, batch_id)
        if batch_id is not None
        else await repo.lock_call_reservation(conn, tenant_id, call_id)  # type: ignore[arg-type]
    )
    if existing is not None:
        return existing
    if enforce and amount > wallet["current_balance"] - wallet["reserved_balance"]:
        raise _refusal("this batch" if batch_id is not None else "this call", amount, wallet)
    per_call = money(amount / n_calls) if n_calls else None
    row = await repo.insert_reservation(
        conn, tenant_id, wallet_id=wallet["id"], amount=amount, per_call=per_call, batch_id=batch_id,
        call_id=call_id,
    )
    await repo.set_wallet_balances(
        conn,
        tenant_id,
        wallet["id"],
        current=wallet["current_balance"],
        reserved=wallet["reserved_balance"] + amount,
    )
    return row


async def reserve_for_batch(
    conn: asyncpg.Connection,
    *,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    amount: Decimal,
    n_calls: int | None = None,
    enforce: bool = True,
) -> asyncpg.Record:
    """Reserve a batch's estimated cost; 402 when the available balance cannot cover it (and `enforce`).

    Pass settings.enforce_wallet_balance as `enforce`. `n_calls` sets each call's share (amount / n_calls)
    released by its debit; without it a call releases its actual cost. Idempotent per batch.
    """
    return await _reserve(conn, tenant_id, amount, enforce=enforce, batch_id=batch_id, n_calls=n_calls)


async def reserve_for_call(
    conn: asyncpg.Connection, *, tenant_id: uuid.UUID, call_id: uuid.UUID, amount: Decimal, enforce: bool = True
) -> asyncpg.Record:
    """Reserve one call's estimated cost (a call outside any batch); 402 when the available balance cannot cover it
    (and `enforce`). Idempotent per call; the call's billing settles it (`settle_call`)."""
    return await _reserve(conn, tenant_id, amount, enforce=enforce, call_id=call_id)


async def settle_call(conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID) -> Decimal:
    """The call is billed (its debit posted in this transaction): release what its reservation still holds.
    Returns the amount released (0 for a call without a reservation: batch calls, calls from before 0077)."""
    # The reservation row before the wallet (the reverse of _reserve's order) cannot deadlock: only this call's
    # creation and its billing lock this row, never at once; and it spares a zero-cost call without a reservation
    # the wallet's lock.
    reservation = await repo.lock_call_reservation(conn, tenant_id, call_id)
    if reservation is None or reservation["status"] != "active":
        return ZERO
    wallet = await repo.lock_wallet(conn, tenant_id)
    left = reservation["remaining"]
    await repo.update_reservation(conn, tenant_id, reservation["id"], remaining=ZERO, released=True)
    await repo.set_wallet_balances(
        conn,
        tenant_id,
        wallet["id"],
        current=wallet["current_balance"],
        reserved=max(wallet["reserved_balance"] - left, ZERO),
    )
    return left  # type: ignore[no-any-return]


async def reserve_call(
    conn: asyncpg.Connection,
    *,
    settings: Settings,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    provider: str,
    direction: str,
) -> None:
    """The calls domain's `reserve_call` listener: a call placed (POST /v1/calls) or answered (inbound) outside a
    batch reserves the same per-call estimate a batch reserves for each of its calls. Raises PaymentRequired when
    the wallet cannot cover it and ENFORCE_WALLET_BALANCE is on."""
    amount = await estimate_call_cost(
        conn, tenant_id, provider, 1, minutes=ESTIMATE_MINUTES_PER_CALL, settings=settings, direction=direction
    )
    await reserve_for_call(
        conn, tenant_id=tenant_id, call_id=call_id, amount=amount, enforce=settings.enforce_wallet_balance
    )


async def release_batch_reservation(
    conn: asyncpg.Connection, *, tenant_id: uuid.UUID, batch_id: uuid.UUID
) -> Decimal:
    """Release what is left of a batch's reservation (the batch ended); returns the amount released."""
    wallet = await repo.lock_wallet(conn, tenant_id)
    reservation = await repo.lock_reservation(conn, tenant_id, batch_id)
    if reservation is None or reservation["status"] != "active":
        return ZERO
    left: Decimal = reservation["remaining"]
    await repo.update_reservation(conn, tenant_id, reservation["id"], remaining=ZERO, released=True)
    await repo.set_wallet_balances(
        conn,
        tenant_id,
        wallet["id"],
        current=wallet["current_balance"],
        reserved=max(wallet["reserved_balance"] - left, ZERO),
    )
    return left


# What a batch reserves for each of its calls, and a single call for itself: minutes of conversation.
ESTIMATE_MINUTES_PER_CALL = 2

# What one minute of conversation uses, for estimates only: the STT hears the whole call, the agent takes about
# six turns a minute (prompt grows with the history: ~1,500 tokens a turn on average, ~40 tokens answered), and
# speaks ~600 characters. Plus one analysis completion per call.
@dataclass(frozen=True)
class EstimateProfile:
    stt: tuple[str, str] = ("deepgram", "nova-3")
    llm: tuple[str, str] = ("openai", "gpt-4o-mini")
    tts: tuple[str, str] = ("deepgram", "aura-2")
    turns_per_minute: int = 6
    prompt_tokens_per_turn: int = 1500
    completion_tokens_per_turn: int = 40
    tts_characters_per_minute: int = 600
    analysis_prompt_tokens: int = 2500
    analysis_completion_tokens: int = 300
    country: str = "US"  # telephony rates are per country


def estimate_meter(
    provider: str, minutes: float, profile: EstimateProfile, direction: str = "outbound"
) -> UsageMeter:
    meter = UsageMeter()
    seconds = minutes * 60
    meter.set_telephony(provider, seconds, direction=direction, country=profile.country)
    meter.add_stt(*profile.stt, seconds)
    turns = round(profile.turns_per_minute * minutes)
    meter.add_llm(
        *profile.llm,
        turns * profile.prompt_tokens_per_turn + profile.analysis_prompt_tokens,
        turns * profile.completion_tokens_per_turn + profile.analysis_completion_tokens,
    )
    meter.add_tts(*profile.tts, round(profile.tts_characters_per_minute * minutes))
    return meter


async def estimate_call_cost(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    provider: str,
    n_calls: int,
    minutes: float = 2,
    *,
    profile: EstimateProfile | None = None,
    settings: Settings | None = None,
    direction: str = "outbound",
) -> Decimal:
    """Estimated cost of `n_calls` calls of `minutes` each through `provider`, from the catalog in force now."""
    if profile is None:
        profile = EstimateProfile(llm=("openai", settings.openai_model)) if settings else EstimateProfile()
    meter = estimate_meter(provider, minutes, profile, direction)
    now = datetime.now(UTC)
    rows = await repo.catalog_for(
        conn,
        tenant_id,
        at=now,
        categories=["telephony", "stt", "llm", "tts"],
        providers=[provider, profile.stt[0], profile.llm[0], profile.tts[0]],
    )
    breakdown = price_usage(meter, [PriceRow.from_record(r) for r in rows], at=now, tenant_id=tenant_id)
    return money(breakdown.total * n_calls)


async def give_demo_credit(conn: asyncpg.Connection, tenant_id: uuid.UUID, settings: Settings) -> None:
    """Run after bootstrap (composition.AFTER_BOOTSTRAP): the tenant `make run` creates starts with
    settings.demo_credit."""
    amount = money(settings.demo_credit)
    if amount <= 0:
        return
    await init_connection(conn)  # a plain admin connection: give it the pool's jsonb codec
    async with conn.transaction():
        await topup(conn, tenant_id, amount, idempotency_key="demo_credit", description="demo credit")
