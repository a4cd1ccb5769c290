"""The media WebSockets (/v1/telephony/{twilio,vonage}/media) as raw ASGI: the hot path of every call.

Litestar only routes the connection here; every frame after that goes straight from uvicorn's ASGI messages
to the provider codec and the MediaSession, with no per-frame framework work.

Twilio signs the WebSocket upgrade: X-Twilio-Signature over the wss:// URL of the <Stream> (as we put it in the
TwiML: PUBLIC_BASE_URL with wss, no POST params), keyed with the auth token of the Twilio account or the simulator
account. A missing or invalid signature refuses the upgrade (HTTP 403) before any message is read. Vonage does
not sign its upgrade; its sockets rely on the token alone.

Then the first message(s) must carry our call id and one-time token (Twilio: `connected`, then `start` with
customParameters; Vonage: the `websocket:connected` text frame with the connect headers). Anything else, a wrong,
reused or expired token, or nothing within HANDSHAKE_TIMEOUT: close with 1008 (policy violation) and nothing
else happens.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from providers.telephony.base import MediaCodec, MediaIgnored, MediaStarted, ProtocolError, WebhookRequest
from providers.telephony.twilio import TwilioCodec
from providers.telephony.vonage import VonageCodec
from voice_service.calls import live
from voice_service.calls.service import claim_media, media_connected, media_ended, media_url
from voice_service.calls.session import MediaSession, Receive, Send
from voice_service.errors import ServiceUnavailable
from voice_service.runtime import Runtime
from voice_service.telephony.providers import get_provider

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
POLICY_VIOLATION = 1008
_MAX_PRELUDE_MESSAGES = 3  # Twilio: connected, start; Vonage: websocket:connected

MediaKind = Literal["twilio", "vonage"]


def live_calls_of(app: Any) -> live.LiveCalls:
    """The app's live-call registry (tests give an app its own); the process registry otherwise."""
    calls = getattr(app.state, "live_calls", None) if app is not None else None
    return calls if isinstance(calls, live.LiveCalls) else live.registry


async def _read_start(receive: Receive, codec: MediaCodec) -> MediaStarted | None:
    for _ in range(_MAX_PRELUDE_MESSAGES):
        message = await receive()
        if message["type"] != "websocket.receive":
            return None
        text = message.get("text")
        data = text if text is not None else message.get("bytes")
        if data is None:
            return None
        try:
            event = codec.decode(data)
        except ProtocolError as exc:
            log.warning("malformed first media frame", extra={"detail": str(exc)[:300]})
            return None
        if isinstance(event, MediaStarted):
            return event
        if not isinstance(event, MediaIgnored):
            return None
    return None


async def twilio_upgrade_signed(runtime: Runtime, scope: Any) -> bool:
    """Whether the upgrade request carries a valid X-Twilio-Signature of Twilio's or the simulator's account."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    if not headers.get("x-twilio-signature"):
        return False
    query = scope.get("query_string", b"").decode("latin-1")
    url = media_url(runtime.settings, "twilio") + (f"?{query}" if query else "")
    request = WebhookRequest(url=url, method="GET", headers=headers, body=b"", form={})
    for account in ("twilio", "simulator"):
        try:
            provider = await get_provider(runtime, account)
        except ServiceUnavailable:
            continue  # that account is not configured: nothing it signed can be checked
        if provider.verify_webhook(request):
            return True
    return False


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


async def serve_media(scope: Any, receive: Receive, send: Send, kind: MediaKind) -> None:
    if scope["type"] != "websocket":
        await _reject_http(send)
        return
    app = scope.get("app")
    runtime = app.state.runtime
    calls = live_calls_of(app)
    live.attach(runtime, calls)
    metrics = getattr(app.state, "metrics", None)
    if metrics is not None:
        calls.track_gauge(metrics.live_calls)

    if (await receive())["type"] != "websocket.connect":
        return
    if kind == "twilio" and not await twilio_upgrade_signed(runtime, scope):
        log.warning("media socket refused: upgrade signature missing or invalid", extra={"media": kind})
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})  # before accept: HTTP 403
        return
    await send({"type": "websocket.accept"})
    codec: MediaCodec = TwilioCodec() if kind == "twilio" else VonageCodec()
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            started = await _read_start(receive, codec)
    except TimeoutError:
        started = None
    ref = await claim_media(runtime, started.call_id, started.token) if started is not None else None
    if started is None or ref is None:
        log.warning("media socket refused: no valid call id and token", extra={"media": kind})
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})
        return
    info = await media_connected(runtime, ref, stream_id=started.stream_id)
    if info is None:
        log.info("media socket for a call that has ended", extra={"call": str(ref.id)})
        await send({"type": "websocket.close", "code": 1000})
        return

    # Vonage has no stop event: it closes the socket (1000) when the call ends. Twilio always sends stop first.
    clean_codes = (1000,) if kind == "vonage" else ()
    session = MediaSession(
        call=info,
        codec=codec,
        started=started,
        receive=receive,
        # The accept went through the framework's send wrappers; the frames need not (see observability).
        send=scope.get("state", {}).get("asgi_send", send),
        runtime=runtime,
        clean_close_codes=clean_codes,
    )
    calls.add(session)
    try:
        try:
            await session.run(live.session_handler_factory(session))
        except Exception:
            log.exception("media session failed", extra={"call": str(ref.id)})
        finally:
            await session.close_socket()
            # No end reason means the session did not end the normal way: end the call and hang up.
            await media_ended(
                runtime,
                ref,
                reason=session.end_reason or "internal_error",
                hang_up=session.hung_up or session.end_reason is None,
                inbound_audio_seconds=session.inbound_seconds,
            )
    finally:
        session.mark_finished()
        calls.remove(session)


async def twilio_media(scope: Any, receive: Receive, send: Send) -> None:
    await serve_media(scope, receive, send, "twilio")


async def vonage_media(scope: Any, receive: Receive, send: Send) -> None:
    await serve_media(scope, receive, send, "vonage")
