"""Billing usage: price a usage meter against the catalog, and charge a usage event to the wallet.

The public steps every billed thing goes through (a call in pipeline.py, an analysis run in the call analysis
domain), each inside the caller's transaction; in between, the caller records the BILLING_USAGE_EVENTS row with
`repository.insert_usage_event` (idempotent by key). The charge is idempotent too: its ledger posting is keyed
`debit:<key>`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import asyncpg

from analysis.pricing import CostBreakdown, PriceRow, price_usage
from analysis.usage import UsageMeter
from voice_service.billing import repository as repo
from voice_service.billing import wallet

__all__ = ["charge", "price_meter"]

CATEGORIES = ["telephony", "stt", "llm", "tts"]


async def price_meter(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, meter: UsageMeter, at: datetime, currency: str = "USD"
) -> CostBreakdown:
    """The meter priced with the catalog rows in force at `at` (the tenant's over the global ones)."""
    providers = sorted(
        {
            *(s.provider for s in meter.stt),
            *(u.provider for u in meter.llm),
            *(t.provider for t in meter.tts),
            *([meter.telephony.provider] if meter.telephony else []),
            *(leg.provider for leg in meter.transfer_legs),
        }
    )
    rows = (
        await repo.catalog_for(conn, tenant_id, at=at, categories=CATEGORIES, providers=providers)
        if providers
        else []
    )
    return price_usage(
        meter, [PriceRow.from_record(r) for r in rows], at=at, tenant_id=tenant_id, currency=currency
    )


async def charge(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    usage_event_id: uuid.UUID,
    total: Decimal,
    key: str,
    description: str,
    batch_id: uuid.UUID | None,
    transaction_type: str = "debit",
    *,
    call_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Debit `total` for a usage event (a ledger row keyed `debit:<key>`, releasing the call's share of its batch
    reservation) and mark the event charged; returns the ledger row's id (None for a zero total: nothing posted).
    `call_id`: the billed call, whose own reservation (a call outside a batch) is settled now, whatever the total."""
    ledger_id = None
    if total != 0:
        posting = await wallet.post(
            conn,
            tenant_id,
            transaction_type=transaction_type,
            amount=-total,
            idempotency_key=f"debit:{key}",
            reference_type="usage_event",
            reference_id=usage_event_id,
            description=description,
            release_batch=batch_id,
        )
        ledger_id = posting.ledger["id"]
    if call_id is not None and batch_id is None:
        await wallet.settle_call(conn, tenant_id, call_id)
    await repo.mark_usage_charged(conn, tenant_id, usage_event_id, ledger_id)
    return ledger_id
