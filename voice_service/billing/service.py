"""Rules behind the billing routes: prices, wallet, usage events, ledger, top-ups."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import asyncpg
import msgspec

from voice_service.auth import Principal
from voice_service.billing import repository as repo
from voice_service.billing import wallet
from voice_service.billing.schemas import (
    LedgerTransaction,
    Price,
    PriceCreate,
    PriceList,
    Reservation,
    Topup,
    TopupCreate,
    UsageEvent,
    Wallet,
)
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


async def create_price(conn: asyncpg.Connection, principal: Principal, data: PriceCreate) -> Price:
    try:
        unit_price = data.unit_price.quantize(Decimal("1e-12"))
    except InvalidOperation:
        raise ValidationFailed("unit_price has too many digits", field="unit_price") from None
    if not unit_price.is_finite() or unit_price < 0 or unit_price > MAX_UNIT_PRICE:
        raise ValidationFailed(f"unit_price must be between 0 and {MAX_UNIT_PRICE}", field="unit_price")
    if data.unit_price != 0 and unit_price == 0:
        raise ValidationFailed("unit_price needs more than 12 decimals", field="unit_price")
    effective_from = data.effective_from or datetime.now(UTC)
    if effective_from.tzinfo is None:
        raise ValidationFailed(
            "effective_from needs a timezone (e.g. 2025-01-01T00:00:00Z)", field="effective_from"
        )
    if data.effective_to is not None and (
        data.effective_to.tzinfo is None or data.effective_to <= effective_from
    ):
        raise ValidationFailed(
            "effective_to must be a timezone-aware instant after effective_from", field="effective_to"
        )
    row = await repo.insert_price(
        conn,
        principal.tenant_id,
        {
            "category": data.category,
            "provider": data.provider,
            "model": data.model,
            "unit": data.unit,
            "unit_price": unit_price,
            "description": data.description,
            "effective_from": effective_from,
            "effective_to": data.effective_to,
            "metadata": msgspec.to_builtins(data.metadata),
        },
    )
    return _price(row)


async def deactivate_price(conn: asyncpg.Connection, principal: Principal, price_id: uuid.UUID) -> None:
    if not await repo.deactivate_price(conn, principal.tenant_id, price_id):
        raise NotFound("no price of this tenant with this id (global prices cannot be changed)")


def _reservation(row: asyncpg.Record) -> Reservation:
    return Reservation(
        id=row["id"],
        batch_id=row["batch_id"],
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
