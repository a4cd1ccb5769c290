"""A live call's controls from its page: end it, make the agent say something, transfer it, and the token its page
listens in with — under the console session and the API's rules (acting needs `member`; listening, any role).

The page's script opens the API's listen WebSocket (`/v1/calls/{id}/listen?token=…`) with a token minted here: a
browser cannot put an API key on a WebSocket, and the console never hands it one.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, post
from litestar.response import Redirect, Response, Template

from voice_service.auth import requires
from voice_service.calls import service as calls
from voice_service.console.call_detail import LIVE_STATUSES, call_id_of
from voice_service.console.templating import page
from voice_service.db import tenant_tx
from voice_service.deps import Caller
from voice_service.errors import AppError, Conflict, ServiceUnavailable, ValidationFailed
from voice_service.phones import require_phone

SAY_MAX_CHARS = 1000
_NOT_YET = ("listening in, saying and transferring need the service's live call control, which is not installed "
            "on this service yet")


def _result(request: Request[Any, Any, Any], call_id: uuid.UUID, text: str, *, ok: bool = True,
            status_code: int = 200) -> Response[Any] | Template:
    if request.headers.get("hx-request") == "true":
        return page(request, "console/calls/_live_result.html", status_code=status_code, text=text, ok=ok)
    if not ok:
        raise ValidationFailed(text)
    return Redirect(f"/console/calls/{call_id}", status_code=303)


class LiveCallPages(Controller):
    path = "/calls/{call_id:str}"

    async def _live(self, request: Request[Any, Any, Any], principal: Any, call_id: uuid.UUID) -> None:
        async with tenant_tx(request.app.state.pool, principal.tenant_id) as conn:
            call = await calls.get_call(conn, principal.tenant_id, call_id)
        if call.status not in LIVE_STATUSES:
            raise Conflict(f"the call has ended (status {call.status})")

    @post("/end", name="console:call-end", status_code=200, guards=[requires("member")])
    async def end(self, request: Request[Any, Any, Any], principal: Caller, call_id: str) -> Response[Any] | Template:
        number = call_id_of(call_id)
        await self._live(request, principal, number)
        await calls.hangup_call(request.app.state.runtime, principal.tenant_id, number)
        return _result(request, number, "The call is being hung up.")

    @post("/say", name="console:call-say", status_code=200, guards=[requires("member")])
    async def say(self, request: Request[Any, Any, Any], principal: Caller, call_id: str) -> Response[Any] | Template:
        number = call_id_of(call_id)
        form = await request.form()
        text = " ".join(str(form.get("text") or "").split())
        if not text:
            return _result(request, number, "Make the agent say: write what the agent should say", ok=False,
                           status_code=422)
        if len(text) > SAY_MAX_CHARS:
            return _result(request, number, f"Make the agent say: at most {SAY_MAX_CHARS} characters", ok=False,
                           status_code=422)
        await self._live(request, principal, number)
        raise ServiceUnavailable(_NOT_YET)

    @post("/transfer", name="console:call-transfer", status_code=200, guards=[requires("member")])
    async def transfer(self, request: Request[Any, Any, Any], principal: Caller,
                       call_id: str) -> Response[Any] | Template:
        number = call_id_of(call_id)
        form = await request.form()
        try:
            require_phone(str(form.get("to") or "").strip(), "to")
        except AppError:
            return _result(request, number, "Transfer to: enter the number in international format, e.g. "
                           "+14155550100", ok=False, status_code=422)
        await self._live(request, principal, number)
        raise ServiceUnavailable(_NOT_YET)

    @post("/listen-token", name="console:call-listen-token", status_code=201)
    async def listen_token(self, request: Request[Any, Any, Any], principal: Caller, call_id: str) -> Response[Any]:
        number = call_id_of(call_id)
        await self._live(request, principal, number)
        raise ServiceUnavailable(_NOT_YET)
