"""Bulk lead import: a CSV file or a JSON array of objects, validated in one pass, upserted by phone.

Parsing and validation are pure CPU work on up to 100,000 rows, so they run in a worker thread rather than on the
event loop (which also carries live calls' media). Valid rows then go to PostgreSQL with one binary COPY into a
temporary table and one INSERT … ON CONFLICT (see repository.bulk_upsert), inside the request's transaction.

Columns: CSV headers and JSON keys are matched to lead fields as people write them, or by an explicit mapping
(columns.py); the others go to custom_fields. The CSV separator (`,` `;` tab `|`) is read from the header line.

Row rules: a valid phone (E.164 after dropping formatting characters; with a `default_country`, a national number
of that country too) is required and is the upsert key; a phone already seen on an earlier accepted row of the same
file rejects the row; empty cells / null values mean "not in the file" (an import never blanks a field).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

import asyncpg
import msgspec
import phonenumbers

from voice_service.auth import Principal
from voice_service.errors import AppError, BadRequest, PayloadTooLarge
from voice_service.leads import repository as repo
from voice_service.leads.columns import ColumnPlan, plan_columns, require_phone_column
from voice_service.leads.schemas import (
    CURRENCY_PATTERN,
    EMAIL_PATTERN,
    INT32_MAX,
    INT32_MIN,
    MAX_LENGTHS,
    ImportReport,
    ImportRowError,
)
from voice_service.leads.service import amount_problem, is_time_zone, normalize_phone
from voice_service.schemas import FREE_JSON_MAX_BYTES

MAX_ROWS = 100_000
MAX_ERRORS = 1_000
MAX_BYTES = 64 * 1024 * 1024  # ~640 bytes a row at the row limit
CSV_TYPES = frozenset({"text/csv", "application/csv"})
JSON_TYPES = frozenset({"application/json"})

_EMAIL = re.compile(EMAIL_PATTERN)
_CURRENCY = re.compile(CURRENCY_PATTERN)
_INT = re.compile(r"^[+-]?\d{1,12}$")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})

_json_list = msgspec.json.Decoder(list[Any], float_hook=Decimal)
_json_any = msgspec.json.Decoder(float_hook=Decimal)
_json_out = msgspec.json.Encoder(decimal_format="number")


class UnsupportedMediaType(AppError):
    status, title = 415, "Unsupported media type"


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _text(name: str) -> Callable[[Any], str]:
    limit = MAX_LENGTHS[name]

    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad("must be a string")
        if len(value) > limit:
            raise _Bad(f"longer than {limit} characters")
        if "\x00" in value:
            raise _Bad("contains a NUL character")
        return value

    return convert


def _phone(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad("must be a string in E.164 form (+15551234567)")
    e164 = normalize_phone(value) if len(value) <= 32 else None
    if e164 is None:
        raise _Bad(f"{value[:40]!r} is not a valid phone number in E.164 form (+15551234567); for national "
                   f"numbers such as (415) 555-0103, give the import a `default_country`")
    return e164


def _national_phone(country: str) -> Callable[[Any], str]:
    """Phones in E.164, or national numbers of `country` (ISO 3166 alpha-2) turned into E.164."""

    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad("must be a string")
        e164 = normalize_phone(value) if len(value) <= 32 else None
        if e164 is not None:
            return e164
        try:
            number = phonenumbers.parse(value, country) if len(value) <= 32 else None
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_valid_number(number):
            raise _Bad(f"{value[:40]!r} is not a valid phone number of {country} or in E.164 form (+15551234567)")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    return convert


_email_text = _text("email")
_timezone_text = _text("timezone")


def _email(value: Any) -> str:
    text = _email_text(value)
    if not _EMAIL.match(text):
        raise _Bad("not a valid email address")
    return text


def _timezone(value: Any) -> str:
    text = _timezone_text(value)
    if not is_time_zone(text):
        raise _Bad(f"{text!r} is not an IANA time zone name (e.g. America/New_York)")
    return text


def _currency(value: Any) -> str:
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise _Bad("must be a three-letter ISO 4217 code in capitals, e.g. USD")
    return value


def _priority(value: Any) -> int:
    if isinstance(value, str) and _INT.match(value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Bad("must be an integer")
    if not INT32_MIN <= value <= INT32_MAX:
        raise _Bad(f"must be between {INT32_MIN} and {INT32_MAX}")
    return value


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise _Bad("must be a decimal number")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation:
        raise _Bad("must be a decimal number") from None
    problem = amount_problem(amount)
    if problem:
        raise _Bad(problem)
    return amount


def _custom(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = _json_any.decode(value)
        except msgspec.DecodeError:
            raise _Bad("must be a JSON object") from None
    if not isinstance(value, dict):
        raise _Bad("must be a JSON object")
    return value


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower() if isinstance(value, str | int) else ""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Bad("must be true or false")


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "first_name": _text("first_name"),
    "last_name": _text("last_name"),
    "email": _email,
    "phone": _phone,
    "company_name": _text("company_name"),
    "title": _text("title"),
    "linkedin_url": _text("linkedin_url"),
    "stage": _text("stage"),
    "status": _text("status"),
    "priority": _priority,
    "estimated_value": _amount,
    "currency": _currency,
    "custom_fields": _custom,
    "notes": _text("notes"),
    "timezone": _timezone,
    "do_not_call": _bool,
    "do_not_call_reason": _text("do_not_call_reason"),
}
_POS = {name: i for i, name in enumerate(repo.IMPORT_COLUMNS)}
assert set(_POS) == set(_CONVERTERS)
_PHONE_AT, _CUSTOM_AT = _POS["phone"], _POS["custom_fields"]
_DNC_AT, _REASON_AT = _POS["do_not_call"], _POS["do_not_call_reason"]
_WIDTH = len(repo.IMPORT_COLUMNS)


def _too_many() -> NoReturn:
    raise PayloadTooLarge(
        f"an import holds at most {MAX_ROWS:,} rows; split it into several imports",
        errors=[{"field": None, "message": "too many rows", "limit": MAX_ROWS}],
    )


@dataclass
class Parsed:
    received: int = 0
    rejected: int = 0
    error_count: int = 0
    errors: list[ImportRowError] = field(default_factory=list)
    records: list[tuple[Any, ...]] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    plan: ColumnPlan | None = None
    delimiter: str | None = None  # CSV only

    def count_row(self) -> None:
        self.received += 1
        if self.received > MAX_ROWS:
            _too_many()

    def reject(self, line: int, problems: list[tuple[str | None, str]]) -> None:
        self.rejected += 1
        for name, reason in problems:
            self.error_count += 1
            if len(self.errors) < MAX_ERRORS:
                self.errors.append(ImportRowError(line=line, field=name, reason=reason))

    def finish(
        self,
        line: int,
        out: list[Any],
        custom: dict[str, Any] | None,
        problems: list[tuple[str | None, str]] | None,
    ) -> None:
        problems = problems or []
        phone = out[_PHONE_AT]
        if phone is None and not any(name == "phone" for name, _ in problems):
            problems.append(("phone", "missing; every lead needs a phone number"))
        if out[_REASON_AT] is not None and out[_DNC_AT] is not True:
            problems.append(("do_not_call_reason", "needs do_not_call true on the same row"))
        out[_CUSTOM_AT] = None
        if custom:
            encoded = _json_out.encode(custom)
            if b"\\u0000" in encoded:
                problems.append(("custom_fields", "contains a NUL character"))
            if len(encoded) > FREE_JSON_MAX_BYTES:
                problems.append(("custom_fields", f"is {len(encoded):,} bytes of JSON; at most {FREE_JSON_MAX_BYTES:,}"))
            out[_CUSTOM_AT] = encoded.decode()
        if phone is not None and not problems:
            first = self.seen.get(phone)
            if first is not None:
                problems.append(("phone", f"{phone} already appears on line {first}"))
        if problems:
            self.reject(line, problems)
            return
        self.seen[phone] = line
        self.records.append(tuple(out))


_DELIMITERS = (",", ";", "\t", "|")


def sniff_delimiter(text: str) -> str:
    """The header line's separator: the candidate found most often outside quotes (comma on a tie or none)."""
    line, quoted = [], False
    for ch in text[:65536]:
        if ch == '"':
            quoted = not quoted
        elif ch in "\r\n" and not quoted:
            break
        elif not quoted:
            line.append(ch)
    counts = {d: line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _read_csv(text: str, parsed: Parsed, options: ImportOptions) -> None:
    delimiter = sniff_delimiter(text)
    parsed.delimiter = delimiter
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise BadRequest(f"CSV header (line 1) cannot be parsed: {exc}", field="header") from None
    if header is None:
        return
    names = [name.strip() for name in header]
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise BadRequest(f"the CSV header names column {name!r} twice", field="header")
        seen.add(name)
    plan = plan_columns([n for n in names if n], options.mapping, strict=True)
    require_phone_column(plan, [n for n in names if n])
    parsed.plan = plan
    converters = options.converters()
    known: list[tuple[int, int, Callable[[Any], Any], str]] = []
    unknown: list[tuple[int, str]] = []
    for idx, name in enumerate(names):
        target = plan.target(name) if name else None
        if target is None:
            continue
        if name in plan.fields:
            known.append((idx, _POS[target], converters[target], target))
        else:
            unknown.append((idx, name))
    width = len(header)
    last_line = reader.line_num
    try:
        for row in reader:
            line, last_line = last_line + 1, reader.line_num
            if not any(row):
                continue
            parsed.count_row()
            problems: list[tuple[str | None, str]] | None = None
            if len(row) > width:
                problems = [(None, f"{len(row)} values but the header has {width} columns")]
            n = len(row)
            out: list[Any] = [None] * _WIDTH
            for idx, pos, convert, key in known:
                if idx < n:
                    value = row[idx].strip()
                    if value:
                        try:
                            out[pos] = convert(value)
                        except _Bad as bad:
                            problems = problems or []
                            problems.append((key, bad.reason))
            custom: dict[str, Any] | None = None
            if unknown:
                for idx, name in unknown:
                    if idx < n:
                        value = row[idx].strip()
                        if value:
                            if custom is None:
                                custom = dict(out[_CUSTOM_AT] or {})
                            custom[name] = value
            if custom is None and out[_CUSTOM_AT]:
                custom = out[_CUSTOM_AT]
            parsed.finish(line, out, custom, problems)
    except csv.Error as exc:
        raise BadRequest(f"CSV cannot be parsed near line {reader.line_num}: {exc}", field="body") from None


def _read_json(body: bytes, parsed: Parsed, options: ImportOptions) -> None:
    try:
        items = _json_list.decode(body)
    except msgspec.ValidationError:
        raise BadRequest("the body must be a JSON array of lead objects", field="body") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}", field="body") from None
    if len(items) > MAX_ROWS:
        _too_many()
    keys = list(dict.fromkeys(k for item in items if isinstance(item, dict) for k in item))
    plan = plan_columns(keys, options.mapping, strict=False)
    if items:
        require_phone_column(plan, keys)
    parsed.plan = plan
    converters = options.converters()
    for index, item in enumerate(items):
        line = index + 1
        parsed.count_row()
        if not isinstance(item, dict):
            parsed.reject(line, [(None, "must be a JSON object")])
            continue
        problems: list[tuple[str | None, str]] | None = None
        out: list[Any] = [None] * _WIDTH
        extra: dict[str, Any] | None = None
        for key, value in item.items():
            if isinstance(value, str):
                value = value.strip()
                if not value:
                    continue
            elif value is None:
                continue
            target = plan.target(key)
            if target is None:
                continue
            if key in plan.fields:
                try:
                    out[_POS[target]] = converters[target](value)
                except _Bad as bad:
                    problems = problems or []
                    problems.append((target, bad.reason))
            else:
                extra = extra or {}
                extra[key] = value
        custom = out[_CUSTOM_AT]
        if extra:
            custom = {**(custom or {}), **extra}
        parsed.finish(line, out, custom, problems)


def _decode_text(body: bytes, charset: str | None) -> str:
    encoding = (charset or "utf-8").lower()
    if encoding in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # spreadsheet exports often start with a byte order mark
    try:
        return body.decode(encoding)
    except LookupError:
        raise BadRequest(f"unknown charset {charset!r}", field="content-type") from None
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"the body is not valid {charset or 'UTF-8'} (byte {exc.start})", field="body"
        ) from None


@dataclass(frozen=True)
class ImportOptions:
    """How to read the file: an explicit column mapping, and the country of national phone numbers."""

    mapping: dict[str, str] | None = None
    default_country: str | None = None

    def converters(self) -> dict[str, Callable[[Any], Any]]:
        if self.default_country is None:
            return _CONVERTERS
        return {**_CONVERTERS, "phone": _national_phone(self.default_country)}


def parse(media_type: str, options: dict[str, str], body: bytes, how: ImportOptions | None = None) -> Parsed:
    """Validates a whole import body; raises BadRequest / PayloadTooLarge / UnsupportedMediaType."""
    parsed = Parsed()
    how = how or ImportOptions()
    if media_type in CSV_TYPES:
        _read_csv(_decode_text(body, options.get("charset")), parsed, how)
    elif media_type in JSON_TYPES:
        _read_json(body, parsed, how)
    else:
        raise UnsupportedMediaType(
            f"send the leads as text/csv or application/json, or upload the file as multipart/form-data (a `file` "
            f"field), not {media_type or 'no content type'}",
            field="content-type",
        )
    return parsed


async def run_import(
    conn: asyncpg.Connection,
    principal: Principal,
    media_type: str,
    options: dict[str, str],
    body: bytes,
    how: ImportOptions | None = None,
) -> ImportReport:
    parsed = await asyncio.to_thread(parse, media_type, options, body, how)
    inserted, updated = await repo.bulk_upsert(conn, principal.tenant_id, parsed.records)
    plan = parsed.plan
    return ImportReport(
        received=parsed.received,
        inserted=inserted,
        updated=updated,
        rejected=parsed.rejected,
        errors=parsed.errors,
        error_count=parsed.error_count,
        errors_truncated=parsed.error_count > len(parsed.errors),
        columns=dict(plan.fields) if plan else {},
        custom_field_columns=list(plan.custom) if plan else [],
        ignored_columns=list(plan.ignored) if plan else [],
        delimiter=parsed.delimiter,
    )
