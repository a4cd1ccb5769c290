"""The web call's WebSocket (/v1/web-calls/{call_id}/socket) as raw ASGI: the browser's side of the call.

Like the carriers' media sockets (telephony/media.py) the route only admits the connection; every frame after that
goes from uvicorn's ASGI messages to the web codec (providers/telephony/web_media.py) and the same MediaSession and
conversation engine a phone call uses, with no per-frame framework work. The steps:

1. Before the upgrade is accepted: the call must be a web call still waiting for its socket, and the page's
   `Origin` one allowed to use it (origins.py). Otherwise the upgrade is refused (HTTP 403), saying nothing.
2. Accepted, the first message must be `start` with the call's single-use token and the audio format, within
   HANDSHAKE_TIMEOUT; a wrong, used or expired token, or a malformed start: close 1008 with the reason.
3. The call becomes ongoing; the service sends `started`; the media session runs the process's session handler
   (the conversation engine) inside a WebCallHandler that adds the protocol's events and the recording capture.
4. However it ends (the caller's `stop` or close, the agent hanging up, the API, a shutdown drain): the call's end
   is recorded (which starts billing and analysis), the events still queued and `end` with the reason are sent, the
   socket is closed (1000), and the recording is handed to its encode job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from litestar import asgi

from providers.telephony.base import MediaIgnored, MediaStarted, ProtocolError
from providers.telephony.web_media import WEB_FORMAT, WebCodec, encode_end, encode_started
from voice_service.calls import live
from voice_service.calls.schemas import CallInfo
from voice_service.calls.session import MediaSession, Receive, Send
from voice_service.recordings import service as recordings
from voice_service.recordings.capture import CallCapture
from voice_service.runtime import Runtime
from voice_service.webcalls import service
from voice_service.webcalls.events import Outbox, WebCallHandler
from voice_service.webcalls.origins import origin_allowed, parse_origins

log = logging.getLogger(__name__)

__all__ = ["HANDSHAKE_TIMEOUT", "web_call_socket"]

HANDSHAKE_TIMEOUT = 10.0
POLICY_VIOLATION = 1008
# A browser closing its tab closes with 1001 (going away); a client that hangs up without `stop` with 1000.
CLEAN_CLOSE_CODES = (1000, 1001)
_MAX_PRELUDE_MESSAGES = 3
_CLOSE_REASON_BYTES = 123  # the WebSocket protocol's limit on a close frame's reason
_BYTES_PER_SECOND = WEB_FORMAT.sample_rate * 2 * WEB_FORMAT.channels


def _headers(scope: Any) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


async def _close(send: Send, code: int, reason: str = "") -> None:
    reason_bytes = reason.encode()[:_CLOSE_REASON_BYTES]
    with contextlib.suppress(OSError, RuntimeError):
        await send({"type": "websocket.close", "code": code, "reason": reason_bytes.decode(errors="ignore")})


async def _send_text(send: Send, text: str) -> None:
    with contextlib.suppress(OSError, RuntimeError):  # the client is gone: nothing left to tell it
        await send({"type": "websocket.send", "text": text})


async def _read_start(receive: Receive, codec: WebCodec) -> MediaStarted | str:
    """The `start` message, or why there is none (for the close frame's reason)."""
    for _ in range(_MAX_PRELUDE_MESSAGES):
        message = await receive()
        if message["type"] != "websocket.receive":
            return "the socket closed before `start`"
        text = message.get("text")
        data = text if text is not None else message.get("bytes")
        if data is None:
            continue
        try:
            event = codec.decode(data)
        except ProtocolError as exc:
            return f"bad start: {exc}"
        if isinstance(event, MediaStarted):
            return event
        if not isinstance(event, MediaIgnored):
            return "the first message must be `start` (with the token and the audio format)"
    return "the first message must be `start` (with the token and the audio format)"


class _AgentTap:
    """The session's send, watched for the recording: each agent frame as it leaves (the client plays frames back
    to back from their arrival, as the capture is told) and each clear (what was not played yet never will be)."""

    __slots__ = ("_capture", "_clear", "_loop", "_next", "_send")

    def __init__(self, send: Send, capture: CallCapture, clear_text: str) -> None:
        self._send = send
        self._capture = capture
        self._clear = clear_text
        self._loop = asyncio.get_running_loop()
        self._next = 0.0

    async def __call__(self, message: Any) -> None:
        if message["type"] == "websocket.send":
            data = message.get("bytes")
            now = self._loop.time()
            if data is not None:
                at = self._next if self._next > now else now
                self._capture.agent(data, at)
                self._next = at + len(data) / _BYTES_PER_SECOND
            elif message.get("text") == self._clear:
                self._capture.clear(now)
                self._next = now
        await self._send(message)


async def _open_capture(runtime: Runtime, info: CallInfo) -> CallCapture | None:
    try:
        return await recordings.open_capture(
            runtime,
            info,
            encoding=WEB_FORMAT.encoding,
            sample_rate=WEB_FORMAT.sample_rate,
            t0=asyncio.get_running_loop().time(),
        )
    except OSError as exc:  # the spool's disk: the call goes on unrecorded
        log.warning("web call not recorded: the spool could not be opened", extra={"detail": str(exc)[:300]})
        return None


async def _reject_http(send: Send) -> None:
    body = b'{"title":"Upgrade required","status":426,"detail":"this endpoint is a WebSocket"}'
    await send(
        {
            "type": "http.response.start",
            "status": 426,
            "headers": [(b"content-type", b"application/problem+json"), (b"upgrade", b"websocket")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def serve_web_call(scope: Any, receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket":
        await _reject_http(send)
        return
    app = scope.get("app")
    runtime: Runtime = app.state.runtime
    calls = live.registry_of_app(app)
    live.attach(runtime, calls)
    metrics = getattr(app.state, "metrics", None)
    if metrics is not None:
        calls.track_gauge(metrics.live_calls)
    if (await receive())["type"] != "websocket.connect":
        return

    call_id = scope.get("path_params", {}).get("call_id")
    headers = _headers(scope)
    origin = headers.get("origin")
    target = await service.socket_target(runtime, call_id) if isinstance(call_id, uuid.UUID) else None
    settings = runtime.settings
    allowed = target is not None and origin_allowed(
        origin,
        host_header=headers.get("host"),
        public_base_url=settings.public_base_url,
        configured=parse_origins(settings.cors_allowed_origins),
        per_call=target.allowed_origins,
    )
    if target is None or not allowed or calls.draining:
        if target is None:
            why = "no such web call waiting for its socket"
        elif not allowed:
            why = "origin not allowed"
        else:
            why = "draining"
        log.warning(
            "web call socket refused",
            extra={"call": str(call_id), "origin": (origin or "")[:200], "why": why},
        )
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})  # before accept: HTTP 403
        return
    await send({"type": "websocket.accept"})

    codec = WebCodec()
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            started = await _read_start(receive, codec)
    except TimeoutError:
        started = f"no `start` within {HANDSHAKE_TIMEOUT:.0f} s"
    if isinstance(started, str):
        await _close(send, POLICY_VIOLATION, started)
        return
    info = await service.connect(runtime, target, started.token, origin)
    if info is None:
        log.warning("web call socket refused: wrong, used or expired token", extra={"call": str(call_id)})
        await _close(send, POLICY_VIOLATION, "the token is wrong, used or expired: create a new web call")
        return

    # The accept went through the framework's send wrappers; the frames need not (see observability).
    raw_send: Send = scope.get("state", {}).get("asgi_send", send)
    await _send_text(raw_send, encode_started(str(info.call_id)))
    capture = await _open_capture(runtime, info)
    session = MediaSession(
        call=info,
        codec=codec,
        started=started,
        receive=receive,
        send=_AgentTap(raw_send, capture, codec.encode_clear()) if capture is not None else raw_send,
        runtime=runtime,
        clean_close_codes=CLEAN_CLOSE_CODES,
    )
    outbox = Outbox(lambda text: _send_text(raw_send, text))
    calls.add(session)
    handler: WebCallHandler | None = None
    try:
        try:
            handler = WebCallHandler(
                live.session_handler_factory(session),
                outbox,
                capture,
                bytes_per_second=session.bytes_per_second,
            )
            await session.run(handler)
        except Exception:
            log.exception("web call session failed", extra={"call": str(info.call_id)})
        finally:
            ended_at = asyncio.get_running_loop().time()
            reason = service.end_reason_of(session.end_reason)
            try:
                # Recorded before the client is told: a client that reads the call after `end` finds it over.
                await service.ended(
                    runtime,
                    info.ref,
                    reason=reason,
                    inbound_audio_seconds=session.inbound_seconds,
                    dropped_audio_seconds=handler.dropped_seconds if handler is not None else 0.0,
                )
            finally:
                await outbox.flush()
                await _send_text(raw_send, encode_end(reason))
                await _close(raw_send, 1000)
            if capture is not None:
                await recordings.finish_capture(runtime, info.ref, capture, ended_at=ended_at)
    finally:
        session.mark_finished()
        calls.remove(session)


# copy_scope=False: the handler never modifies the scope. Not in the OpenAPI document (it is not an HTTP operation):
# POST /v1/web-calls documents the protocol. No API key: the call's single-use token is the credential.
web_call_socket = asgi(
    "/v1/web-calls/{call_id:uuid}/socket",
    copy_scope=False,
    include_in_schema=False,
    opt={"exclude_from_auth": True},
)(serve_web_call)
