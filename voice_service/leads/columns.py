"""Which lead field each column of an import goes to: header names as people write them, an explicit mapping, and
what is left over (custom_fields).

`First Name`, `first name`, `FirstName` and `first_name` all name `first_name`; `Phone Number`, `Mobile`, `Cell`
name `phone`; `E-mail` names `email`; … (ALIASES). A mapping sent with the import wins over the header's name
(`{"Tel. (work)": "phone", "Notes 2": null}`: null or "ignore" drops a column, "custom_fields" keeps it there).
A column that names no lead field goes to custom_fields under its header; when two columns name the same field,
the first one (from the left) is the field and the others go to custom_fields. Read-only fields (id, created_at,
…) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from voice_service.errors import BadRequest, ValidationFailed

__all__ = ["ALIASES", "CUSTOM", "IGNORE", "ColumnPlan", "normalise", "plan_columns"]

CUSTOM = "custom_fields"
IGNORE = "ignore"
READ_ONLY = frozenset({"id", "created_at", "updated_at", "do_not_call_at"})

_FIELDS = (
    "first_name", "last_name", "email", "phone", "company_name", "title", "linkedin_url", "stage", "status",
    "priority", "estimated_value", "currency", "custom_fields", "notes", "timezone", "do_not_call",
    "do_not_call_reason",
)

# Normalised header (lower case, words joined by "_") → lead field.
ALIASES: dict[str, str] = {name: name for name in _FIELDS} | {
    "firstname": "first_name", "first": "first_name", "given_name": "first_name", "forename": "first_name",
    "lastname": "last_name", "last": "last_name", "surname": "last_name", "family_name": "last_name",
    "e_mail": "email", "email_address": "email", "e_mail_address": "email", "mail": "email",
    "phone_number": "phone", "phonenumber": "phone", "telephone": "phone", "telephone_number": "phone",
    "tel": "phone", "mobile": "phone", "mobile_phone": "phone", "mobile_number": "phone", "cell": "phone",
    "cell_phone": "phone", "cellphone": "phone", "number": "phone", "phone_no": "phone",
    "company": "company_name", "companyname": "company_name", "organization": "company_name",
    "organisation": "company_name", "account": "company_name", "account_name": "company_name",
    "job_title": "title", "jobtitle": "title", "position": "title", "role": "title",
    "linkedin": "linkedin_url", "linkedin_profile": "linkedin_url", "linkedin_profile_url": "linkedin_url",
    "lead_stage": "stage", "lead_status": "status",
    "value": "estimated_value", "deal_value": "estimated_value", "estimated_deal_value": "estimated_value",
    "time_zone": "timezone", "tz": "timezone",
    "dnc": "do_not_call", "donotcall": "do_not_call", "dnc_reason": "do_not_call_reason",
    "note": "notes", "comments": "notes", "comment": "notes",
    "custom": "custom_fields",
}

_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalise(header: str) -> str:
    """`First Name` → first_name, `E-mail` → e_mail, `Phone #` → phone."""
    return _NON_WORD.sub("_", header.strip().lower()).strip("_")


@dataclass
class ColumnPlan:
    """Where each column goes: a lead field, custom_fields (under its header), or nowhere."""

    fields: dict[str, str] = field(default_factory=dict)  # column → lead field
    custom: list[str] = field(default_factory=list)  # columns kept in custom_fields
    ignored: list[str] = field(default_factory=list)

    def target(self, column: str) -> str | None:
        if column in self.fields:
            return self.fields[column]
        return CUSTOM if column in self.custom else None


def check_mapping(mapping: Mapping[str, str | None]) -> dict[str, str]:
    """The mapping with its targets checked: a lead field, "custom_fields", or null / "ignore"."""
    out: dict[str, str] = {}
    for column, target in mapping.items():
        value = IGNORE if target in (None, "", IGNORE) else str(target)
        if value not in (IGNORE, CUSTOM) and value not in _FIELDS:
            raise ValidationFailed(
                f"`mapping`: column {column!r} is mapped to {value!r}, which is not a lead field; use one of "
                f"{', '.join(_FIELDS)}, or \"custom_fields\", or null to ignore the column",
                field=f"mapping.{column}",
            )
        if value in READ_ONLY:
            raise ValidationFailed(f"`mapping`: {value!r} cannot be imported", field=f"mapping.{column}")
        out[column] = value
    return out


def plan_columns(columns: Iterable[str], mapping: Mapping[str, str] | None, *, strict: bool) -> ColumnPlan:
    """Plan a file's columns (CSV header or the JSON objects' keys). With `strict` (a CSV header), every mapped
    column must exist in the file."""
    columns = list(columns)
    mapping = dict(mapping or {})
    if strict:
        missing = [c for c in mapping if c not in columns]
        if missing:
            raise ValidationFailed(
                f"`mapping` names column {missing[0]!r}, which the file does not have; its columns are "
                f"{', '.join(repr(c) for c in columns)}",
                field=f"mapping.{missing[0]}",
            )
    plan = ColumnPlan()
    taken: dict[str, str] = {}
    for column in columns:
        explicit = mapping.get(column)
        if explicit is not None:
            if explicit == IGNORE:
                plan.ignored.append(column)
                continue
            if explicit == CUSTOM:
                plan.custom.append(column)
                continue
            if explicit in taken and mapping.get(taken[explicit]) == explicit:
                raise ValidationFailed(
                    f"`mapping` maps both {taken[explicit]!r} and {column!r} to {explicit!r}; map one of them",
                    field=f"mapping.{column}",
                )
            if explicit in taken:  # the explicit mapping wins over a header that merely named the field
                previous = taken[explicit]
                del plan.fields[previous]
                plan.custom.append(previous)
            taken[explicit] = column
            plan.fields[column] = explicit
            continue
        name = normalise(column)
        if not name:
            plan.ignored.append(column)
            continue
        if name in READ_ONLY:
            plan.ignored.append(column)
            continue
        target = ALIASES.get(name)
        if target is None or target in taken:
            plan.custom.append(column)
            continue
        taken[target] = column
        plan.fields[column] = target
    return plan


def require_phone_column(plan: ColumnPlan, columns: list[str]) -> None:
    if "phone" not in plan.fields.values():
        raise BadRequest(
            "the file has no phone column (every lead needs one): name a column `phone` (or `Phone Number`, "
            f"`Mobile`, …) or map one with `mapping`; its columns are {', '.join(repr(c) for c in columns)}",
            field="phone",
        )
