"""Cursor pagination, newest first: keyset on (created_at DESC, id DESC), opaque url-safe cursors.

A cursor comes back from the client, so it is untrusted input: anything that is not a cursor this service could
have issued (a timestamp with a time zone and an id of the list's kind: a UUID, or a non-negative bigint for the
lists keyed by integers) is a 400 naming `cursor`, never a database error."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import msgspec

from voice_service.errors import BadRequest

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class _Cursor(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    created_at: datetime
    id: str


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(_Cursor)


def encode_cursor(created_at: datetime, id_: Any) -> str:
    raw = _enc.encode(_Cursor(created_at, str(id_)))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_BIGINT = re.compile(r"[0-9]{1,19}")
_MAX_BIGINT = 2**63 - 1
_INVALID = "cursor is not valid; pass back `next_cursor` from a previous page"


def decode_cursor(cursor: str, *, id_kind: Literal["uuid", "int"] = "uuid") -> tuple[datetime, str]:
    """(created_at, id) of a cursor from `encode_cursor`; `id_kind` is what the list's id column holds."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        c = _dec.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise BadRequest(_INVALID, field="cursor") from None
    if c.created_at.tzinfo is None or not _valid_id(c.id, id_kind):
        raise BadRequest(_INVALID, field="cursor")
    return c.created_at, c.id


def _valid_id(value: str, kind: str) -> bool:
    if kind == "int":
        return _BIGINT.fullmatch(value) is not None and int(value) <= _MAX_BIGINT
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def check_limit(limit: int) -> int:
    if limit < 1 or limit > MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


def page_from_rows(rows: list[Any], limit: int, convert: Any) -> Page[Any]:
    """`rows` were fetched with LIMIT limit+1; the extra row only tells that another page exists."""
    more = len(rows) > limit
    rows = rows[:limit]
    items = [convert(r) for r in rows]
    nxt = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more and rows else None
    return Page(items=items, next_cursor=nxt)


def page_json(items: bytes, last: tuple[datetime, Any] | None) -> bytes:
    """A `Page`'s JSON from its items' JSON array (encoded elsewhere: by PostgreSQL) and the last item's
    (created_at, id) when another page exists."""
    cursor = b"null" if last is None else b'"' + encode_cursor(*last).encode() + b'"'
    return b'{"items":' + items + b',"next_cursor":' + cursor + b"}"
