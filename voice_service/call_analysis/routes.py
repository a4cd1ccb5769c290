"""HTTP routes for the call analysis: read it, and ask for a new run (`/v1/calls/{call_id}/analysis`)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, get, post
from litestar.status_codes import HTTP_202_ACCEPTED

from voice_service.auth import requires
from voice_service.call_analysis import service
from voice_service.call_analysis.schemas import CallAnalysis
from voice_service.deps import Caller, Conn
from voice_service.openapi import problems


class CallAnalysisController(Controller):
    path = "/v1/calls/{call_id:uuid}/analysis"
    tags = ["calls"]

    @get("/", operation_id="getCallAnalysis", summary="The call's post-call analysis")
    async def get_analysis(self, conn: Conn, principal: Caller, call_id: uuid.UUID) -> CallAnalysis:
        """The latest analysis run: `status` pending, completed or failed; summary, sentiment, lead
        category, success evaluation and `lead_extraction` (the agent's analysis schema) once completed."""
        return await service.get_call_analysis(conn, principal, call_id)

    @post(
        "/rerun",
        operation_id="rerunCallAnalysis",
        status_code=HTTP_202_ACCEPTED,
        guards=[requires("member")],
        summary="Analyse the call again (billed as a new analysis run)",
        responses=problems(s409="The call has not been finalised yet; it is analysed once it ends."),
    )
    async def rerun(self, conn: Conn, principal: Caller, call_id: uuid.UUID) -> CallAnalysis:
        """Queues a new analysis run (202); the response is the pending run. It is billed like the first.
        Needs the member role."""
        return await service.rerun_call_analysis(conn, principal, call_id)


route_handlers: list[Any] = [CallAnalysisController]
