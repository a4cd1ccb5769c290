"""create_app(): the Litestar application, its lifespan (database, pool, clients, workers) and routes.

With cli.py and workers.py, the composition root: it imports the domains (their routes, the conversation engine,
the runtime wiring in composition.py); no domain imports it.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RapidocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voice_service import bootstrap as bootstrap_mod
from voice_service import perf
from voice_service.agents.routes import route_handlers as agent_routes
from voice_service.auth import AuthMiddleware, KeyCache, listen_for_revocations
from voice_service.batches.routes import route_handlers as batch_routes
from voice_service.billing.routes import route_handlers as billing_routes
from voice_service.call_analysis.routes import route_handlers as call_analysis_routes
from voice_service.calls.routes import route_handlers as call_routes
from voice_service.composition import AFTER_BOOTSTRAP, open_runtime
from voice_service.console import ConsolePlugin
from voice_service.conversation import running as conversation_engine
from voice_service.deps import dependencies
from voice_service.errors import ServiceUnavailable, exception_handlers
from voice_service.events.routes import route_handlers as event_routes
from voice_service.leads.routes import route_handlers as lead_routes
from voice_service.numbers.routes import route_handlers as number_routes
from voice_service.observability import Metrics, RequestContextMiddleware, configure_logging
from voice_service.recordings.routes import route_handlers as recording_routes
from voice_service.runtime import worker_index
from voice_service.schemas import BODY_MAX_BYTES
from voice_service.settings import Settings, load_settings
from voice_service.telephony.routes import telephony_route_handlers
from voice_service.tenancy.routes import route_handlers as tenancy_routes
from voice_service.voices.routes import route_handlers as voice_routes
from voice_service.workers import running_workers

log = logging.getLogger(__name__)

# Paths served without an API key: health, docs, metrics, and provider webhooks (verified by signature).
PUBLIC_PATHS = ["^/health", "^/schema", "^/metrics", "^/v1/telephony/"]

# Long-running parts the lifespan starts after the pool and stops before it: (name, factory(app) -> async CM).
BackgroundFactory = Callable[[Litestar], Any]
background_services: list[tuple[str, BackgroundFactory]] = []


@get("/health", operation_id="health", summary="Liveness and database check", tags=["ops"], include_in_schema=True)
async def health(request: Request[Any, Any, Any]) -> dict[str, Any]:
    pool = request.app.state.pool
    try:
        await pool.fetchval("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - the health check reports any database failure as 503
        raise ServiceUnavailable(f"database unavailable: {type(exc).__name__}") from None
    return {"status": "ok", "database": "ok", "draining": bool(request.app.state.draining),
            # Which process answered (`serve --workers N` runs N behind one port).
            "instance": request.app.state.runtime.instance_id, "pid": os.getpid(), "worker": worker_index()}


@get("/metrics", operation_id="metrics", summary="Prometheus metrics", tags=["ops"], media_type=CONTENT_TYPE_LATEST)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    m: Metrics = request.app.state.metrics
    pool = request.app.state.pool
    size, idle = pool.get_size(), pool.get_idle_size()
    m.pool_size.labels("total").set(size)
    m.pool_size.labels("idle").set(idle)
    m.pool_size.labels("in_use").set(size - idle)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


@asynccontextmanager
async def _lifespan(app: Litestar) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    async with open_runtime(settings, apply_migrations=getattr(app.state, "apply_migrations", True)) as runtime:
        app.state.runtime = runtime
        app.state.dsn = runtime.dsn
        app.state.pool = runtime.pool
        app.state.http = runtime.http
        if app.state.bootstrap:
            await bootstrap_mod.bootstrap(runtime.dsn, settings, after=AFTER_BOOTSTRAP)
        async with AsyncExitStack() as services:
            await services.enter_async_context(perf.loop_lag_probe())
            # Keys revoked (or roles lowered) on any instance leave this process's key cache at once.
            await services.enter_async_context(listen_for_revocations(runtime.dsn, app.state.key_cache))
            for name, factory in background_services:
                log.info("starting background service", extra={"service": name})
                await services.enter_async_context(factory(app))
            if settings.conversation_engine:
                await services.enter_async_context(conversation_engine(app))
            if settings.run_workers:
                await services.enter_async_context(running_workers(runtime))
            # Everything built so far (modules, routes, clients) lives as long as the process: keep it out of the
            # cyclic GC's full collections, whose pauses otherwise land on requests and media frames.
            gc.collect()
            gc.freeze()
            yield
            # Shutdown (SIGTERM): stop taking new calls; background services drain live ones as they exit.
            app.state.draining = True


def create_app(settings: Settings | None = None, *, bootstrap: bool = True) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_json)
    request_metrics = Metrics()
    perf.register(request_metrics.registry)  # event-loop lag and turn latencies per component (process-wide)
    state = State({"settings": settings, "key_cache": KeyCache(), "metrics": request_metrics, "draining": False,
                   "bootstrap": bootstrap})
    openapi = OpenAPIConfig(
        title="Voice service API",
        version="1.0.0",
        description="AI voice agents on the phone: agents, numbers, voices, leads, batches, calls, billing.",
        path="/schema",
        render_plugins=[SwaggerRenderPlugin(), RapidocRenderPlugin()],
        components=Components(security_schemes={
            "bearer": SecurityScheme(type="http", scheme="bearer", description="API key `vsk_…` or platform JWT")
        }),
        security=[{"bearer": []}],
        use_handler_docstrings=True,
    )
    return Litestar(
        route_handlers=[health, metrics, *tenancy_routes, *agent_routes, *number_routes, *voice_routes, *lead_routes,
                        *batch_routes, *call_routes, *call_analysis_routes, *billing_routes, *event_routes,
                        *telephony_route_handlers(), *recording_routes],
        dependencies=dependencies,
        exception_handlers=exception_handlers,
        middleware=[RequestContextMiddleware,
                    DefineMiddleware(AuthMiddleware, exclude=PUBLIC_PATHS)],
        lifespan=[_lifespan],
        openapi_config=openapi,
        plugins=[ConsolePlugin()],  # the operator console at /console: routes, templates, live views
        state=state,
        request_max_body_size=BODY_MAX_BYTES,  # routes that take more (batches, lead imports) set their own
        logging_config=None,  # configure_logging owns the root logger (JSON lines with request/tenant/call ids)
        debug=False,
    )
