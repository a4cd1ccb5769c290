"""`voice-service` command line: serve, worker, migrate, create-tenant, create-api-key, topup, simulate.

Every command is listed here by a plain import of the module that runs it: nothing registers itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import Any

import asyncpg

from voice_service.admin import with_admin_connection
from voice_service.auth import Principal
from voice_service.billing import cli as billing_cli
from voice_service.db import resolve_database_url, tenant_transaction
from voice_service.migrations import migrate
from voice_service.serving import default_workers
from voice_service.settings import Settings, load_settings
from voice_service.simulator import cli as simulator_cli
from voice_service.tenancy.schemas import ApiKeyCreate
from voice_service.tenancy.service import create_api_key, create_tenant

# The two long-running commands import the service itself when they run, so the one-shot commands start fast.


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from voice_service.serving import serve

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    return serve(load_settings(**overrides), args.workers)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from voice_service.workers import run_worker

    return run_worker(settings)


def _configure_worker(parser: argparse.ArgumentParser) -> None:
    parser.description = "run job workers only (scale-out)"


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
    async def run(conn: asyncpg.Connection) -> int:
        tenant_id, key = await create_tenant(conn, args.name)
        print(f"tenant_id {tenant_id}")
        print(f"api_key {key}")
        return 0

    return asyncio.run(with_admin_connection(settings, run))


def _create_api_key(args: argparse.Namespace, settings: Settings) -> int:
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

    return asyncio.run(with_admin_connection(settings, run))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-service", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="API + media + workers")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="processes serving the one port, each with its own engine and job workers "
                        "(default: the cores this process may use)")
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
    p = sub.add_parser("worker")
    _configure_worker(p)
    p.set_defaults(run=_worker)
    p = sub.add_parser("topup")
    billing_cli.configure(p)
    p.set_defaults(run=billing_cli.run)
    p = sub.add_parser("simulate")
    simulator_cli.configure(p)
    p.set_defaults(run=simulator_cli.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    return int(args.run(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
