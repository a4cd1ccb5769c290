"""Errors on console routes become pages a person can read (or, for htmx requests, a short message the page shows).

The services raise the same typed errors for the console as for the API; only their rendering differs: a 404 for
another tenant's row, a 403 naming the role an action needs, a 403 for a missing CSRF token, a 500 that is logged.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Template

from voice_service.console.middleware import sign_in_redirect
from voice_service.console.templating import page, public_page
from voice_service.errors import AppError, Unauthorized, pg_error_to_app

log = logging.getLogger(__name__)

_TITLES = {400: "That request was not understood", 403: "Not allowed", 404: "Not found",
           405: "Not allowed here", 409: "Conflict", 422: "Check the form", 500: "Something went wrong"}


def _render(request: Request[Any, Any, Any], status: int, detail: str) -> Response[Any] | Template:
    title = _TITLES.get(status, "Error")
    if request.headers.get("hx-request") == "true":
        # htmx does not swap error responses; static/console.js shows this text in the page's message area.
        return Response(f"{title}: {detail}", status_code=status, media_type="text/plain",
                        headers={"Cache-Control": "no-store"})
    render = page if request.scope.get("auth") is not None else public_page
    return render(request, "console/error.html", status_code=status, title=title, detail=detail, status=status)


def _app_error(request: Request[Any, Any, Any], exc: AppError) -> Response[Any] | Template:
    if isinstance(exc, Unauthorized):
        return sign_in_redirect(request, clear_cookie=False)
    return _render(request, exc.status, exc.detail)


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any] | Template:
    return _render(request, 400, "a value in the address is not valid; go back and try again")


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any] | Template:
    if exc.status_code >= 500:
        log.error("console http error", extra={"status": exc.status_code, "detail": exc.detail})
        return _render(request, exc.status_code, "the error has been logged")
    return _render(request, exc.status_code, exc.detail)


def _pg(request: Request[Any, Any, Any], exc: asyncpg.PostgresError) -> Response[Any] | Template:
    mapped = pg_error_to_app(exc)
    return _app_error(request, mapped) if mapped is not None else _unexpected(request, exc)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any] | Template:
    log.exception("unhandled console error", exc_info=exc)
    return _render(request, 500, "an unexpected error occurred; it has been logged")


exception_handlers: dict[Any, Any] = {
    AppError: _app_error,
    ValidationException: _validation,
    HTTPException: _http,
    asyncpg.PostgresError: _pg,
    Exception: _unexpected,
}
