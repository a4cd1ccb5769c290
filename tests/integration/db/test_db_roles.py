"""Row-level security as real defence in depth (issue #15 §5).

The attack: the pool logged in as the superuser and only `SET ROLE voice_app`, so one statement
(`select set_config('role', 'postgres', false)`) escaped row-level security; the job tables, the webhook replay
guard and the dispatch pacing rows had no row-level security, and `UPDATE pgqueuer` as the app role touched every
tenant's jobs. Now the service logs in as a role that is no superuser and belongs to none, the queue is the worker
role's (the app role only enqueues, for its own tenant, through a function), and a test lists every table.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from pgqueuer import AsyncpgPoolDriver, Job, Queries, QueueManager

from voice_service import workers
from voice_service.composition import open_runtime
from voice_service.db import APP_ROLE, WORKER_ROLE, system_tx, tenant_tx
from voice_service.enqueue import decode_payload, enqueue
from voice_service.runtime import Runtime
from voice_service.settings import Settings

_ESCAPES = (
    "SET ROLE {role}",
    "SELECT set_config('role', '{role}', false)",
    "SET SESSION AUTHORIZATION {role}",
    "SELECT set_config('session_authorization', '{role}', false)",
)


@pytest.fixture(scope="module")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(settings, apply_migrations=False) as rt:
        yield rt


async def _owner(admin_conn: asyncpg.Connection) -> str:
    return str(await admin_conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'tenants'"))


async def test_the_app_connection_cannot_become_another_role(
    runtime: Runtime, admin_conn: asyncpg.Connection, make_tenant: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    owner = await _owner(admin_conn)
    superusers = [r["rolname"] for r in await admin_conn.fetch("SELECT rolname FROM pg_roles WHERE rolsuper")]
    async with runtime.pool.acquire() as conn:
        login = await conn.fetchval("SELECT session_user")
        assert login != owner and login not in superusers
        role = await conn.fetchrow("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication "
                                   "FROM pg_roles WHERE rolname = session_user")
        assert not any(role.values()), dict(role)
        # Member of no superuser role, of neither the owner nor the worker role: voice_app is its only role.
        memberships = {r["rolname"] for r in await conn.fetch(
            "SELECT rolname FROM pg_roles WHERE pg_has_role(session_user, oid, 'MEMBER') AND rolname <> session_user")}
        assert memberships == {APP_ROLE}, memberships
        for target in {owner, *superusers, WORKER_ROLE}:
            for statement in _ESCAPES:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement.format(role=target))
        assert await conn.fetchval("SELECT current_user") == APP_ROLE
        # Still inside row-level security: tenant a sees its own keys only.
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(a.id))
            tenants = {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM api_keys")}
        assert tenants == {a.id} and b.id not in tenants


async def test_the_app_pool_refuses_a_privileged_login(settings: Settings, pg_dsn: str) -> None:
    """APP_DATABASE_URL naming the owner (or any superuser) is refused at start-up, not quietly used."""
    import msgspec

    with pytest.raises(RuntimeError, match="superuser|owner"):
        async with open_runtime(msgspec.structs.replace(settings, app_database_url=pg_dsn), apply_migrations=False):
            pass


async def test_every_tenant_table_has_row_level_security(admin_conn: asyncpg.Connection) -> None:
    """Every table of the schema: the app role either reaches it through row-level security with a policy, or has
    no privilege on it at all (it is reachable only through functions that check the tenant)."""
    rows = await admin_conn.fetch(
        """SELECT c.relname, c.relrowsecurity AS rls, c.relispartition AS partition,
                  EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid
                          AND (p.polroles = '{0}' OR $1::regrole = ANY (p.polroles))) AS app_policy,
                  has_table_privilege($1, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
                      AS app_access,
                  has_table_privilege($2, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
                      AS worker_access,
                  EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                          AND NOT a.attisdropped) AS has_tenant
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')""",
        APP_ROLE, WORKER_ROLE,
    )
    assert len(rows) > 30
    names = {r["relname"] for r in rows}
    assert {"api_keys", "pgqueuer", "webhook_replay_guard", "dispatch_pacing", "voice_call_logs"} <= names
    unguarded = [r["relname"] for r in rows if r["app_access"] and not (r["rls"] and r["app_policy"])]
    assert unguarded == [], f"tables the app role reaches without row-level security: {unguarded}"
    # A partition is reached through its parent (where the policy is), never directly.
    assert [r["relname"] for r in rows if r["partition"] and r["app_access"]] == []
    # Tenant data with no row-level security at all (even the app role's lack of access is not enough there).
    assert [r["relname"] for r in rows if r["has_tenant"] and not r["partition"] and not r["rls"]] == []
    # The worker role reaches the job queue and nothing else.
    assert sorted(r["relname"] for r in rows if r["worker_access"]) == [
        "pgqueuer", "pgqueuer_log", "pgqueuer_schedules", "pgqueuer_statistics"]


async def test_the_app_role_reaches_the_job_queue_only_through_enqueue(
    runtime: Runtime, admin_conn: asyncpg.Connection, make_tenant: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    for sql in ("SELECT count(*) FROM pgqueuer", "UPDATE pgqueuer SET priority = priority",
                "DELETE FROM pgqueuer_log", "SELECT * FROM webhook_replay_guard",
                "UPDATE dispatch_pacing SET next_slot_at = now()", "SELECT * FROM pgqueuer_statistics"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with tenant_tx(runtime.pool, a.id) as conn:
                await conn.execute(sql)
    entrypoint = f"test.roles.{uuid.uuid4().hex[:8]}"
    async with tenant_tx(runtime.pool, a.id) as conn:
        job_id = await enqueue(conn, entrypoint, {"tenant_id": str(a.id), "n": 1})
    assert await admin_conn.fetchval("SELECT tenant_id FROM pgqueuer WHERE id = $1", job_id) == a.id
    # A job naming another tenant than the transaction's is refused.
    with pytest.raises(asyncpg.RaiseError, match="tenant"):
        async with tenant_tx(runtime.pool, a.id) as conn:
            await enqueue(conn, entrypoint, {"tenant_id": str(b.id)})
    with pytest.raises(asyncpg.RaiseError, match="tenant"):
        async with system_tx(runtime.pool) as conn:
            await enqueue(conn, entrypoint, {"tenant_id": str(b.id)})
    # A system job (no tenant) is enqueued from outside any tenant.
    async with system_tx(runtime.pool) as conn:
        system_job = await enqueue(conn, entrypoint, {"run_at": "now"}, dedupe_key=f"{entrypoint}:x")
        assert await enqueue(conn, entrypoint, {"run_at": "now"}, dedupe_key=f"{entrypoint}:x") is None
    assert await admin_conn.fetchval("SELECT tenant_id FROM pgqueuer WHERE id = $1", system_job) is None
    await admin_conn.execute("DELETE FROM pgqueuer WHERE entrypoint = $1", entrypoint)


async def test_the_worker_dequeues_every_tenants_jobs(
    runtime: Runtime, admin_conn: asyncpg.Connection, make_tenant: Any
) -> None:
    tenants = [await make_tenant() for _ in range(3)]
    entrypoint = f"test.roles.{uuid.uuid4().hex[:8]}"
    for t in tenants:
        async with tenant_tx(runtime.pool, t.id) as conn:
            await enqueue(conn, entrypoint, {"tenant_id": str(t.id)})
    queue_pool = await workers.queue_pool(runtime)
    async with queue_pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == WORKER_ROLE
        assert not await conn.fetchval("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = session_user")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM api_keys")
        for statement in _ESCAPES:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement.format(role=APP_ROLE))
    seen: list[str] = []
    done = asyncio.Event()
    qm = QueueManager(Queries(AsyncpgPoolDriver(queue_pool)))

    @qm.entrypoint(entrypoint)
    async def handle(job: Job) -> None:
        seen.append(decode_payload(job.payload)["tenant_id"])
        if len(seen) == len(tenants):
            done.set()

    task = asyncio.create_task(qm.run(dequeue_timeout=timedelta(seconds=1), batch_size=10))
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        qm.shutdown.set()
        await asyncio.wait_for(task, 30)
    assert sorted(seen) == sorted(str(t.id) for t in tenants)
    assert await admin_conn.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", entrypoint) == 0


async def test_a_tenant_paces_only_its_own_numbers_and_the_shared_accounts(
    runtime: Runtime, admin_conn: asyncpg.Connection, make_tenant: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    n = 6282000000 + uuid.uuid4().int % 8_000_000
    number_b = await admin_conn.fetchval(
        "INSERT INTO voice_agent_numbers (tenant_id, country_code, base_number, e164, provider) "
        "VALUES ($1, '1', $2, $3, 'simulator') RETURNING id",
        b.id, n, f"+1{n}",
    )
    async with tenant_tx(runtime.pool, b.id) as conn:
        slots = await conn.fetch("SELECT * FROM dispatch_pacing_lock($1::text[])",
                                 [f"number:{number_b}", "account:simulator"])
        assert {r["pacing_key"] for r in slots} == {f"number:{number_b}", "account:simulator"}
    for keys in ([f"number:{number_b}"], ["account:../x"], ["anything"]):
        with pytest.raises(asyncpg.RaiseError, match="pacing key"):
            async with tenant_tx(runtime.pool, a.id) as conn:
                await conn.fetch("SELECT * FROM dispatch_pacing_lock($1::text[])", keys)
    with pytest.raises(asyncpg.RaiseError, match="tenant_id"):
        async with system_tx(runtime.pool) as conn:
            await conn.execute("SELECT dispatch_pacing_set($1::text[], $2::timestamptz[])",
                               ["account:simulator"], [None])


def test_the_admin_commands_run_as_the_owner(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """migrate, create-tenant, create-api-key and topup are the owner's (the service's own logins could not create a
    tenant: row-level security); they work against the database the service runs on."""
    from voice_service import cli

    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    assert cli.main(["migrate"]) == 0
    assert "applied 0 migration(s)" in capsys.readouterr().out
    assert cli.main(["create-tenant", f"cli-{uuid.uuid4().hex[:8]}"]) == 0
    out = dict(line.split(" ", 1) for line in capsys.readouterr().out.splitlines())
    assert out["api_key"].startswith("vsk_")
    assert cli.main(["create-api-key", "--tenant", out["tenant_id"], "--role", "admin"]) == 0
    assert capsys.readouterr().out.count("vsk_") == 1
    assert cli.main(["topup", out["tenant_id"], "3.5"]) == 0
    assert "0.000000 -> 3.500000" in capsys.readouterr().out
