"""Console sessions: sign-in with an API key or a platform JWT, the session cookie, sign-out, and the CSRF token.

The browser gets a random 256-bit session token in an HttpOnly, SameSite=Lax cookie scoped to /console (Secure when
the console is served over https); the database keeps only its SHA-256 (console_sessions, sql/0060). The credential
the user typed is checked once, through the same functions as the API's (voice_service/auth.py), and never stored:
the session remembers which key or user it was, and every request reads the role again, so revoking the key or
changing the membership ends or narrows the session at once. A session ends after CONSOLE_SESSION_IDLE_MINUTES
without a request, CONSOLE_SESSION_MAX_HOURS after sign-in (or when a platform token expires, if sooner), or at
sign-out.

The CSRF token is derived from the session token (HMAC), so it is per session, needs no storage, and cannot be
computed without the cookie the attacker does not have.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
import msgspec
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie

from voice_service.auth import KEY_PREFIX, KeyCache, Principal, resolve_api_key, resolve_jwt
from voice_service.db import tenant_tx
from voice_service.errors import Unauthorized
from voice_service.settings import Settings
from voice_service.tenancy import repository as tenancy_repo

COOKIE = "console_session"
COOKIE_PATH = "/console"
_CSRF_LABEL = b"voice-service console csrf v1"


class ConsoleSession(msgspec.Struct, frozen=True):
    principal: Principal
    label: str  # what the header shows: the key's name and prefix, or the user's e-mail
    expires_at: datetime
    csrf_token: str


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def csrf_token_for(token: str) -> str:
    return hmac.new(token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def _idle_seconds(settings: Settings) -> int:
    return settings.console_session_idle_minutes * 60


async def resolve(pool: asyncpg.Pool, settings: Settings, token: str) -> ConsoleSession | None:
    """The live session behind a cookie value, or None (unknown, ended, expired, or its credential revoked)."""
    if not token or len(token) > 128:
        return None
    row = await tenancy_repo.resolve_console_session(pool, hash_token(token), _idle_seconds(settings))
    if row is None:
        return None
    principal = Principal(tenant_id=row["tenant_id"], role=row["role"], user_id=row["user_id"],
                          key_id=row["key_id"], kind=row["kind"])
    return ConsoleSession(principal=principal, label=row["label"] or row["role"], expires_at=row["expires_at"],
                          csrf_token=csrf_token_for(token))


def _jwt_expiry(token: str) -> datetime | None:
    # Only read after resolve_jwt has verified the signature and `exp` (a required claim).
    exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    return datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None


async def sign_in(pool: asyncpg.Pool, settings: Settings, key_cache: KeyCache, credential: str,
                  user_agent: str | None) -> tuple[str, ConsoleSession]:
    """Checks the credential as the API would and opens a session; returns (cookie token, session).
    Raises Unauthorized with a message for the person signing in."""
    credential = credential.strip()
    if not credential:
        raise Unauthorized("enter an API key (vsk_…) or a platform token", field="credential")
    if credential.startswith(KEY_PREFIX):
        principal = await resolve_api_key(pool, key_cache, credential)
        token_expiry = None
    else:
        principal = await resolve_jwt(pool, settings, credential)
        token_expiry = _jwt_expiry(credential)
    if principal.kind == "jwt" and principal.user_id is None:  # resolve_jwt always sets it; the table requires it
        raise Unauthorized("this token names no user", field="credential")
    now = datetime.now(UTC)
    expires_at = now + timedelta(hours=settings.console_session_max_hours)
    if token_expiry is not None:
        expires_at = min(expires_at, token_expiry)
    token = secrets.token_urlsafe(32)
    async with tenant_tx(pool, principal.tenant_id) as conn:
        await tenancy_repo.purge_console_sessions(conn, principal.tenant_id, _idle_seconds(settings))
        await tenancy_repo.insert_console_session(
            conn, principal.tenant_id, token_hash=hash_token(token), kind=principal.kind,
            api_key_id=principal.key_id if principal.kind == "api_key" else None,
            user_id=principal.user_id, expires_at=expires_at,
            user_agent=(user_agent or "")[:500] or None,
        )
    return token, ConsoleSession(principal=principal, label=principal.role, expires_at=expires_at,
                                 csrf_token=csrf_token_for(token))


async def sign_out(pool: asyncpg.Pool, token: str) -> None:
    if token and len(token) <= 128:
        await tenancy_repo.end_console_session(pool, hash_token(token))


def is_secure(settings: Settings, connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Secure cookies when the console is served over https: the public URL says so, or this request came so."""
    return settings.public_base_url.startswith("https://") or connection.url.scheme == "https"


def session_cookie(token: str, *, secure: bool, max_age: int) -> Cookie:
    return Cookie(key=COOKIE, value=token, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure,
                  max_age=max_age)


def cleared_cookie(*, secure: bool) -> Cookie:
    return Cookie(key=COOKIE, value="", path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure, max_age=0)
