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

from voice_service.validation_messages import decode_problem, describe

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    status = 400
    title = "Invalid request"
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
    status, title = 400, "Invalid request"


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
            field: str | None = None, extensions: dict[str, Any] | None = None) -> Response[Any]:
    """The one error body (voice_service/openapi/problems.py documents it as ProblemDetails); `extensions` are
    RFC 9457 extension members (e.g. a call's status with a 409)."""
    body: dict[str, Any] = {**(extensions or {}), "type": "about:blank", "title": title, "status": status,
                            "detail": detail}
    field = field or next((e["field"] for e in errors or () if e.get("field")), None)
    if field:
        body["field"] = field
    if request is not None:
        body["instance"] = request.url.path
        rid = request.scope.get("state", {}).get("request_id")
        if rid:
            body["request_id"] = rid
    if errors:
        body["errors"] = errors
    return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _app_error(request: Request[Any, Any, Any], exc: AppError) -> Response[Any]:
    return problem(exc.status, exc.title, exc.detail, request, exc.errors, exc.headers, exc.field, exc.extensions)


_MSGSPEC_PATH = re.compile(r"at `\$\.?([^`]*)`")
_MSGSPEC_SUFFIX = re.compile(r" - at `\$[^`]*`$")


def _annotation(request: Request[Any, Any, Any], source: str | None, field: str | None) -> Any:
    """The type the failing value was decoded into: the body's type (a Struct), or a query parameter's."""
    handler = request.scope.get("route_handler")
    params = getattr(getattr(handler, "parsed_fn_signature", None), "parameters", None) or {}
    if source == "body":
        data = params.get("data")
        return None if data is None else data.annotation
    if field and field in params:
        return params[field].annotation
    return None


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors: list[dict[str, Any]] = []
    extra = exc.extra if isinstance(exc.extra, list) else ([exc.extra] if exc.extra else [])
    cause = exc.__cause__
    for item in extra:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", exc.detail))
        source = item.get("source")
        key = item.get("key")
        if message == "'data'" or (source == "body" and message == "Object missing required field `data`"):
            errors.append({"field": None, "source": "body",
                           "message": "The request body is empty; send a JSON object (see this operation's "
                                      "request body in the API documentation)."})
            continue
        # Litestar drops msgspec's " - at `$.x`" and passes the path as `key` ("data" is the body's root), and
        # builds that key by deleting every "data." from the path ("metadata.direction" becomes "metadirection");
        # msgspec's own message, the exception's cause, still has the whole path under the body's "data" root.
        path = "" if key in (None, "", "data") else str(key)
        if len(extra) == 1 and isinstance(cause, msgspec.ValidationError) and source == "body":
            text = str(cause).replace("`$.data.", "`$.", 1).replace("`$.data`", "`$`", 1)
            m = _MSGSPEC_PATH.search(text)
            if m is not None:
                path = m.group(1)
            message = _MSGSPEC_SUFFIX.sub("", text)
        field, sentence = describe(message, path or None, _annotation(request, source, path or key),
                                   within=source == "body")
        entry: dict[str, Any] = {"field": field, "message": sentence}
        if source:
            entry["source"] = source
        errors.append(entry)
    if not errors:
        field, sentence = describe(exc.detail, None)
        errors.append({"field": field, "message": sentence})
    return problem(400, "Invalid request", errors[0]["message"], request, errors)


_NOT_JSON = ("Input data was truncated", "JSON is malformed")


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    title = {400: "Invalid request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
             405: "Method not allowed", 413: "Payload too large", 415: "Unsupported media type"}.get(status, "Error")
    if status >= 500:
        log.error("http error", extra={"status": status, "detail": exc.detail})
    detail = exc.detail
    errors: list[dict[str, Any]] | None = None
    if status == 400 and detail.startswith(_NOT_JSON):
        detail = decode_problem(detail)
        errors = [{"field": None, "source": "body", "message": detail}]
    elif status == 404 and detail == "Not Found":
        detail = (f"There is nothing at {request.method} {request.url.path}: check the path, and that the id has "
                  f"the right form (a UUID, or a number for agents).")
    elif status == 405:
        allowed = (exc.headers or {}).get("allow") or (exc.headers or {}).get("Allow")
        detail = f"{request.method} is not allowed on {request.url.path}" + (f"; use {allowed}." if allowed else ".")
    elif status == 413:
        limit = request.route_handler.resolve_request_max_body_size()
        detail = f"the request body is over this endpoint's limit of {_mib(limit)}" if limit else detail
    return problem(status, title, detail, request, errors, headers=exc.headers)


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:g} MiB ({size:,} bytes)"


_PG_DETAIL_KEY = re.compile(r"Key \(([^)]+)\)")


def pg_error_to_app(exc: asyncpg.PostgresError) -> AppError | None:
    """Integrity and data errors that stem from user input become 4xx; anything else stays a bug."""
    detail = getattr(exc, "detail", None) or ""
    m = _PG_DETAIL_KEY.search(detail)
    field = m.group(1).split(",")[-1].strip() if m else getattr(exc, "column_name", None)
    name = f"`{field}`" if field else "A value"
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict(f"{name}: a resource with this value already exists", field=field)
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return ValidationFailed(f"{name} refers to something that does not exist in your tenant", field=field)
    if isinstance(exc, asyncpg.NotNullViolationError):
        return ValidationFailed(f"{name} is required", field=field)
    if isinstance(exc, asyncpg.CheckViolationError):
        return ValidationFailed(f"{name} is not allowed here ({exc.constraint_name or 'a rule of the data'})",
                                field=field)
    if isinstance(exc, asyncpg.StringDataRightTruncationError):
        return ValidationFailed(f"{name} is too long", field=field)
    if isinstance(exc, asyncpg.NumericValueOutOfRangeError):
        return ValidationFailed(f"{name} is out of range", field=field)
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError | asyncpg.UntranslatableCharacterError):
        return ValidationFailed(f"{name} contains a character PostgreSQL cannot store (e.g. NUL)", field=field)
    if isinstance(exc, asyncpg.InvalidTextRepresentationError):
        return ValidationFailed(f"{name} is not a valid value", field=field)
    return None


def _client_data(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # asyncpg could not encode a value for a query argument (e.g. an integer beyond bigint): bad input, not a bug.
    return _app_error(request, ValidationFailed(f"A value is out of what it can hold: {str(exc).splitlines()[0][:200]}"))


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
