"""Cursor pagination, newest first: keyset on (created_at DESC, id DESC), opaque url-safe cursors."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

from voice_service.errors import BadRequest

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class _Cursor(msgspec.Struct, array_like=True):
    created_at: datetime
    id: str


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(_Cursor)


def encode_cursor(created_at: datetime, id_: Any) -> str:
    raw = _enc.encode(_Cursor(created_at, str(id_)))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        c = _dec.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise BadRequest("cursor is not valid; pass back `next_cursor` from a previous page", field="cursor") from None
    return c.created_at, c.id


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
