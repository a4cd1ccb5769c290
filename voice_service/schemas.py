"""Constrained types shared by the API schemas."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from voice_service.errors import ValidationFailed

# An agent's id in a request body: a PostgreSQL bigint (out of range is a 400 naming the field, not a database error).
AgentRef = Annotated[int, Meta(ge=1, le=2**63 - 1)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
ShortText = Annotated[str, Meta(max_length=200)]
Text = Annotated[str, Meta(max_length=2000)]
LongText = Annotated[str, Meta(max_length=20000)]
# Syntax only; numbers are parsed and validated with `phonenumbers` in the services.
E164 = Annotated[str, Meta(pattern=r"^\+[1-9]\d{6,14}$", description="E.164 phone number, e.g. +15551234567")]
Language = Annotated[str, Meta(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35,
                               description="BCP-47 language tag, e.g. en-US")]

# Request bodies: JSON requests up to BODY_MAX_BYTES (the app's default), batches (up to 10,000 entries) and lead
# imports (up to 100,000 rows) have their own larger limits on their routes; over the limit is a 413 that says it.
BODY_MAX_BYTES = 1024 * 1024
BATCH_BODY_MAX_BYTES = 16 * 1024 * 1024

# Free-form JSON objects (metadata, custom_fields, variables, preferences) are stored and returned on every read of
# their row (a list page repeats them per item), so each is capped. Input Structs check theirs in __post_init__
# with `check_free_json`: a 422 naming the field.
FREE_JSON_MAX_BYTES = 16 * 1024
FreeJson = Annotated[
    dict[str, Any],
    Meta(description=f"free-form JSON object, at most {FREE_JSON_MAX_BYTES // 1024} KB ({FREE_JSON_MAX_BYTES:,} "
                     "bytes) once encoded as compact JSON"),
]
_compact = msgspec.json.Encoder()


def check_free_json(fields: dict[str, Any]) -> None:
    """Raise ValidationFailed (422) naming the first field (its path as the client wrote it, e.g.
    `entries[3].variables`) whose value encodes to more than FREE_JSON_MAX_BYTES."""
    for field, value in fields.items():
        if value is None or value is msgspec.UNSET or not value:
            continue
        size = len(_compact.encode(value))
        if size > FREE_JSON_MAX_BYTES:
            raise ValidationFailed(
                f"{field} is {size:,} bytes of JSON; a free-form field holds at most "
                f"{FREE_JSON_MAX_BYTES // 1024} KB ({FREE_JSON_MAX_BYTES:,} bytes)",
                field=field,
            )
