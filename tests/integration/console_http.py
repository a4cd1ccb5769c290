"""Helpers for the console's HTTP tests (no browser): a browser-like client that signs in, keys of a role, what a
person reads on a page. Each test module makes its own `console` fixture with `console_factory`."""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.integration.test_console import BASE, Console, _key


def console_factory(client: Any) -> Callable[[], Awaitable[Console]]:
    """`await make()` gives a fresh browser-like client with its own cookies, through the session's test client."""

    async def make() -> Console:
        return Console(httpx.AsyncClient(transport=client._transport, base_url=BASE))

    return make


async def api_key(client: Any, tenant: Any, role: str) -> dict[str, Any]:
    return await _key(client, tenant, role)


async def signed_in(make: Callable[[], Awaitable[Console]], key: str) -> Console:
    c = await make()
    r = await c.sign_in(key)
    assert r.status_code == 303, r.text
    return c


def text_of(html: str) -> str:
    """What a person reads on the page: the text without tags, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", htmllib.unescape(re.sub(r"<[^>]+>", " ", html)))


async def fund(pg_dsn: str, tenant_id: Any, amount: str = "100") -> None:
    """Top up a tenant's wallet through the billing code, on a connection of the test's own (the app's pool lives in
    the test client's loop)."""
    import uuid
    from decimal import Decimal

    import asyncpg

    from voice_service.billing import wallet
    from voice_service.db import init_connection

    conn = await asyncpg.connect(pg_dsn)
    try:
        await init_connection(conn)
        async with conn.transaction():
            await wallet.topup(conn, tenant_id, Decimal(amount), idempotency_key=f"console-test-{uuid.uuid4()}")
    finally:
        await conn.close()
