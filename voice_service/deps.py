"""Litestar dependencies shared by every domain: the principal and the request's tenant transaction."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import asyncpg
from litestar import Request
from litestar.di import NamedDependency, Provide

from voice_service.auth import Principal
from voice_service.db import tenant_tx


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.user
    return principal


async def provide_conn(request: Request[Any, Any, Any]) -> AsyncGenerator[asyncpg.Connection, None]:
    """One transaction per request, scoped to the caller's tenant; committed before the response is sent."""
    principal: Principal = request.user
    async with tenant_tx(request.app.state.pool, principal.tenant_id) as tx:
        yield tx


dependencies = {
    "principal": Provide(provide_principal),
    "conn": Provide(provide_conn),
}

# Handler parameter types: `conn: Conn, principal: Caller` (explicitly named dependencies, as Litestar 3 requires).
Conn = NamedDependency[asyncpg.Connection]
Caller = NamedDependency[Principal]
