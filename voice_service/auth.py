"""Authentication (API keys and platform JWTs) and role guards.

API keys are `vsk_` + 32 random bytes (base62-ish url-safe); only their SHA-256 is stored. A bearer token that
does not start with `vsk_` is treated as a platform JWT (HS256 secret or RS256 public key from settings, claims
`sub` = user id and `tid` = tenant id) whose role comes from MEMBERSHIPS. Keys are resolved through the SECURITY
DEFINER function `auth_api_key`, because the tenant is not known until the key is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeAlias

import asyncpg
import jwt
import msgspec
from jwt.types import Options
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from voice_service.errors import Forbidden, Unauthorized
from voice_service.observability import tenant_id_var
from voice_service.settings import Settings

# A Litestar guard, as the factories below make them (coroutines: see `writes_need`).
Guard: TypeAlias = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]

ROLES = ("viewer", "member", "admin", "owner")
ROLE_RANK = {r: i for i, r in enumerate(ROLES)}
KEY_PREFIX = "vsk_"
_CACHE_TTL = 5.0  # seconds a resolved key is trusted in this process; revocation here evicts at once, and
# expiry is checked on every request (a cached key stops working the instant it expires)


class Principal(msgspec.Struct, frozen=True):
    tenant_id: uuid.UUID
    role: str
    user_id: uuid.UUID | None = None
    key_id: uuid.UUID | None = None
    kind: str = "api_key"
    expires_at: datetime | None = None

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def new_api_key() -> tuple[str, bytes, str]:
    """Returns (the key to show once, its hash to store, the display prefix)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key), key[:12]


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyCache:
    def __init__(self) -> None:
        self._items: dict[bytes, tuple[float, Principal]] = {}

    def get(self, digest: bytes) -> Principal | None:
        hit = self._items.get(digest)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            self._items.pop(digest, None)
            return None
        return hit[1]

    def put(self, digest: bytes, principal: Principal) -> None:
        if len(self._items) > 10_000:
            self._items.clear()
        self._items[digest] = (time.monotonic() + _CACHE_TTL, principal)

    def evict_key(self, key_id: uuid.UUID) -> None:
        for digest, (_, p) in list(self._items.items()):
            if p.key_id == key_id:
                self._items.pop(digest, None)

    def clear(self) -> None:
        self._items.clear()


async def resolve_api_key(pool: asyncpg.Pool, cache: KeyCache, key: str) -> Principal:
    """The key's principal: its role capped by its user's membership role (see auth_api_key in sql/0037)."""
    digest = hash_key(key)
    principal = cache.get(digest)
    if principal is None:
        row = await pool.fetchrow(
            "SELECT key_id, tenant_id, user_id, role, expires_at FROM auth_api_key($1)", digest
        )
        if row is None:
            raise Unauthorized("invalid or revoked API key")
        principal = Principal(
            tenant_id=row["tenant_id"],
            role=row["role"],
            user_id=row["user_id"],
            key_id=row["key_id"],
            expires_at=row["expires_at"],
        )
        cache.put(digest, principal)
    if principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
        if principal.key_id is not None:
            cache.evict_key(principal.key_id)
        raise Unauthorized("this API key has expired")
    return principal


async def resolve_jwt(pool: asyncpg.Pool, settings: Settings, token: str) -> Principal:
    if settings.jwt_secret:
        key, algorithms = settings.jwt_secret, ["HS256"]
    elif settings.jwt_public_key:
        key, algorithms = settings.jwt_public_key.replace("\\n", "\n"), ["RS256"]
    else:
        raise Unauthorized("bearer tokens are not enabled; use an API key (vsk_…)")
    options: Options = {"require": ["sub", "exp"], "verify_aud": settings.jwt_audience is not None}
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options=options,
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    try:
        user_id = uuid.UUID(str(claims["sub"]))
        tenant_id = uuid.UUID(str(claims.get("tid")))
    except (ValueError, TypeError):
        raise Unauthorized("token claims `sub` and `tid` must be UUIDs") from None
    role = await pool.fetchval("SELECT auth_membership($1, $2)", user_id, tenant_id)
    if role is None:
        raise Unauthorized("no membership in this tenant")
    return Principal(tenant_id=tenant_id, role=role, user_id=user_id, kind="jwt")


class AuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        state = connection.app.state
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not token and connection.headers.get("x-api-key"):
            scheme, token = "bearer", connection.headers["x-api-key"]
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(
                "missing credentials: send `Authorization: Bearer <API key or token>`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        token = token.strip()
        if token.startswith(KEY_PREFIX):
            principal = await resolve_api_key(state.pool, state.key_cache, token)
        else:
            principal = await resolve_jwt(state.pool, state.settings, token)
        connection.scope.setdefault("state", {})["tenant_id"] = str(principal.tenant_id)
        tenant_id_var.set(str(principal.tenant_id))
        return AuthenticationResult(user=principal, auth=principal)


_READ_METHODS = {"GET", "HEAD"}
# OPTIONS is not authenticated (a browser's CORS preflight never carries credentials; the middleware excludes it) and
# only answers which methods a path allows: the guards let it through before looking for a user, which it has none.
_UNAUTHENTICATED_METHODS = {"OPTIONS"}


def writes_need(role: str) -> Guard:
    """Guard: reads need any role; writes need at least `role` (viewers never write).

    Guards are coroutines: Litestar runs a plain-function guard in a worker thread (a thread hop per request,
    measured at a quarter of the service's CPU on GET /v1/agents/{id})."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        method = connection.scope.get("method", "GET")
        if method in _UNAUTHENTICATED_METHODS or method in _READ_METHODS:
            return
        principal: Principal = connection.user
        if not principal.at_least(role):
            raise Forbidden(f"this action needs the {role} role; your role is {principal.role}")

    guard.required_role = role  # type: ignore[attr-defined]  # read by the OpenAPI document (its 403s)
    guard.reads_free = True  # type: ignore[attr-defined]
    return guard


def requires(role: str) -> Guard:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if connection.scope.get("method") in _UNAUTHENTICATED_METHODS:
            return
        principal: Principal = connection.user
        if not principal.at_least(role):
            raise Forbidden(f"this action needs the {role} role; your role is {principal.role}")

    guard.required_role = role  # type: ignore[attr-defined]
    return guard


async def platform_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of the platform's own API (the billing system: prices, top-ups; number assignments):
    `Authorization: Bearer <PLATFORM_ADMIN_TOKEN>`, never a tenant's key. Off (403) while the setting is unset.
    Routes using it set `opt={"exclude_from_auth": True}`: the tenant authentication does not apply to them."""
    expected = connection.app.state.settings.platform_admin_token
    if not expected:
        raise Forbidden("the platform admin API is disabled (set PLATFORM_ADMIN_TOKEN)")
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("invalid platform admin token", headers={"WWW-Authenticate": "Bearer"})
