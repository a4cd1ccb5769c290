"""ConsolePlugin: everything the operator console adds to the app, in one place the composition root installs.

Three routers, none in the OpenAPI document and none behind the API's bearer authentication (`exclude_from_auth`):
- `/console/static`: the vendored and hand-written browser files;
- `/console/sign-in`: the one page reachable without a session;
- `/console`: every other page, behind the session gate and the CSRF check.
All three answer with the console's security headers. The plugin also installs the template engine and the
lifespan that owns the live views' producer tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Router, get
from litestar.config.app import AppConfig
from litestar.datastructures import CacheControlHeader
from litestar.plugins import InitPlugin
from litestar.plugins.htmx import HTMXRequest
from litestar.static_files import create_static_files_router

from voice_service.console import csrf
from voice_service.console.agents import AgentPages
from voice_service.console.batches import BatchLive, BatchPages
from voice_service.console.billing import BillingPages
from voice_service.console.call_detail import CallRecordPages
from voice_service.console.calls import CallPages
from voice_service.console.errors import exception_handlers
from voice_service.console.keys import ApiKeyPages
from voice_service.console.leads import LeadPages
from voice_service.console.live import LiveHub
from voice_service.console.live_call import LiveCallPages
from voice_service.console.middleware import SecurityHeadersMiddleware, SessionMiddleware
from voice_service.console.numbers import NumberPages
from voice_service.console.overview import OverviewController
from voice_service.console.permissions import PermissionPages
from voice_service.console.signin import SignInPages, SignOut
from voice_service.console.talk import TalkToAgent
from voice_service.console.templating import STATIC, STATIC_PATH, template_config
from voice_service.console.voices import VoicePages
from voice_service.console.webhooks import WebhookPages
from voice_service.errors import NotFound

_OPT = {"exclude_from_auth": True}  # the API's AuthMiddleware skips these; the console checks its own session


@get("/{rest:path}", name="console:not-found")
async def not_found(request: Request[Any, Any, Any], rest: str) -> None:
    """Any other /console address, for a signed-in user: a readable 404 page (signed out: the sign-in page)."""
    raise NotFound("there is no console page at this address")


def routers() -> list[Router]:
    common: dict[str, Any] = {"opt": _OPT, "include_in_schema": False, "exception_handlers": exception_handlers,
                              "request_class": HTMXRequest}
    static = create_static_files_router(
        path=STATIC_PATH, directories=[STATIC], opt=_OPT, include_in_schema=False, name="console-static",
        middleware=[SecurityHeadersMiddleware],
        # URLs carry a digest of the files (?v=…), so a browser may keep them until they change.
        cache_control=CacheControlHeader(public=True, max_age=86400),
    )
    public = Router(path="/console", route_handlers=[SignInPages], middleware=[SecurityHeadersMiddleware],
                    **common)
    pages = Router(
        path="/console",
        route_handlers=[OverviewController, AgentPages, TalkToAgent, CallPages, NumberPages, LeadPages, BatchPages,
                         BatchLive, BillingPages, ApiKeyPages, WebhookPages, PermissionPages, VoicePages,
                         CallRecordPages, LiveCallPages, SignOut, not_found],
        middleware=[SecurityHeadersMiddleware, SessionMiddleware],
        before_request=csrf.require_token,
        **common,
    )
    return [static, public, pages]


@asynccontextmanager
async def console_lifespan(app: Litestar) -> AsyncIterator[None]:
    interval = app.state.settings.console_live_interval_seconds
    async with asyncio.TaskGroup() as tasks:
        # The live-control bus (entered by the app's lifespan before this one) shares each view across instances.
        control = getattr(app.state, "live_control", None)
        hub = LiveHub(tasks, interval=interval, bus=None if control is None else control.bus)
        app.state.console_hub = hub
        try:
            yield
        finally:
            await hub.close()


class ConsolePlugin(InitPlugin):
    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.extend(routers())
        app_config.template_config = template_config()
        app_config.lifespan.append(console_lifespan)
        return app_config
