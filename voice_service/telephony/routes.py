"""Provider webhooks (inbound answer, status events) and the media WebSocket routes.

Every webhook is verified before anything in it is read: Twilio's X-Twilio-Signature over PUBLIC_BASE_URL + path
+ query and the sorted form (the auth token picked by the request's AccountSid: Twilio's or the simulator's),
Vonage's HS256 JWT (signature secret, payload_hash of the raw body, iat freshness, and its jti recorded in
webhook_replay_guard so a replay is refused). A failed check is a 403 problem+json and changes nothing. Vonage
signs its answer webhooks too (signed callbacks are on by default for the Voice API), so GET /answer is checked
the same way.

Webhooks about calls we do not know are answered 204 (and logged): providers retry on errors.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Request, Response, asgi, post, route
from litestar.status_codes import HTTP_204_NO_CONTENT

from providers.telephony.base import ProtocolError, TelephonyProvider, WebhookRequest
from providers.telephony.vonage import WEBHOOK_MAX_SKEW_SECONDS
from voice_service.calls import repository as calls_repo
from voice_service.calls.service import apply_status_event, media_url, start_inbound_call
from voice_service.db import system_tx
from voice_service.errors import BadRequest, Forbidden, ServiceUnavailable
from voice_service.runtime import Runtime
from voice_service.telephony.media import live_calls_of, twilio_media, vonage_media
from voice_service.telephony.providers import get_provider, provider_for_twilio_account

log = logging.getLogger(__name__)

REJECT_UNKNOWN = "Sorry, this number is not taking calls right now. Goodbye."
REJECT_DRAINING = "Sorry, we cannot take your call right now. Please call again in a few minutes. Goodbye."
_JTI_PRUNE_EVERY = 600.0
_last_jti_prune = 0.0


def _runtime(request: Request[Any, Any, Any]) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def _public_url(request: Request[Any, Any, Any]) -> str:
    """The URL the provider called, as it knows it (behind a proxy the request's Host is not it)."""
    base = _runtime(request).settings.public_base_url.rstrip("/")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{base}{request.scope['path']}" + (f"?{query}" if query else "")


async def _webhook(request: Request[Any, Any, Any], *, form_body: bool) -> WebhookRequest:
    body = await request.body()
    if request.method == "GET" or not form_body:
        form = dict(
            parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        )
    else:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    headers = {k.lower(): v for k, v in request.headers.items()}
    return WebhookRequest(
        url=_public_url(request), method=request.method, headers=headers, body=body, form=form
    )


def _draining(request: Request[Any, Any, Any]) -> bool:
    return bool(request.app.state.draining) or live_calls_of(request.app).draining


def _count_final(request: Request[Any, Any, Any], status: str) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.calls_total.labels(status).inc()


async def _twilio_verified(request: Request[Any, Any, Any]) -> tuple[TelephonyProvider, WebhookRequest]:
    wh = await _webhook(request, form_body=True)
    try:
        provider = await provider_for_twilio_account(_runtime(request), wh.form)
    except ServiceUnavailable:
        provider = None  # no credentials for that account: nothing can verify it
    if provider is None or not provider.verify_webhook(wh):
        log.warning("twilio webhook refused: bad signature", extra={"path": request.scope["path"]})
        raise Forbidden("webhook signature is missing or invalid")
    return provider, wh


async def _vonage_verified(request: Request[Any, Any, Any]) -> tuple[TelephonyProvider, WebhookRequest]:
    global _last_jti_prune
    wh = await _webhook(request, form_body=False)
    runtime = _runtime(request)
    try:
        provider = await get_provider(runtime, "vonage")
    except ServiceUnavailable:
        provider = None
    if provider is None or not provider.verify_webhook(wh):
        log.warning("vonage webhook refused: bad signature", extra={"path": request.scope["path"]})
        raise Forbidden("webhook signature is missing, invalid or stale")
    jti = provider.webhook_jti(wh)
    if jti is None:
        raise Forbidden("signed webhook carries no jti")
    async with system_tx(runtime.pool) as conn:
        fresh = await calls_repo.remember_jti(conn, "vonage", jti[:255])
        now = time.monotonic()
        if now - _last_jti_prune > _JTI_PRUNE_EVERY:
            _last_jti_prune = now
            # A jti only has to be remembered while its iat is still accepted.
            await calls_repo.prune_jtis(conn, 2 * WEBHOOK_MAX_SKEW_SECONDS)
    if not fresh:
        log.warning("vonage webhook refused: replayed jti")
        raise Forbidden("webhook replayed (jti already seen)")
    return provider, wh


def _answer(provider: TelephonyProvider, content: tuple[str, bytes]) -> Response[bytes]:
    content_type, body = content
    return Response(body, media_type=content_type, status_code=200)


async def _inbound(
    request: Request[Any, Any, Any],
    provider: TelephonyProvider,
    *,
    to: str | None,
    from_: str | None,
    provider_call_id: str | None,
) -> Response[bytes]:
    if not to or not provider_call_id:
        raise BadRequest("inbound call webhook without the called number or call id")
    if _draining(request):
        log.info("inbound call refused: draining", extra={"to": to})
        return _answer(provider, provider.answer_reject(REJECT_DRAINING))
    runtime = _runtime(request)
    answer = await start_inbound_call(
        runtime, provider=provider.name, to_e164=to, from_e164=from_, provider_call_id=provider_call_id
    )
    if answer is None:
        return _answer(provider, provider.answer_reject(REJECT_UNKNOWN))
    return _answer(
        provider,
        provider.answer_stream(media_url(runtime.settings, provider.name), str(answer.call_id), answer.token),
    )


def _plus(number: str | None) -> str | None:
    """Vonage sends E.164 digits without the '+'."""
    if not number:
        return None
    return number if number.startswith("+") else f"+{number}"


@post(
    "/v1/telephony/twilio/voice",
    operation_id="twilioVoiceWebhook",
    summary="Twilio inbound call → TwiML",
    tags=["telephony"],
    status_code=200,
    include_in_schema=True,
)
async def twilio_voice(request: Request[Any, Any, Any]) -> Response[bytes]:
    provider, wh = await _twilio_verified(request)
    return await _inbound(
        request,
        provider,
        to=wh.form.get("To"),
        from_=wh.form.get("From"),
        provider_call_id=wh.form.get("CallSid"),
    )


@post(
    "/v1/telephony/twilio/status",
    operation_id="twilioStatusWebhook",
    summary="Twilio call status callback",
    tags=["telephony"],
    status_code=HTTP_204_NO_CONTENT,
)
async def twilio_status(request: Request[Any, Any, Any]) -> None:
    provider, wh = await _twilio_verified(request)
    await _apply(request, provider, wh)


@route(
    "/v1/telephony/vonage/answer",
    http_method=["GET", "POST"],
    operation_id=lambda _h, method, _c: f"vonageAnswerWebhook{method.title()}",
    summary="Vonage inbound call → NCCO",
    tags=["telephony"],
    status_code=200,
)
async def vonage_answer(request: Request[Any, Any, Any]) -> Response[bytes]:
    provider, wh = await _vonage_verified(request)
    fields: dict[str, Any] = dict(wh.form)
    if request.method == "POST" and wh.body:
        try:
            fields.update(_decode_object(wh.body))
        except ValueError as exc:
            raise BadRequest(f"answer webhook body is not a JSON object: {exc}") from None
    return await _inbound(
        request,
        provider,
        to=_plus(_str(fields.get("to"))),
        from_=_plus(_str(fields.get("from"))),
        provider_call_id=_str(fields.get("uuid")),
    )


@post(
    "/v1/telephony/vonage/events",
    operation_id="vonageEventWebhook",
    summary="Vonage call event webhook",
    tags=["telephony"],
    status_code=HTTP_204_NO_CONTENT,
)
async def vonage_events(request: Request[Any, Any, Any]) -> None:
    provider, wh = await _vonage_verified(request)
    await _apply(request, provider, wh)


async def _apply(request: Request[Any, Any, Any], provider: TelephonyProvider, wh: WebhookRequest) -> None:
    try:
        event = provider.parse_status(wh)
    except ProtocolError as exc:
        raise BadRequest(str(exc)) from None
    if event is None:
        return
    outcome = await apply_status_event(_runtime(request), event)
    if outcome is not None and outcome.became_terminal:
        _count_final(request, outcome.status)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_json = msgspec.json.Decoder()


def _decode_object(body: bytes) -> dict[str, Any]:
    try:
        data = _json.decode(body)
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


# copy_scope=False: the media handlers never modify the scope (and copying it per connection is waste).
twilio_media_route = asgi("/v1/telephony/twilio/media", copy_scope=False, include_in_schema=False)(
    twilio_media
)
vonage_media_route = asgi("/v1/telephony/vonage/media", copy_scope=False, include_in_schema=False)(
    vonage_media
)

route_handlers: list[Any] = [
    twilio_voice,
    twilio_status,
    vonage_answer,
    vonage_events,
    twilio_media_route,
    vonage_media_route,
]

__all__ = ["REJECT_DRAINING", "REJECT_UNKNOWN", "route_handlers"]
