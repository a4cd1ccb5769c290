"""HTTP and WebSocket routes of live call control: end, say, transfer, and listening in (token + socket).

Roles: ending, speaking and transferring act on a call, like placing one: they need at least `member`. Listening is
reading: any role, `viewer` included, may mint a listen token and open the socket.

The listen socket is outside the API-key middleware (browsers cannot set headers on a WebSocket): it authenticates
itself, with the `Authorization: Bearer …` (or `X-API-Key`) header or a `?token=` from POST …/listen-token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from litestar import Controller, Request, WebSocket, post, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED

from voice_service.auth import KEY_PREFIX, Principal, requires, resolve_api_key, resolve_jwt
from voice_service.calls import control_service as service
from voice_service.calls.control import ListenSource, LiveControl, control_of
from voice_service.calls.control_schemas import CommandResult, ListenToken, SayRequest, TransferRequest
from voice_service.calls.listen import ws_frames
from voice_service.deps import Caller
from voice_service.errors import AppError, ServiceUnavailable, Unauthorized

log = logging.getLogger(__name__)

__all__ = ["LISTEN_PATH", "route_handlers"]

LISTEN_PATH = "/v1/calls/{call_id:uuid}/listen"

_LISTEN_DESCRIPTION = """\
Returns a single-use token for the listen WebSocket, valid for 60 seconds: open
`GET /v1/calls/{id}/listen?token=…` (`listen_url`) with it. A client that can set headers may instead open the
socket with `Authorization: Bearer <API key or token>`. Any role may listen, `viewer` included.

The socket streams the live call until it ends, whichever instance carries the call's media:

* **binary frames** — audio: byte 0 is the channel (0 caller, 1 agent), bytes 1-4 the position where the audio
  starts (uint32 little-endian, in samples at `sample_rate` from the start of the call's media: the origin of
  the transcript's `start_ms`), then 16-bit little-endian PCM, mono, at `sample_rate`. The caller's audio is
  continuous; the agent's is what the caller heard, sent when it starts playing (silence is not sent).
* **text frames** — JSON objects with a `type`:
  `start` `{call_id, status, sample_rate, encoding: "pcm_s16le", channels: ["caller", "agent"]}` (first);
  `caller_text` `{text, final, at_ms}` (the caller's words as recognised: interim guesses, then `final`);
  `agent_text` `{text, at_ms}` (a sentence of the agent starts playing);
  `agent_cleared` `{at_ms}` (barge-in: agent audio after this moment never played);
  `transcript` `{role, text, start_ms, end_ms, interrupted}` (a finished turn, as stored with the call);
  `stats` `{dropped_ms}` (audio dropped because this listener fell behind);
  `end` `{status, end_reason}` (last; the socket then closes with 1000);
  `error` `{status, title, detail, call_status?, end_reason?}` (then the socket closes with 4000 + status:
  4401 bad credentials or token, 4404 not another tenant's call, 4409 the call has ended or has no media,
  4503 the instance carrying the call is not answering).
"""


def _control(app: Any) -> LiveControl:
    control = control_of(app)
    if control is None:
        raise ServiceUnavailable("live call control is not running on this instance")
    return control


class LiveCallController(Controller):
    path = "/v1/calls/{call_id:uuid}"
    tags = ["calls"]

    @post(
        "/end",
        operation_id="endCall",
        summary="Hang up a live call now",
        description=(
            "The agent stops and the call ends with `end_reason` `ended_by_api`, wherever its media is. Idempotent "
            "while the call is ending; once it has ended, a 409 whose body has `call_status` and `end_reason`. A "
            "call that is not answered yet is hung up (cancelled if not placed yet); a call no instance answers "
            "for (the one carrying it stopped) is hung up through the carrier — `note` says so. Needs `member`."
        ),
        status_code=HTTP_202_ACCEPTED,
        guards=[requires("member")],
    )
    async def end(self, request: Request[Any, Any, Any], principal: Caller, call_id: uuid.UUID) -> CommandResult:
        return await service.end_call(
            request.app.state.runtime, _control(request.app), principal.tenant_id, call_id
        )

    @post(
        "/say",
        operation_id="sayOnCall",
        summary="Make the agent say something now",
        description=(
            "`interrupt: true` (default): the agent stops what it is saying and says `text`. `false`: it finishes "
            "the sentence it is saying, drops the rest of that reply, then says `text` (at once when it is "
            "silent). The line goes into the call's history (the LLM sees it) and transcript. 409 with "
            "`call_status` when the call has ended or has no live media; 503 when the instance carrying it does "
            "not answer. Needs `member`."
        ),
        status_code=HTTP_202_ACCEPTED,
        guards=[requires("member")],
    )
    async def say(
        self, request: Request[Any, Any, Any], principal: Caller, call_id: uuid.UUID, data: SayRequest
    ) -> CommandResult:
        return await service.say(request.app.state.runtime, _control(request.app), principal.tenant_id, call_id, data)

    @post(
        "/transfer",
        operation_id="transferCall",
        summary="Transfer a live call to a phone number",
        description=(
            "As the agent's `transfer_call` tool: the agent says the transfer line, then the carrier moves the "
            "call to `to` (E.164); the call ends with `end_reason` `transferred` once the transferred leg ends. "
            "If the carrier refuses, the agent says it could not transfer and the call goes on. Needs `member`."
        ),
        status_code=HTTP_202_ACCEPTED,
        guards=[requires("member")],
    )
    async def transfer(
        self, request: Request[Any, Any, Any], principal: Caller, call_id: uuid.UUID, data: TransferRequest
    ) -> CommandResult:
        return await service.transfer(
            request.app.state.runtime, _control(request.app), principal.tenant_id, call_id, data
        )

    @post(
        "/listen-token",
        operation_id="createListenToken",
        summary="A single-use token for the live listen WebSocket (GET /v1/calls/{id}/listen)",
        description=_LISTEN_DESCRIPTION,
        status_code=HTTP_201_CREATED,
    )
    async def listen_token(
        self, request: Request[Any, Any, Any], principal: Caller, call_id: uuid.UUID
    ) -> ListenToken:
        return await service.mint_listen_token(request.app.state.runtime, principal, call_id)


async def _listener(socket: WebSocket[Any, Any, Any], call_id: uuid.UUID) -> Principal:
    state = socket.app.state
    token = socket.query_params.get("token")
    if token:
        principal = await service.claim_listen_token(state.runtime, call_id, token)
        if principal is None:
            raise Unauthorized("the listen token is wrong, used already, expired, or for another call")
        return principal
    scheme, _, credential = socket.headers.get("authorization", "").partition(" ")
    if not credential and socket.headers.get("x-api-key"):
        scheme, credential = "bearer", socket.headers["x-api-key"]
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthorized("missing credentials: a ?token= from POST …/listen-token, or an Authorization header")
    if credential.startswith(KEY_PREFIX):
        return await resolve_api_key(state.pool, state.key_cache, credential)
    return await resolve_jwt(state.pool, state.settings, credential)


async def _until_closed(socket: WebSocket[Any, Any, Any]) -> None:
    while (await socket.receive())["type"] != "websocket.disconnect":
        pass  # a listener has nothing to say; what it sends is ignored


async def _stream(
    socket: WebSocket[Any, Any, Any], source: ListenSource, tenant_id: uuid.UUID, call_id: uuid.UUID
) -> None:
    runtime = socket.app.state.runtime
    while True:
        items, end = await source.next()
        for frame in ws_frames(items, source.encoding):
            if type(frame) is bytes:
                await socket.send_bytes(frame)
            else:
                await socket.send_text(frame)
        if end is None:
            continue
        if "error" in end:
            await socket.send_json({"type": "error", "status": 503, "title": "Service unavailable",
                                    "detail": end["error"]})
            await socket.close(code=4503, reason="call instance not answering")
            return
        # The call's status as recorded (its media end is; the carrier's final status may follow).
        state = await service.final_state(runtime, tenant_id, call_id)
        await socket.send_json({"type": "end", "status": state["status"],
                                "end_reason": state["end_reason"] or end.get("end_reason")})
        await socket.close(code=1000)
        return


@websocket(LISTEN_PATH)
async def listen(socket: WebSocket[Any, Any, Any], call_id: uuid.UUID) -> None:
    """Live audio and transcript events of a call (frame format: see POST /v1/calls/{id}/listen-token)."""
    await socket.accept()
    try:
        principal = await _listener(socket, call_id)
        source, status = await service.open_listen(
            socket.app.state.runtime, _control(socket.app), principal.tenant_id, call_id
        )
    except AppError as exc:
        await socket.send_json(
            {**exc.extensions, "type": "error", "status": exc.status, "title": exc.title, "detail": exc.detail}
        )
        await socket.close(code=4000 + exc.status, reason=exc.title)
        return
    try:
        await socket.send_json(
            {
                "type": "start",
                "call_id": str(call_id),
                "status": status,
                "sample_rate": source.sample_rate,
                "encoding": "pcm_s16le",
                "channels": ["caller", "agent"],
            }
        )
        streamer = asyncio.ensure_future(_stream(socket, source, principal.tenant_id, call_id))
        closed = asyncio.ensure_future(_until_closed(socket))
        try:
            await asyncio.wait({streamer, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streamer, closed):
                task.cancel()
            for task in (streamer, closed):
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError, RuntimeError):
                    await task
    except (WebSocketDisconnect, OSError):
        pass  # the listener went away
    finally:
        await source.close()


route_handlers: list[Any] = [LiveCallController, listen]
