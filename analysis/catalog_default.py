"""The default GLOBAL price catalog (tenant_id NULL), in USD, effective from 2025-01-01.

Prices are providers' published pay-as-you-go list prices as the author knew them for early 2025; none could be
fetched from the build environment, so every description names its source page and says which figures are
approximate. Tenants override any row with their own (negotiated) prices.

Four migrations carry these rows, each generated from this module and kept in sync by a unit test:

    .venv/bin/python -m analysis.catalog_default > sql/0030_default_pricing.sql        (INITIAL_PRICES)
    .venv/bin/python -m analysis.catalog_default 0034 > sql/0034_google_tts_pricing.sql (GOOGLE_TTS_PRICES)
    .venv/bin/python -m analysis.catalog_default 0035 > sql/0035_verified_pricing.sql   (VERIFICATIONS)
    .venv/bin/python -m analysis.catalog_default 0036 > sql/0036_openai_cached_input_pricing.sql
                                                                                     (CACHED_INPUT_PRICES)

0030 and 0034 are applied, so their rows stay as first inserted; what a later check against a stored copy of the
provider's price page found lives in VERIFICATIONS, and DEFAULT_PRICES is the 0030 rows with those findings
applied (the catalog as the database holds it after 0035).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from analysis.pricing import PriceRow

EFFECTIVE_FROM = datetime(2025, 1, 1, tzinfo=UTC)
# Stable ids (uuid5 of category/provider/model/unit/direction/country) so the SQL and Python rows are the same.
_NAMESPACE = uuid.UUID("5f0b3c52-8a61-4f39-9d0e-2f6a8f1f7c11")

_TWILIO = "https://www.twilio.com/en-us/voice/pricing/us"
_VONAGE = "https://www.vonage.com/communications-apis/voice/pricing/"
_DEEPGRAM = "https://deepgram.com/pricing"
_OPENAI = "https://platform.openai.com/docs/pricing"
_ELEVEN = "https://elevenlabs.io/pricing/api"
_CARTESIA = "https://cartesia.ai/pricing"
_GOOGLE_TTS = "https://cloud.google.com/text-to-speech/pricing"
_PER_1K = Decimal(1000)
_PER_1M = Decimal(1_000_000)


def _row_id(
    category: str,
    provider: str,
    model: str | None,
    unit: str,
    direction: str | None = None,
    country: str | None = None,
) -> str:
    key = "|".join([category, provider, model or "", unit, direction or "", country or ""])
    return str(uuid.uuid5(_NAMESPACE, key))


def _row(
    category: str,
    provider: str,
    model: str | None,
    unit: str,
    unit_price: Decimal,
    description: str,
    **metadata: Any,
) -> PriceRow:
    return PriceRow(
        id=_row_id(category, provider, model, unit, metadata.get("direction"), metadata.get("country")),
        tenant_id=None,
        category=category,
        provider=provider,
        model=model,
        unit=unit,
        unit_price=unit_price,
        effective_from=EFFECTIVE_FROM,
        effective_to=None,
        is_active=True,
        metadata=metadata,
        description=description,
    )


def _tokens(model: str, input_per_1m: str, output_per_1m: str) -> list[PriceRow]:
    return [
        _row(
            "llm",
            "openai",
            model,
            "token",
            Decimal(price) / _PER_1M,
            f"OpenAI {model} {side} tokens: ${price} per 1M tokens (standard tier, list price as of 2025-01; "
            f"{_OPENAI}).",
            direction=direction,
        )
        for side, direction, price in (("input", "input", input_per_1m), ("output", "output", output_per_1m))
    ]


# The rows as sql/0030_default_pricing.sql inserted them (applied: never edit a row here, add a VERIFICATION).
INITIAL_PRICES: tuple[PriceRow, ...] = (
    # --- telephony: per minute, rounding in metadata ---
    _row(
        "telephony",
        "twilio",
        None,
        "minute",
        Decimal("0.0140"),
        f"Twilio US outbound voice (make calls), $0.0140/min, each call rounded up to the whole minute; list price "
        f"as of 2025-01 ({_TWILIO}). Approximate, verify.",
        direction="outbound",
        country="US",
        increment_seconds=60,
        minimum_seconds=60,
    ),
    _row(
        "telephony",
        "twilio",
        None,
        "minute",
        Decimal("0.0085"),
        f"Twilio US inbound voice to a local number (receive calls), $0.0085/min, rounded up to the whole minute; "
        f"list price as of 2025-01 ({_TWILIO}). Approximate, verify.",
        direction="inbound",
        country="US",
        increment_seconds=60,
        minimum_seconds=60,
    ),
    _row(
        "telephony",
        "vonage",
        None,
        "minute",
        Decimal("0.0139"),
        f"Vonage Voice API US outbound, ~$0.0139/min billed in 6-second increments (6 s minimum). Approximate, "
        f"verify: rate and increment not confirmed against {_VONAGE} (prices load per country).",
        direction="outbound",
        country="US",
        increment_seconds=6,
        minimum_seconds=6,
    ),
    _row(
        "telephony",
        "vonage",
        None,
        "minute",
        Decimal("0.0064"),
        f"Vonage Voice API US inbound, ~$0.0064/min billed in 6-second increments (6 s minimum). Approximate, "
        f"verify: rate and increment not confirmed against {_VONAGE} (prices load per country).",
        direction="inbound",
        country="US",
        increment_seconds=6,
        minimum_seconds=6,
    ),
    _row(
        "telephony",
        "simulator",
        "*",
        "minute",
        Decimal(0),
        "Built-in call simulator (tests, demos): free, any direction and country.",
        increment_seconds=1,
        minimum_seconds=0,
    ),
    # --- speech to text: per audio minute, exact ---
    _row(
        "stt",
        "deepgram",
        "nova-3",
        "minute",
        Decimal("0.0077"),
        f"Deepgram Nova-3 (monolingual) streaming, $0.0077 per audio minute, pay as you go, as of 2025-01 "
        f"({_DEEPGRAM}). Approximate, verify.",
    ),
    _row(
        "stt",
        "deepgram",
        "nova-2",
        "minute",
        Decimal("0.0058"),
        f"Deepgram Nova-2 streaming, $0.0058 per audio minute, pay as you go, as of 2025-01 ({_DEEPGRAM}). "
        "Approximate, verify.",
    ),
    # --- text to speech ---
    _row(
        "tts",
        "deepgram",
        "aura-2*",
        "character",
        Decimal("0.030") / _PER_1K,
        f"Deepgram Aura-2 TTS, $0.030 per 1,000 characters, pay as you go, as of 2025 ({_DEEPGRAM}). Model is a "
        "pattern: Deepgram model names carry the voice (aura-2-thalia-en). Approximate, verify.",
    ),
    _row(
        "tts",
        "deepgram",
        "aura*",
        "character",
        Decimal("0.015") / _PER_1K,
        f"Deepgram Aura (v1) TTS, $0.015 per 1,000 characters, pay as you go, as of 2025-01 ({_DEEPGRAM}). "
        "Pattern matches aura-<voice>-<lang>; aura-2* is more specific. Approximate, verify.",
    ),
    _row(
        "tts",
        "openai",
        "tts-1",
        "character",
        Decimal("15.00") / _PER_1M,
        f"OpenAI tts-1, $15.00 per 1M characters, as of 2025-01 ({_OPENAI}).",
    ),
    _row(
        "tts",
        "openai",
        "gpt-4o-mini-tts",
        "minute",
        Decimal("0.015"),
        f"OpenAI gpt-4o-mini-tts is billed by tokens ($0.60/1M text input, $12.00/1M audio output); OpenAI "
        f"publishes the equivalent as ~$0.015 per minute of generated audio, used here per audio minute since the "
        f"speech endpoint reports no token usage for raw PCM ({_OPENAI}, as of 2025-03). Estimate, verify.",
        basis="openai_published_estimate",
        text_input_per_1m_tokens="0.60",
        audio_output_per_1m_tokens="12.00",
    ),
    _row(
        "tts",
        "elevenlabs",
        "eleven_flash_v2_5",
        "character",
        Decimal("0.05") / _PER_1K,
        f"ElevenLabs Flash v2.5 via API, $0.05 per 1,000 characters (API list price, 2025; {_ELEVEN}). "
        "Approximate, verify (plan-dependent).",
    ),
    _row(
        "tts",
        "elevenlabs",
        "eleven_turbo_v2_5",
        "character",
        Decimal("0.05") / _PER_1K,
        f"ElevenLabs Turbo v2.5 via API, $0.05 per 1,000 characters (API list price, 2025; {_ELEVEN}). "
        "Approximate, verify (plan-dependent).",
    ),
    _row(
        "tts",
        "elevenlabs",
        "eleven_multilingual_v2",
        "character",
        Decimal("0.10") / _PER_1K,
        f"ElevenLabs Multilingual v2 via API, $0.10 per 1,000 characters (API list price, 2025; {_ELEVEN}). "
        "Approximate, verify (plan-dependent).",
    ),
    _row(
        "tts",
        "cartesia",
        "sonic*",
        "character",
        Decimal("0.030") / _PER_1K,
        f"Cartesia Sonic (1 credit per character; ~$0.030 per 1,000 characters at the Scale plan's credit price, "
        f"2025; {_CARTESIA}). Cartesia sells credit plans, not a per-character list price: approximate, verify.",
    ),
    # --- LLM: input and output tokens as two rows ---
    *_tokens("gpt-4o-mini", "0.15", "0.60"),
    *_tokens("gpt-4.1-mini", "0.40", "1.60"),
    *_tokens("gpt-4o", "2.50", "10.00"),
    *_tokens("gpt-4.1", "2.00", "8.00"),
)


def _google_tts(model: str, per_1m: str, tier: str, note: str = "") -> PriceRow:
    return _row(
        "tts",
        "google",
        model,
        "character",
        Decimal(per_1m) / _PER_1M,
        f"Google Cloud Text-to-Speech {tier}, ${per_1m} per 1M characters after the monthly free tier, list "
        f"price as of 2025 ({_GOOGLE_TTS}).{note} Approximate, verify.",
    )


# Added after 0030 was applied, so they have their own migration (sql/0034_google_tts_pricing.sql, generated
# with `python -m analysis.catalog_default 0034`). Google prices by voice tier, which the voice name carries
# (en-US-Neural2-F): the adapter meters usage under the voice name, and these globs pick the tier.
GOOGLE_TTS_PRICES: tuple[PriceRow, ...] = (
    _google_tts("*-Standard-*", "4.00", "Standard voices"),
    _google_tts("*-Wavenet-*", "4.00", "WaveNet voices", " WaveNet was $16 per 1M before Google cut it."),
    _google_tts("*-Neural2-*", "16.00", "Neural2 voices"),
    _google_tts("*-Chirp3-HD-*", "30.00", "Chirp 3: HD voices"),
    _google_tts("*-Studio-*", "160.00", "Studio voices"),
    _google_tts(
        "*",
        "16.00",
        "voice of an unrecognised tier (Polyglot, News, Casual, Chirp HD, or no voice name recorded)",
        " Priced as Neural2, the common middle tier.",
    ),
)


# Added after 0030 and 0035 were applied: sql/0036_openai_cached_input_pricing.sql (generated with
# `python -m analysis.catalog_default 0036`). OpenAI bills prompt tokens served from its automatic prompt cache
# (usage.prompt_tokens_details.cached_tokens) at a discount; these rows price them. They start with the catalog
# (EFFECTIVE_FROM): OpenAI's cached-input prices date from its prompt-caching launch (2024-10), and no call billed
# before this migration carries a cached-input line, so no past bill changes.
_OPENAI_PRICING = "https://developers.openai.com/api/docs/pricing"
_OPENAI_CACHING = "https://platform.openai.com/docs/guides/prompt-caching"


def _cached_input(model: str, per_1m: str, input_per_1m: str) -> PriceRow:
    return _row(
        "llm",
        "openai",
        model,
        "token",
        Decimal(per_1m) / _PER_1M,
        f"OpenAI {model} cached input tokens (prompt tokens served from the prompt cache, reported in "
        f"usage.prompt_tokens_details.cached_tokens; {_OPENAI_CACHING}): ${per_1m} per 1M tokens against "
        f"${input_per_1m} for uncached input (standard tier; {_OPENAI_PRICING}, also {_OPENAI}). No stored copy "
        "of OpenAI's own price page states this figure; approximate, verify.",
        direction="cached_input",
    )


CACHED_INPUT_PRICES: tuple[PriceRow, ...] = (
    _cached_input("gpt-4o-mini", "0.075", "0.15"),
    _cached_input("gpt-4.1-mini", "0.10", "0.40"),
    _cached_input("gpt-4o", "1.25", "2.50"),
    _cached_input("gpt-4.1", "0.50", "2.00"),
)


# --- verification against the providers' published prices -------------------------------------------------------


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    """What checking one applied row against a stored copy of its provider's price page found."""

    description: str
    # Set only when the published price differs: the old row is closed at VERIFIED_AT (calls before it keep their
    # price) and a new row carries this price from then on. None: the row keeps its price, only the text changes.
    unit_price: Decimal | None = None


# Price corrections take effect from this instant (the check was made on 2026-11-22).
VERIFIED_AT = datetime(2026, 11, 22, tzinfo=UTC)

_TWILIO_VOLUME = "https://support.twilio.com/hc/en-us/articles/223183328-How-Volume-Pricing-works-at-Twilio"
_TWILIO_ROUNDING = "https://www.twilio.com/en-us/changelog/billing-changes-for-voice-insights-advanced-features-usage-trunking"
_OPENAI_TTS_1 = "https://developers.openai.com/api/docs/models/tts-1"
_OPENAI_MINI_TTS = "https://developers.openai.com/ja-JP/api/docs/models/gpt-4o-mini-tts"
_OPENAI_MINI_TTS_ESTIMATE = (
    "https://community.openai.com/t/understanding-gpt-4o-mini-tts-pricing-input-characters-cost/1151816"
)

# Keyed by row id. Rows not listed here could not be checked: no stored copy of the provider's own page stated
# their price (third-party summaries were found but are not the provider's list price), so they keep the
# wording 0030 or 0034 gave them.
VERIFICATIONS: dict[str, Verification] = {
    _row_id("telephony", "twilio", None, "minute", "inbound", "US"): Verification(
        description=(
            "Twilio US inbound voice to a local number (receive calls), $0.0085/min, each call rounded up to the "
            f"whole minute. Rate verified against {_TWILIO_VOLUME} (as stored, undated: its worked example bills "
            f"inbound local minutes at $0.0085/min); rounding verified against {_TWILIO_ROUNDING} (as stored, "
            f"2022-09-27: voice usage rounds up to the next minute). Price list: {_TWILIO}."
        ),
    ),
    _row_id("telephony", "twilio", None, "minute", "outbound", "US"): Verification(
        description=(
            "Twilio US outbound voice (make calls), $0.0140/min, each call rounded up to the whole minute. "
            f"Rounding verified against {_TWILIO_ROUNDING} (as stored, 2022-09-27). Rate not confirmed: no stored "
            f"copy of {_TWILIO} was found, and the undated worked example in {_TWILIO_VOLUME} bills outbound "
            "minutes at $0.013/min. Approximate, verify."
        ),
    ),
    _row_id("tts", "openai", "tts-1", "character"): Verification(
        description=(
            f"OpenAI tts-1, $15.00 per 1M characters; verified against {_OPENAI_TTS_1} (as stored, undated)."
        ),
    ),
    _row_id("tts", "openai", "gpt-4o-mini-tts", "minute"): Verification(
        description=(
            "OpenAI gpt-4o-mini-tts is billed by tokens: $0.60 per 1M text input tokens and $12.00 per 1M audio "
            f"output tokens, verified against {_OPENAI_MINI_TTS} (as stored, undated). Priced here per minute of "
            "generated audio at OpenAI's published estimate of ~$0.015/min (OpenAI's docs as quoted in "
            f"{_OPENAI_MINI_TTS_ESTIMATE}, 2025), since the speech endpoint reports no token usage for raw PCM. "
            "The per-minute figure is OpenAI's estimate, not a list price."
        ),
    ),
}


def apply_verifications(
    rows: tuple[PriceRow, ...],
    verifications: dict[str, Verification] | None = None,
    at: datetime = VERIFIED_AT,
) -> tuple[PriceRow, ...]:
    """``rows`` as the database holds them once the verification migration ran."""
    verifications = VERIFICATIONS if verifications is None else verifications
    out: list[PriceRow] = []
    for row in rows:
        found = verifications.get(row.id)
        if found is None:
            out.append(row)
        elif found.unit_price is None or found.unit_price == row.unit_price:
            out.append(msgspec.structs.replace(row, description=found.description))
        else:
            out.append(msgspec.structs.replace(row, effective_to=at))
            out.append(_corrected(row, found.unit_price, found.description, at))
    return tuple(out)


def _corrected(row: PriceRow, unit_price: Decimal, description: str, at: datetime) -> PriceRow:
    return msgspec.structs.replace(
        row,
        id=str(uuid.uuid5(_NAMESPACE, f"{row.id}|{at.isoformat()}")),
        unit_price=unit_price,
        description=description,
        effective_from=at,
        effective_to=None,
    )


# The 0030 rows as the catalog holds them now (what pricing code and tests should use).
DEFAULT_PRICES: tuple[PriceRow, ...] = apply_verifications(INITIAL_PRICES)


def _sql_literal(value: str | None) -> str:
    if value is None:
        return "NULL"
    return "'" + value.replace("'", "''") + "'"


def render_sql() -> str:
    """The 0030 migration file's exact contents."""
    lines = [
        "-- Default GLOBAL price catalog (tenant_id NULL). GENERATED from analysis/catalog_default.py:",
        "--   .venv/bin/python -m analysis.catalog_default > sql/0030_default_pricing.sql",
        "-- Do not edit by hand; tests/unit/test_pricing.py checks the two match.",
        "-- unit_price needs numeric(24,12): per-token prices such as 0.00000015 do not fit numeric(18,6).",
        "INSERT INTO billing_pricing_catalog",
        "    (id, tenant_id, category, provider, model, unit, unit_price, description, effective_from, effective_to,",
        "     is_active, metadata)",
        "VALUES",
    ]
    return "\n".join(lines) + "\n" + _values_sql(INITIAL_PRICES)


def render_google_tts_sql() -> str:
    """The 0034 migration file's exact contents."""
    lines = [
        "-- Google Cloud Text-to-Speech rows of the default GLOBAL price catalog. GENERATED from",
        "-- analysis/catalog_default.py (GOOGLE_TTS_PRICES):",
        "--   .venv/bin/python -m analysis.catalog_default 0034 > sql/0034_google_tts_pricing.sql",
        "-- Do not edit by hand; tests/unit/test_tts_google.py checks the two match.",
        "INSERT INTO billing_pricing_catalog",
        "    (id, tenant_id, category, provider, model, unit, unit_price, description, effective_from, effective_to,",
        "     is_active, metadata)",
        "VALUES",
    ]
    return "\n".join(lines) + "\n" + _values_sql(GOOGLE_TTS_PRICES)


def render_cached_input_sql() -> str:
    """The 0036 migration file's exact contents."""
    lines = [
        "-- OpenAI cached-input token prices of the default GLOBAL price catalog. GENERATED from",
        "-- analysis/catalog_default.py (CACHED_INPUT_PRICES):",
        "--   .venv/bin/python -m analysis.catalog_default 0036 > sql/0036_openai_cached_input_pricing.sql",
        "-- Do not edit by hand; tests/unit/test_pricing.py checks the two match.",
        "INSERT INTO billing_pricing_catalog",
        "    (id, tenant_id, category, provider, model, unit, unit_price, description, effective_from, effective_to,",
        "     is_active, metadata)",
        "VALUES",
    ]
    return "\n".join(lines) + "\n" + _values_sql(CACHED_INPUT_PRICES)


def _values_sql(rows: tuple[PriceRow, ...]) -> str:
    values = []
    for r in rows:
        metadata = json.dumps(r.metadata, sort_keys=True, separators=(", ", ": "))
        values.append(
            f"    ({_sql_literal(r.id)}, NULL, {_sql_literal(r.category)}, {_sql_literal(r.provider)}, "
            f"{_sql_literal(r.model)}, {_sql_literal(r.unit)}, {format(r.unit_price, 'f')}, "
            f"{_sql_literal(r.description)}, {_sql_literal(r.effective_from.isoformat())}, NULL, TRUE, "
            f"{_sql_literal(metadata)}::jsonb)"
        )
    return ",\n".join(values) + ";\n"


def render_verified_sql(
    verifications: dict[str, Verification] | None = None, at: datetime = VERIFIED_AT
) -> str:
    """The 0035 migration file's exact contents: each VERIFICATION applied to the row 0030 or 0034 inserted."""
    verifications = VERIFICATIONS if verifications is None else verifications
    applied = {r.id: r for r in INITIAL_PRICES + GOOGLE_TTS_PRICES}
    unknown = set(verifications) - set(applied)
    if unknown:
        raise ValueError(f"verifications for rows no migration inserted: {sorted(unknown)}")
    lines = [
        "-- Default GLOBAL price catalog rows checked against stored copies of the providers' price pages.",
        "-- GENERATED from analysis/catalog_default.py (VERIFICATIONS):",
        "--   .venv/bin/python -m analysis.catalog_default 0035 > sql/0035_verified_pricing.sql",
        "-- Do not edit by hand; tests/unit/test_pricing.py checks the two match. A confirmed price only gets a",
        "-- description citing its source; a corrected price closes the old row (effective_to) and inserts a new",
        "-- one from that instant, so calls priced before it keep their price.",
    ]
    statements = []
    for row in INITIAL_PRICES + GOOGLE_TTS_PRICES:
        found = verifications.get(row.id)
        if found is None:
            continue
        where = f"WHERE id = {_sql_literal(row.id)} AND tenant_id IS NULL;"
        new_price = found.unit_price
        if new_price is None or new_price == row.unit_price:
            statements.append(
                f"UPDATE billing_pricing_catalog SET description = {_sql_literal(found.description)}\n    {where}"
            )
            continue
        statements.append(
            f"UPDATE billing_pricing_catalog SET effective_to = {_sql_literal(at.isoformat())}\n    {where}"
        )
        statements.append(
            "INSERT INTO billing_pricing_catalog\n"
            "    (id, tenant_id, category, provider, model, unit, unit_price, description, effective_from, "
            "effective_to,\n     is_active, metadata)\nVALUES\n"
            + _values_sql((_corrected(row, new_price, found.description, at),))
        )
    return "\n".join(lines) + "\n" + "\n".join(statements) + "\n"


if __name__ == "__main__":
    import sys

    renderers = {"0034": render_google_tts_sql, "0035": render_verified_sql, "0036": render_cached_input_sql}
    print(renderers.get(sys.argv[1] if sys.argv[1:] else "", render_sql)(), end="")
