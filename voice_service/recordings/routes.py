"""HTTP routes for recordings: stream or delete a call's recording, and the tenant's retention setting.

`GET /v1/calls/{id}/recording` serves single byte ranges (RFC 9110 §14: `Range: bytes=a-b`, `a-`, `-n`; 206 with
Content-Range; 416 with `Content-Range: bytes */size` when nothing of the file is asked for) so a player can
seek; several ranges in one request, a malformed Range, or an If-Range that no longer matches get the whole
file (200), as the RFC allows. The file streams from the storage in chunks, never whole in memory.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from litestar import Controller, Request, delete, get, put
from litestar.response import Stream

from voice_service.auth import writes_need
from voice_service.calls import repository as calls_repo
from voice_service.deps import Caller, Conn
from voice_service.errors import AppError, NotFound, ServiceUnavailable
from voice_service.openapi import problems
from voice_service.recordings import purge
from voice_service.recordings.encoder import CONTENT_TYPE, EXTENSION
from voice_service.recordings.schemas import RecordingSettings, RecordingSettingsUpdate
from voice_service.recordings.service import actor_of, audio_key, delete_recording
from voice_service.recordings.storage import ObjectNotFound, StorageError, get_storage
from voice_service.runtime import Runtime

__all__ = ["RangeNotSatisfiable", "parse_range", "route_handlers"]

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


class RecordingController(Controller):
    path = "/v1/calls/{call_id:uuid}/recording"
    tags = ["calls"]
    guards = [writes_need("admin")]

    @get(
        "/",
        operation_id="getCallRecording",
        summary="Stream a call's recording (MP3, caller left, agent right; Range requests for seeking)",
        description=(
            "Two channels, time-aligned with the transcript's `start_ms`/`end_ms`: the caller on the left, the "
            "agent on the right exactly as the caller heard it. Supports a single byte range (206). 404 when the "
            "call has no recording (recording off, not stored yet, failed — see `metadata.recording_error` — "
            "or deleted)."
        ),
        media_type=CONTENT_TYPE,
        responses=problems(416, s503="The recordings storage is unavailable; retry shortly."),
    )
    async def get_recording(
        self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, call_id: uuid.UUID
    ) -> Stream:
        runtime: Runtime = request.app.state.runtime
        state = await calls_repo.recording_state(conn, principal.tenant_id, call_id)
        if state is None:
            raise NotFound(f"call {call_id} not found")
        if state["recording_url"] is None:
            raise NotFound(f"call {call_id} has no recording")
        storage = await get_storage(runtime)
        key = audio_key(principal.tenant_id, call_id)
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
        if_range = request.headers.get("if-range")
        byte_range = parse_range(request.headers.get("range"), size) if if_range in (None, etag) else None
        if byte_range is None:
            headers["Content-Length"] = str(size)
            return Stream(storage.get(key), media_type=CONTENT_TYPE, status_code=200, headers=headers)
        start, stop = byte_range
        headers["Content-Length"] = str(stop - start)
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        return Stream(storage.get(key, start, stop), media_type=CONTENT_TYPE, status_code=206, headers=headers)

    @delete(
        "/",
        operation_id="deleteCallRecording",
        summary="Delete a call's recording (admin; audited by a voice_call.recording_deleted event)",
        status_code=204,
        responses=problems(s503="The recordings storage is unavailable; retry shortly."),
    )
    async def delete_recording(self, request: Request[Any, Any, Any], principal: Caller, call_id: uuid.UUID) -> None:
        """Deletes the file, then clears the call's `recording_url`; a `voice_call.recording_deleted`
        event records who did it. 404 when the call has no recording. Needs the admin role."""
        runtime: Runtime = request.app.state.runtime
        await delete_recording(runtime, principal.tenant_id, call_id, reason="api", actor=actor_of(principal))


class RecordingSettingsController(Controller):
    path = "/v1/recordings/settings"
    tags = ["calls"]
    guards = [writes_need("admin")]

    @get("/", operation_id="getRecordingSettings", summary="The tenant's recording settings (retention)")
    async def get_settings(self, conn: Conn, principal: Caller) -> RecordingSettings:
        """`retention_days`: recordings older than this many days after their call are deleted (null keeps
        them)."""
        return await purge.get_settings(conn, principal.tenant_id)

    @put(
        "/",
        operation_id="putRecordingSettings",
        summary="Set the tenant's recording retention (days after the call; null keeps recordings)",
        description="Recordings older than `retention_days` are deleted by an hourly job, each audited by a "
        "`voice_call.recording_deleted` event with reason `retention`.",
    )
    async def put_settings(
        self, conn: Conn, principal: Caller, data: RecordingSettingsUpdate
    ) -> RecordingSettings:
        return await purge.put_settings(conn, principal.tenant_id, data)


route_handlers: list[Any] = [RecordingController, RecordingSettingsController]
