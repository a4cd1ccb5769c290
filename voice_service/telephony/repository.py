"""SQL for telephony webhooks: the replay guard of signed tokens that carry a one-time id (Vonage's jti).

`webhook_replay_guard` is global (the tenant is unknown when a signature is checked) and holds each one-time id
with a hash of the request it came on; the app role reaches it only through two functions (sql/0075). A carrier retries a webhook that timed out or got a 429/5xx with the same
token: that exact request is let through again (and handled again, idempotently); the same token on any other
request is a replay.
"""

from __future__ import annotations

import asyncpg

__all__ = ["prune_one_time_ids", "remember_one_time_id"]


async def remember_one_time_id(
    conn: asyncpg.Connection, provider: str, jti: str, request_hash: bytes
) -> bool:
    """True the first time this (provider, jti) is seen, and again for the same request; False for a replay."""
    return bool(await conn.fetchval("SELECT webhook_remember_id($1, $2, $3)", provider, jti, request_hash))


async def prune_one_time_ids(conn: asyncpg.Connection, provider: str, older_than_seconds: int) -> None:
    await conn.execute("SELECT webhook_prune_ids($1, $2)", provider, older_than_seconds)
