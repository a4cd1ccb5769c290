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

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voice_service import __version__, perf
from voice_service import bootstrap as bootstrap_mod
from voice_service.agents.routes import route_handlers as agent_routes
from voice_service.auth import AuthMiddleware, KeyCache, ReadsSkipWriteGuards, listen_for_revocations
from voice_service.batches.routes import route_handlers as batch_routes
from voice_service.billing.routes import route_handlers as billing_routes
from voice_service.call_analysis.routes import route_handlers as call_analysis_routes
from voice_service.calls import control as live_control
from voice_service.calls.control_routes import route_handlers as live_call_routes
from voice_service.calls.routes import route_handlers as call_routes
from voice_service.composition import AFTER_BOOTSTRAP, open_runtime
from voice_service.console import ConsolePlugin
from voice_service.conversation import running as conversation_engine
from voice_service.deps import dependencies
from voice_service.errors import ServiceUnavailable, exception_handlers
from voice_service.events.catalog import webhooks_for_openapi
from voice_service.events.routes import route_handlers as event_routes
from voice_service.leads.routes import route_handlers as lead_routes
from voice_service.numbers.routes import route_handlers as number_routes
from voice_service.observability import (
    Metrics,
    RequestContextMiddleware,
    check_metrics_token,
    configure_logging,
)
from voice_service.openapi import example, problems
from voice_service.openapi.docs_page import assets_router, openapi_config
from voice_service.openapi.plugin import ApiDocsPlugin, ExampleSchemaPlugin
from voice_service.recordings import service as recordings
from voice_service.recordings.routes import route_handlers as recording_routes
from voice_service.runtime import worker_index
from voice_service.schemas import BODY_MAX_BYTES
from voice_service.settings import Settings, cors_origins, load_settings
from voice_service.telephony.routes import telephony_route_handlers
from voice_service.tenancy.routes import route_handlers as tenancy_routes
from voice_service.voices.routes import route_handlers as voice_routes
from voice_service.webcalls.routes import route_handlers as web_call_routes
from voice_service.workers import running_workers

log = logging.getLogger(__name__)

# Paths served without an API key: health, docs, metrics, provider webhooks (verified by signature), and the live
# listen WebSocket (it checks its header or single-use token itself: browsers cannot set WebSocket headers).
PUBLIC_PATHS = ["^/health", "^/schema", "^/metrics", "^/v1/telephony/", "^/v1/calls/[^/]+/listen$"]

# What a browser on an allowed origin may send and read (CORS_ALLOWED_ORIGINS): the API's methods and request
# headers, and the response headers a client needs.
CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
CORS_EXPOSED_HEADERS = ["Location", "Idempotent-Replayed", "Retry-After", "Content-Range", "Accept-Ranges"]


def cors_config(settings: Settings) -> CORSConfig | None:
    """None (no CORS) unless CORS_ALLOWED_ORIGINS lists origins; preflights are answered before authentication."""
    origins = cors_origins(settings)
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=CORS_METHODS,  # type: ignore[arg-type]
        allow_headers=CORS_REQUEST_HEADERS,
        expose_headers=CORS_EXPOSED_HEADERS,
        allow_credentials=False,  # bearer tokens, not cookies (the console is same-origin)
        max_age=600,
    )


# Long-running parts the lifespan starts after the pool and stops before it: (name, factory(app) -> async CM).
BackgroundFactory = Callable[[Litestar], Any]
background_services: list[tuple[str, BackgroundFactory]] = []


@example({"status": "ok", "database": "ok", "draining": False, "instance": "5f0c6c8e1d9a4f4e9a43c1f0b7e2d3a1",
          "pid": 4242, "worker": 0})
class Health(msgspec.Struct):
    """The process answers and its database does; which process answered (`serve --workers N` runs N behind one
    port: `worker` is its index, null when the process was started alone)."""

    status: str
    database: str
    draining: bool
    instance: str
    pid: int
    worker: int | None


@get("/health", operation_id="health", summary="Liveness and database check", tags=["ops"],
     responses=problems(s503="The database does not answer."))
async def health(request: Request[Any, Any, Any]) -> Health:
    """No credentials needed. `{"status": "ok", "database": "ok", "draining": false, …}`; `draining` is true while
    the process shuts down (it takes no new calls); `instance`, `pid` and `worker` name the process that answered."""
    pool = request.app.state.pool
    try:
        await pool.fetchval("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - the health check reports any database failure as 503
        raise ServiceUnavailable(f"database unavailable: {type(exc).__name__}") from None
    return Health(status="ok", database="ok", draining=bool(request.app.state.draining),
                  # Which process answered (`serve --workers N` runs N behind one port).
                  instance=request.app.state.runtime.instance_id, pid=os.getpid(), worker=worker_index())


@get("/metrics", operation_id="metrics", summary="Prometheus metrics", tags=["ops"], media_type=CONTENT_TYPE_LATEST,
     security=[{}, {"metricsToken": []}],
     responses=problems(s401="METRICS_TOKEN is set and the request does not carry it as a bearer token."))
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text format: `http_requests_total` and `http_request_duration_seconds` by route,
    `voice_calls_total` by final status, `voice_live_calls`, `db_pool_connections`. Open unless the deployment
    sets METRICS_TOKEN; then it needs `Authorization: Bearer <METRICS_TOKEN>`."""
    check_metrics_token(request)
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
        app.state.pool = runtime.pool
        app.state.http = runtime.http
        if app.state.bootstrap:
            await bootstrap_mod.bootstrap(runtime.owner_dsn, settings, after=AFTER_BOOTSTRAP)
        async with AsyncExitStack() as services:
            await services.enter_async_context(perf.loop_lag_probe())
            # Keys revoked (or roles lowered) on any instance leave this process's key cache at once.
            await services.enter_async_context(listen_for_revocations(runtime.dsn, app.state.key_cache))
            # Live call control (commands and listeners from any instance) and the recordings left on this disk.
            await services.enter_async_context(live_control.running(app))
            await services.enter_async_context(recordings.recovering(runtime))
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
    if settings.env_file:
        log.info("settings read from the environment and %s (the environment wins)", settings.env_file)
    request_metrics = Metrics()
    perf.register(request_metrics.registry)  # event-loop lag and turn latencies per component (process-wide)
    state = State({"settings": settings, "key_cache": KeyCache(), "metrics": request_metrics, "draining": False,
                   "bootstrap": bootstrap})
    openapi = openapi_config(version=__version__, webhooks=webhooks_for_openapi())
    return Litestar(
        route_handlers=[health, metrics, *tenancy_routes, *agent_routes, *number_routes, *voice_routes, *lead_routes,
                        *batch_routes, *call_routes, *live_call_routes, *call_analysis_routes, *billing_routes,
                        *event_routes, *telephony_route_handlers(), *recording_routes, *web_call_routes,
                        assets_router()],
        dependencies=dependencies,
        exception_handlers=exception_handlers,
        middleware=[RequestContextMiddleware,
                    DefineMiddleware(AuthMiddleware, exclude=PUBLIC_PATHS)],
        lifespan=[_lifespan],
        openapi_config=openapi,
        cors_config=cors_config(settings),
        plugins=[ConsolePlugin(),  # the operator console at /console: routes, templates, live views
                 ApiDocsPlugin(PUBLIC_PATHS),  # every operation's standard errors; unknown query parameters → 400
                 ExampleSchemaPlugin(),  # schemas' examples (`voice_service.openapi.example`)
                 ReadsSkipWriteGuards()],  # a read runs no guard that only restricts writes
        state=state,
        request_max_body_size=BODY_MAX_BYTES,  # routes that take more (batches, lead imports) set their own
        logging_config=None,  # configure_logging owns the root logger (JSON lines with request/tenant/call ids)
        debug=False,
    )
