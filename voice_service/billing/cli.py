"""`voice-service topup TENANT AMOUNT`: credit a tenant wallet from the command line (`configure` builds the
sub-command's arguments, `run` runs it; voice_service/cli.py lists it)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from decimal import Decimal, InvalidOperation

import asyncpg

from voice_service.admin import with_admin_connection
from voice_service.billing import repository as repo
from voice_service.billing import wallet
from voice_service.db import init_connection, tenant_transaction
from voice_service.errors import AppError
from voice_service.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "credit a tenant wallet (a topup ledger row)"
    parser.add_argument("tenant", help="tenant id")
    parser.add_argument("amount", help="amount in the wallet currency, e.g. 25.00")
    parser.add_argument("--description", default="manual top-up", help="the ledger row's description")
    parser.add_argument(
        "--idempotency-key",
        default=None,
        help="posting the same key twice credits once (default: a new key each run)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        tenant_id = uuid.UUID(args.tenant)
        amount = Decimal(args.amount)
    except (ValueError, InvalidOperation):
        print("usage: voice-service topup TENANT_UUID AMOUNT", file=sys.stderr)
        return 2
    key = f"topup:{args.idempotency_key or 'cli-' + uuid.uuid4().hex}"

    async def topup(conn: asyncpg.Connection) -> int:
        await init_connection(conn)  # the pool's jsonb codec, which the billing repository expects
        async with tenant_transaction(conn, tenant_id):
            if not await repo.tenant_exists(conn, tenant_id):
                print(f"no tenant {tenant_id}", file=sys.stderr)
                return 2
            try:
                posting = await wallet.topup(
                    conn, tenant_id, amount, idempotency_key=key, description=args.description
                )
            except AppError as exc:
                print(exc.detail, file=sys.stderr)
                return 2
        row = posting.ledger
        print(f"ledger_transaction {row['id']}{'' if posting.created else ' (already posted)'}")
        print(f"balance {row['balance_before']} -> {row['balance_after']}")
        return 0

    return asyncio.run(with_admin_connection(settings, topup))
