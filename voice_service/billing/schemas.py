"""Billing schemas. Money goes out as decimal strings ("0.014000"), never floats; it comes in as a JSON number or
a decimal string and is read exactly (msgspec decodes both into Decimal)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Category = Literal["llm", "stt", "tts", "telephony", "enrichment", "vm_infrastructure"]
Unit = Literal["record", "token", "second", "minute", "character", "message"]


class Price(msgspec.Struct):
    id: uuid.UUID
    scope: Literal["global", "tenant"]
    category: str
    provider: str
    model: str | None
    unit: str
    unit_price: str
    description: str | None
    effective_from: datetime
    effective_to: datetime | None
    is_active: bool
    metadata: dict[str, Any]
    created_at: datetime


class PriceList(msgspec.Struct):
    items: list[Price]


class PriceMetadata(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How the row applies (see analysis.pricing): llm rows by token direction, telephony rows by call
    direction / country, with the provider's rounding."""

    direction: Literal["input", "output", "inbound", "outbound"] | None = None
    country: Annotated[str, Meta(pattern=r"^[A-Z]{2}$")] | None = None
    increment_seconds: Annotated[int, Meta(ge=1, le=3600)] | None = None
    minimum_seconds: Annotated[int, Meta(ge=0, le=3600)] | None = None
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$")] | None = None


class PlatformPrice(Price):
    """A price as the platform sees it: whose it is."""

    tenant_id: uuid.UUID | None = None  # None: a global price


class PriceCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new price, set by the platform (POST /v1/billing/admin/pricing): for one tenant (`tenant_id`) or global
    (no tenant_id). In force from `effective_from` (default now; never in the past)."""

    category: Category
    provider: Annotated[str, Meta(min_length=1, max_length=100)]
    unit: Unit
    unit_price: Decimal
    tenant_id: uuid.UUID | None = None
    model: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Meta(max_length=2000)] | None = None
    effective_from: datetime | None = None  # default: now
    effective_to: datetime | None = None
    metadata: PriceMetadata = msgspec.field(default_factory=PriceMetadata)


class Reservation(msgspec.Struct):
    """What a batch (batch_id) or a single call (call_id) holds of the wallet until it is billed."""

    id: uuid.UUID
    batch_id: uuid.UUID | None
    call_id: uuid.UUID | None
    amount: str
    remaining: str
    per_call: str | None
    status: str
    created_at: datetime


class Wallet(msgspec.Struct):
    id: uuid.UUID | None
    currency: str
    current_balance: str
    reserved_balance: str
    available_balance: str
    status: str
    enforce_balance: bool
    reservations: list[Reservation]


class LedgerTransaction(msgspec.Struct):
    id: uuid.UUID
    transaction_type: str
    amount: str
    balance_before: str
    balance_after: str
    reference_type: str | None
    reference_id: uuid.UUID | None
    idempotency_key: str
    description: str | None
    created_at: datetime


class UsageEvent(msgspec.Struct):
    id: uuid.UUID
    feature_key: str
    usage_items: list[dict[str, Any]]
    total_cost: str
    currency: str
    status: str
    ledger_transaction_id: uuid.UUID | None
    charged_at: datetime | None
    idempotency_key: str
    call_id: uuid.UUID | None
    created_at: datetime


class TopupCreate(msgspec.Struct, forbid_unknown_fields=True):
    tenant_id: uuid.UUID
    amount: Decimal
    # The payment's id in the billing system: posting it again returns the first top-up.
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=200)]
    description: Annotated[str, Meta(max_length=2000)] | None = None


class Topup(msgspec.Struct):
    transaction: LedgerTransaction
    created: bool
    current_balance: str
