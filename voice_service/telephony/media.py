"""The carriers' media WebSockets (/v1/telephony/{segment}/media) as raw ASGI: the hot path of every call.

Litestar only routes the connection here; every frame after that goes straight from uvicorn's ASGI messages
to the carrier's codec and the MediaSession, with no per-frame framework work. What differs per carrier comes
from its declared MediaRoute: the codec, whether the upgrade is signed, the close codes that end a call normally.

A carrier that signs the upgrade (Twilio: X-Twilio-Signature over the wss:// URL of the <Stream>, as we put it in
the TwiML: PUBLIC_BASE_URL with wss, no POST params) must have it verified by one of the clients sharing the
route (Twilio's account or the simulator's): a missing or invalid signature refuses the upgrade (HTTP 403) before
any message is read. Vonage does not sign its upgrade; its sockets rely on the token alone.

Then the first message(s) must carry our call id and one-time token (Twilio: `connected`, then `start` with
customParameters; Vonage: the `websocket:connected` text frame with the connect headers), for a call of a carrier
this socket serves (one whose signature the upgrade carries, where it is signed): a token is valid only on its
own carrier's socket. Anything else, a wrong, reused or expired token, or nothing within HANDSHAKE_TIMEOUT: close
with 1008 (policy violation) and nothing else happens.

Once the call is claimed: its handler is built (the conversation engine, or the registry's), its recording is
started (recordings.start_recording: every call with media is recorded unless its agent turned it off; the
capture's t0 is the handler's t0, the transcript's origin), the session joins the registry (so the instance's live
control answers for the call) and runs. When the media ends: the end is recorded (media_ended), the session leaves
the registry, and the recording is handed over (the spool to the recordings storage, with its encode job).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from litestar import asgi

from providers.telephony.base import MediaCodec, MediaIgnored, MediaStarted, ProtocolError, WebhookRequest
from providers.telephony.carrier import Carrier, CarrierRoutes
from voice_service.calls import live
from voice_service.calls import repository as calls_repo
from voice_service.calls.schemas import CallRef
from voice_service.calls.service import claim_media, media_connected, media_ended
from voice_service.calls.session import MediaSession, Receive, Send
from voice_service.carriers.clients import get_provider
from voice_service.db import system_tx
from voice_service.errors import ServiceUnavailable
from voice_service.recordings import service as recordings
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
POLICY_VIOLATION = 1008
_MAX_PRELUDE_MESSAGES = 3  # Twilio: connected, start; Vonage: websocket:connected


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


async def upgrade_signed_by(
    runtime: Runtime, scope: Any, routes: CarrierRoutes, family: tuple[Carrier, ...]
) -> set[str]:
    """The carriers of `family` whose client verifies the upgrade request's signature (empty: refuse it)."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    query = scope.get("query_string", b"").decode("latin-1")
    url = routes.callback_urls(runtime.settings.public_base_url, "").media + (f"?{query}" if query else "")
    request = WebhookRequest(url=url, method="GET", headers=headers, body=b"", form={})
    signed: set[str] = set()
    for member in family:
        try:
            provider = await get_provider(runtime, member.name)
        except ServiceUnavailable:
            continue  # that account is not configured: nothing it signed can be checked
        if provider.verify_webhook(request):
            signed.add(member.name)
    return signed


async def _claim(runtime: Runtime, started: MediaStarted, carriers: set[str]) -> CallRef | None:
    """Consume the start frame's one-time token, if it is for a call of one of `carriers`."""
    try:
        call_id = uuid.UUID(started.call_id or "")
    except ValueError:
        return None
    async with system_tx(runtime.pool) as conn:
        row = await calls_repo.find_by_id(conn, call_id)
    if row is None or row["provider"] not in carriers:
        if row is not None:
            log.warning(
                "media socket refused: the token is for another carrier's call",
                extra={"call": str(call_id), "call_provider": row["provider"], "socket": sorted(carriers)},
            )
        return None
    return await claim_media(runtime, started.call_id, started.token)


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


def media_route(routes: CarrierRoutes, family: tuple[Carrier, ...]) -> Any:
    """The ASGI route of a carrier's media socket."""

    async def media(scope: Any, receive: Receive, send: Send) -> None:
        await serve_media(scope, receive, send, routes, family)

    media.__name__ = media.__qualname__ = f"{routes.segment}_media"
    # copy_scope=False: the media handlers never modify the scope (and copying it per connection is waste).
    return asgi(routes.path(routes.media.path), copy_scope=False, include_in_schema=False)(media)


async def serve_media(
    scope: Any, receive: Receive, send: Send, routes: CarrierRoutes, family: tuple[Carrier, ...]
) -> None:
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
    kind = routes.segment
    carriers = {member.name for member in family}
    if routes.media.signed_upgrade:
        carriers = await upgrade_signed_by(runtime, scope, routes, family)
        if not carriers:
            log.warning("media socket refused: upgrade signature missing or invalid", extra={"media": kind})
            await send({"type": "websocket.close", "code": POLICY_VIOLATION})  # before accept: HTTP 403
            return
    await send({"type": "websocket.accept"})
    codec: MediaCodec = routes.media.codec()
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            started = await _read_start(receive, codec)
    except TimeoutError:
        started = None
    ref = await _claim(runtime, started, carriers) if started is not None else None
    if started is None or ref is None:
        log.warning("media socket refused: no valid call id and token", extra={"media": kind})
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})
        return
    info = await media_connected(runtime, ref, stream_id=started.stream_id)
    if info is None:
        log.info("media socket for a call that has ended", extra={"call": str(ref.id)})
        await send({"type": "websocket.close", "code": 1000})
        return

    session = MediaSession(
        call=info,
        codec=codec,
        started=started,
        receive=receive,
        # The accept went through the framework's send wrappers; the frames need not (see observability).
        send=scope.get("state", {}).get("asgi_send", send),
        runtime=runtime,
        # Carriers without a stop event end a call by closing (Vonage: 1000); Twilio always sends stop first.
        clean_close_codes=routes.media.clean_close_codes,
    )
    handler = calls.new_handler(session)
    # The transcript's offsets count from the engine's t0: the recording's must too. Both clocks are the host's
    # monotonic clock (the engine's time.monotonic, the event loop's time), so t0 carries over.
    capture = await recordings.start_recording(runtime, session, t0=getattr(handler, "t0", session.t0))
    calls.add(session)  # from here on live control answers for the call (calls/control.py watches the registry)
    try:
        try:
            await session.run(handler)
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
        if capture is not None:
            await recordings.finish_recording(runtime, session, capture)

