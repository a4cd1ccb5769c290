"""E.164 parsing and validation with `phonenumbers` (the API speaks E.164; storage adds country_code/base_number)."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

from voice_service.errors import ValidationFailed


@dataclass(frozen=True, slots=True)
class Phone:
    e164: str
    country_code: str
    base_number: int
    region: str | None


def parse_phone(value: str) -> Phone | None:
    """A valid number as E.164, or None. Input must already be international (+…)."""
    if not isinstance(value, str) or not value.startswith("+") or len(value) > 20:
        return None
    try:
        pn = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(pn) or pn.national_number is None:  # a valid number always has one
        return None
    return Phone(
        e164=phonenumbers.format_number(pn, phonenumbers.PhoneNumberFormat.E164),
        country_code=str(pn.country_code),
        base_number=pn.national_number,
        region=phonenumbers.region_code_for_number(pn),
    )


def require_phone(value: str, field: str) -> Phone:
    phone = parse_phone(value)
    if phone is None:
        raise ValidationFailed(f"{value!r} is not a valid phone number in E.164 form (+15551234567)", field=field)
    return phone
