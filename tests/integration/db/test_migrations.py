"""Migrations: applying twice is a no-op; two processes migrating one database at once do not collide; an edited
applied migration is refused; the application role cannot bypass row-level security."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.database import swap_db
from voice_service.migrations import MigrationError, load_migrations, migrate

ROOT = str(Path(__file__).resolve().parents[3])


async def _fresh_db(server_dsn: str) -> tuple[str, str]:
    name = f"voice_mig_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, swap_db(server_dsn, name)


async def _drop(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def test_second_run_is_a_noop(pg_dsn: str) -> None:
    assert await migrate(pg_dsn) == []
    conn = await asyncpg.connect(pg_dsn)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        await conn.close()
    assert versions == [m.version for m in load_migrations()]


async def test_two_processes_migrating_at_once(pg_server_dsn: str) -> None:
    name, dsn = await _fresh_db(pg_server_dsn)
    try:
        code = "import asyncio,sys; from voice_service.migrations import migrate; print(len(asyncio.run(migrate(sys.argv[1]))))"
        env = {**os.environ, "PYTHONPATH": ROOT}
        procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", code, dsn, env=env,
                                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
        outs = [await p.communicate() for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [o[1].decode()[-2000:] for o in outs]
        applied = sorted(int(o[0].decode().strip()) for o in outs)
        assert applied == [0, len(load_migrations())]  # one applied everything, the other found it done
    finally:
        await _drop(pg_server_dsn, name)


async def test_edited_migration_is_refused(pg_server_dsn: str, tmp_path: Path) -> None:
    name, dsn = await _fresh_db(pg_server_dsn)
    try:
        (tmp_path / "0001_a.sql").write_text("CREATE TABLE t_a (id int);")
        assert await migrate(dsn, tmp_path) == ["0001_a.sql"]
        (tmp_path / "0001_a.sql").write_text("CREATE TABLE t_a (id bigint);")
        with pytest.raises(MigrationError, match="edited"):
            await migrate(dsn, tmp_path)
        (tmp_path / "0001_a.sql").write_text("CREATE TABLE t_a (id int);")
        (tmp_path / "0002_b.sql").write_text("CREATE TABLE t_b (id int); SELECT 1/0;")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate(dsn, tmp_path)
        conn = await asyncpg.connect(dsn)
        try:  # the failed file left nothing behind: one transaction per file
            assert await conn.fetchval("SELECT to_regclass('t_b')") is None
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
        finally:
            await conn.close()
    finally:
        await _drop(pg_server_dsn, name)


async def test_app_role_is_subject_to_rls(pg_dsn: str, client: Any, make_tenant: Any) -> None:
    from voice_service.db import create_pool

    a = await make_tenant()
    await client.post("/v1/voices", json={"provider": "openai", "provider_voice_id": "alloy"}, headers=a.headers)
    pool = await create_pool(pg_dsn, min_size=1, max_size=1)  # configured exactly like the app's pool
    try:
        await _check_pool(pool, a)
    finally:
        await pool.close()


async def _check_pool(pool: Any, a: Any) -> None:
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == "voice_app"
        assert not await conn.fetchval("SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user")
        # No tenant set: nothing is visible, even though rows exist.
        assert await conn.fetchval("SELECT count(*) FROM voice_agent_voices") == 0
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(a.id))
            assert await conn.fetchval("SELECT count(*) FROM voice_agent_voices") == 1
        # The pool's reset on release keeps the role.
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == "voice_app"


async def test_partition_maintenance_is_idempotent(settings: Any) -> None:
    from voice_service.composition import open_runtime
    from voice_service.workers import maintenance_once

    async with open_runtime(settings, apply_migrations=False) as runtime:
        await maintenance_once(runtime)  # whatever was missing is created now
        assert await maintenance_once(runtime) == []
        names = {r["relname"] for r in await runtime.pool.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'voice_call_logs'::regclass")}
    # this month and the next three exist as monthly partitions (plus the default one)
    import datetime as dt

    today = dt.date.today().replace(day=1)
    for k in range(4):
        month = (today.month - 1 + k) % 12 + 1
        year = today.year + (today.month - 1 + k) // 12
        assert f"voice_call_logs_y{year:04d}m{month:02d}" in names, names
