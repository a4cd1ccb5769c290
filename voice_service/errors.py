"""Application errors and their one mapping to `application/problem+json` (RFC 9457).

Handlers and services raise these typed exceptions; nothing else builds error JSON. Bad input names the field.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.exceptions import NotFoundException as LitestarNotFound
from litestar.exceptions import PermissionDeniedException as LitestarForbidden

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    status = 400
    title = "Bad request"
    type_ = "about:blank"

    def __init__(self, detail: str, *, field: str | None = None, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, extensions: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.errors = errors or ([{"field": field, "message": detail}] if field else [])
        self.headers = headers or {}
        self.extensions = extensions or {}  # RFC 9457 extension members (e.g. a call's status with a 409)


class BadRequest(AppError):
    status, title = 400, "Bad request"


class ValidationFailed(AppError):
    status, title = 422, "Validation failed"


class Unauthorized(AppError):
    status, title = 401, "Unauthorized"


class Forbidden(AppError):
    status, title = 403, "Forbidden"


class NotFound(AppError):
    status, title = 404, "Not found"


class Conflict(AppError):
    status, title = 409, "Conflict"


class PaymentRequired(AppError):
    status, title = 402, "Payment required"


class PayloadTooLarge(AppError):
    status, title = 413, "Payload too large"


class ServiceUnavailable(AppError):
    status, title = 503, "Service unavailable"


def problem(status: int, title: str, detail: str, request: Request[Any, Any, Any] | None = None,
            errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None,
            extensions: dict[str, Any] | None = None) -> Response[Any]:
    body: dict[str, Any] = {**(extensions or {}), "type": "about:blank", "title": title, "status": status,
                            "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
        rid = request.scope.get("state", {}).get("request_id")
        if rid:
            body["request_id"] = rid
    if errors:
        body["errors"] = errors
    return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _app_error(request: Request[Any, Any, Any], exc: AppError) -> Response[Any]:
    return problem(exc.status, exc.title, exc.detail, request, exc.errors, exc.headers, exc.extensions)


_MSGSPEC_PATH = re.compile(r"at `\$\.?([^`]*)`")
_MSGSPEC_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


def _field_of(message: str, key: str | None) -> str | None:
    """The field a msgspec message is about: `Object missing required field `x` - at `$.config``."""
    m = _MSGSPEC_PATH.search(message)
    # Litestar strips msgspec's " - at `$.x`" suffix and passes the path as key ("data" for the body root).
    path = m.group(1) if m else ("" if key in (None, "", "data") else key)
    named = _MSGSPEC_FIELD.search(message)
    if named:
        return f"{path}.{named.group(1)}" if path else named.group(1)
    return path or None


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors: list[dict[str, Any]] = []
    extra = exc.extra if isinstance(exc.extra, list) else ([exc.extra] if exc.extra else [])
    for item in extra:
        if isinstance(item, dict):
            msg = str(item.get("message", exc.detail))
            field = _field_of(msg, item.get("key"))
            errors.append({"field": field, "message": msg, "source": item.get("source")})
    if not errors:
        errors.append({"field": _field_of(exc.detail, None), "message": exc.detail})
    cause = exc.__cause__
    if len(errors) == 1 and isinstance(cause, msgspec.ValidationError):
        # Litestar builds the key by deleting every "data." from the path ("metadata.direction" becomes
        # "metadirection"); msgspec's own message still has the whole path, under the body's "data" root.
        text = str(cause)
        text = text.replace("`$.data.", "`$.", 1).replace("`$.data`", "`$`", 1)
        if _MSGSPEC_PATH.search(text):
            errors[0]["field"] = _field_of(text, None)
    first = errors[0]
    detail = f"{first['field']}: {first['message']}" if first.get("field") else str(first["message"])
    return problem(400, "Invalid request", detail, request, errors)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    title = {401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
             413: "Payload too large", 415: "Unsupported media type"}.get(status, "Error")
    if status >= 500:
        log.error("http error", extra={"status": status, "detail": exc.detail})
    detail = exc.detail
    if status == 413:
        limit = request.route_handler.resolve_request_max_body_size()
        detail = f"the request body is over this endpoint's limit of {_mib(limit)}" if limit else detail
    return problem(status, title, detail, request, headers=exc.headers)


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:g} MiB ({size:,} bytes)"


_PG_DETAIL_KEY = re.compile(r"Key \(([^)]+)\)")


def pg_error_to_app(exc: asyncpg.PostgresError) -> AppError | None:
    """Integrity and data errors that stem from user input become 4xx; anything else stays a bug."""
    detail = getattr(exc, "detail", None) or ""
    m = _PG_DETAIL_KEY.search(detail)
    field = m.group(1).split(",")[-1].strip() if m else getattr(exc, "column_name", None)
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict("a resource with this value already exists", field=field)
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return ValidationFailed("refers to a resource that does not exist", field=field)
    if isinstance(exc, asyncpg.NotNullViolationError):
        return ValidationFailed(f"{field or 'a field'} is required", field=field)
    if isinstance(exc, asyncpg.CheckViolationError):
        return ValidationFailed(f"value not allowed ({exc.constraint_name or 'constraint'})", field=field)
    if isinstance(exc, asyncpg.StringDataRightTruncationError):
        return ValidationFailed("value too long", field=field)
    if isinstance(exc, asyncpg.NumericValueOutOfRangeError):
        return ValidationFailed("number out of range", field=field)
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError | asyncpg.UntranslatableCharacterError):
        return ValidationFailed("text contains a character PostgreSQL cannot store (e.g. NUL)", field=field)
    if isinstance(exc, asyncpg.InvalidTextRepresentationError):
        return ValidationFailed("invalid value", field=field)
    return None


def _client_data(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # asyncpg could not encode a value for a query argument (e.g. an integer beyond bigint): bad input, not a bug.
    return _app_error(request, ValidationFailed(f"invalid value: {str(exc).splitlines()[0][:200]}"))


def _pg(request: Request[Any, Any, Any], exc: asyncpg.PostgresError) -> Response[Any]:
    mapped = pg_error_to_app(exc)
    if mapped is not None:
        return _app_error(request, mapped)
    return _unexpected(request, exc)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal server error", "an unexpected error occurred; it has been logged", request)


def _too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    # msgspec raises RecursionError for absurdly nested JSON bodies: the input is bad, not the server.
    return problem(400, "Invalid request", "the JSON body is nested too deeply", request)


exception_handlers: dict[Any, Any] = {
    RecursionError: _too_deep,
    AppError: _app_error,
    ValidationException: _validation,
    NotAuthorizedException: _http,
    LitestarForbidden: _http,
    LitestarNotFound: _http,
    HTTPException: _http,
    asyncpg.PostgresError: _pg,
    asyncpg.exceptions._base.DataError: _client_data,
    Exception: _unexpected,
}


def status_of(exc: BaseException) -> int:
    """The status `exception_handlers` answer `exc` with: for request metrics counted by a middleware the
    exception passes through before it is handled (a 401 from the auth middleware is a 401, not a 500)."""
    if isinstance(exc, AppError):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, RecursionError):
        return 400
    if isinstance(exc, asyncpg.PostgresError):
        mapped = pg_error_to_app(exc)
        return 500 if mapped is None else mapped.status
    if isinstance(exc, asyncpg.exceptions._base.DataError):
        return 422
    return 500
