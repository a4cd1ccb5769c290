"""ApiDocsPlugin: every operation's standard error responses and query-parameter list, derived from the route itself;
ExampleSchemaPlugin: a Struct's `@example(...)` as its schema's example.

The standard errors follow from what the route is, so a new route gets them without writing anything:
- 400 always (a malformed body, or a query parameter the operation does not take: strict_query.py);
- 401 unless the path is public (health, docs, metrics, carrier webhooks) or the route opts out of API-key auth;
- 403 when a guard asks for a role for this method (auth.writes_need / auth.requires carry `required_role`);
- 404 when the path has a parameter; 413 and 422 when the operation takes a body.
A route documents what only it can answer (409, 402, 503, …) with `responses=problems(...)`; what it gives there
wins over the standard text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.middleware import DefineMiddleware
from litestar.openapi.spec import Schema
from litestar.plugins import InitPlugin
from litestar.plugins.base import ReceiveRoutePlugin
from litestar.routes import HTTPRoute

from voice_service.openapi.problems import RawJson, problem_response
from voice_service.openapi.strict_query import QUERY_NAMES, StrictQueryMiddleware

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.config.app import AppConfig
    from litestar.handlers import HTTPRouteHandler
    from litestar.routes import BaseRoute
    from litestar.typing import FieldDefinition

__all__ = ["OPEN_QUERY", "TAKES_BODY", "ApiDocsPlugin", "ExampleSchemaPlugin", "READ_METHODS"]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROLE_ORDER = "viewer < member < admin < owner"
OPEN_QUERY = "open_query"  # opt key: the route reads query parameters it does not declare (carrier webhooks)
TAKES_BODY = "takes_body"  # opt key: the route reads its body itself (no `data` parameter)


class ApiDocsPlugin(InitPlugin, ReceiveRoutePlugin):
    """Installs the strict-query middleware and documents each operation's standard error responses."""

    def __init__(self, public_paths: Iterable[str]) -> None:
        self._public = [re.compile(p) for p in public_paths]

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.append(DefineMiddleware(StrictQueryMiddleware))
        return app_config

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for method, (handler, kwargs_model) in route.route_handler_map.items():
            if not handler.resolve_include_in_schema() or method == "OPTIONS":
                continue
            if not handler.opt.get(OPEN_QUERY) and "query" not in kwargs_model.expected_reserved_kwargs:
                handler.opt[QUERY_NAMES] = frozenset(p.field_alias for p in kwargs_model.expected_query_params)
            public = bool(handler.opt.get("exclude_from_auth")) or any(p.match(route.path) for p in self._public)
            if public and handler.security is None:
                handler.security = [{}]  # OpenAPI: no credentials needed (the document's default asks for them)
            standard = self._standard_errors(handler, method, route, public)
            handler.responses = {**standard, **(handler.responses or {})}

    def _standard_errors(
        self, handler: HTTPRouteHandler, method: str, route: HTTPRoute, public: bool
    ) -> dict[int, Any]:
        out: dict[int, Any] = {400: problem_response(400)}
        if not public:
            out[401] = problem_response(401)
        roles = sorted({role for guard in handler.resolve_guards() if (role := _role_for(guard, method))})
        if roles:
            out[403] = problem_response(
                403,
                f"The key's role is below {' and '.join(roles)} ({ROLE_ORDER}), the role this operation needs.",
            )
        if route.path_parameters:
            out[404] = problem_response(404)
        if "data" in handler.parsed_fn_signature.parameters or handler.opt.get(TAKES_BODY):
            limit = handler.resolve_request_max_body_size()
            if limit:
                out[413] = problem_response(
                    413, f"The request body is over this operation's limit of {_size(limit)}."
                )
            out[422] = problem_response(422)
        return out


def _role_for(guard: Any, method: str) -> str | None:
    role = getattr(guard, "required_role", None)
    if role is None or (getattr(guard, "reads_free", False) and method in READ_METHODS):
        return None
    return str(role)


def _size(size: int) -> str:
    return f"{size / 1024 / 1024:g} MiB ({size:,} bytes)"


class ExampleSchemaPlugin(StructSchemaPlugin):
    """A msgspec Struct's schema, with the example its class carries (`voice_service.openapi.example`)."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        value = getattr(field_definition.type_, "__openapi_example__", None)
        if value is not None:
            schema.examples = [RawJson(value)]
        return schema
