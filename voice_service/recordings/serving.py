"""Serving a call's recording: the whole file or one byte range, streamed from the recordings storage.

Single byte ranges (RFC 9110 §14: `Range: bytes=a-b`, `a-`, `-n`) get 206 with Content-Range; 416 with
`Content-Range: bytes */size` when nothing of the file is asked for; several ranges in one request, a malformed
Range, or an If-Range that no longer matches get the whole file (200), as the RFC allows. The file streams from the
storage in chunks, never whole in memory. Used by `GET /v1/calls/{id}/recording` and by the console's player (which
is authorised by the console session, since an <audio> element cannot send an API key).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import asyncpg
from litestar.response import Stream

from voice_service.calls import repository as calls_repo
from voice_service.errors import AppError, NotFound, ServiceUnavailable
from voice_service.recordings.encoder import CONTENT_TYPE, EXTENSION
from voice_service.recordings.service import audio_key
from voice_service.recordings.storage import ObjectNotFound, StorageError, get_storage
from voice_service.runtime import Runtime

__all__ = ["RangeNotSatisfiable", "parse_range", "recording_response"]

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(AppError):
    status, title = 416, "Range not satisfiable"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte range [start, stop) a Range header asks for, or None for the whole file. Raises
    RangeNotSatisfiable when it asks only for bytes past the end."""
    if not header or "," in header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size
    start = int(first)
    stop = size if not last else min(size, int(last) + 1)
    if last and int(last) < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        raise _unsatisfiable(size)
    return start, stop


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"the recording has {size} bytes; the requested range starts past its end",
        field="Range",
        headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
    )


def _etag(call_id: uuid.UUID, size: int, info: dict[str, Any]) -> str:
    digest = hashlib.sha256(f"{call_id}:{size}:{info.get('stored_at', '')}".encode()).hexdigest()[:20]
    return f'"{digest}"'


async def recording_response(runtime: Runtime, conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID, *,
                             range_header: str | None, if_range: str | None) -> Stream:
    """The call's recording (or the byte range asked for); 404 for a call of another tenant or without one."""
    state = await calls_repo.recording_state(conn, tenant_id, call_id)
    if state is None:
        raise NotFound(f"call {call_id} not found")
    if state["recording_url"] is None:
        raise NotFound(f"call {call_id} has no recording")
    storage = await get_storage(runtime)
    key = audio_key(tenant_id, call_id)
    try:
        size = await storage.size(key)
    except ObjectNotFound:
        raise NotFound(f"the recording of call {call_id} is missing from the recordings storage") from None
    except StorageError as exc:
        raise ServiceUnavailable("the recordings storage is unavailable; try again shortly") from exc
    etag = _etag(call_id, size, (state["metadata"] or {}).get("recording") or {})
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Cache-Control": "private, max-age=0, must-revalidate",
        "Content-Disposition": f'inline; filename="call-{call_id}.{EXTENSION}"',
    }
    byte_range = parse_range(range_header, size) if if_range in (None, etag) else None
    if byte_range is None:
        headers["Content-Length"] = str(size)
        return Stream(storage.get(key), media_type=CONTENT_TYPE, status_code=200, headers=headers)
    start, stop = byte_range
    headers["Content-Length"] = str(stop - start)
    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    return Stream(storage.get(key, start, stop), media_type=CONTENT_TYPE, status_code=206, headers=headers)
