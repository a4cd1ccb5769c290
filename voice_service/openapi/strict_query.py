"""A query parameter the operation does not take is a 400 naming it, not a silently unfiltered answer.

`GET /v1/calls?staus=ended` would otherwise return every call. ApiDocsPlugin stores each documented operation's
query parameter names on its handler (`opt[QUERY_NAMES]`); routes outside the OpenAPI document (the console, the
docs page) and carrier webhooks (which carry the carrier's own parameters) are not checked.
"""

from __future__ import annotations

import difflib
from typing import Any
from urllib.parse import parse_qsl

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from voice_service.errors import BadRequest

QUERY_NAMES = "query_names"


class StrictQueryMiddleware:
    """Runs after routing (Litestar builds middleware per route), after the auth middleware: 401 comes first."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope.get("query_string"):
            handler: Any = scope.get("route_handler")
            allowed = handler.opt.get(QUERY_NAMES) if handler is not None else None
            if allowed is not None:
                check_query(scope["query_string"], allowed)
        await self.app(scope, receive, send)


def check_query(query_string: bytes, allowed: frozenset[str]) -> None:
    names = {name for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)}
    unknown = sorted(names - allowed)
    if not unknown:
        return
    name = unknown[0]
    if allowed:
        takes = f"it takes {', '.join(f'`{n}`' for n in sorted(allowed))}"
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else "."
    else:
        takes, hint = "it takes none", "."
    several = f" (nor {', '.join(f'`{n}`' for n in unknown[1:])})" if len(unknown) > 1 else ""
    raise BadRequest(
        f"`{name}` is not a query parameter of this operation{several}: {takes}{hint}",
        field=name,
        errors=[{"field": n, "source": "query", "message": f"`{n}` is not a query parameter of this operation"}
                for n in unknown],
    )
