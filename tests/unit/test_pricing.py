"""Pricing a usage meter against a catalog, the meter format, and the default catalog's SQL twin."""

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from analysis import catalog_default
from analysis.pricing import CostBreakdown, CostItem, PriceRow, price_usage, reconcile_telephony
from analysis.usage import LlmUsage, SttUsage, TelephonyUsage, UsageMeter, decode_meter, encode_meter

TENANT = "7b0c3a52-0a5f-4b1e-9a57-5d0e1f9b2c11"
OTHER_TENANT = "0f3e2d1c-0000-4000-8000-000000000001"
JAN = datetime(2025, 1, 1, tzinfo=UTC)
MAY = datetime(2025, 5, 1, tzinfo=UTC)
JUL = datetime(2025, 7, 1, tzinfo=UTC)
AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def row(id_, category, provider, model, unit, price, *, tenant=None, frm=JAN, to=None, active=True, **md):
    return PriceRow(
        id=id_,
        tenant_id=tenant,
        category=category,
        provider=provider,
        model=model,
        unit=unit,
        unit_price=Decimal(price),
        effective_from=frm,
        effective_to=to,
        is_active=active,
        metadata=md,
    )


CATALOG = [
    row("tw-out", "telephony", "twilio", None, "minute", "0.0140", direction="outbound", country="US"),
    row("tw-in", "telephony", "twilio", None, "minute", "0.0085", direction="inbound", country="US"),
    row(
        "tw-out-tenant", "telephony", "twilio", None, "minute", "0.0120", tenant=TENANT, direction="outbound"
    ),
    row("tw-out-other", "telephony", "twilio", None, "minute", "0.0001", tenant=OTHER_TENANT),
    row(
        "vg-out",
        "telephony",
        "vonage",
        None,
        "minute",
        "0.0139",
        direction="outbound",
        increment_seconds=6,
        minimum_seconds=6,
    ),
    row("dg-n3-old", "stt", "deepgram", "nova-3", "minute", "0.0077"),
    row("dg-n3-may", "stt", "deepgram", "nova-3", "minute", "0.0080", frm=MAY),
    row("dg-n3-future", "stt", "deepgram", "nova-3", "minute", "0.0100", frm=JUL),
    row("dg-n3-expired", "stt", "deepgram", "nova-3", "minute", "0.0001", tenant=TENANT, to=MAY),
    row("dg-n3-inactive", "stt", "deepgram", "nova-3", "minute", "0.0002", tenant=TENANT, active=False),
    row("dg-any", "stt", "deepgram", "*", "minute", "0.0050"),
    row("oa-in", "llm", "openai", "gpt-4o-mini", "token", "0.00000015", direction="input"),
    row("oa-out", "llm", "openai", "gpt-4o-mini", "token", "0.0000006", direction="output"),
    row(
        "oa-out-tenant",
        "llm",
        "openai",
        "gpt-4o-mini",
        "token",
        "0.0000005",
        tenant=TENANT,
        direction="output",
    ),
    row("aura2", "tts", "deepgram", "aura-2*", "character", "0.00003"),
    row("aura1", "tts", "deepgram", "aura*", "character", "0.000015"),
    row("oa-tts", "tts", "openai", "gpt-4o-mini-tts", "minute", "0.015"),
]


def call_meter() -> UsageMeter:
    m = UsageMeter()
    m.set_telephony("twilio", 61.2, direction="outbound", country="US")
    m.add_stt("deepgram", "nova-3", 60.0)
    m.add_stt("deepgram", "nova-3", 35.5)
    m.add_stt("deepgram", "nova-2", 30)
    m.add_llm("openai", "gpt-4o-mini-2024-07-18", 12000, 600)
    m.add_llm("openai", "gpt-4o-mini-2024-07-18", 345, 78)
    m.add_tts("deepgram", "aura-2-thalia-en", 1234)
    m.add_tts("elevenlabs", "eleven_flash_v2_5", 500)
    m.add_tts("openai", "gpt-4o-mini-tts", 300, audio_seconds=20.0)
    return m


def test_breakdown_exact_to_the_micro_unit() -> None:
    b = price_usage(call_meter(), CATALOG, at=AT, tenant_id=TENANT)
    got = [
        (i.category, i.model, i.direction, i.unit, str(i.quantity), str(i.cost), i.price_id, i.warning)
        for i in b.items
    ]
    assert got == [
        # tenant row beats the global US row; 61.2 s rounds up to 2 whole minutes
        ("telephony", None, "outbound", "minute", "2", "0.024000", "tw-out-tenant", None),
        # latest effective row (May) among current ones; 95.5 s = 1.591667 min exact, not rounded
        ("stt", "nova-3", None, "minute", "1.591667", "0.012733", "dg-n3-may", None),
        # wildcard model for a model with no exact row
        ("stt", "nova-2", None, "minute", "0.5", "0.002500", "dg-any", None),
        # the dated snapshot the API reports is priced by the base model's rows; tenant overrides output only
        ("llm", "gpt-4o-mini-2024-07-18", "input", "token", "12345", "0.001852", "oa-in", None),
        ("llm", "gpt-4o-mini-2024-07-18", "output", "token", "678", "0.000339", "oa-out-tenant", None),
        # the longer pattern aura-2* beats aura*
        ("tts", "aura-2-thalia-en", None, "character", "1234", "0.037020", "aura2", None),
        ("tts", "eleven_flash_v2_5", None, "character", "500", "0.000000", None, "no_price"),
        ("tts", "gpt-4o-mini-tts", None, "minute", "0.333333", "0.005000", "oa-tts", None),
    ]
    assert b.total == Decimal("0.083444")
    assert b.currency == "USD"


def test_global_prices_without_tenant_and_other_tenants_rows_ignored() -> None:
    b = price_usage(call_meter(), CATALOG, at=AT, tenant_id=None)
    tel = b.items[0]
    assert (tel.price_id, tel.cost) == ("tw-out", Decimal("0.028000"))
    assert b.items[4].price_id == "oa-out" and b.items[4].cost == Decimal("0.000407")  # 678 × 0.0000006
    # The other tenant's own row (no direction, no country) still beats the more specific global row.
    b2 = price_usage(call_meter(), CATALOG, at=AT, tenant_id=OTHER_TENANT)
    assert b2.items[0].price_id == "tw-out-other"


def test_effective_dates_boundaries() -> None:
    m = UsageMeter()
    m.add_stt("deepgram", "nova-3", 60)
    assert (
        price_usage(m, CATALOG, at=MAY, tenant_id=None).items[0].price_id == "dg-n3-may"
    )  # from is inclusive
    just_before = datetime(2025, 4, 30, 23, 59, 59, tzinfo=UTC)
    assert price_usage(m, CATALOG, at=just_before, tenant_id=TENANT).items[0].price_id == "dg-n3-expired"
    assert (
        price_usage(m, CATALOG, at=MAY, tenant_id=TENANT).items[0].price_id == "dg-n3-may"
    )  # to is exclusive
    assert price_usage(m, CATALOG, at=JUL, tenant_id=None).items[0].price_id == "dg-n3-future"


@pytest.mark.parametrize(
    ("seconds", "minutes", "cost"),
    [
        (0, "0", "0.000000"),
        (1, "1", "0.014000"),
        (60, "1", "0.014000"),
        (60.001, "2", "0.028000"),
        (600, "10", "0.140000"),
    ],
)
def test_twilio_rounds_each_call_up_to_the_minute(seconds, minutes, cost) -> None:
    m = UsageMeter(telephony=TelephonyUsage("twilio", seconds, "outbound", "US"))
    item = price_usage(m, CATALOG, at=AT, tenant_id=None).items[0]
    assert (str(item.quantity), str(item.cost)) == (minutes, cost)


@pytest.mark.parametrize(
    ("seconds", "minutes", "cost"),
    [
        (0, "0", "0.000000"),
        (3, "0.1", "0.001390"),
        (61, "1.1", "0.015290"),
        (66, "1.1", "0.015290"),
        (66.5, "1.2", "0.016680"),
    ],
)
def test_vonage_uses_the_rows_increment_and_minimum(seconds, minutes, cost) -> None:
    m = UsageMeter(telephony=TelephonyUsage("vonage", seconds, "outbound", "US"))
    item = price_usage(m, CATALOG, at=AT, tenant_id=None).items[0]
    assert (item.price_id, str(item.quantity), str(item.cost)) == ("vg-out", minutes, cost)


def test_direction_and_country_must_match() -> None:
    inbound = UsageMeter(telephony=TelephonyUsage("twilio", 30, "inbound", "US"))
    assert price_usage(inbound, CATALOG, at=AT, tenant_id=TENANT).items[0].price_id == "tw-in"
    abroad = UsageMeter(telephony=TelephonyUsage("twilio", 30, "outbound", "GB"))
    item = price_usage(abroad, CATALOG, at=AT, tenant_id=None).items[0]
    assert (item.warning, item.unit, item.quantity, item.cost) == (
        "no_price",
        "second",
        Decimal(30),
        Decimal(0),
    )


def test_missing_audio_length_is_flagged_for_per_minute_tts() -> None:
    m = UsageMeter()
    m.add_tts("openai", "gpt-4o-mini-tts", 300)
    item = price_usage(m, CATALOG, at=AT, tenant_id=None).items[0]
    assert (item.cost, item.warning) == (Decimal("0.000000"), "missing_quantity")


def test_json_items_use_plain_decimal_strings_and_round_trip() -> None:
    b = price_usage(call_meter(), CATALOG, at=AT, tenant_id=None)
    items = b.to_json_items()
    assert items[3] == {
        "category": "llm",
        "provider": "openai",
        "model": "gpt-4o-mini-2024-07-18",
        "unit": "token",
        "quantity": "12345",
        "unit_price": "0.00000015",
        "cost": "0.001852",
        "price_id": "oa-in",
        "direction": "input",
    }
    assert items[6]["warning"] == "no_price" and "price_id" not in items[6]
    assert "E" not in msgspec.json.encode(items).decode()
    again = CostBreakdown.from_json_items(msgspec.json.decode(msgspec.json.encode(items)))
    assert again.items == b.items and again.total == b.total


def test_estimated_tokens_are_separate_entries_and_marked() -> None:
    m = UsageMeter()
    m.add_llm("openai", "gpt-4o-mini", 100, 10)
    m.add_llm("openai", "gpt-4o-mini", 50, 7, estimated=True)
    m.add_llm("openai", "gpt-4o-mini", 1, 1)
    assert m.llm == [
        LlmUsage("openai", "gpt-4o-mini", 101, 11),
        LlmUsage("openai", "gpt-4o-mini", 50, 7, True),
    ]
    items = price_usage(m, CATALOG, at=AT, tenant_id=None).to_json_items()
    assert [i.get("estimated", False) for i in items] == [False, False, True, True]


def test_reconcile_telephony_adds_an_adjustment_once() -> None:
    b = price_usage(call_meter(), CATALOG, at=AT, tenant_id=None)  # twilio priced 0.028000
    adj = reconcile_telephony(b, Decimal("-0.03000"), "USD")  # Twilio reports charges as negative numbers
    assert adj == CostItem(
        category="telephony",
        provider="twilio",
        model=None,
        unit="adjustment",
        quantity=Decimal(1),
        unit_price=Decimal("0.002000"),
        cost=Decimal("0.002000"),
        direction="outbound",
    )
    b2 = b.with_item(adj)
    assert b2.total == b.total + Decimal("0.002") and len(b2.items) == len(b.items) + 1
    assert reconcile_telephony(b2, Decimal("0.03"), "USD") is None
    assert reconcile_telephony(b, Decimal("0.028"), "usd") is None
    lower = reconcile_telephony(b, Decimal("0.0261"), "USD")
    assert lower is not None and lower.cost == Decimal("-0.001900")
    with pytest.raises(ValueError):
        reconcile_telephony(b, Decimal("0.03"), "EUR")


def test_meter_merges_and_decodes_older_rows() -> None:
    m = call_meter()
    assert m.stt[0] == SttUsage("deepgram", "nova-3", 95.5)
    raw = encode_meter(m)
    assert decode_meter(raw) == m
    old = UsageMeter.from_builtins(
        {"telephony": {"provider": "twilio"}, "stt": [{"provider": "d", "model": "n", "x": 1}]}
    )
    assert old.telephony == TelephonyUsage("twilio", 0, "outbound", None)
    assert old.stt == [SttUsage("d", "n", 0)] and old.llm == [] and old.tts == []
    assert UsageMeter.from_builtins(None).is_empty()
    other = UsageMeter()
    other.add_llm("openai", "gpt-4.1-mini", 10, 2)
    m.merge(other)
    assert m.llm[-1] == LlmUsage("openai", "gpt-4.1-mini", 10, 2)


# --- default catalog ---------------------------------------------------------------------------------------------

SQL_FILE = Path(__file__).resolve().parents[2] / "sql" / "0030_default_pricing.sql"


def test_sql_file_is_generated_from_the_python_catalog() -> None:
    assert SQL_FILE.read_text() == catalog_default.render_sql(), (
        "regenerate: .venv/bin/python -m analysis.catalog_default > sql/0030_default_pricing.sql"
    )


def test_default_catalog_rows_are_well_formed() -> None:
    rows = catalog_default.DEFAULT_PRICES
    assert len({r.id for r in rows}) == len(rows)
    for r in rows:
        assert r.tenant_id is None and r.effective_from == JAN and r.is_active
        assert r.description and "http" in r.description or r.provider == "simulator"
        exponent = r.unit_price.as_tuple().exponent
        assert isinstance(exponent, int) and exponent >= -12, r  # fits numeric(24,12)
        assert r.unit_price >= 0
    keys = {(r.category, r.provider, r.model) for r in rows}
    for model in ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4o", "gpt-4.1"):
        assert ("llm", "openai", model) in keys
    for key in [
        ("stt", "deepgram", "nova-3"),
        ("stt", "deepgram", "nova-2"),
        ("tts", "openai", "tts-1"),
        ("tts", "openai", "gpt-4o-mini-tts"),
        ("tts", "elevenlabs", "eleven_flash_v2_5"),
        ("tts", "elevenlabs", "eleven_turbo_v2_5"),
        ("tts", "elevenlabs", "eleven_multilingual_v2"),
    ]:
        assert key in keys


def test_default_catalog_prices_a_typical_call() -> None:
    m = UsageMeter()
    m.set_telephony("twilio", 125, direction="outbound", country="US")  # 3 minutes
    m.add_stt("deepgram", "nova-3", 120)  # 2 minutes
    m.add_llm("openai", "gpt-4o-mini-2024-07-18", 1_000_000, 100_000)
    m.add_tts("deepgram", "aura-2-thalia-en", 2000)
    m.add_tts("cartesia", "sonic-2", 1000)
    m.add_tts("elevenlabs", "eleven_multilingual_v2", 1000)
    sim = UsageMeter(telephony=TelephonyUsage("simulator", 125, "inbound", None))
    b = price_usage(m, catalog_default.DEFAULT_PRICES, at=AT, tenant_id=TENANT)
    assert [str(i.cost) for i in b.items] == [
        "0.042000",  # 3 × 0.0140
        "0.015400",  # 2 × 0.0077
        "0.150000",  # 1M × $0.15/1M
        "0.060000",  # 100k × $0.60/1M
        "0.060000",  # 2k × $0.030/1k
        "0.030000",  # 1k × $0.030/1k
        "0.100000",  # 1k × $0.10/1k
    ]
    assert all(i.warning is None for i in b.items)
    sim_item = price_usage(sim, catalog_default.DEFAULT_PRICES, at=AT, tenant_id=None).items[0]
    assert (sim_item.cost, sim_item.warning) == (Decimal("0.000000"), None)


VERIFIED_SQL_FILE = Path(__file__).resolve().parents[2] / "sql" / "0035_verified_pricing.sql"
TWILIO_OUT = "527bacc6-4c08-5093-9b99-3176c7b46ccb"  # the 0030 row: twilio/outbound/US


def test_verified_pricing_migration_is_generated_from_the_python_catalog() -> None:
    assert VERIFIED_SQL_FILE.read_text() == catalog_default.render_verified_sql(), (
        "regenerate: .venv/bin/python -m analysis.catalog_default 0035 > sql/0035_verified_pricing.sql"
    )


def test_verifications_only_reword_rows_and_cite_their_source() -> None:
    initial = {r.id: r for r in catalog_default.INITIAL_PRICES}
    current = {r.id: r for r in catalog_default.DEFAULT_PRICES}
    verified = catalog_default.VERIFICATIONS
    assert set(current) == set(initial) and verified and set(verified) <= set(initial)
    for row_id, row in current.items():
        before = initial[row_id]
        assert msgspec.structs.replace(row, description=before.description) == before  # no price changed
        if row_id in verified:
            assert row.description == verified[row_id].description != before.description
            assert row.description is not None and len(row.description) <= 2000  # the column's CHECK
            assert "verified against https://" in row.description.lower()
        else:
            assert row.description == before.description
    assert "0.0085/min" in current["61577099-5f1b-5385-8833-9e93951d9655"].description  # twilio inbound
    assert "Approximate, verify" in current[TWILIO_OUT].description  # its rate could not be confirmed


def test_a_price_correction_closes_the_old_row_so_earlier_calls_keep_their_price() -> None:
    fix = {
        TWILIO_OUT: catalog_default.Verification(
            description="corrected, see https://x", unit_price=Decimal("0.013")
        )
    }
    at = catalog_default.VERIFIED_AT
    rows = catalog_default.apply_verifications(catalog_default.INITIAL_PRICES, fix, at)
    closed = next(r for r in rows if r.id == TWILIO_OUT)
    [new] = [r for r in rows if r.id not in {x.id for x in catalog_default.INITIAL_PRICES}]
    assert (closed.unit_price, closed.effective_to) == (Decimal("0.0140"), at)
    assert (new.unit_price, new.effective_from, new.effective_to, new.metadata) == (
        Decimal("0.013"),
        at,
        None,
        closed.metadata,
    )
    meter = UsageMeter()
    meter.set_telephony("twilio", 120, direction="outbound", country="US")
    costs = [
        str(price_usage(meter, rows, at=when, tenant_id=None).items[0].cost)
        for when in (at.replace(year=at.year - 1), at)
    ]
    assert costs == ["0.028000", "0.026000"]

    sql = catalog_default.render_verified_sql(fix, at)
    assert f"SET effective_to = '{at.isoformat()}'\n    WHERE id = '{TWILIO_OUT}'" in sql
    assert (
        f"('{new.id}', NULL, 'telephony', 'twilio', NULL, 'minute', 0.013, 'corrected, see https://x'" in sql
    )
    with pytest.raises(ValueError, match="no migration inserted"):
        catalog_default.render_verified_sql({"00000000-0000-0000-0000-000000000000": fix[TWILIO_OUT]})


# --- cached prompt tokens ----------------------------------------------------------------------------------------

CACHED_SQL_FILE = Path(__file__).resolve().parents[2] / "sql" / "0036_openai_cached_input_pricing.sql"


def test_cached_prompt_tokens_are_priced_at_the_cached_input_rate() -> None:
    # OpenAI's prompt_tokens include the cached ones; only the rest is billed at the full input price.
    m = UsageMeter()
    m.add_llm("openai", "gpt-4o-mini-2024-07-18", 6000, 300, cached_prompt_tokens=4096)
    m.add_llm("openai", "gpt-4o-mini-2024-07-18", 4000, 200, cached_prompt_tokens=3904)
    assert m.llm == [LlmUsage("openai", "gpt-4o-mini-2024-07-18", 10000, 500, cached_prompt_tokens=8000)]
    catalog = [*CATALOG, row("oa-cached", "llm", "openai", "gpt-4o-mini", "token", "0.000000075",
                             direction="cached_input")]
    b = price_usage(m, catalog, at=AT, tenant_id=None)
    got = [(i.direction, str(i.quantity), format(i.unit_price, "f"), str(i.cost), i.price_id) for i in b.items]
    assert got == [
        ("input", "2000", "0.00000015", "0.000300", "oa-in"),
        ("cached_input", "8000", "0.000000075", "0.000600", "oa-cached"),
        ("output", "500", "0.0000006", "0.000300", "oa-out"),
    ]
    assert b.total == Decimal("0.001200")  # 0.001800 if the cached tokens were billed as input


def test_cached_prompt_tokens_without_a_cached_price_are_billed_as_input() -> None:
    # A model with no cached-input row (a self-hosted model, a tenant's own price list): never billed below the
    # input price, and never dropped.
    m = UsageMeter()
    m.add_llm("openai", "gpt-4o-mini", 1000, 10, cached_prompt_tokens=600)
    b = price_usage(m, CATALOG, at=AT, tenant_id=None)
    assert [(i.direction, str(i.quantity), i.price_id, str(i.cost)) for i in b.items] == [
        ("input", "400", "oa-in", "0.000060"),
        ("cached_input", "600", "oa-in", "0.000090"),
        ("output", "10", "oa-out", "0.000006"),
    ]


def test_a_meter_without_cached_tokens_keeps_its_two_llm_lines() -> None:
    m = UsageMeter()
    m.add_llm("openai", "gpt-4o-mini", 1000, 10)
    assert [i.direction for i in price_usage(m, CATALOG, at=AT, tenant_id=None).items] == ["input", "output"]
    assert UsageMeter.from_builtins({"llm": [{"provider": "openai", "model": "x"}]}).llm[0].cached_prompt_tokens == 0


def test_merge_keeps_cached_tokens() -> None:
    m, other = UsageMeter(), UsageMeter()
    other.add_llm("openai", "gpt-4o", 3000, 20, cached_prompt_tokens=2048)
    m.merge(other)
    assert m.llm == [LlmUsage("openai", "gpt-4o", 3000, 20, cached_prompt_tokens=2048)]


def test_default_catalog_has_a_cached_input_price_for_every_openai_model() -> None:
    rows = catalog_default.CACHED_INPUT_PRICES
    models = {r.model for r in catalog_default.DEFAULT_PRICES if r.category == "llm"}
    assert {r.model for r in rows} == models
    inputs = {r.model: r.unit_price for r in catalog_default.DEFAULT_PRICES if r.metadata.get("direction") == "input"}
    for r in rows:
        assert r.metadata == {"direction": "cached_input"} and r.unit == "token" and r.tenant_id is None
        assert 0 < r.unit_price < inputs[r.model], r  # a discount on the model's input price
        assert "https://" in (r.description or "") and "cached" in (r.description or "")
    m = UsageMeter()
    m.add_llm("openai", "gpt-4.1-mini-2025-04-14", 1_000_000, 0, cached_prompt_tokens=800_000)
    b = price_usage(m, [*catalog_default.DEFAULT_PRICES, *rows], at=AT, tenant_id=None)
    assert [str(i.cost) for i in b.items] == [
        "0.080000",  # 200k uncached × $0.40/1M
        "0.080000",  # 800k cached × $0.10/1M
        "0.000000",
    ]


def test_cached_input_sql_file_is_generated_from_the_python_catalog() -> None:
    assert CACHED_SQL_FILE.read_text() == catalog_default.render_cached_input_sql(), (
        "regenerate: .venv/bin/python -m analysis.catalog_default 0036 > sql/0036_openai_cached_input_pricing.sql"
    )
