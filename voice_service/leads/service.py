"""Rules for leads: phones stored as E.164 and unique per tenant, IANA time zones, do-not-call bookkeeping.

The value checks (`normalize_phone`, `is_time_zone`, `amount_problem`) are shared with the importer.
"""

from __future__ import annotations

import re
import uuid
import zoneinfo
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache

import asyncpg
import msgspec
import phonenumbers
from phonenumbers import PhoneNumber

from voice_service.auth import Principal
from voice_service.crud import fields_of
from voice_service.errors import BadRequest, Conflict, NotFound, ValidationFailed
from voice_service.leads import repository as repo
from voice_service.leads.repository import leads
from voice_service.leads.schemas import Lead, LeadCreate, LeadUpdate
from voice_service.pagination import Page, check_limit, decode_cursor, page_from_rows

_CONFLICT = "another lead in your account already has this phone number"
_PHONE_FORMATTING = re.compile(r"[\s\-.()]")
_NANP = re.compile(r"^\+1[2-9]\d{9}$")
_json = msgspec.json.Encoder()
_AMOUNT_LIMIT = Decimal(10) ** 12  # numeric(18, 6)


def normalize_phone(value: str) -> str | None:
    """E.164 for a valid international number (formatting characters allowed), else None."""
    value = _PHONE_FORMATTING.sub("", value)
    # Fast path, measured ~5x cheaper, for the bulk of North American imports: for "+1" and ten digits starting
    # 2-9, phonenumbers.parse yields country code 1 and those ten digits unchanged (no NANP number starts with the
    # national prefix "1"), and US is the first region tried for +1, so "valid for US" implies is_valid_number.
    # Anything else takes the full path.
    if _NANP.match(value) and phonenumbers.is_valid_number_for_region(
        PhoneNumber(country_code=1, national_number=int(value[2:])), "US"
    ):
        return value
    if not value.startswith("+") or len(value) > 20:
        return None
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_time_zone(name: str) -> bool:
    return name in _time_zones()


def amount_problem(value: Decimal) -> str | None:
    if not value.is_finite():
        return "must be a finite number"
    if abs(value) >= _AMOUNT_LIMIT:
        return "must be less than 1,000,000,000,000 in absolute value"
    return None


def to_lead(row: asyncpg.Record) -> Lead:
    return Lead(**dict(row))


def _check_values(fields: dict[str, object]) -> None:
    # PostgreSQL text and jsonb cannot hold NUL; caught here it is a 422, not a database error.
    for name, value in fields.items():
        if (isinstance(value, str) and "\x00" in value) or (
            name == "custom_fields" and b"\\u0000" in _json.encode(value)
        ):
            raise ValidationFailed("contains a NUL character", field=name)
    phone = fields.get("phone")
    if isinstance(phone, str):
        e164 = normalize_phone(phone)
        if e164 is None:
            raise ValidationFailed(
                f"{phone!r} is not a valid phone number in E.164 form (+15551234567)", field="phone"
            )
        fields["phone"] = e164
    tz = fields.get("timezone")
    if isinstance(tz, str) and not is_time_zone(tz):
        raise ValidationFailed(
            f"{tz!r} is not an IANA time zone name (e.g. America/New_York)", field="timezone"
        )
    value = fields.get("estimated_value")
    if isinstance(value, Decimal):
        problem = amount_problem(value)
        if problem:
            raise ValidationFailed(f"estimated_value {problem}", field="estimated_value")


async def create(conn: asyncpg.Connection, principal: Principal, data: LeadCreate) -> Lead:
    fields = fields_of(data, not_null=("custom_fields",))
    _check_values(fields)
    if data.do_not_call:
        fields["do_not_call_at"] = datetime.now(UTC)
    elif data.do_not_call_reason is not None:
        raise ValidationFailed("do_not_call_reason needs do_not_call: true", field="do_not_call_reason")
    try:
        row = await leads.insert(conn, principal.tenant_id, fields)
    except asyncpg.UniqueViolationError:
        raise Conflict(_CONFLICT, field="phone") from None
    return to_lead(row)


async def get(conn: asyncpg.Connection, principal: Principal, lead_id: uuid.UUID) -> Lead:
    row = await leads.get(conn, principal.tenant_id, lead_id)
    if row is None:
        raise NotFound("lead not found")
    return to_lead(row)


async def update(
    conn: asyncpg.Connection, principal: Principal, lead_id: uuid.UUID, data: LeadUpdate
) -> Lead:
    # Leaving do_not_call out keeps it; only an explicit `false` lifts an opt-out (and drops its reason).
    fields = fields_of(data, not_null=("phone", "custom_fields", "do_not_call"))
    _check_values(fields)
    dnc = fields.get("do_not_call")
    reason = fields.get("do_not_call_reason")
    if dnc is False:
        if reason is not None:
            raise ValidationFailed("do_not_call_reason needs do_not_call: true", field="do_not_call_reason")
        fields["do_not_call_reason"] = None
    elif dnc is None and reason is not None:
        current = await leads.get(conn, principal.tenant_id, lead_id)
        if current is None:
            raise NotFound("lead not found")
        if not current["do_not_call"]:
            raise ValidationFailed("do_not_call_reason needs do_not_call: true", field="do_not_call_reason")
    try:
        row = await repo.update(conn, principal.tenant_id, lead_id, fields)
    except asyncpg.UniqueViolationError:
        raise Conflict(_CONFLICT, field="phone") from None
    if row is None:
        raise NotFound("lead not found")
    return to_lead(row)


async def delete(conn: asyncpg.Connection, principal: Principal, lead_id: uuid.UUID) -> None:
    if not await leads.soft_delete(conn, principal.tenant_id, lead_id):
        raise NotFound("lead not found")


async def list_(
    conn: asyncpg.Connection,
    principal: Principal,
    limit: int,
    cursor: str | None,
    *,
    phone: str | None = None,
    stage: str | None = None,
    status: str | None = None,
    do_not_call: bool | None = None,
) -> Page[Lead]:
    if phone is not None:
        # An unencoded `+` in a query string arrives as a space (`?phone=+1555…`): restore it.
        if phone[:1] == " " and phone[1:].isdigit():
            phone = "+" + phone[1:]
        e164 = normalize_phone(phone)
        if e164 is None:
            raise BadRequest(
                f"{phone!r} is not a valid phone number in E.164 form (+15551234567)", field="phone"
            )
        phone = e164
    rows = await leads.page(
        conn,
        principal.tenant_id,
        limit=check_limit(limit),
        after=decode_cursor(cursor) if cursor else None,
        filters={"phone": phone, "stage": stage, "status": status, "do_not_call": do_not_call},
    )
    return page_from_rows(rows, limit, to_lead)


_PHONE_LIKE = re.compile(r"^\+?[\d\s\-.()]+$")
_WORD_CHARACTER = re.compile(r"\w")
_EMAIL_SEPARATORS = re.compile(r"[@._+-]+")
MAX_SEARCH_WORDS = 8


def search_terms(text: str) -> str | None:
    """The console's search text as a prefix tsquery ("ali smi" → 'ali':* & 'smi':*); None when nothing is left to
    search for. Something that looks like a phone number is one term, in E.164's form ("+1 415-555" → '+1415555':*),
    since the index holds phones as "+" and digits."""
    text = text.strip()
    if _PHONE_LIKE.match(text) and sum(c.isdigit() for c in text) >= 2:
        return "'+" + "".join(c for c in text if c.isdigit()) + "':*"
    # An e-mail address is indexed as its words (sql/0061): "ann.lee@acme.com" is searched as ann lee acme com.
    words = [w.replace("\\", "").replace("'", "''") for w in _EMAIL_SEPARATORS.sub(" ", text).split()]
    terms = [f"'{w.lower()}':*" for w in words if _WORD_CHARACTER.search(w)][:MAX_SEARCH_WORDS]
    return " & ".join(terms) or None


async def search(
    conn: asyncpg.Connection,
    principal: Principal,
    limit: int,
    cursor: str | None,
    *,
    text: str | None = None,
    do_not_call: bool | None = None,
) -> Page[Lead]:
    """Leads newest first whose name, e-mail, company or phone has words starting with the words of `text`."""
    rows = await repo.search_page(
        conn,
        principal.tenant_id,
        query=search_terms(text) if text else None,
        do_not_call=do_not_call,
        limit=check_limit(limit),
        after=decode_cursor(cursor) if cursor else None,
    )
    return page_from_rows(rows, limit, to_lead)
