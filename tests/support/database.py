"""Database names in DSNs: the tests make their own databases on the test server and never touch another."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def swap_db(dsn: str, dbname: str) -> str:
    """`dsn` with its database name replaced by `dbname`."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + dbname))


async def fresh_db(server_dsn: str) -> tuple[str, str]:
    """A new empty database on the server: (its name, its DSN)."""
    name = f"voice_mig_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, swap_db(server_dsn, name)


async def drop_db(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
