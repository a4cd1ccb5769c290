"""Billing schemas. Money goes out as decimal strings ("0.014000"), never floats; it comes in as a JSON number or
a decimal string and is read exactly (msgspec decodes both into Decimal)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from voice_service.openapi import example

Category = Literal["llm", "stt", "tts", "telephony", "enrichment", "vm_infrastructure"]
Unit = Literal["record", "token", "second", "minute", "character", "message"]


_PRICE = {"id": "1d2c3b4a-5f6e-4d7c-8b9a-0f1e2d3c4b5a", "scope": "global", "category": "telephony",
          "provider": "twilio", "model": None, "unit": "minute", "unit_price": "0.014000",
          "description": "Outbound minute, US", "effective_from": "2025-01-01T00:00:00Z", "effective_to": None,
          "is_active": True, "metadata": {"direction": "outbound", "country": "US", "increment_seconds": 60},
          "created_at": "2025-01-01T00:00:00Z"}


@example(_PRICE)
class Price(msgspec.Struct):
    """A unit price: `scope` global (the list price) or tenant (this tenant's override)."""

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


@example({"items": [_PRICE]})
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


@example({"tenant_id": "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c", "category": "llm", "provider": "openai",
          "model": "gpt-4o-mini", "unit": "token", "unit_price": "0.00000015", "metadata": {"direction": "input"},
          "description": "Negotiated input-token price"})
class PriceCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new price, set by the platform (POST /v1/billing/admin/pricing): for one tenant (`tenant_id`) or global
    (no tenant_id). In force from `effective_from` (default now; never in the past)."""

    category: Annotated[Category, Meta(description="What is priced: llm, stt, tts, telephony, …")]
    provider: Annotated[str, Meta(min_length=1, max_length=100, examples=["openai"],
                                  description="The provider priced.")]
    unit: Annotated[Unit, Meta(description="What `unit_price` is per.")]
    unit_price: Annotated[Decimal, Meta(description="Price per unit, a JSON number or a decimal string (read "
                                                    "exactly).", examples=["0.00000015"])]
    tenant_id: Annotated[uuid.UUID | None, Meta(description="The tenant whose price this is (it overrides the "
                                                            "global price of the same category, provider, model "
                                                            "and unit); null: a global price.")] = None
    model: Annotated[Annotated[str, Meta(min_length=1, max_length=200)] | None,
                     Meta(description="The model (null: any model of the provider).")] = None
    description: Annotated[Annotated[str, Meta(max_length=2000)] | None, Meta(description="A note for people.")] = None
    effective_from: Annotated[datetime | None, Meta(description="From when it applies; default: now; never in "
                                                                "the past.")] = None
    effective_to: Annotated[datetime | None, Meta(description="Until when; default: open-ended.")] = None
    metadata: Annotated[PriceMetadata, Meta(description="How the price applies: token direction, call direction "
                                                        "and country, rounding.")] = msgspec.field(
        default_factory=PriceMetadata
    )


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


@example({"id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "currency": "USD", "current_balance": "25.000000",
          "reserved_balance": "4.000000", "available_balance": "21.000000", "status": "active",
          "enforce_balance": True, "reservations": []})
class Wallet(msgspec.Struct):
    """The tenant's wallet. Amounts are decimal strings."""

    id: uuid.UUID | None
    currency: str
    current_balance: str
    reserved_balance: str
    available_balance: str
    status: str
    enforce_balance: bool
    reservations: list[Reservation]


_LEDGER = {"id": "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e", "transaction_type": "debit", "amount": "-0.042310",
           "balance_before": "25.000000", "balance_after": "24.957690", "reference_type": "usage_event",
           "reference_id": "8c7b6a59-4837-4261-9504-a3b2c1d0e9f8", "idempotency_key": "voice_call:0190a6f2",
           "description": "call 0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b", "created_at": "2025-03-04T15:22:55Z"}


@example(_LEDGER)
class LedgerTransaction(msgspec.Struct):
    """One immutable change of the wallet balance."""

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


@example({"id": "8c7b6a59-4837-4261-9504-a3b2c1d0e9f8", "feature_key": "voice-agent",
          "usage_items": [{"category": "telephony", "provider": "twilio", "model": None, "unit": "minute",
                           "quantity": "3", "unit_price": "0.014000", "cost": "0.042000"}],
          "total_cost": "0.042310", "currency": "USD", "status": "charged",
          "ledger_transaction_id": "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e", "charged_at": "2025-03-04T15:22:55Z",
          "idempotency_key": "voice_call:0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b",
          "call_id": "0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b", "created_at": "2025-03-04T15:22:55Z"})
class UsageEvent(msgspec.Struct):
    """A billed usage: one per call, one per analysis run, one per adjustment."""

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


@example({"tenant_id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f", "amount": "50.00",
          "idempotency_key": "pay_1Pq2Rs3Tu4", "description": "Card payment"})
class TopupCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A credit to a tenant's wallet, from the billing system."""

    tenant_id: Annotated[uuid.UUID, Meta(description="The tenant whose wallet is credited.")]
    amount: Annotated[Decimal, Meta(description="In the wallet's currency; a JSON number or a decimal string.")]
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=200,
                                         description="The payment's id in the billing system: posting it again "
                                                     "returns the first top-up.")]
    description: Annotated[Annotated[str, Meta(max_length=2000)] | None,
                           Meta(description="The ledger row's note.")] = None


@example({"transaction": {**_LEDGER, "transaction_type": "topup", "amount": "50.000000",
                          "balance_before": "24.957690", "balance_after": "74.957690", "reference_type": None,
                          "reference_id": None, "idempotency_key": "topup:pay_1Pq2Rs3Tu4",
                          "description": "Card payment"},
          "created": True, "current_balance": "74.957690"})
class Topup(msgspec.Struct):
    transaction: LedgerTransaction
    created: bool
    current_balance: str
