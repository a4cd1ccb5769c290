"""One-shot commands' database access: a migrated connection of the migrating user, outside any pool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from voice_service.db import resolve_database_url
from voice_service.migrations import migrate
from voice_service.settings import Settings


async def with_admin_connection(settings: Settings, fn: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    """Apply the migrations, run `fn` on a plain connection and return its exit code (an embedded server is
    started for the command and stopped after it)."""
    dsn, embedded = resolve_database_url(settings)
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            return await fn(conn)
        finally:
            await conn.close()
    finally:
        if embedded is not None:
            embedded.stop()
