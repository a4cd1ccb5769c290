"""Carrier webhooks (inbound answer, status events) and media sockets, mounted from the carrier registry.

For every set of carrier routes in providers/telephony/registry.py this mounts, under /v1/telephony/{segment}/,
each declared webhook (its path, methods and OpenAPI operation id) and the media socket (media.py). A webhook is
verified first (webhooks.py: signature, replay guard); then an answer webhook routes the inbound call to the
number's tenant and default agent and answers with the carrier's call-control document (connect to our media
socket, or a polite rejection, counted in /metrics by reason: also when the tenant's wallet cannot cover the call),
and a status webhook is applied to the call it names by the carrier's signed
call id.

Webhooks about calls we do not know are answered 204 (and logged): providers retry on errors.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, route
from litestar.status_codes import HTTP_204_NO_CONTENT

from providers.telephony.base import ProtocolError, TelephonyProvider, WebhookRequest
from providers.telephony.carrier import Carrier, CarrierRoutes, WebhookRoute
from providers.telephony.registry import route_families
from voice_service.calls.service import apply_status_event, start_inbound_call
from voice_service.carriers.urls import media_url
from voice_service.errors import BadRequest, PaymentRequired
from voice_service.openapi import problems
from voice_service.openapi.plugin import OPEN_QUERY
from voice_service.telephony.media import live_calls_of, media_route
from voice_service.telephony.webhooks import runtime_of, verified_webhook, wait_for_placement

log = logging.getLogger(__name__)

__all__ = ["REJECT_DRAINING", "REJECT_UNKNOWN", "telephony_route_handlers"]

_DESCRIPTIONS = {
    "answer": "Called by the carrier when a call comes in (or an outbound call is answered), signed by the carrier. "
    "Answers with the carrier's call-control document: connect the call to this service's media socket, or a "
    "polite rejection when no agent takes calls on the number. Not for API clients.",
    "status": "Called by the carrier with each status change of a call, signed by the carrier. A status never "
    "moves backwards and a repeated event changes nothing; events about unknown calls are answered 204 (and "
    "logged). Not for API clients.",
}
REJECT_UNKNOWN = "Sorry, this number is not taking calls right now. Goodbye."
REJECT_DRAINING = "Sorry, we cannot take your call right now. Please call again in a few minutes. Goodbye."


def telephony_route_handlers() -> list[Any]:
    """The webhook and media routes of every registered carrier (built per app: tests register their own)."""
    handlers: list[Any] = []
    for routes, family in route_families():
        for hook in routes.webhooks:
            handlers.append(_webhook_handler(routes, family, hook))
        handlers.append(media_route(routes, family))
    return handlers


def _operation_id(hook: WebhookRoute) -> Any:
    if len(hook.methods) == 1:
        return hook.operation_id
    return lambda _handler, method, _path: f"{hook.operation_id}{method.title()}"


def _webhook_handler(routes: CarrierRoutes, family: tuple[Carrier, ...], hook: WebhookRoute) -> Any:
    handler = _answer_handler(family, hook) if hook.kind == "answer" else _status_handler(family, hook)
    handler.__name__ = handler.__qualname__ = f"{routes.segment}_{hook.kind}_webhook"
    return route(
        routes.path(hook.path),
        http_method=list(hook.methods),
        operation_id=_operation_id(hook),
        summary=hook.summary,
        tags=["telephony"],
        status_code=200 if hook.kind == "answer" else HTTP_204_NO_CONTENT,
        opt={OPEN_QUERY: True},  # the carrier's own parameters, and our call_id, come in the query string
        description=_DESCRIPTIONS[hook.kind],
        responses=problems(s403="The carrier signature is missing, invalid or stale, or the request is a replay.",
                           s503="The call this event is about is still being placed; the carrier retries."),
    )(handler)


def _answer_handler(family: tuple[Carrier, ...], hook: WebhookRoute) -> Any:
    async def answer(request: Request[Any, Any, Any]) -> Response[bytes]:
        provider, wh = await verified_webhook(request, family, hook)
        return await _inbound(request, provider, wh)

    return answer


def _status_handler(family: tuple[Carrier, ...], hook: WebhookRoute) -> Any:
    async def status(request: Request[Any, Any, Any]) -> None:
        provider, wh = await verified_webhook(request, family, hook)
        await _apply(request, provider, wh)

    return status


def _draining(request: Request[Any, Any, Any]) -> bool:
    return bool(request.app.state.draining) or live_calls_of(request.app).draining


def _count_rejected(request: Request[Any, Any, Any], reason: str) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.inbound_rejected.labels(reason).inc()


def _answer(content: tuple[str, bytes]) -> Response[bytes]:
    content_type, body = content
    return Response(body, media_type=content_type, status_code=200)


async def _inbound(
    request: Request[Any, Any, Any], provider: TelephonyProvider, wh: WebhookRequest
) -> Response[bytes]:
    try:
        call = provider.parse_inbound(wh)
    except ProtocolError as exc:
        raise BadRequest(str(exc)) from None
    if _draining(request):
        log.info("inbound call refused: draining", extra={"to": call.to})
        _count_rejected(request, "draining")
        return _answer(provider.answer_reject(REJECT_DRAINING))
    runtime = runtime_of(request)
    try:
        answer = await start_inbound_call(
            runtime,
            provider=provider.name,
            to_e164=call.to,
            from_e164=call.from_,
            provider_call_id=call.provider_call_id,
        )
    except PaymentRequired as exc:
        # The caller hears the same polite rejection as for a number not taking calls: the tenant's wallet is
        # nobody else's business.
        log.warning("inbound call refused: insufficient balance",
                    extra={"to": call.to, "provider": provider.name, "detail": exc.detail})
        _count_rejected(request, "insufficient_balance")
        return _answer(provider.answer_reject(REJECT_UNKNOWN))
    if answer is None:
        _count_rejected(request, "not_taking_calls")
        return _answer(provider.answer_reject(REJECT_UNKNOWN))
    return _answer(
        provider.answer_stream(media_url(runtime.settings, provider.name), str(answer.call_id), answer.token)
    )


async def _apply(request: Request[Any, Any, Any], provider: TelephonyProvider, wh: WebhookRequest) -> None:
    try:
        event = provider.parse_status(wh)
    except ProtocolError as exc:
        raise BadRequest(str(exc)) from None
    if event is None:
        return
    runtime = runtime_of(request)
    outcome = await apply_status_event(runtime, event)
    if outcome is None and event.call_id is None and await wait_for_placement(runtime, wh, event):
        await apply_status_event(runtime, event)
