"""Pricing a call's usage meter against the pricing catalog (pure: no database; Decimal only, never float).

Row selection, for one usage line (category, provider, model, direction, country) at instant ``at``:

- a row applies if ``is_active`` and ``effective_from <= at < effective_to`` (``effective_to`` NULL = open), its
  unit is one this category can be priced in, its ``metadata.currency`` (default USD) is the requested currency,
  and its optional ``metadata.direction`` / ``metadata.country`` equal the line's;
- among applicable rows: the tenant's row beats a global row (tenant_id NULL), then the more specific model
  match wins (exact > dated snapshot > glob such as ``aura-2*`` > wildcard NULL or ``'*'``, see
  :func:`model_match`), then a row naming the direction / country beats one that does not, then the
  latest ``effective_from`` wins.

Units:

- telephony: ``minute`` or ``second`` of call time, rounded per call with ``metadata.increment_seconds`` and
  ``metadata.minimum_seconds``. Per-minute telephony rows default to whole started minutes (60/60, as Twilio
  bills); per-second rows to whole seconds (1/1). A call with 0 seconds is not billed.
- stt: ``minute`` or ``second`` of audio, exact (seconds/60, no rounding) unless the row sets an increment.
- llm: ``token``; prompt and completion tokens are two lines, priced by two rows told apart by
  ``metadata.direction`` = ``input`` | ``output`` (a row without a direction prices both). This keeps the unit
  vocabulary of the catalog (record, token, second, minute, character, message) and lets a tenant override only
  one side. Prompt tokens the provider served from its prompt cache are a third line, ``cached_input``, priced by
  the ``direction: cached_input`` row (OpenAI bills them at a discount); the ``input`` line then holds only the
  uncached rest. A model with no cached-input row has its cached tokens priced by its input row: never below the
  input price, never dropped.
- tts: ``character`` (rows quoted per 1,000 characters store the price per character), or ``minute`` /
  ``second`` of synthesized audio for models billed by audio length.

``cost = quantity × unit_price`` rounded to 0.000001 with ROUND_HALF_UP (computed from the exact quantity; the
quantity shown is rounded to 0.000001 when it has more decimals). A line with no applicable row is kept, with
unit_price 0, cost 0 and warning ``no_price``.
"""

from __future__ import annotations

import fnmatch
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any, Protocol, overload

import msgspec

from analysis.usage import UsageMeter

MONEY_QUANTUM = Decimal("0.000001")
QUANTITY_QUANTUM = Decimal("0.000001")
_MS = Decimal("0.001")
_SIXTY = Decimal(60)

CACHED_INPUT = "cached_input"  # llm direction of the prompt tokens served from the provider's prompt cache
# A line whose direction has no price falls back to this direction's price (cached input costs at most the input).
_FALLBACK_DIRECTION = {CACHED_INPUT: "input"}

NO_PRICE = "no_price"
TRANSFER_LEG = "transfer"  # CostItem.leg of the leg a transferred call's carrier dialled
MISSING_QUANTITY = "missing_quantity"  # the matched row's unit needs a quantity the meter did not record

SUPPORTED_UNITS: dict[str, frozenset[str]] = {
    "telephony": frozenset({"minute", "second"}),
    "stt": frozenset({"minute", "second"}),
    "llm": frozenset({"token"}),
    "tts": frozenset({"character", "minute", "second"}),
}


class ColumnRow(Protocol):
    """A table row read by column name: an asyncpg Record or a dict (this module imports no database code)."""

    def __getitem__(self, key: str, /) -> Any: ...
    @overload
    def get(self, key: str, /) -> Any: ...
    @overload
    def get(self, key: str, default: Any, /) -> Any: ...


class PriceRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of billing_pricing_catalog."""

    id: str
    tenant_id: str | None = None
    category: str
    provider: str
    model: str | None = None
    unit: str
    unit_price: Decimal
    effective_from: datetime
    effective_to: datetime | None = None
    is_active: bool = True
    metadata: dict[str, Any] = {}
    description: str | None = None

    @classmethod
    def from_record(cls, rec: ColumnRow) -> PriceRow:
        """From an asyncpg Record / dict of the table's columns (UUIDs become strings; extra columns ignored)."""
        tenant = rec.get("tenant_id")
        return cls(
            id=str(rec["id"]),
            tenant_id=None if tenant is None else str(tenant),
            category=rec["category"],
            provider=rec["provider"],
            model=rec.get("model"),
            unit=rec["unit"],
            unit_price=Decimal(rec["unit_price"]),
            effective_from=rec["effective_from"],
            effective_to=rec.get("effective_to"),
            is_active=rec.get("is_active", True),
            metadata=dict(rec.get("metadata") or {}),
            description=rec.get("description"),
        )


class CostItem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    category: str
    provider: str
    model: str | None
    unit: str
    quantity: Decimal
    unit_price: Decimal
    cost: Decimal
    price_id: str | None = None
    warning: str | None = None
    # Extensions to the {category, provider, model, unit, quantity, unit_price, cost} item, omitted when unset:
    direction: str | None = None  # llm: input | output; telephony: outbound | inbound
    estimated: bool = False  # llm tokens counted by us (cancelled stream)
    leg: str | None = None  # telephony: "transfer" for the leg the carrier dialled when the call was transferred


class CostBreakdown(msgspec.Struct, frozen=True, kw_only=True):
    items: list[CostItem]
    total: Decimal
    currency: str = "USD"

    def to_json_items(self) -> list[dict[str, Any]]:
        """The ``cost_breakdown`` jsonb value: items with decimals as plain strings (never ``1.5E-7``)."""
        return [cost_item_to_json(i) for i in self.items]

    def with_item(self, item: CostItem) -> CostBreakdown:
        """A new breakdown with one more item (e.g. a reconciliation adjustment) and the total recomputed."""
        items = [*self.items, item]
        return CostBreakdown(items=items, total=_total(items), currency=self.currency)

    @classmethod
    def from_json_items(cls, items: Sequence[Mapping[str, Any]], currency: str = "USD") -> CostBreakdown:
        decoded = msgspec.convert(list(items), list[CostItem], strict=False)
        return cls(items=decoded, total=_total(decoded), currency=currency)


def decimal_str(value: Decimal) -> str:
    """Fixed-point string of a Decimal (``str()`` switches to exponent notation below 1e-6)."""
    return format(value, "f")


def cost_item_to_json(item: CostItem) -> dict[str, Any]:
    out: dict[str, Any] = {
        "category": item.category,
        "provider": item.provider,
        "model": item.model,
        "unit": item.unit,
        "quantity": decimal_str(item.quantity),
        "unit_price": decimal_str(item.unit_price),
        "cost": decimal_str(item.cost),
    }
    if item.price_id is not None:
        out["price_id"] = item.price_id
    if item.warning is not None:
        out["warning"] = item.warning
    if item.direction is not None:
        out["direction"] = item.direction
    if item.estimated:
        out["estimated"] = True
    if item.leg is not None:
        out["leg"] = item.leg
    return out


@dataclass(frozen=True, slots=True)
class _Line:
    category: str
    provider: str
    model: str | None
    direction: str | None
    country: str | None
    seconds: Decimal | None = None  # telephony, stt; tts audio seconds
    count: Decimal | None = None  # tokens, characters
    estimated: bool = False
    leg: str | None = None


def _seconds(value: float) -> Decimal:
    # Meters add float seconds frame by frame; millisecond precision is all the audio clock carries.
    return Decimal(repr(float(value))).quantize(_MS, rounding=ROUND_HALF_UP)


def _lines(meter: UsageMeter) -> list[_Line]:
    lines: list[_Line] = []
    t = meter.telephony
    if t is not None:
        lines.append(
            _Line("telephony", t.provider, None, t.direction, t.country, seconds=_seconds(t.seconds))
        )
    for leg in meter.transfer_legs:
        lines.append(
            _Line(
                "telephony", leg.provider, None, leg.direction, leg.country, seconds=_seconds(leg.seconds),
                leg=TRANSFER_LEG,
            )
        )
    for s in meter.stt:
        lines.append(_Line("stt", s.provider, s.model, None, None, seconds=_seconds(s.seconds)))
    for u in meter.llm:
        cached = min(max(u.cached_prompt_tokens, 0), u.prompt_tokens)
        lines.append(
            _Line(
                "llm",
                u.provider,
                u.model,
                "input",
                None,
                count=Decimal(u.prompt_tokens - cached),
                estimated=u.estimated,
            )
        )
        if cached:
            lines.append(
                _Line(
                    "llm", u.provider, u.model, CACHED_INPUT, None, count=Decimal(cached), estimated=u.estimated
                )
            )
        lines.append(
            _Line(
                "llm",
                u.provider,
                u.model,
                "output",
                None,
                count=Decimal(u.completion_tokens),
                estimated=u.estimated,
            )
        )
    for v in meter.tts:
        lines.append(
            _Line(
                "tts",
                v.provider,
                v.model,
                None,
                None,
                seconds=_seconds(v.audio_seconds),
                count=Decimal(v.characters),
            )
        )
    return lines


def _same_tenant(row_tenant: str | None, tenant_id: str | None) -> bool:
    return row_tenant is None or (tenant_id is not None and row_tenant == str(tenant_id))


def select_price(
    catalog: Sequence[PriceRow],
    *,
    category: str,
    provider: str,
    model: str | None,
    at: datetime,
    tenant_id: str | uuid.UUID | None,
    direction: str | None = None,
    country: str | None = None,
    currency: str = "USD",
) -> PriceRow | None:
    """The row that prices one usage line, per the rules in the module docstring (None if none applies)."""
    units = SUPPORTED_UNITS.get(category, frozenset())
    tenant = None if tenant_id is None else str(tenant_id)
    best: PriceRow | None = None
    best_key: tuple[Any, ...] = ()
    for row in catalog:
        if row.category != category or row.provider != provider or row.unit not in units:
            continue
        if (
            not row.is_active
            or row.effective_from > at
            or (row.effective_to is not None and at >= row.effective_to)
        ):
            continue
        if not _same_tenant(row.tenant_id, tenant):
            continue
        model_rank = model_match(row.model, model)
        if model_rank is None:
            continue
        md = row.metadata
        if md.get("currency", "USD") != currency:
            continue
        row_direction = md.get("direction")
        if row_direction is not None and row_direction != direction:
            continue
        row_country = md.get("country")
        if row_country is not None and (country is None or str(row_country).upper() != country.upper()):
            continue
        key = (
            row.tenant_id is not None,
            model_rank,
            row_direction is not None,
            row_country is not None,
            row.effective_from,
            row.id,  # only to make duplicates deterministic
        )
        if best is None or key > best_key:
            best, best_key = row, key
    return best


_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def model_match(row_model: str | None, model: str | None) -> tuple[int, int] | None:
    """How specifically a row's model matches a usage model (higher is better), or None if it does not.

    exact name > dated snapshot of the row's name (``gpt-4o-mini`` prices ``gpt-4o-mini-2024-07-18``, which is
    what the API reports) > glob pattern (``aura-2*``, longer literal part first) > wildcard (NULL or ``*``).
    """
    if row_model is None or row_model == "*":
        return (0, 0)
    if model is None:
        return None
    if row_model == model:
        return (3, 0)
    if "*" in row_model or "?" in row_model:
        if fnmatch.fnmatchcase(model, row_model):
            return (1, len(row_model.replace("*", "").replace("?", "")))
        return None
    if model.startswith(row_model) and _SNAPSHOT_SUFFIX.fullmatch(model[len(row_model) :]):
        return (2, 0)
    return None


def _metadata_decimal(md: Mapping[str, Any], key: str) -> Decimal | None:
    value = md.get(key)
    return None if value is None else Decimal(str(value))


def billable_seconds(seconds: Decimal, row: PriceRow) -> Decimal:
    """Seconds after the row's rounding (increment / minimum); telephony rows have defaults, see module doc."""
    increment = _metadata_decimal(row.metadata, "increment_seconds")
    minimum = _metadata_decimal(row.metadata, "minimum_seconds")
    if row.category == "telephony":
        default = _SIXTY if row.unit == "minute" else Decimal(1)
        increment = default if increment is None else increment
        minimum = increment if minimum is None else minimum
    if seconds <= 0:
        return Decimal(0)
    if increment is not None and increment > 0:
        seconds = (seconds / increment).to_integral_value(rounding=ROUND_CEILING) * increment
    if minimum is not None:
        seconds = max(seconds, minimum)
    return seconds


def _display_quantity(q: Decimal) -> Decimal:
    """At most 6 decimals, no trailing zeros (0.5 not 0.500), integers without exponent (120 not 1.2E+2)."""
    q = q.quantize(QUANTITY_QUANTUM, rounding=ROUND_HALF_UP).normalize()
    return q.quantize(Decimal(1)) if q == q.to_integral_value() else q


def _natural_unit(line: _Line) -> tuple[str, Decimal]:
    if line.category == "llm":
        return "token", line.count or Decimal(0)
    if line.category == "tts":
        return "character", line.count or Decimal(0)
    return "second", line.seconds or Decimal(0)


def _price_line(line: _Line, row: PriceRow | None) -> CostItem:
    if row is None:
        unit, qty = _natural_unit(line)
        return CostItem(
            category=line.category,
            provider=line.provider,
            model=line.model,
            unit=unit,
            quantity=_display_quantity(qty),
            unit_price=Decimal(0),
            cost=Decimal(0).quantize(MONEY_QUANTUM),
            warning=NO_PRICE,
            direction=line.direction,
            estimated=line.estimated,
            leg=line.leg,
        )
    warning = None
    if row.unit in ("minute", "second"):
        seconds = billable_seconds(line.seconds or Decimal(0), row)
        quantity = seconds / _SIXTY if row.unit == "minute" else seconds
        if line.category == "tts" and seconds == 0 and line.count:
            warning = MISSING_QUANTITY
    else:  # token, character
        quantity = line.count or Decimal(0)
    return CostItem(
        category=line.category,
        provider=line.provider,
        model=line.model,
        unit=row.unit,
        quantity=_display_quantity(quantity),
        unit_price=row.unit_price,
        cost=(quantity * row.unit_price).quantize(MONEY_QUANTUM, rounding=ROUND_HALF_UP),
        price_id=row.id,
        warning=warning,
        direction=line.direction,
        estimated=line.estimated,
        leg=line.leg,
    )


def _total(items: Sequence[CostItem]) -> Decimal:
    return sum((i.cost for i in items), Decimal(0)).quantize(MONEY_QUANTUM)


def _row_for(
    line: _Line, catalog: Sequence[PriceRow], at: datetime, tenant_id: str | uuid.UUID | None, currency: str
) -> PriceRow | None:
    directions = [line.direction]
    fallback = _FALLBACK_DIRECTION.get(line.direction) if line.direction is not None else None
    if fallback is not None:
        directions.append(fallback)
    for direction in directions:
        row = select_price(
            catalog,
            category=line.category,
            provider=line.provider,
            model=line.model,
            at=at,
            tenant_id=tenant_id,
            direction=direction,
            country=line.country,
            currency=currency,
        )
        if row is not None:
            return row
    return None


def price_usage(
    meter: UsageMeter,
    catalog: Sequence[PriceRow],
    *,
    at: datetime,
    tenant_id: str | uuid.UUID | None,
    currency: str = "USD",
) -> CostBreakdown:
    """Price every usage line of ``meter`` at instant ``at`` (timezone-aware) for ``tenant_id``."""
    items = [_price_line(line, _row_for(line, catalog, at, tenant_id, currency)) for line in _lines(meter)]
    return CostBreakdown(items=items, total=_total(items), currency=currency)


def reconcile_telephony(
    breakdown: CostBreakdown, provider_price: Decimal, currency: str, *, provider: str | None = None
) -> CostItem | None:
    """The adjustment item when the provider reports what the call really cost, or None if nothing to adjust.

    ``provider_price`` may be negative (Twilio reports charges as ``-0.01400``): its absolute value is the cost.
    The adjustment is the difference against every telephony item already in the breakdown (earlier adjustments
    included, so reconciling twice adds nothing). It is appended (``breakdown.with_item``), never an edit.
    Raises ValueError when the currencies differ (no conversion here) or when the provider is unknown.
    """
    if currency.upper() != breakdown.currency.upper():
        raise ValueError(f"provider price is in {currency}, the breakdown in {breakdown.currency}")
    # The call's own leg: a transferred call's dialled leg is another call of the carrier's, priced apart.
    telephony = [i for i in breakdown.items if i.category == "telephony" and i.leg is None]
    priced = sum((i.cost for i in telephony), Decimal(0))
    actual = abs(Decimal(provider_price)).quantize(MONEY_QUANTUM, rounding=ROUND_HALF_UP)
    diff = actual - priced
    if diff == 0:
        return None
    name = telephony[0].provider if telephony else provider
    if name is None:
        raise ValueError("no telephony item in the breakdown: pass provider=")
    return CostItem(
        category="telephony",
        provider=name,
        model=telephony[0].model if telephony else None,
        unit="adjustment",
        quantity=Decimal(1),
        unit_price=diff,
        cost=diff,
        direction=telephony[0].direction if telephony else None,
    )
