"""HTTP routes of web calls: POST /v1/web-calls creates one (its OpenAPI description is the socket's protocol), and
the socket itself (socket.py)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post

from voice_service.auth import writes_need
from voice_service.calls import live
from voice_service.deps import Caller
from voice_service.errors import ServiceUnavailable
from voice_service.runtime import Runtime
from voice_service.webcalls import service
from voice_service.webcalls.schemas import WebCall, WebCallCreate
from voice_service.webcalls.socket import web_call_socket

PROTOCOL = """\
Creates a call from a browser (or any WebSocket client) to the agent: a call log row with direction `web` and no
carrier (`provider` null, no telephony leg or cost), status `pending` until its socket connects. The call is then
logged, billed (speech recognition, LLM, speech synthesis), analysed and recorded like a phone call.

Who may create one: as for `POST /v1/calls` (members with a permission for the agent's voice; admins, owners).
Another tenant's agent is a 404. An empty wallet (available balance at or below zero) is a 402.

**Putting the agent on your site.** Your server creates the call with its API key (never give the key to a browser)
and hands `socket_url` and `token` to the page. The page opens the socket and sends `start` with the token within
10 seconds. The token works once and expires at `token_expires_at` (60 s); a call whose socket never connects is
cancelled (`end_reason` `not_connected`). The page's origin must be this service's, one of `CORS_ALLOWED_ORIGINS`,
or one of the call's `allowed_origins`; otherwise the upgrade is refused with HTTP 403.

**The socket** `GET {socket_url}` (WebSocket). Binary frames carry audio both ways: PCM signed 16-bit
little-endian, mono, 16 kHz, 20 ms per frame (640 bytes; the client may send any whole number of samples), sent as
recorded (audio more than 2 s ahead of real time is dropped). Text frames are JSON objects with a `type`.

Client → service:
- `{"type": "start", "token": "…", "format": {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1}}` —
  first message.
- `{"type": "mark", "name": "…"}` — echo every mark the service sends, once the audio received before it has
  played: the agent learns what the caller heard (an interrupted answer keeps only the heard sentences).
- `{"type": "dtmf", "digit": "5"}` — a keypad press (0-9, *, #, A-D).
- `{"type": "stop"}` — hang up (closing the socket does the same).

Service → client:
- `{"type": "started", "call_id": "…", "format": {…}}` — the call is live; audio flows from now on.
- binary frames — the agent's voice, paced in real time (at most ~100 ms ahead).
- `{"type": "mark", "name": "…"}` — echo it back when everything received before it has played.
- `{"type": "clear"}` — barge-in: the caller spoke; drop all agent audio not yet played, at once.
- `{"type": "transcript", "role": "caller"|"agent", "text": "…", "final": false}` — the turn so far (replace the
  line shown).
- `{"type": "transcript", "role": …, "text": …, "final": true, "start_ms": …, "end_ms": …, "interrupted": …}` —
  a finished turn, as stored with the call.
- `{"type": "agent_text", "text": "…"}` — a sentence of the agent starts playing.
- `{"type": "end", "reason": "…"}` — the call is over (`caller_hung_up`, `agent_ended`, `silence_timeout`,
  `max_duration`, `hangup_requested`, …); the service then closes the socket with 1000.

A refused `start` (wrong, used or expired token; a format other than the one above) closes the socket with 1008 and
the reason in the close frame. See docs/web-calls.md for a browser example.
"""


class WebCallController(Controller):
    path = "/v1/web-calls"
    tags = ["calls"]
    guards = [writes_need("member")]

    @post(
        "/",
        operation_id="createWebCall",
        summary="Start a call from a browser to an agent (returns the socket URL and a single-use token)",
        description=PROTOCOL,
        status_code=201,
    )
    async def create_web_call(
        self, request: Request[Any, Any, Any], principal: Caller, data: WebCallCreate
    ) -> Response[WebCall]:
        runtime: Runtime = request.app.state.runtime
        if request.app.state.draining or live.registry_of_app(request.app).draining:
            raise ServiceUnavailable(
                "the service is shutting down; retry shortly", headers={"Retry-After": "5"}
            )
        call = await service.create(runtime, principal, data)
        return Response(call, status_code=201, headers={"Location": f"/v1/calls/{call.call_id}"})


route_handlers: list[Any] = [WebCallController, web_call_socket]
