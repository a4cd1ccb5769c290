"""Lead schemas: `Lead` out, `LeadCreate` in, `LeadUpdate` (PATCH, UNSET = not sent), and the import report."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from voice_service.openapi import example
from voice_service.schemas import FreeJson, LongText, ShortText, Text, check_free_json

# Shared with the importer, which applies the same limits to CSV cells and JSON values.
MAX_LENGTHS = {
    "first_name": 200,
    "last_name": 200,
    "email": 320,
    "company_name": 200,
    "title": 200,
    "linkedin_url": 2048,
    "stage": 100,
    "status": 100,
    "notes": 20000,
    "timezone": 64,
    "do_not_call_reason": 2000,
}
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# Formatting characters (spaces, dashes, dots, parentheses) are accepted and dropped: stored as E.164.
PhoneIn = Annotated[
    str, Meta(min_length=2, max_length=32, description="E.164 phone number, e.g. +15551234567")
]
Email = Annotated[str, Meta(max_length=320, pattern=EMAIL_PATTERN)]
Url = Annotated[str, Meta(max_length=2048)]
Label = Annotated[str, Meta(max_length=100)]
Priority = Annotated[int, Meta(ge=INT32_MIN, le=INT32_MAX)]
Currency = Annotated[str, Meta(pattern=CURRENCY_PATTERN, description="ISO 4217 code, e.g. USD")]
TimeZone = Annotated[str, Meta(max_length=64, description="IANA time zone name, e.g. America/New_York")]
# numeric(18, 6): a JSON number or a string ("1234.50"); checked for range in the service.
Amount = Annotated[Decimal, Meta(description='decimal amount as a string or number, e.g. "1234.50"')]


# Field descriptions shared by LeadCreate and LeadUpdate.
_FIRST_NAME = Meta(description="Given name; fills `{{first_name}}` in prompts.")
_LAST_NAME = Meta(description="Family name; fills `{{last_name}}`.")
_EMAIL = Meta(description="Email address; fills `{{email}}`.")
_COMPANY_NAME = Meta(description="Company; fills `{{company_name}}`.")
_TITLE = Meta(description="Job title.")
_LINKEDIN_URL = Meta(description="LinkedIn profile URL.")
_STAGE = Meta(description="Your pipeline stage (free text, e.g. qualified); a filter of the list.")
_STATUS = Meta(description="Your lead status (free text); a filter of the list.")
_PRIORITY = Meta(description="Your priority (an integer; higher first is up to you).")
_CUSTOM_FIELDS = Meta(description="Anything else about the lead (at most 16 KB); imports put unmapped columns here.")
_NOTES = Meta(description="Free notes.")
_DO_NOT_CALL = Meta(description="The lead asked not to be called: no call or batch will call this phone (403 / "
                                "skipped entry).")
_DO_NOT_CALL_REASON = Meta(description="Why (needs `do_not_call` true).")


_LEAD = {"phone": "+14155550199", "first_name": "Ann", "last_name": "Lee", "email": "ann@example.com",
         "company_name": "Initech", "title": "COO", "stage": "qualified", "priority": 2,
         "estimated_value": "12000.00", "currency": "USD", "custom_fields": {"source": "webinar"},
         "timezone": "America/Los_Angeles"}


@example({"id": "5e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b", **_LEAD, "linkedin_url": None, "status": None,
          "notes": None, "do_not_call": False, "do_not_call_at": None, "do_not_call_reason": None,
          "created_at": "2025-03-01T09:00:00Z", "updated_at": "2025-03-01T09:00:00Z"})
class Lead(msgspec.Struct):
    """A person to call."""

    id: uuid.UUID
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    company_name: str | None
    title: str | None
    linkedin_url: str | None
    stage: str | None
    status: str | None
    priority: int | None
    estimated_value: Decimal | None
    currency: str | None
    custom_fields: dict[str, Any]
    notes: str | None
    timezone: str | None
    do_not_call: bool
    do_not_call_at: datetime | None
    do_not_call_reason: str | None
    created_at: datetime
    updated_at: datetime


@example(_LEAD)
class LeadCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new lead: only `phone` is required."""

    phone: PhoneIn
    first_name: Annotated[ShortText | None, _FIRST_NAME] = None
    last_name: Annotated[ShortText | None, _LAST_NAME] = None
    email: Annotated[Email | None, _EMAIL] = None
    company_name: Annotated[ShortText | None, _COMPANY_NAME] = None
    title: Annotated[ShortText | None, _TITLE] = None
    linkedin_url: Annotated[Url | None, _LINKEDIN_URL] = None
    stage: Annotated[Label | None, _STAGE] = None
    status: Annotated[Label | None, _STATUS] = None
    priority: Annotated[Priority | None, _PRIORITY] = None
    estimated_value: Amount | None = None
    currency: Currency | None = None
    custom_fields: Annotated[FreeJson, _CUSTOM_FIELDS] = {}
    notes: Annotated[LongText | None, _NOTES] = None
    timezone: TimeZone | None = None
    do_not_call: Annotated[bool, _DO_NOT_CALL] = False
    do_not_call_reason: Annotated[Text | None, _DO_NOT_CALL_REASON] = None

    def __post_init__(self) -> None:
        check_free_json({"custom_fields": self.custom_fields})


@example({"stage": "customer", "do_not_call": True, "do_not_call_reason": "asked on the phone"})
class LeadUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The fields to change; a field not sent keeps its value, `null` clears it."""

    phone: PhoneIn | UnsetType = UNSET
    first_name: Annotated[ShortText | None, _FIRST_NAME] | UnsetType = UNSET
    last_name: Annotated[ShortText | None, _LAST_NAME] | UnsetType = UNSET
    email: Annotated[Email | None, _EMAIL] | UnsetType = UNSET
    company_name: Annotated[ShortText | None, _COMPANY_NAME] | UnsetType = UNSET
    title: Annotated[ShortText | None, _TITLE] | UnsetType = UNSET
    linkedin_url: Annotated[Url | None, _LINKEDIN_URL] | UnsetType = UNSET
    stage: Annotated[Label | None, _STAGE] | UnsetType = UNSET
    status: Annotated[Label | None, _STATUS] | UnsetType = UNSET
    priority: Annotated[Priority | None, _PRIORITY] | UnsetType = UNSET
    estimated_value: Amount | None | UnsetType = UNSET
    currency: Currency | None | UnsetType = UNSET
    custom_fields: Annotated[FreeJson, _CUSTOM_FIELDS] | UnsetType = UNSET
    notes: Annotated[LongText | None, _NOTES] | UnsetType = UNSET
    timezone: TimeZone | None | UnsetType = UNSET
    do_not_call: Annotated[bool, _DO_NOT_CALL] | UnsetType = UNSET
    do_not_call_reason: Annotated[Text | None, _DO_NOT_CALL_REASON] | UnsetType = UNSET

    def __post_init__(self) -> None:
        check_free_json({"custom_fields": self.custom_fields})


class ImportRowError(msgspec.Struct):
    line: int
    field: str | None
    reason: str


@example({"received": 3, "inserted": 2, "updated": 0, "rejected": 1,
          "errors": [{"line": 3, "field": "phone", "reason": "'555-0103' is not a valid phone number of US or in "
                                                             "E.164 form (+15551234567)"}],
          "error_count": 1, "errors_truncated": False,
          "columns": {"First Name": "first_name", "Phone Number": "phone", "E-mail": "email"},
          "custom_field_columns": ["Favourite colour"], "ignored_columns": [], "delimiter": ";"})
class ImportReport(msgspec.Struct):
    """`line` is the CSV line (header = 1) or the JSON array index + 1; `errors` holds at most 1,000 entries."""

    received: Annotated[int, Meta(description="Rows read (blank lines not counted).")]
    inserted: Annotated[int, Meta(description="New leads.")]
    updated: Annotated[int, Meta(description="Existing leads (same phone) updated with the row's fields.")]
    rejected: Annotated[int, Meta(description="Rows skipped for the reasons in `errors`.")]
    errors: list[ImportRowError]
    error_count: int
    errors_truncated: Annotated[bool, Meta(description="More errors than `errors` holds.")]
    columns: Annotated[dict[str, str], Meta(description="Each column (or JSON key) read into a lead field, and "
                                                        "that field.")] = {}
    custom_field_columns: Annotated[list[str], Meta(description="Columns that are no lead field (or a second "
                                                                "column for one), kept in `custom_fields` under "
                                                                "their header.")] = []
    ignored_columns: Annotated[list[str], Meta(description="Columns dropped: read-only fields, empty headers, "
                                                           "or mapped to null.")] = []
    delimiter: Annotated[str | None, Meta(description="The CSV separator found: `,` `;` tab or `|` (null for "
                                                      "JSON).")] = None
