"""HTTP routes for recordings: stream or delete a call's recording, and the tenant's retention setting.

`GET /v1/calls/{id}/recording` streams the file with single byte ranges (Range, 206, 416) so a player can seek;
the serving itself is recordings/serving.py, shared with the console's player.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, put
from litestar.response import Stream

from voice_service.auth import writes_need
from voice_service.deps import Caller, Conn
from voice_service.openapi import problems
from voice_service.recordings import purge
from voice_service.recordings.encoder import CONTENT_TYPE
from voice_service.recordings.schemas import RecordingSettings, RecordingSettingsUpdate
from voice_service.recordings.service import actor_of, delete_recording
from voice_service.recordings.serving import RangeNotSatisfiable, parse_range, recording_response
from voice_service.runtime import Runtime

__all__ = ["RangeNotSatisfiable", "parse_range", "route_handlers"]


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
        return await recording_response(runtime, conn, principal.tenant_id, call_id,
                                        range_header=request.headers.get("range"),
                                        if_range=request.headers.get("if-range"))

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
