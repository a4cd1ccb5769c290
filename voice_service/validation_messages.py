"""msgspec's validation messages turned into sentences a person can act on, each naming its field.

msgspec says `Expected `str` matching regex '^\\+[1-9]\\d{6,14}$'` or `Invalid enum value 'foo'`; an API user needs
"`phone_number` must be a phone number in E.164 form, e.g. +15551234567." and the values that are allowed. The
allowed values, the field names of a nested object and a pattern's meaning are read from the type the field has
(`type_at` walks the request body's Struct, or takes the query parameter's annotation).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import msgspec
import msgspec.inspect as mi

__all__ = ["describe", "type_at"]

# Patterns the API's schemas use, by their regex as msgspec prints it.
_PATTERNS = {
    r"^\+[1-9]\d{6,14}$": "a phone number in E.164 form, e.g. +15551234567",
    r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$": "a BCP-47 language tag, e.g. en-US",
    r"^[^@\s]+@[^@\s]+\.[^@\s.]+$": "an email address, e.g. ann@example.com",
    r"^[A-Z]{3}$": "a three-letter ISO 4217 currency code in capitals, e.g. USD",
    r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$": "a local time as HH:MM, e.g. 09:30",
    r"^[a-z0-9_]+(\.[a-z0-9_]+)*$": "an event type such as voice_call.ended",
    r"^https?://[^\s/]+": "an http:// or https:// URL",
}

_TYPE_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "object": "a JSON object",
    "array": "a JSON array",
    "null": "null",
    "uuid": "a UUID",
    "datetime": "a date-time in RFC 3339 form, e.g. 2025-01-31T09:00:00Z",
    "date": "a date, e.g. 2025-01-31",
    "decimal": "a decimal number",
}

_EXPECTED_GOT = re.compile(r"^Expected `([^`]+)`, got `([^`]+)`$")
_REGEX = re.compile(r"^Expected `str` matching regex '(.*)'$")
_LENGTH = re.compile(r"^Expected `(str|array|object)` of length (>=|<=) (\d+)$")
_BOUND = re.compile(r"^Expected `(int|float|decimal)` (>=|<=|>|<) (-?[\d.e+]+)$")
_ENUM = re.compile(r"^Invalid enum value (.+)$")
_MISSING = re.compile(r"^Object missing required field `([^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]+)`$")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _type_words(names: str) -> str:
    parts = [p.strip() for p in names.split("|")]
    words = [_TYPE_NAMES.get(p, f"`{p}`") for p in parts if p != "null"]
    text = " or ".join(words) or "null"
    return f"{text} (or null)" if "null" in parts and words else text


def type_at(annotation: Any, path: str | None) -> mi.Type | None:
    """The msgspec type of the field at `path` (`config.voice_id`, `entries[3].phone`) inside `annotation`."""
    try:
        current: mi.Type | None = mi.type_info(annotation)
    except (TypeError, ValueError):
        return None
    for name, index in _PATH_PART.findall(path or ""):
        current = _step(current, name, index)
        if current is None:
            return None
    return current


def _unwrap(t: mi.Type) -> mi.Type:
    return t.type if isinstance(t, mi.Metadata) else t


def _members(t: mi.Type | None) -> list[mi.Type]:
    if t is None:
        return []
    t = _unwrap(t)
    if isinstance(t, mi.UnionType):
        return [_unwrap(m) for m in t.types if not isinstance(_unwrap(m), mi.NoneType)]
    return [t]


def _step(t: mi.Type | None, name: str, index: str) -> mi.Type | None:
    for member in _members(t):
        if index and isinstance(member, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            return member.item_type
        if name and isinstance(member, mi.StructType):
            for f in member.fields:
                if f.encode_name == name:
                    return f.type
        if name and isinstance(member, mi.DictType):
            return member.value_type
    return None


def _allowed_values(t: mi.Type | None) -> list[Any]:
    values: list[Any] = []
    for member in _members(t):
        if isinstance(member, mi.LiteralType):
            values += list(member.values)
        elif isinstance(member, mi.EnumType):
            values += [m.value for m in member.cls]
        elif isinstance(member, mi.ListType):
            values += _allowed_values(member.item_type)
    return values


def _field_names(t: mi.Type | None) -> list[str]:
    for member in _members(t):
        if isinstance(member, mi.StructType):
            return [f.encode_name for f in member.fields]
    return []


def _description(t: mi.Type | None) -> str | None:
    inner = None if t is None else _unwrap(t)
    candidates = [] if t is None else [t, *(inner.types if isinstance(inner, mi.UnionType) else ())]
    for member in candidates:
        if isinstance(member, mi.Metadata) and member.extra_json_schema:
            text = member.extra_json_schema.get("description")
            if text:
                return str(text)
    return None


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def describe(
    message: str, field: str | None, annotation: Any = None, *, within: bool = True
) -> tuple[str | None, str]:
    """(field, sentence) for a msgspec validation `message` about `field`. `annotation` is the type `field` is a
    path into (the request body's, `within`), or the field's own type (a query parameter's, not `within`)."""
    lookup = field if within else None
    if not within:
        message = message.replace(" | null", "")  # a query parameter is absent, never null
    named = _MISSING.match(message) or _UNKNOWN.match(message)
    if named:
        child = named.group(1)
        full = f"{field}.{child}" if field else child
        if named.re is _MISSING:
            return full, f"`{full}` is required."
        fields = _field_names(type_at(annotation, lookup)) if annotation is not None else []
        close = difflib.get_close_matches(child, fields, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else "."
        where = f"of `{field}`" if field else "of this request"
        return full, f"`{full}` is not a field {where}{hint}"
    subject = f"`{field}`" if field else "The request body"
    if m := _EXPECTED_GOT.match(message):
        return field, f"{subject} must be {_type_words(m.group(1))}, not {_TYPE_NAMES.get(m.group(2), m.group(2))}."
    if m := _REGEX.match(message):
        pattern = m.group(1).encode().decode("unicode_escape")
        meaning = _PATTERNS.get(pattern) or (
            _description(type_at(annotation, lookup)) if annotation is not None else None
        )
        if meaning:
            return field, f"{subject} must be {meaning}."
        return field, f"{subject} does not have the expected form (it must match {pattern})."
    if m := _LENGTH.match(message):
        kind, op, n = m.group(1), m.group(2), int(m.group(3))
        unit = {"str": "character", "array": "item", "object": "key"}[kind]
        if op == ">=" and n == 1:
            return field, f"{subject} must not be empty."
        bound = "at least" if op == ">=" else "at most"
        return field, f"{subject} must have {bound} {_plural(n, unit)}."
    if m := _BOUND.match(message):
        words = {">=": "at least", "<=": "at most", ">": "greater than", "<": "less than"}[m.group(2)]
        number = m.group(3).removesuffix(".0") if m.group(1) == "float" else m.group(3)
        return field, f"{subject} must be {words} {number}."
    if m := _ENUM.match(message):
        allowed = _allowed_values(type_at(annotation, lookup)) if annotation is not None else []
        if allowed:
            listed = ", ".join(str(v) for v in allowed)
            return field, f"{subject} must be one of {listed}; {m.group(1)} is not."
        return field, f"{subject} has a value that is not allowed: {m.group(1)}."
    if message == "Invalid UUID":
        return field, f"{subject} must be a UUID, e.g. 0b8f3e0c-5d2a-4c7e-9f1a-2b3c4d5e6f70."
    if message.startswith("Expected `datetime` with a timezone"):
        return field, f"{subject} must be a date-time with a time zone, e.g. 2025-01-31T09:00:00Z."
    if message.startswith("Invalid RFC3339 encoded datetime"):
        return field, f"{subject} must be a date-time in RFC 3339 form, e.g. 2025-01-31T09:00:00Z."
    if message.startswith("Invalid RFC3339 encoded date"):
        return field, f"{subject} must be a date in RFC 3339 form, e.g. 2025-01-31."
    if message.startswith("Invalid decimal"):
        return field, f'{subject} must be a decimal number, e.g. "12.50".'
    text = message[0].upper() + message[1:] if message else "Invalid value"
    return field, f"{subject}: {text.rstrip('.')}." if field else f"{text.rstrip('.')}."


def decode_problem(exc: msgspec.DecodeError | str) -> str:
    """A sentence for a body that is not JSON at all."""
    text = str(exc)
    if "truncated" in text:
        return "The request body is not valid JSON: it ends too early (a bracket, brace or quote is not closed)."
    m = re.search(r"JSON is malformed: (.*)", text)
    reason = m.group(1) if m else text
    return f"The request body is not valid JSON: {reason.rstrip('.')}."
