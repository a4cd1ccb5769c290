"""Form values checked against the API's own schema types, with every error keyed to its input and worded for people.

A console form is validated by the same msgspec types as the JSON API (so the two can never disagree), one field at a
time so that all the wrong fields are reported together, each next to its input. Messages name the field by its label.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from voice_service.errors import NotFound

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_INDEX = re.compile(r"\[(\d+)\]")


def _humanize(message: str, label: str) -> str:
    text = _AT.sub("", message)
    if text.startswith("Expected `str` of length >= 1"):
        return f"{label} is required"
    if m := re.match(r"Expected `(?:str|array)` of length <= (\d+)", text):
        unit = "characters" if "`str`" in text else "entries"
        return f"{label}: at most {m.group(1)} {unit}"
    if "matching regex" in text and "+[1-9]" in text:
        return f"{label}: enter the number in international format, e.g. +15551234567"
    if "matching regex" in text and "[A-Za-z]{2,3}" in text:
        return f"{label}: enter a language tag such as en-US, en-GB or de"
    if "matching regex" in text and "2[0-3]" in text:
        return f"{label}: enter a time of day as HH:MM, e.g. 09:00"
    if "matching regex" in text and "[A-Z]{3}" in text:
        return f"{label}: a three-letter currency code in capitals, e.g. USD"
    if "matching regex" in text:
        return f"{label}: not in the expected form"
    if text.startswith(("Invalid enumeration value", "Invalid enum value", "Expected `uuid`", "Invalid UUID")):
        return f"{label}: choose one of the options"
    if m := re.match(r"Expected `(int|float)` >= (\S+)", text):
        return f"{label}: must be at least {m.group(2)}"
    if m := re.match(r"Expected `(int|float)` <= (\S+)", text):
        return f"{label}: must be at most {m.group(2)}"
    return f"{label}: {text[0].lower() + text[1:] if text else 'not valid'}"


def error_path(message: str) -> str:
    """The location msgspec names inside a value (`.transfer_targets[0].phone`), dotted: `transfer_targets.0.phone`."""
    m = _AT.search(message)
    if not m:
        return ""
    return _INDEX.sub(r".\1", m.group("path")).lstrip(".")


def check(struct: type[msgspec.Struct], values: Mapping[str, Any], *, key: Callable[[str, str], str],
          label: Callable[[str], str]) -> dict[str, str]:
    """Errors of each value against the type of the struct's field of the same name: {form key: message}.

    `key(field, path)` turns a field and the path inside it into the form input's key; `label(form key)` gives the
    words for that input."""
    types = {f.name: f.type for f in msgspec.structs.fields(struct)}
    errors: dict[str, str] = {}
    for name, value in values.items():
        try:
            msgspec.convert(value, type=types[name], strict=True)
        except msgspec.ValidationError as exc:
            form_key = key(name, error_path(str(exc)))
            errors.setdefault(form_key, _humanize(str(exc), label(form_key)))
    return errors


def text(form: Any, name: str) -> str:
    """A form field's text, trimmed ("" when absent or not text)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def uuid_in_path(text: str, what: str) -> uuid.UUID:
    """A console path's id, parsed here: a malformed one is the console's 404 page ("there is no <what> with this
    id"), behind the session check, like an id of nothing."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound(f"there is no {what} with this id") from None
