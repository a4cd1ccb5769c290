"""Test fixtures: one real PostgreSQL per session (embedded, or DATABASE_URL), migrated once; the app under test.

With DATABASE_URL set, the tests create and finally drop their own database on that server, so a developer's
database is never touched. Every test makes its own tenants, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.database import swap_db
from tests.support.tenants import Tenant
from voice_service.app import create_app
from voice_service.db import EmbeddedPostgres
from voice_service.migrations import migrate
from voice_service.settings import Settings, load_settings
from voice_service.tenancy.service import create_tenant


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    tmp = Path(tempfile.mkdtemp(prefix="voice-test-pg-"))
    server = EmbeddedPostgres(tmp, cleanup_mode="delete")
    dsn = server.start()
    try:
        yield dsn
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def pg_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    dbname = f"voice_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await admin.close()
    dsn = swap_db(pg_server_dsn, dbname)
    await migrate(dsn)
    yield dsn
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def settings(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        env={},
        database_url=pg_dsn,
        data_dir=str(tmp_path_factory.mktemp("data")),  # the development secrets key file lands here, not in .data
        log_json=False,
        log_level="WARNING",
        public_base_url="https://voice.example.test",
        twilio_account_sid="AC" + "1" * 32,
        twilio_auth_token="test-twilio-token",
        vonage_application_id="00000000-0000-4000-8000-000000000001",
        vonage_signature_secret="test-vonage-signature-secret-0123456789abcdef",
        deepgram_api_key="dg-test",
        openai_api_key="sk-test",
        run_workers=False,
        conversation_engine=False,  # telephony tests drive media sessions themselves; conversation tests install it
        pool_min_size=1,
        pool_max_size=10,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> Litestar:
    return create_app(settings, bootstrap=False)


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        yield c


@pytest.fixture(scope="session")
async def admin_conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """The migrating user's connection (table owner: outside RLS). Only for setting up and for checks."""
    conn = await asyncpg.connect(pg_dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def make_tenant(admin_conn: asyncpg.Connection) -> Any:
    async def make(name: str | None = None) -> Tenant:
        tenant_id, key = await create_tenant(admin_conn, name or f"tenant-{uuid.uuid4().hex[:8]}")
        return Tenant(tenant_id, key)

    return make


@pytest.fixture
async def tenant(make_tenant: Any) -> Tenant:
    return await make_tenant()  # type: ignore[no-any-return]


# --- browser tests: say loudly when they did not run -------------------------------------------------------------
_browser_skips: list[str] = []
_browser_runs: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "browser" not in report.keywords:
        return
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _browser_skips.append(reason.removeprefix("Skipped: "))
    elif report.when == "call":
        _browser_runs.append(report.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _browser_skips:
        terminalreporter.write_sep("!", "BROWSER TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"{len(_browser_skips)} browser test(s) of the console did NOT run: "
                                    f"{sorted(set(_browser_skips))[0]}", red=True, bold=True)
        terminalreporter.write_line("The console is untested in a browser on this machine.", red=True, bold=True)
        terminalreporter.write_sep("!", red=True, bold=True)
    elif _browser_runs:
        terminalreporter.write_line(f"browser tests: {len(_browser_runs)} ran in Chromium "
                                    f"(screenshots in .artifacts/screenshots)")
