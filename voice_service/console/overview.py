"""The overview page: calls live now, today's calls, answer rate, average duration, spend today, wallet balance and
the last failures, kept current by a server-sent-event stream (one producer per tenant and time zone)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import tzinfo
from typing import Any

import asyncpg
from litestar import Controller, Request, get
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template

from voice_service.auth import Principal
from voice_service.billing import service as billing
from voice_service.calls import service as calls
from voice_service.console.clock import day_start, today, tz_name, user_tz
from voice_service.console.live import LiveHub
from voice_service.console.templating import page, render
from voice_service.db import tenant_tx
from voice_service.settings import Settings

FAILURES_SHOWN = 5
FIGURES = "console/overview/_figures.html"


async def figures(pool: asyncpg.Pool, settings: Settings, principal: Principal, tz: tzinfo) -> dict[str, Any]:
    since = day_start(today(tz), tz)
    async with tenant_tx(pool, principal.tenant_id) as conn:
        stats = await calls.stats_since(conn, principal.tenant_id, since)
        spend = await billing.spend_since(conn, principal, since)
        wallet = await billing.get_wallet(conn, principal, settings.enforce_wallet_balance)
        failures = await calls.list_calls(conn, principal.tenant_id, FAILURES_SHOWN, None, {"status": "failed"})
    return {"stats": stats, "spend": spend, "wallet": wallet, "failures": failures.items}


class OverviewController(Controller):
    path = "/"

    @get("/", name="console:overview")
    async def overview(self, request: Request[Any, Any, Any]) -> Template:
        state = request.app.state
        tz = user_tz(request)
        data = await figures(state.pool, state.settings, request.user, tz)
        return page(request, "console/overview/page.html", nav="overview", **data)

    @get("/live/overview", name="console:overview-live")
    async def overview_live(self, request: Request[Any, Any, Any]) -> ServerSentEvent:
        state = request.app.state
        hub: LiveHub = state.console_hub
        principal: Principal = request.user
        tz = user_tz(request)

        async def produce() -> str:
            return render(FIGURES, tz=tz, **await figures(state.pool, state.settings, principal, tz))

        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            deadline = time.monotonic() + hub.max_stream_seconds
            async with hub.watch(("overview", principal.tenant_id, tz_name(tz)), produce, shared_as=str) as feed:
                version = 0
                while (remaining := deadline - time.monotonic()) > 0:
                    try:
                        # Not a timeout scope around the loop: the stream must never be cancelled at a yield.
                        got = await asyncio.wait_for(feed.next_after(version), remaining)
                    except TimeoutError:
                        break
                    if got is None:
                        break
                    version, html = got
                    yield ServerSentEventMessage(event="overview", data=html)

        return ServerSentEvent(stream(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
