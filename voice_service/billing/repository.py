"""SQL for billing: pricing catalog, wallets, the ledger, reservations and usage events (the billing_* tables).

The only module that writes those tables. The call rows the post-call pipeline reads and prices are the calls
repository's (voice_service/calls/repository.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from voice_service.db import fetch_one

CATALOG_COLUMNS = (
    "id, tenant_id, category, provider, model, unit, unit_price, description, effective_from, "
    "effective_to, is_active, metadata, created_at"
)
WALLET_COLUMNS = "id, currency, current_balance, reserved_balance, status, created_at, updated_at"
LEDGER_COLUMNS = (
    "id, wallet_id, transaction_type, amount, balance_before, balance_after, reference_type, "
    "reference_id, idempotency_key, description, metadata, created_at"
)
USAGE_COLUMNS = (
    "id, feature_key, usage_items, total_quantity, total_cost, currency, status, "
    "ledger_transaction_id, charged_at, idempotency_key, metadata, created_at"
)
RESERVATION_COLUMNS = (
    "id, wallet_id, batch_id, call_id, amount, remaining, per_call, status, released_at, created_at"
)

# ---------------------------------------------------------------------------------------------------------------
# Pricing catalog


async def catalog_for(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    at: datetime,
    categories: list[str],
    providers: list[str],
) -> list[asyncpg.Record]:
    """Rows that may price usage at `at`: the tenant's and global ones (analysis.pricing picks among them)."""
    return await conn.fetch(
        f"""
        SELECT {CATALOG_COLUMNS} FROM billing_pricing_catalog
        WHERE (tenant_id IS NULL OR tenant_id = $1) AND is_active
          AND effective_from <= $2 AND (effective_to IS NULL OR effective_to > $2)
          AND category = ANY ($3) AND provider = ANY ($4)
        """,
        tenant_id,
        at,
        categories,
        providers,
    )


async def list_catalog(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID | None,
    *,
    category: str | None,
    provider: str | None,
    include_inactive: bool,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""
        SELECT {CATALOG_COLUMNS} FROM billing_pricing_catalog
        WHERE (tenant_id IS NULL OR tenant_id = $1)
          AND ($2::text IS NULL OR category = $2) AND ($3::text IS NULL OR provider = $3)
          AND ($4 OR (is_active AND (effective_to IS NULL OR effective_to > now())))
        ORDER BY category, provider, model NULLS FIRST, unit, tenant_id NULLS FIRST, effective_from DESC, id
        """,
        tenant_id,
        category,
        provider,
        include_inactive,
    )


async def add_price(conn: asyncpg.Connection, tenant_id: uuid.UUID | None, fields: dict[str, Any]) -> asyncpg.Record:
    """A new catalog row through the platform's function (sql/0076): outside any tenant's transaction, never in the
    past, closing the row it replaces; the app role has no other way to write the catalog."""
    return await fetch_one(
        conn,
        f"""SELECT {CATALOG_COLUMNS} FROM catalog_add_price($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        tenant_id,
        fields["category"],
        fields["provider"],
        fields["model"],
        fields["unit"],
        fields["unit_price"],
        fields["description"],
        fields["effective_from"],
        fields["effective_to"],
        fields["metadata"],
    )


async def end_price(conn: asyncpg.Connection, price_id: uuid.UUID) -> bool:
    """End a catalog row from now on (sql/0076); False when there is none."""
    return bool(await conn.fetchval("SELECT catalog_end_price($1)", price_id))


# ---------------------------------------------------------------------------------------------------------------
# Wallets and the ledger


async def tenant_exists(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1 AND deleted_at IS NULL)", tenant_id
        )
    )


async def get_wallet(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {WALLET_COLUMNS} FROM billing_wallets WHERE tenant_id = $1 AND user_id IS NULL", tenant_id
    )


async def lock_wallet(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> asyncpg.Record:
    """The tenant wallet, locked for this transaction (created on first use)."""
    sql = f"SELECT {WALLET_COLUMNS} FROM billing_wallets WHERE tenant_id = $1 AND user_id IS NULL FOR UPDATE"
    row = await conn.fetchrow(sql, tenant_id)
    if row is None:
        await conn.execute(
            "INSERT INTO billing_wallets (tenant_id) VALUES ($1) "
            "ON CONFLICT (tenant_id) WHERE user_id IS NULL DO NOTHING",
            tenant_id,
        )
        row = await conn.fetchrow(sql, tenant_id)
    assert row is not None
    return row


async def set_wallet_balances(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    wallet_id: uuid.UUID,
    *,
    current: Decimal,
    reserved: Decimal,
) -> None:
    await conn.execute(
        "UPDATE billing_wallets SET current_balance = $3, reserved_balance = $4 WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        wallet_id,
        current,
        reserved,
    )


async def ledger_by_key(conn: asyncpg.Connection, tenant_id: uuid.UUID, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {LEDGER_COLUMNS} FROM billing_ledger_transactions WHERE tenant_id = $1 AND idempotency_key = $2",
        tenant_id,
        key,
    )


async def insert_ledger(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    wallet_id: uuid.UUID,
    transaction_type: str,
    amount: Decimal,
    balance_before: Decimal,
    balance_after: Decimal,
    reference_type: str | None,
    reference_id: uuid.UUID | None,
    idempotency_key: str,
    description: str | None,
    metadata: dict[str, Any],
) -> asyncpg.Record | None:
    """None when a row with this idempotency key exists already."""
    return await conn.fetchrow(
        f"""
        INSERT INTO billing_ledger_transactions
            (tenant_id, wallet_id, transaction_type, amount, balance_before, balance_after, reference_type,
             reference_id, idempotency_key, description, metadata)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
        RETURNING {LEDGER_COLUMNS}
        """,
        tenant_id,
        wallet_id,
        transaction_type,
        amount,
        balance_before,
        balance_after,
        reference_type,
        reference_id,
        idempotency_key,
        description,
        metadata,
    )


async def page_ledger(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, *, limit: int, after: tuple[datetime, str] | None
) -> list[asyncpg.Record]:
    args: list[Any] = [tenant_id, limit + 1]
    cond = ""
    if after is not None:
        args += [after[0], after[1]]
        cond = "AND (created_at, id) < ($3, $4::uuid)"
    return await conn.fetch(
        f"SELECT {LEDGER_COLUMNS} FROM billing_ledger_transactions WHERE tenant_id = $1 {cond} "
        f"ORDER BY created_at DESC, id DESC LIMIT $2",
        *args,
    )


# ---------------------------------------------------------------------------------------------------------------
# Reservations


async def lock_reservation(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {RESERVATION_COLUMNS} FROM billing_wallet_reservations WHERE tenant_id = $1 AND batch_id = $2 "
        f"FOR UPDATE",
        tenant_id,
        batch_id,
    )


async def lock_call_reservation(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {RESERVATION_COLUMNS} FROM billing_wallet_reservations WHERE tenant_id = $1 AND call_id = $2 "
        f"FOR UPDATE",
        tenant_id,
        call_id,
    )


async def insert_reservation(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    wallet_id: uuid.UUID,
    amount: Decimal,
    per_call: Decimal | None,
    batch_id: uuid.UUID | None = None,
    call_id: uuid.UUID | None = None,
) -> asyncpg.Record:
    """A batch's reservation (batch_id) or one call's (call_id)."""
    return await fetch_one(
        conn,
        f"INSERT INTO billing_wallet_reservations (tenant_id, wallet_id, batch_id, call_id, amount, remaining, "
        f"per_call) VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING {RESERVATION_COLUMNS}",
        tenant_id,
        wallet_id,
        batch_id,
        call_id,
        amount,
        per_call,
    )


async def update_reservation(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    reservation_id: uuid.UUID,
    *,
    remaining: Decimal,
    released: bool,
) -> None:
    await conn.execute(
        "UPDATE billing_wallet_reservations SET remaining = $3, "
        "status = CASE WHEN $4 THEN 'released' ELSE status END, "
        "released_at = CASE WHEN $4 THEN now() ELSE released_at END "
        "WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        reservation_id,
        remaining,
        released,
    )


async def active_reservations(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {RESERVATION_COLUMNS} FROM billing_wallet_reservations "
        f"WHERE tenant_id = $1 AND status = 'active' ORDER BY created_at",
        tenant_id,
    )


# ---------------------------------------------------------------------------------------------------------------
# Usage events


async def insert_usage_event(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    user_id: uuid.UUID | None,
    feature_key: str,
    usage_items: list[dict[str, Any]],
    total_quantity: Decimal,
    total_cost: Decimal,
    currency: str,
    idempotency_key: str,
    metadata: dict[str, Any],
) -> uuid.UUID | None:
    """The new event's id, or None when one with this idempotency key exists already."""
    value: uuid.UUID | None = await conn.fetchval(
        """
        INSERT INTO billing_usage_events
            (tenant_id, user_id, feature_key, usage_items, total_quantity, total_cost, currency, idempotency_key,
             metadata)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
        RETURNING id
        """,
        tenant_id,
        user_id,
        feature_key,
        usage_items,
        total_quantity,
        total_cost,
        currency,
        idempotency_key,
        metadata,
    )
    return value


async def mark_usage_charged(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, event_id: uuid.UUID, ledger_id: uuid.UUID | None
) -> None:
    await conn.execute(
        "UPDATE billing_usage_events SET status = 'charged', ledger_transaction_id = $3, charged_at = now() "
        "WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        event_id,
        ledger_id,
    )


async def page_usage_events(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    feature_key: str | None,
    call_id: uuid.UUID | None,
) -> list[asyncpg.Record]:
    args: list[Any] = [tenant_id, limit + 1, feature_key, None if call_id is None else str(call_id)]
    cond = ""
    if after is not None:
        args += [after[0], after[1]]
        cond = "AND (created_at, id) < ($5, $6::uuid)"
    return await conn.fetch(
        f"SELECT {USAGE_COLUMNS} FROM billing_usage_events WHERE tenant_id = $1 "
        f"AND ($3::text IS NULL OR feature_key = $3) AND ($4::text IS NULL OR metadata ->> 'call_id' = $4) {cond} "
        f"ORDER BY created_at DESC, id DESC LIMIT $2",
        *args,
    )


async def spend_since(conn: asyncpg.Connection, tenant_id: uuid.UUID, since: datetime) -> list[asyncpg.Record]:
    """What the tenant's usage since `since` cost, per currency (usage events that are not voided or failed)."""
    return await conn.fetch(
        """SELECT currency, sum(total_cost) AS total FROM billing_usage_events
           WHERE tenant_id = $1 AND created_at >= $2 AND status IN ('pending', 'charged')
           GROUP BY currency ORDER BY currency""",
        tenant_id,
        since,
    )
