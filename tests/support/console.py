"""Helpers for the console's tests over HTTP (no browser): a browser-like client that signs in, a key of a role,
what a person reads on a page, a funded wallet, call rows as the telephony code and the pipeline leave them."""

from __future__ import annotations

import html as htmllib
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import msgspec

# The console as a browser reaches it over https (the test settings' PUBLIC_BASE_URL is https, so the session cookie
# is Secure and the client sends it back only over https).
BASE = "https://console.test"


class Console:
    """One browser's worth of console: its own cookie jar, signed in with one credential."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.csrf = ""
        self.session_token = ""
        self.sign_in_response: httpx.Response | None = None

    async def sign_in(self, credential: str, *, next_path: str | None = None) -> httpx.Response:
        form_page = await self.http.get("/console/sign-in", params={"next": next_path} if next_path else None)
        assert form_page.status_code == 200, form_page.text
        token = re.search(r'name="_csrf" value="([^"]+)"', form_page.text)
        assert token is not None
        r = await self.http.post("/console/sign-in", data={"_csrf": token.group(1), "credential": credential,
                                                           "next": next_path or "/console"})
        self.sign_in_response = r
        if r.status_code == 303:
            self.session_token = self.http.cookies.get("console_session", path="/console") or ""
            self.csrf = await self.page_csrf()
        return r

    async def page_csrf(self) -> str:
        page = await self.http.get("/console/agents")
        assert page.status_code == 200, page.text
        m = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert m is not None
        return m.group(1)

    async def post(self, path: str, data: dict[str, Any], *, csrf: bool = True, **kw: Any) -> httpx.Response:
        return await self.http.post(path, data={**data, **({"_csrf": self.csrf} if csrf else {})}, **kw)


def console_factory(client: Any) -> Callable[[], Awaitable[Console]]:
    """`await make()` gives a fresh browser-like client with its own cookies, through the session's test client
    (its transport runs the app in the loop where the app's lifespan and pool live; the transport is that client's
    to close)."""

    async def make() -> Console:
        return Console(httpx.AsyncClient(transport=client._transport, base_url=BASE))

    return make


async def signed_in(make: Callable[[], Awaitable[Console]], key: str) -> Console:
    c = await make()
    r = await c.sign_in(key)
    assert r.status_code == 303, r.text
    return c


async def api_key(client: Any, tenant: Any, role: str) -> dict[str, Any]:
    r = await client.post("/v1/api-keys", json={"name": f"{role} key", "role": role}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def text_of(html: str) -> str:
    """What a person reads on the page: the text without tags, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", htmllib.unescape(re.sub(r"<[^>]+>", " ", html)))


async def fund(pg_dsn: str, tenant_id: Any, amount: str = "100") -> None:
    """Top up a tenant's wallet through the billing code, on a connection of the test's own (the app's pool lives in
    the test client's loop)."""
    from voice_service.billing import wallet
    from voice_service.db import init_connection

    conn = await asyncpg.connect(pg_dsn)
    try:
        await init_connection(conn)
        async with conn.transaction():
            await wallet.topup(conn, tenant_id, Decimal(amount), idempotency_key=f"console-test-{uuid.uuid4()}")
    finally:
        await conn.close()


async def insert_call(admin: asyncpg.Connection, tenant_id: uuid.UUID, *, status: str,
                       created_at: datetime | None = None, direction: str = "outbound",
                       agent_id: int | None = None, batch_id: uuid.UUID | None = None,
                       duration: int | None = None, end_reason: str | None = None, cost: str | None = None,
                       to: str = "+14155550123") -> uuid.UUID:
    """A call row as the telephony code leaves it (the id is the UUIDv7 of created_at)."""
    answered = status in ("ongoing", "ended")
    return await admin.fetchval(  # type: ignore[no-any-return]
        """INSERT INTO voice_call_logs (id, tenant_id, created_at, status, direction, agent_id, batch_id, provider,
               started_at, ended_at, duration_seconds, metadata, to_e164, from_e164, cost, currency)
           SELECT uuid_v7(c), $1, c, $3, $4, $5, $6, 'twilio', CASE WHEN $7 THEN c END,
                  CASE WHEN $2 <> 'ongoing' THEN c + make_interval(secs => coalesce($8, 0)) END, $8, $9::jsonb, $10,
                  '+14155550100', $11::numeric, CASE WHEN $11 IS NOT NULL THEN 'USD' END
           FROM (SELECT coalesce($12::timestamptz, now()) AS c) t
           RETURNING id""",
        tenant_id, status, status, direction, agent_id, batch_id, answered, duration,
        msgspec.json.encode({"end_reason": end_reason} if end_reason else {}).decode(), to, cost, created_at,
    )
