"""Service helpers shared by the plain CRUD domains (payload → column dict, not-found mapping)."""

from __future__ import annotations

from typing import Any

import msgspec

from voice_service.errors import ValidationFailed


def fields_of(data: msgspec.Struct, *, not_null: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields a create/PATCH payload carries (UNSET dropped), nested Structs as plain JSON values."""
    out: dict[str, Any] = {}
    for key, value in msgspec.structs.asdict(data).items():
        if value is msgspec.UNSET:
            continue
        if key in not_null and value is None:
            raise ValidationFailed(f"{key} cannot be null", field=key)
        out[key] = msgspec.to_builtins(value) if isinstance(value, msgspec.Struct) else value
    return out
