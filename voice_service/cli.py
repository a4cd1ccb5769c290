"""The `voice-service` command line: serve, worker, migrate, create-tenant, create-api-key, topup, simulate.

Every command is listed here by a plain import of the module that runs it: nothing registers itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import Any

import asyncpg

from voice_service import __version__
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
    """(The worker takes no options: its settings come from the environment, as the server's.)"""


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


class _Help(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option's default after its help (when it has one worth saying)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                and "%(default)" not in text and "default" not in text):
            text += " (default: %(default)s)"
        return text


DESCRIPTION = """The voice service: AI voice agents on the phone (API, media sockets, job workers) and its admin commands.

Settings come from the environment and a .env file in the working directory (the environment wins); .env.example
lists them all. Every command works against the same database as the running service (DATABASE_URL, or the
embedded PostgreSQL under DATA_DIR)."""

EPILOG = """examples:
  voice-service serve                                   # what `make run` starts
  voice-service create-tenant "Acme"                    # prints tenant_id and an owner API key
  voice-service create-api-key --tenant ID --role admin
  voice-service topup ID 25.00
  voice-service simulate serve --talk-seconds 3         # a local carrier for trying calls

`voice-service COMMAND --help` describes each command."""


def _command(sub: Any, name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description or summary,
                                                     formatter_class=_Help)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-service", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"voice-service {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = _command(sub, "serve", "run the API, the media sockets and the job workers (what `make run` starts)",
                 "Run the service: the REST API, the carriers' webhooks and media sockets, and the job workers "
                 "(unless RUN_WORKERS=false). Applies pending migrations first. SIGTERM drains live calls for up "
                 "to DRAIN_TIMEOUT_SECONDS.")
    p.add_argument("--host", help="address to listen on (default: the HOST setting, 0.0.0.0)")
    p.add_argument("--port", type=int, help="port to listen on (default: the PORT setting, 8000)")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="processes serving the one port, each with its own engine and job workers "
                        "(default: the cores this process may use)")
    p.set_defaults(run=_serve)
    p = _command(sub, "worker", "run job workers only (scale out: any number, against one database)",
                 "Run the job workers only (batch dispatch, post-call billing and analysis, webhook delivery, "
                 "recordings): start any number of them against the same database to scale out.")
    _configure_worker(p)
    p.set_defaults(run=_worker)
    p = _command(sub, "migrate", "apply the sql/ migrations that are not applied yet",
                 "Apply the numbered SQL migrations not yet recorded in schema_migrations, in order, under an "
                 "advisory lock (safe while other instances run). `serve` and `worker` do this too.")
    p.set_defaults(run=_migrate)
    p = _command(sub, "create-tenant", "create a tenant; prints its id and an owner API key (shown once)")
    p.add_argument("name", help="the tenant's name (unique)")
    p.set_defaults(run=_create_tenant)
    p = _command(sub, "create-api-key", "create an API key for a tenant; prints it (shown once)")
    p.add_argument("--tenant", required=True, help="the tenant's id (from create-tenant)")
    p.add_argument("--role", default="member", choices=["owner", "admin", "member", "viewer"],
                   help="viewer reads; member places calls; admin and owner manage the tenant")
    p.add_argument("--name", default="cli key", help="what the key is for")
    p.add_argument("--user-email", default=None,
                   help="bind the key to this user (created as a member if new); members need it to place calls")
    p.set_defaults(run=_create_api_key)
    p = _command(sub, "topup", "credit a tenant's wallet (a top-up ledger row)")
    billing_cli.configure(p)
    p.set_defaults(run=billing_cli.run)
    p = _command(sub, "simulate", "play the carrier's side of calls locally (no carrier account needed)")
    simulator_cli.configure(p)
    p.set_defaults(run=simulator_cli.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    return int(args.run(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
