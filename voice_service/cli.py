"""`voice-service` command line: serve, worker, migrate, create-tenant, create-api-key, topup, simulate."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from voice_service.db import resolve_database_url
from voice_service.migrations import migrate
from voice_service.settings import Settings, load_settings

# Sub-commands other domains contribute: name -> (configure(parser), run(args, settings) -> exit code).
extra_commands: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[..., int]]] = {}


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from voice_service.app import create_app
    from voice_service.calls.live import DrainingServer

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    settings = load_settings(**overrides)
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, lifespan="on",
                            timeout_graceful_shutdown=int(settings.drain_timeout_seconds) + 1, ws_max_size=1 << 20)
    # DrainingServer lets live calls finish (up to DRAIN_TIMEOUT_SECONDS) before uvicorn closes WebSockets.
    DrainingServer(config, drain_timeout=settings.drain_timeout_seconds).run()
    return 0


async def _with_admin(settings: Settings, fn: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
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


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> int:
        dsn, embedded = resolve_database_url(settings)
        try:
            applied = await migrate(dsn)
        finally:
            if embedded is not None:
                embedded.stop()
        print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
        return 0

    return asyncio.run(run())


def _create_tenant(args: argparse.Namespace, settings: Settings) -> int:
    from voice_service.tenancy.service import create_tenant

    async def run(conn: asyncpg.Connection) -> int:
        tenant_id, key = await create_tenant(conn, args.name)
        print(f"tenant_id {tenant_id}")
        print(f"api_key {key}")
        return 0

    return asyncio.run(_with_admin(settings, run))


def _create_api_key(args: argparse.Namespace, settings: Settings) -> int:
    from voice_service.auth import Principal
    from voice_service.db import tenant_transaction
    from voice_service.tenancy.schemas import ApiKeyCreate
    from voice_service.tenancy.service import create_api_key

    async def run(conn: asyncpg.Connection) -> int:
        tenant_id = uuid.UUID(args.tenant)
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)", tenant_id):
            print(f"no tenant {tenant_id}", file=sys.stderr)
            return 2
        owner = Principal(tenant_id=tenant_id, role="owner")
        async with tenant_transaction(conn, tenant_id):
            created = await create_api_key(conn, owner, ApiKeyCreate(name=args.name, role=args.role,
                                                                     user_email=args.user_email))
        print(f"key_id {created.id}")
        print(f"api_key {created.key}")
        if created.user_id:
            print(f"user_id {created.user_id}")
        return 0

    return asyncio.run(_with_admin(settings, run))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="API + media + workers")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(run=_serve)
    p = sub.add_parser("migrate", help="apply sql/ migrations")
    p.set_defaults(run=_migrate)
    p = sub.add_parser("create-tenant", help="create a tenant; prints its id and an owner API key")
    p.add_argument("name")
    p.set_defaults(run=_create_tenant)
    p = sub.add_parser("create-api-key", help="create an API key for a tenant")
    p.add_argument("--tenant", required=True)
    p.add_argument("--role", default="member", choices=["owner", "admin", "member", "viewer"])
    p.add_argument("--name", default="cli key")
    p.add_argument("--user-email", default=None, help="bind the key to this user (created as a member if new)")
    p.set_defaults(run=_create_api_key)
    for name, (configure, run) in extra_commands.items():
        p = sub.add_parser(name)
        configure(p)
        p.set_defaults(run=run)
    return parser


def _load_extra_commands() -> None:
    # Domains register their commands on import (worker, topup, simulate).
    import importlib

    for module in ("voice_service.workers", "voice_service.billing.cli", "voice_service.simulator.cli"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise


def main(argv: list[str] | None = None) -> int:
    _load_extra_commands()
    args = build_parser().parse_args(argv)
    settings = load_settings()
    return int(args.run(args, settings) or 0)


if __name__ == "__main__":
    # Run through the imported module, so commands that domains register on `voice_service.cli` are seen.
    from voice_service.cli import main as _main

    sys.exit(_main())
