"""The post-call pipeline's trigger and its billing step: cost breakdown, usage event, ledger debit, outbox event.

A call is final when it has the provider's final status and either its media ended or it never had media
(declined / cancelled / failed, or never answered). The calls domain calls `on_call_progress` (its listener
`on_progress`) in its own transaction whenever it sets `media_ended_at` or `provider_final_at`; the job is
enqueued in that transaction with the dedupe key `post_call:<call id>`. `schedule_finalize_timeout` finalises
anyway if one end never comes.

`finalize_call` does everything in ONE transaction, holding the call row's lock: price the usage meter (catalog
rows effective at the call's start, tenant rows over global ones), write the breakdown on the call (through the
calls repository), the BILLING_USAGE_EVENTS row (`voice_call:<id>`), the `voice_call.cost_recorded` outbox event,
what the billing listeners add (the call analysis: its pending row and job) and the ledger debit. A crash
anywhere rolls all of it back; a second run finds the usage event and does nothing.
A provider price known at that point (Vonage sends it with the final event) goes in as an adjustment item; one
that arrives later is reconciled by `reconcile_call` as its own adjustment (usage event, ledger row, event).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from analysis.pricing import TRANSFER_LEG, CostBreakdown, CostItem, cost_item_to_json, reconcile_telephony
from analysis.usage import UsageMeter
from voice_service.billing import repository as repo
from voice_service.billing.listeners import BillingListeners
from voice_service.billing.usage import charge, price_meter
from voice_service.calls import repository as calls_repo
from voice_service.enqueue import enqueue
from voice_service.events.outbox import emit
from voice_service.phones import parse_phone

log = logging.getLogger(__name__)

POST_CALL_JOB = "billing.post_call"
RECONCILE_JOB = "billing.reconcile"
FEATURE_KEY = "voice-agent"
NO_MEDIA_STATUSES = frozenset({"declined", "cancelled", "failed"})

# Test hook: awaited after each step of a pipeline run, with the step's name; raising there simulates a crash.
Checkpoint = Callable[[str], Awaitable[None]]


async def no_checkpoint(_: str) -> None:
    return None


def call_payload(
    tenant_id: uuid.UUID, call_id: uuid.UUID, call_created_at: datetime, **extra: Any
) -> dict[str, Any]:
    return {
        "tenant_id": str(tenant_id),
        "call_id": str(call_id),
        "call_created_at": call_created_at.isoformat(),
        **extra,
    }


def parse_payload(payload: dict[str, Any]) -> tuple[uuid.UUID, uuid.UUID, datetime]:
    return (
        uuid.UUID(payload["tenant_id"]),
        uuid.UUID(payload["call_id"]),
        datetime.fromisoformat(payload["call_created_at"]),
    )


async def on_call_progress(
    conn: asyncpg.Connection, *, tenant_id: uuid.UUID, call_id: uuid.UUID, call_created_at: datetime
) -> None:
    """Enqueue the post-call job (in the caller's transaction) once the call is final; otherwise nothing."""
    row = await calls_repo.pipeline_progress(conn, tenant_id, call_id, call_created_at)
    if row is None or row["provider_final_at"] is None:
        return
    if row["billed"]:
        if row["has_provider_price"]:
            await on_provider_price(
                conn, tenant_id=tenant_id, call_id=call_id, call_created_at=call_created_at
            )
        return
    had_media = row["started_at"] is not None and row["status"] not in NO_MEDIA_STATUSES
    if had_media and row["media_ended_at"] is None:
        return
    await enqueue(
        conn,
        POST_CALL_JOB,
        call_payload(tenant_id, call_id, call_created_at),
        dedupe_key=f"post_call:{call_id}",
    )


async def schedule_finalize_timeout(
    conn: asyncpg.Connection,
    *,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    call_created_at: datetime,
    after: timedelta,
) -> None:
    """A delayed post-call job that bills the call even if its media end or final status never arrives."""
    # Its own dedupe key: a queued delayed job under post_call:<id> would swallow the prompt one.
    await enqueue(
        conn,
        POST_CALL_JOB,
        call_payload(tenant_id, call_id, call_created_at, timeout=True),
        dedupe_key=f"post_call_timeout:{call_id}",
        delay=after,
    )


async def on_provider_price(
    conn: asyncpg.Connection, *, tenant_id: uuid.UUID, call_id: uuid.UUID, call_created_at: datetime
) -> None:
    """Call after writing metadata.provider_price on a call: reconciles it if the call was billed already."""
    await enqueue(
        conn,
        RECONCILE_JOB,
        call_payload(tenant_id, call_id, call_created_at),
        dedupe_key=f"reconcile:{call_id}",
    )


def _remote_country(call: asyncpg.Record) -> str | None:
    """ISO country of the other party (telephony rates are per destination / per inbound number country)."""
    phone = parse_phone(call["to_e164"] if call["direction"] == "outbound" else call["from_e164"] or "")
    return phone.region if phone is not None else None


def usage_meter_of(call: asyncpg.Record, *, with_transfer_leg: bool = True) -> UsageMeter:
    metadata = call["metadata"] or {}
    try:
        meter = UsageMeter.from_builtins(metadata.get("usage"))
    except msgspec.ValidationError as exc:
        raise ValueError(f"the call's usage meter (metadata.usage) cannot be read: {exc}") from exc
    t = meter.telephony
    # A call that never reached the conversation engine still has the provider's duration.
    if t is None and call["provider"] and call["duration_seconds"]:
        meter.set_telephony(
            call["provider"],
            float(call["duration_seconds"]),
            direction=call["direction"],
            country=_remote_country(call),
        )
    elif t is not None:
        seconds = t.seconds
        if _transferred(metadata) and call["duration_seconds"]:
            # The engine stopped metering when the call was transferred; the carrier's leg went on until the
            # dialled party hung up: its final duration is what the carrier bills.
            seconds = max(seconds, float(call["duration_seconds"]))
        meter.set_telephony(
            t.provider, seconds, direction=t.direction, country=t.country or _remote_country(call)
        )
    leg = transfer_leg(call)
    if with_transfer_leg and leg is not None:
        meter.add_transfer_leg(leg[0], leg[1], country=leg[2])
    return meter


def _transferred(metadata: dict[str, Any]) -> bool:
    return metadata.get("end_reason") == "transferred" or "transfer_leg" in metadata or "transfer_to" in metadata


def transfer_leg(call: asyncpg.Record) -> tuple[str, float, str | None] | None:
    """(provider, seconds, country) of the transferred call's dialled leg once its final status came; else None."""
    leg = (call["metadata"] or {}).get("transfer_leg") or {}
    if not leg.get("final") or not call["provider"]:
        return None
    phone = parse_phone(str(leg.get("to") or ""))
    return call["provider"], float(leg.get("duration_seconds") or 0), phone.region if phone is not None else None


def _provider_price(call: asyncpg.Record) -> tuple[Decimal, str] | None:
    """metadata.provider_price as {"amount", "currency"} or as a number with metadata.provider_price_currency."""
    metadata = call["metadata"] or {}
    price: Any = metadata.get("provider_price")
    currency = metadata.get("provider_price_currency")
    if isinstance(price, dict):
        price, currency = price.get("amount"), price.get("currency") or currency
    if price is None or price == "":
        return None
    return Decimal(str(price)), str(currency or "USD").upper()


def _with_reconciliation(
    call: asyncpg.Record, breakdown: CostBreakdown
) -> tuple[CostBreakdown, CostItem | None, dict[str, Any] | None]:
    """(breakdown, adjustment item, carrier_price) for the carrier's reported price, if any.

    A price in the breakdown's currency is reconciled: the adjustment item makes the telephony items add up to it.
    A price in another currency cannot be (no exchange rate is kept): it stays beside the estimate in its own
    currency, `carrier_price.reconciled` false with the reason, on the call, its cost event and its usage event."""
    reported = _provider_price(call)
    if reported is None:
        return breakdown, None, None
    amount, currency = reported
    carrier_price: dict[str, Any] = {"amount": _money(abs(amount)), "currency": currency, "reconciled": True}
    if currency != breakdown.currency.upper():
        carrier_price.update(
            reconciled=False,
            reason=(
                f"the carrier reports its price in {currency}; the call is billed in {breakdown.currency}: kept "
                "beside the estimate, not converted"
            ),
        )
        log.info(
            "carrier price in another currency: kept beside the estimate",
            extra={"call_id": str(call["id"]), "currency": currency, "billed_in": breakdown.currency},
        )
        return breakdown, None, carrier_price
    try:
        item = reconcile_telephony(breakdown, amount, currency, provider=call["provider"])
    except ValueError as exc:
        carrier_price.update(reconciled=False, reason=str(exc))
        return breakdown, None, carrier_price
    return (breakdown, None, carrier_price) if item is None else (breakdown.with_item(item), item, carrier_price)


def _money(value: Decimal) -> str:
    return format(value, "f")


@dataclass(frozen=True)
class Billed:
    usage_event_id: uuid.UUID
    total: Decimal
    ledger_id: uuid.UUID | None


async def finalize_call(
    conn: asyncpg.Connection,
    *,
    listeners: BillingListeners,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    call_created_at: datetime,
    checkpoint: Checkpoint = no_checkpoint,
) -> Billed | None:
    """Bill one call (inside the caller's tenant transaction). None when there is no such call or it was billed."""
    call = await calls_repo.get_for_pipeline(conn, tenant_id, call_id, call_created_at, lock=True)
    if call is None:
        log.warning("post-call job for a missing call", extra={"call_id": str(call_id)})
        return None
    if (call["metadata"] or {}).get("billing", {}).get("usage_event_id"):
        return None
    meter = usage_meter_of(call)
    at = call["started_at"] or call["created_at"]
    breakdown, _, carrier_price = _with_reconciliation(call, await price_meter(conn, tenant_id, meter, at))
    items = breakdown.to_json_items()
    await checkpoint("priced")

    key = f"voice_call:{call_id}"
    usage_event_id = await repo.insert_usage_event(
        conn,
        tenant_id,
        user_id=call["initiated_by_user_id"],
        feature_key=FEATURE_KEY,
        usage_items=items,
        total_quantity=Decimal(1),
        total_cost=breakdown.total,
        currency=breakdown.currency,
        idempotency_key=key,
        metadata={
            "call_id": str(call_id),
            "call_created_at": call_created_at.isoformat(),
            "batch_id": None if call["batch_id"] is None else str(call["batch_id"]),
            "usage": meter.to_builtins(),
            "carrier_price": carrier_price,
        },
    )
    if usage_event_id is None:
        return None
    await checkpoint("usage_event")

    await calls_repo.set_cost(
        conn,
        tenant_id,
        call_id,
        call_created_at,
        breakdown=items,
        cost=breakdown.total,
        currency=breakdown.currency,
        billing={
            "usage_event_id": str(usage_event_id),
            "billed_at": datetime.now(UTC).isoformat(),
            "carrier_price": carrier_price,
        },
    )
    await checkpoint("call_updated")

    await emit(
        conn,
        tenant_id=tenant_id,
        event_type="voice_call.cost_recorded",
        aggregate_type="voice_call",
        aggregate_id=call_id,
        payload={
            "call_id": str(call_id),
            "usage_event_id": str(usage_event_id),
            "feature_key": FEATURE_KEY,
            "cost": _money(breakdown.total),
            "currency": breakdown.currency,
            "items": items,
            "status": call["status"],
            "direction": call["direction"],
            "duration_seconds": call["duration_seconds"],
            "agent_id": call["agent_id"],
            "lead_id": None if call["lead_id"] is None else str(call["lead_id"]),
            "batch_id": None if call["batch_id"] is None else str(call["batch_id"]),
            "carrier_price": carrier_price,
        },
    )
    await checkpoint("event")

    await listeners.on_call_billed(
        conn, tenant_id=tenant_id, call_id=call_id, call_created_at=call_created_at, lead_id=call["lead_id"]
    )
    await checkpoint("analysis_enqueued")

    # The wallet row is the one hot row: lock it last, so it is held only for the rest of this transaction.
    ledger_id = await charge(
        conn, tenant_id, usage_event_id, breakdown.total, key, f"voice call {call_id}", call["batch_id"],
        call_id=call_id,
    )
    await checkpoint("charged")
    return Billed(usage_event_id, breakdown.total, ledger_id)


async def _bill_transfer_leg(
    conn: asyncpg.Connection, call: asyncpg.Record, current: CostBreakdown
) -> CostBreakdown:
    """A transfer's dialled leg whose final status came after the call was billed: its items, usage event, ledger
    debit and `voice_call.cost_adjusted` event, like a price adjustment (one transaction, keyed once per call)."""
    tenant_id, call_id = call["tenant_id"], call["id"]
    leg = transfer_leg(call)
    assert leg is not None
    meter = UsageMeter()
    meter.add_transfer_leg(leg[0], leg[1], country=leg[2])
    priced = await price_meter(conn, tenant_id, meter, call["started_at"] or call["created_at"], current.currency)
    key = f"voice_call:{call_id}:transfer_leg"
    items = priced.to_json_items()
    updated = CostBreakdown(items=[*current.items, *priced.items], total=current.total + priced.total,
                            currency=current.currency)
    posted = await _post_adjustment(
        conn, call, updated, key=key, items=items, amount=priced.total,
        usage_metadata={"usage": meter.to_builtins()}, event_fields={"items": items},
        description=f"transferred leg, call {call_id}", transaction_type="debit",
    )
    return updated if posted else current


async def _post_adjustment(
    conn: asyncpg.Connection, call: asyncpg.Record, updated: CostBreakdown, *, key: str,
    items: list[dict[str, Any]], amount: Decimal, usage_metadata: dict[str, Any], event_fields: dict[str, Any],
    description: str, transaction_type: str,
) -> bool:
    """Bill `items` (worth `amount`) on top of a call already billed: a usage event keyed `key`, the call's
    breakdown becomes `updated`, a `voice_call.cost_adjusted` event and the wallet debit. False when `key` was
    posted before (nothing is done twice)."""
    tenant_id, call_id, call_created_at = call["tenant_id"], call["id"], call["created_at"]
    usage_event_id = await repo.insert_usage_event(
        conn,
        tenant_id,
        user_id=call["initiated_by_user_id"],
        feature_key=FEATURE_KEY,
        usage_items=items,
        total_quantity=Decimal(1),
        total_cost=amount,
        currency=updated.currency,
        idempotency_key=key,
        metadata={"call_id": str(call_id), "call_created_at": call_created_at.isoformat(), **usage_metadata},
    )
    if usage_event_id is None:
        return False
    await calls_repo.set_cost(
        conn, tenant_id, call_id, call_created_at, breakdown=updated.to_json_items(), cost=updated.total,
        currency=updated.currency, billing={},
    )
    await emit(
        conn,
        tenant_id=tenant_id,
        event_type="voice_call.cost_adjusted",
        aggregate_type="voice_call",
        aggregate_id=call_id,
        payload={"call_id": str(call_id), "usage_event_id": str(usage_event_id), "adjustment": _money(amount),
                 "cost": _money(updated.total), "currency": updated.currency, **event_fields},
    )
    await charge(conn, tenant_id, usage_event_id, amount, key, description, None, transaction_type=transaction_type)
    return True


async def reconcile_call(
    conn: asyncpg.Connection, *, tenant_id: uuid.UUID, call_id: uuid.UUID, call_created_at: datetime
) -> CostItem | None:
    """Post the difference between the provider's reported price and what the call was billed, if any."""
    call = await calls_repo.get_for_pipeline(conn, tenant_id, call_id, call_created_at, lock=True)
    if call is None or call["cost"] is None:
        return None  # not billed yet: finalize_call includes the provider price itself
    current = CostBreakdown.from_json_items(call["cost_breakdown"], call["currency"] or "USD")
    if transfer_leg(call) is not None and not any(i.leg == TRANSFER_LEG for i in current.items):
        current = await _bill_transfer_leg(conn, call, current)
    updated, item, carrier_price = _with_reconciliation(call, current)
    if carrier_price is not None and carrier_price != (call["metadata"] or {}).get("billing", {}).get("carrier_price"):
        await calls_repo.merge_billing(conn, tenant_id, call_id, call_created_at, {"carrier_price": carrier_price})
    if item is None:
        return None
    n = sum(1 for i in current.items if i.unit == "adjustment") + 1
    item_json = cost_item_to_json(item)
    posted = await _post_adjustment(
        conn, call, updated, key=f"voice_call:{call_id}:adjustment:{n}", items=[item_json], amount=item.cost,
        usage_metadata={"adjustment": n}, event_fields={"item": item_json},
        description=f"provider price adjustment, call {call_id}", transaction_type="adjustment",
    )
    return item if posted else None
