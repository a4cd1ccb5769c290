"""Rules behind the billing routes: prices (read by tenants, set by the platform), wallet, usage events, ledger,
top-ups."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import asyncpg
import msgspec

from voice_service.auth import Principal
from voice_service.billing import repository as repo
from voice_service.billing import wallet
from voice_service.billing.schemas import (
    LedgerTransaction,
    PlatformPrice,
    Price,
    PriceCreate,
    PriceList,
    Reservation,
    Topup,
    TopupCreate,
    UsageEvent,
    Wallet,
)
from voice_service.db import system_tx, tenant_tx
from voice_service.errors import NotFound, ValidationFailed
from voice_service.pagination import Page, check_limit, decode_cursor, page_from_rows

MAX_UNIT_PRICE = Decimal("1000000")


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _price(row: asyncpg.Record) -> Price:
    return Price(
        id=row["id"],
        scope="global" if row["tenant_id"] is None else "tenant",
        category=row["category"],
        provider=row["provider"],
        model=row["model"],
        unit=row["unit"],
        unit_price=format(row["unit_price"].normalize(), "f"),
        description=row["description"],
        effective_from=row["effective_from"],
        effective_to=row["effective_to"],
        is_active=row["is_active"],
        metadata=row["metadata"],
        created_at=row["created_at"],
    )


async def list_prices(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    category: str | None,
    provider: str | None,
    include_inactive: bool,
) -> PriceList:
    rows = await repo.list_catalog(
        conn, principal.tenant_id, category=category, provider=provider, include_inactive=include_inactive
    )
    return PriceList(items=[_price(r) for r in rows])


# A price may not take effect in the past. A little clock skew between the billing system and this service is
# taken as "now" (the database allows a minute, and starts the price at its own now()).
PAST_TOLERANCE = timedelta(seconds=30)


def _price_fields(data: PriceCreate) -> dict[str, object]:
    try:
        unit_price = data.unit_price.quantize(Decimal("1e-12"))
    except InvalidOperation:
        raise ValidationFailed("unit_price has too many digits", field="unit_price") from None
    if not unit_price.is_finite() or unit_price < 0 or unit_price > MAX_UNIT_PRICE:
        raise ValidationFailed(f"unit_price must be between 0 and {MAX_UNIT_PRICE}", field="unit_price")
    if data.unit_price != 0 and unit_price == 0:
        raise ValidationFailed("unit_price needs more than 12 decimals", field="unit_price")
    now = datetime.now(UTC)
    if data.effective_from is not None:
        if data.effective_from.tzinfo is None:
            raise ValidationFailed(
                "effective_from needs a timezone (e.g. 2025-01-01T00:00:00Z)", field="effective_from"
            )
        if data.effective_from < now - PAST_TOLERANCE:
            raise ValidationFailed(
                "a price cannot take effect in the past: calls already made keep the price they were made at; "
                "leave effective_from out (now) or give a future instant",
                field="effective_from",
            )
    starts = max(data.effective_from or now, now)
    if data.effective_to is not None and (data.effective_to.tzinfo is None or data.effective_to <= starts):
        raise ValidationFailed(
            "effective_to must be a timezone-aware instant after effective_from (and after now)", field="effective_to"
        )
    return {
        "category": data.category,
        "provider": data.provider,
        "model": data.model,
        "unit": data.unit,
        "unit_price": unit_price,
        "description": data.description,
        "effective_from": data.effective_from,
        "effective_to": data.effective_to,
        "metadata": msgspec.to_builtins(data.metadata),
    }


def _platform_price(row: asyncpg.Record) -> PlatformPrice:
    return PlatformPrice(**msgspec.structs.asdict(_price(row)), tenant_id=row["tenant_id"])


async def platform_add_price(pool: asyncpg.Pool, data: PriceCreate) -> PlatformPrice:
    """The platform sets a price (global, or one tenant's) from now on or from a future instant."""
    fields = _price_fields(data)
    if data.tenant_id is not None:
        async with tenant_tx(pool, data.tenant_id) as conn:
            if not await repo.tenant_exists(conn, data.tenant_id):
                raise NotFound("no such tenant", field="tenant_id")
    # Outside any tenant's transaction: the catalog's function refuses to run inside one.
    async with system_tx(pool) as conn:
        return _platform_price(await repo.add_price(conn, data.tenant_id, fields))


async def platform_end_price(pool: asyncpg.Pool, price_id: uuid.UUID) -> None:
    async with system_tx(pool) as conn:
        if not await repo.end_price(conn, price_id):
            raise NotFound("no price with this id")


async def platform_list_prices(
    pool: asyncpg.Pool, tenant_id: uuid.UUID | None, *, category: str | None, provider: str | None,
    include_inactive: bool,
) -> list[PlatformPrice]:
    """The global rows, and `tenant_id`'s own when given (read inside that tenant's transaction)."""
    if tenant_id is None:
        async with system_tx(pool) as conn:
            rows = await repo.list_catalog(conn, None, category=category, provider=provider,
                                           include_inactive=include_inactive)
    else:
        async with tenant_tx(pool, tenant_id) as conn:
            rows = await repo.list_catalog(conn, tenant_id, category=category, provider=provider,
                                           include_inactive=include_inactive)
    return [_platform_price(r) for r in rows]


def _reservation(row: asyncpg.Record) -> Reservation:
    return Reservation(
        id=row["id"],
        batch_id=row["batch_id"],
        call_id=row["call_id"],
        amount=_s(row["amount"]) or "0",
        remaining=_s(row["remaining"]) or "0",
        per_call=_s(row["per_call"]),
        status=row["status"],
        created_at=row["created_at"],
    )


async def get_wallet(conn: asyncpg.Connection, principal: Principal, enforce: bool) -> Wallet:
    row = await repo.get_wallet(conn, principal.tenant_id)
    if row is None:
        zero = "0.000000"
        return Wallet(
            id=None,
            currency="USD",
            current_balance=zero,
            reserved_balance=zero,
            available_balance=zero,
            status="active",
            enforce_balance=enforce,
            reservations=[],
        )
    reservations = await repo.active_reservations(conn, principal.tenant_id)
    return Wallet(
        id=row["id"],
        currency=row["currency"],
        current_balance=format(row["current_balance"], "f"),
        reserved_balance=format(row["reserved_balance"], "f"),
        available_balance=format(row["current_balance"] - row["reserved_balance"], "f"),
        status=row["status"],
        enforce_balance=enforce,
        reservations=[_reservation(r) for r in reservations],
    )


def _ledger(row: asyncpg.Record) -> LedgerTransaction:
    return LedgerTransaction(
        id=row["id"],
        transaction_type=row["transaction_type"],
        amount=format(row["amount"], "f"),
        balance_before=format(row["balance_before"], "f"),
        balance_after=format(row["balance_after"], "f"),
        reference_type=row["reference_type"],
        reference_id=row["reference_id"],
        idempotency_key=row["idempotency_key"],
        description=row["description"],
        created_at=row["created_at"],
    )


async def list_ledger(
    conn: asyncpg.Connection, principal: Principal, limit: int, cursor: str | None
) -> Page[LedgerTransaction]:
    rows = await repo.page_ledger(
        conn, principal.tenant_id, limit=check_limit(limit), after=decode_cursor(cursor) if cursor else None
    )
    return page_from_rows(rows, limit, _ledger)


def _usage(row: asyncpg.Record) -> UsageEvent:
    call_id = (row["metadata"] or {}).get("call_id")
    return UsageEvent(
        id=row["id"],
        feature_key=row["feature_key"],
        usage_items=row["usage_items"],
        total_cost=format(row["total_cost"], "f"),
        currency=row["currency"],
        status=row["status"],
        ledger_transaction_id=row["ledger_transaction_id"],
        charged_at=row["charged_at"],
        idempotency_key=row["idempotency_key"],
        call_id=uuid.UUID(call_id) if call_id else None,
        created_at=row["created_at"],
    )


async def list_usage_events(
    conn: asyncpg.Connection,
    principal: Principal,
    limit: int,
    cursor: str | None,
    *,
    feature_key: str | None,
    call_id: uuid.UUID | None,
) -> Page[UsageEvent]:
    rows = await repo.page_usage_events(
        conn,
        principal.tenant_id,
        limit=check_limit(limit),
        after=decode_cursor(cursor) if cursor else None,
        feature_key=feature_key,
        call_id=call_id,
    )
    return page_from_rows(rows, limit, _usage)


async def admin_topup(conn: asyncpg.Connection, data: TopupCreate) -> Topup:
    if not await repo.tenant_exists(conn, data.tenant_id):
        raise NotFound("no such tenant", field="tenant_id")
    posting = await wallet.topup(
        conn,
        data.tenant_id,
        data.amount,
        idempotency_key=f"topup:{data.idempotency_key}",
        description=data.description,
        metadata={"source": "platform_admin_api"},
    )
    current = await repo.get_wallet(conn, data.tenant_id)
    assert current is not None
    return Topup(
        transaction=_ledger(posting.ledger),
        created=posting.created,
        current_balance=format(current["current_balance"], "f"),
    )


async def spend_since(conn: asyncpg.Connection, principal: Principal, since: datetime) -> dict[str, Decimal]:
    """Usage cost since `since` (the console's "spend today"), per currency."""
    return {r["currency"]: r["total"] for r in await repo.spend_since(conn, principal.tenant_id, since)}
