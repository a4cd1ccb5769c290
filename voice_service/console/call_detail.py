"""One call's page: the facts, the recording player (click a turn of the transcript to hear it), the transcript as a
conversation, per-turn latency, the cost breakdown with its total, the analysis and the call's events — and, while
the call is live, its live panel (console/live_call.py).

The recording is served here under the console session: an <audio> element cannot send the API key that
`GET /v1/calls/{id}/recording` needs, so the same response (recordings/serving.py, Range included) comes from a
console route instead.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Response, Stream

from voice_service.agents import service as agents
from voice_service.auth import Principal, requires
from voice_service.call_analysis import service as analyses
from voice_service.calls.views import get_call_detail
from voice_service.console import forms
from voice_service.console.charts import STAGES
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import NotFound
from voice_service.events import service as events
from voice_service.recordings.serving import recording_response

LIVE_STATUSES = frozenset({"pending", "ringing", "ongoing"})
EVENTS_SHOWN = 100


def call_id_of(text: str) -> uuid.UUID:
    return forms.uuid_in_path(text, "call")


def offset(ms: int | float | None) -> str:
    """A moment of the call as m:ss (h:mm:ss past an hour) from the start of its media."""
    if ms is None:
        return ""
    seconds = max(0, int(ms // 1000))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


async def call_context(conn: Any, principal: Principal, call_id: uuid.UUID) -> dict[str, Any]:
    """Everything the call page shows, read in the request's transaction."""
    detail = await get_call_detail(conn, principal.tenant_id, call_id)
    call = detail.call
    agent = None
    if call.agent_id is not None:
        try:
            agent = await agents.get(conn, principal, call.agent_id)
        except NotFound:
            agent = None  # deleted since: the call still names its id
    analysis = await analyses.find_call_analysis(conn, principal, call_id)
    call_events = await events.events_of(conn, principal, call_id, EVENTS_SHOWN)
    recording_error = call.metadata.get("recording_error") if isinstance(call.metadata, dict) else None
    return {
        "call": call, "detail": detail, "agent": agent, "analysis": analysis, "events": call_events,
        "live": call.status in LIVE_STATUSES, "has_recording": call.recording_url is not None,
        "recording_error": recording_error, "stages": STAGES, "offset": offset,
        "cost_matches": call.cost is None or detail.cost_total == call.cost or not detail.cost_items,
        "can_act": principal.at_least("member"),
    }


class CallRecordPages(Controller):
    path = "/calls/{call_id:str}"

    @get("/recording", name="console:call-recording")
    async def recording(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, call_id: str) -> Stream:
        """The call's recording for the page's player, with Range support so it can seek."""
        return await recording_response(request.app.state.runtime, conn, principal.tenant_id, call_id_of(call_id),
                                        range_header=request.headers.get("range"),
                                        if_range=request.headers.get("if-range"))

    @post("/analysis/rerun", name="console:call-analysis-rerun", status_code=303, guards=[requires("member")])
    async def rerun_analysis(self, request: Request[Any, Any, Any], principal: Caller, call_id: str) -> Response[Any]:
        number = call_id_of(call_id)
        async with tenant_tx(request.app.state.pool, principal.tenant_id) as conn:
            await analyses.rerun_call_analysis(conn, principal, number)
        return Redirect(f"/console/calls/{number}?rerun=true#analysis", status_code=303)
