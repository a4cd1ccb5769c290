"""Carrier webhooks before they are handled: reading, signature check, replay guard, and the placement race.

Every webhook is verified before anything in it is read, by the client of the carrier it names (carriers sharing
routes: Twilio-format webhooks name their AccountSid), over PUBLIC_BASE_URL + path + query, the URL the carrier
called. Where the route says the signed token carries a one-time id (Vonage's jti), the id is recorded with a hash
of the request: a carrier's retry of the same request (same token, same method, URL and body) passes again and
is handled again, idempotently; the id on any other request is a replay. A failed check is a 403 problem+json
and changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request

from providers.telephony.base import StatusEvent, TelephonyProvider, WebhookRequest, query_param
from providers.telephony.carrier import Carrier, WebhookRoute
from voice_service.calls import repository as calls_repo
from voice_service.carriers.clients import webhook_provider
from voice_service.db import system_tx, tenant_tx
from voice_service.errors import Forbidden, ServiceUnavailable
from voice_service.runtime import Runtime
from voice_service.telephony import repository

log = logging.getLogger(__name__)

__all__ = ["runtime_of", "verified_webhook", "wait_for_placement"]

_PRUNE_EVERY = 600.0
_last_prune: dict[str, float] = {}
# How long a status event of a call still being placed waits for its call id, and how old such a call may be.
PLACEMENT_WAIT_SECONDS = 2.0
_PLACEMENT_HORIZON = timedelta(minutes=2)


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _public_url(request: Request[Any, Any, Any]) -> str:
    """The URL the provider called, as it knows it (behind a proxy the request's Host is not it)."""
    base = runtime_of(request).settings.public_base_url.rstrip("/")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{base}{request.scope['path']}" + (f"?{query}" if query else "")


async def read_webhook(request: Request[Any, Any, Any], *, form_from_body: bool) -> WebhookRequest:
    body = await request.body()
    if request.method == "GET" or not form_from_body:
        form = dict(
            parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        )
    else:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    headers = {k.lower(): v for k, v in request.headers.items()}
    return WebhookRequest(
        url=_public_url(request), method=request.method, headers=headers, body=body, form=form
    )


async def verified_webhook(
    request: Request[Any, Any, Any], family: tuple[Carrier, ...], hook: WebhookRoute
) -> tuple[TelephonyProvider, WebhookRequest]:
    """The webhook and the client that verified it; Forbidden when nothing does, or when it is a replay."""
    runtime = runtime_of(request)
    wh = await read_webhook(request, form_from_body=hook.form_from_body)
    provider = await webhook_provider(runtime, family, wh)
    if provider is None or not provider.verify_webhook(wh):
        log.warning(
            "webhook refused: bad signature",
            extra={"carrier": family[0].name, "path": request.scope["path"]},
        )
        raise Forbidden("webhook signature is missing, invalid or stale")
    if hook.replay_window_seconds is not None:
        await _guard_replay(runtime, provider, wh, hook.replay_window_seconds)
    return provider, wh


def _request_hash(wh: WebhookRequest) -> bytes:
    digest = hashlib.sha256(f"{wh.method.upper()}\n{wh.url}\n".encode())
    digest.update(wh.body)
    return digest.digest()


async def _guard_replay(
    runtime: Runtime, provider: TelephonyProvider, wh: WebhookRequest, window: int
) -> None:
    jti = provider.webhook_jti(wh)
    if jti is None:
        raise Forbidden("signed webhook carries no jti")
    async with system_tx(runtime.pool) as conn:
        fresh = await repository.remember_one_time_id(conn, provider.name, jti[:255], _request_hash(wh))
        now = time.monotonic()
        if now - _last_prune.get(provider.name, 0.0) > _PRUNE_EVERY:
            _last_prune[provider.name] = now
            await repository.prune_one_time_ids(conn, provider.name, window)
    if not fresh:
        log.warning(
            "webhook refused: one-time id replayed on another request", extra={"carrier": provider.name}
        )
        raise Forbidden("webhook replayed (jti already seen on another request)")


async def wait_for_placement(runtime: Runtime, wh: WebhookRequest, event: StatusEvent) -> bool:
    """Whether `event`, about a call id no call has yet, belongs to a call still being placed: waits (up to
    PLACEMENT_WAIT_SECONDS) until place_call has stored the carrier's call id and says whether it is this one.

    Carriers whose signature leaves the URL out (Vonage) can post a call's first events before place_call has read
    the call id from their REST answer. The status URL's unsigned ?call_id= is only a hint here: it decides whether
    waiting is worth it, never which call the event updates (that is the signed call id alone). A call still being
    placed after the wait is a 503: the carrier retries, and the retry passes the replay guard."""
    hint = query_param(wh.url, "call_id")
    try:
        call_id = uuid.UUID(hint) if hint else None
    except ValueError:
        return False
    if call_id is None:
        return False
    deadline = asyncio.get_running_loop().time() + PLACEMENT_WAIT_SECONDS
    while True:
        async with system_tx(runtime.pool) as conn:
            row = await calls_repo.find_by_id(conn, call_id)
        if row is None or row["provider"] != event.provider:
            return False
        if row["provider_call_id"] is not None:
            return bool(row["provider_call_id"] == event.provider_call_id)
        if datetime.now(UTC) - row["call_created_at"] > _PLACEMENT_HORIZON:
            return False
        async with tenant_tx(runtime.pool, row["tenant_id"]) as conn:
            call = await calls_repo.get_call(conn, row["tenant_id"], call_id)
        if call is None or call["status"] != "pending":
            return False  # never placed (failed, cancelled): no carrier call id is coming
        if asyncio.get_running_loop().time() >= deadline:
            raise ServiceUnavailable("the call this event is about is still being placed; try again")
        await asyncio.sleep(0.05)
