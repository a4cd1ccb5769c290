"""The agent page's "Talk to this agent": the console creates a web call for the signed-in user, and the page
(static/webcall.js) opens its socket from the browser.

The call is created by the web-calls service with the session's principal, so the same rules as
`POST /v1/web-calls` apply (who may place calls, the agent's voice for members, the wallet); the request carries
the session's CSRF token like every console write. The answer is JSON for the page's script: the call's id, the
socket's path (opened on the console's own origin, which the socket always admits) and the single-use token.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post

from voice_service.auth import requires
from voice_service.console.agents import agent_id_of
from voice_service.deps import Caller
from voice_service.webcalls import service as web_calls
from voice_service.webcalls.schemas import WebCallCreate


class TalkToAgent(Controller):
    path = "/agents"

    @post(
        "/{agent_id:str}/web-call",
        name="console:agent-web-call",
        status_code=201,
        guards=[requires("member")],
    )
    async def create_web_call(
        self, request: Request[Any, Any, Any], principal: Caller, agent_id: str
    ) -> dict[str, Any]:
        call = await web_calls.create(
            request.app.state.runtime, principal, WebCallCreate(agent_id=agent_id_of(agent_id))
        )
        return {
            "call_id": str(call.call_id),
            "socket_path": web_calls.socket_path(call.call_id),
            "token": call.token,
            "token_expires_at": call.token_expires_at.isoformat(),
        }
