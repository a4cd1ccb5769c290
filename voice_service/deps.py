"""Litestar dependencies shared by every domain: the principal, the request's tenant transaction, and the reader
(the request's tenant for reads in one round trip, with no transaction: `Table.read_get` / `read_page`)."""

from __future__ import annotations

import uuid
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


class TenantReader:
    """What a one-round-trip read needs: the pool and the caller's tenant (nothing is acquired until it reads)."""

    __slots__ = ("pool", "tenant_id")

    def __init__(self, pool: asyncpg.Pool, tenant_id: uuid.UUID) -> None:
        self.pool = pool
        self.tenant_id = tenant_id


def reader_of(request: Request[Any, Any, Any]) -> TenantReader:
    """The request's reader, built in the handler: the hot reads take `request` rather than the `reader`
    dependency, which Litestar resolves at some cost on every request."""
    return TenantReader(request.app.state.pool, request.user.tenant_id)


async def provide_reader(request: Request[Any, Any, Any]) -> TenantReader:
    return reader_of(request)


dependencies = {
    "principal": Provide(provide_principal),
    "conn": Provide(provide_conn),
    "reader": Provide(provide_reader),
}

# Handler parameter types: `conn: Conn, principal: Caller` (explicitly named dependencies, as Litestar 3 requires).
Conn = NamedDependency[asyncpg.Connection]
Caller = NamedDependency[Principal]
Reader = NamedDependency[TenantReader]
