"""Authentication (API keys and platform JWTs) and role guards.

API keys are `vsk_` + 32 random bytes (base62-ish url-safe); only their SHA-256 is stored. A bearer token that
does not start with `vsk_` is treated as a platform JWT (HS256 secret or RS256 public key from settings, claims
`sub` = user id and `tid` = tenant id) whose role comes from MEMBERSHIPS. Keys are resolved through the SECURITY
DEFINER function `auth_api_key`, because the tenant is not known until the key is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeAlias

import asyncpg
import jwt
import msgspec
from jwt.types import Options
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.plugins.base import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

from voice_service.errors import Forbidden, Unauthorized
from voice_service.observability import tenant_id_var
from voice_service.settings import Settings

# A Litestar guard, as the factories below make them (coroutines: see `writes_need`).
Guard: TypeAlias = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]

log = logging.getLogger(__name__)

ROLES = ("viewer", "member", "admin", "owner")
ROLE_RANK = {r: i for i, r in enumerate(ROLES)}
KEY_PREFIX = "vsk_"
AUTH_CHANNEL = "voice_auth"  # sql/0095: revocations and role changes, announced at commit
# How long a resolved key is trusted in this process. While the process listens on AUTH_CHANNEL a revocation
# anywhere evicts the key at once, so the entry only has to be refreshed as often as auth_api_key records
# `last_used_at` (once a minute); without the listener (connecting, or its connection lost) a short TTL bounds
# how long a revoked key keeps working. Expiry is checked on every request either way.
_CACHE_TTL_LISTENING = 60.0
_CACHE_TTL_UNLISTENED = 5.0


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
    """Resolved API keys of this process, by key hash. `listening` says whether revocations reach it
    (`listen_for_revocations`); `generation` moves at every eviction, so a lookup that raced one is not cached."""

    def __init__(self) -> None:
        self._items: dict[bytes, tuple[float, Principal]] = {}
        self.listening = False
        self.generation = 0

    @property
    def ttl(self) -> float:
        return _CACHE_TTL_LISTENING if self.listening else _CACHE_TTL_UNLISTENED

    def get(self, digest: bytes) -> Principal | None:
        hit = self._items.get(digest)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            self._items.pop(digest, None)
            return None
        return hit[1]

    def put(self, digest: bytes, principal: Principal, *, generation: int | None = None) -> None:
        """Cache `principal`, unless an eviction happened since `generation` (read before the lookup)."""
        if generation is not None and generation != self.generation:
            return
        if len(self._items) > 10_000:
            self._items.clear()
        self._items[digest] = (time.monotonic() + self.ttl, principal)

    def evict_key(self, key_id: uuid.UUID) -> None:
        self.generation += 1
        for digest, (_, p) in list(self._items.items()):
            if p.key_id == key_id:
                self._items.pop(digest, None)

    def evict_tenant(self, tenant_id: uuid.UUID) -> None:
        self.generation += 1
        for digest, (_, p) in list(self._items.items()):
            if p.tenant_id == tenant_id:
                self._items.pop(digest, None)

    def clear(self) -> None:
        self.generation += 1
        self._items.clear()

    def on_notification(self, payload: str) -> None:
        """A change announced on AUTH_CHANNEL: `key:<id>`, `tenant:<id>` or anything else (all)."""
        kind, _, value = payload.partition(":")
        try:
            if kind == "key":
                self.evict_key(uuid.UUID(value))
                return
            if kind == "tenant":
                self.evict_tenant(uuid.UUID(value))
                return
        except ValueError:
            pass
        self.clear()


@asynccontextmanager
async def listen_for_revocations(dsn: str, cache: KeyCache, *, retry_seconds: float = 2.0) -> AsyncIterator[None]:
    """While open: a connection of its own LISTENs on AUTH_CHANNEL and evicts what each notification names. When
    that connection is lost the cache is emptied and falls back to the short TTL until it listens again (what was
    announced meanwhile is missed)."""

    async def listen() -> None:
        while True:
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn, server_settings={"application_name": "voice-service auth cache"})
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(AUTH_CHANNEL, lambda _c, _pid, _ch, payload: cache.on_notification(payload))
                cache.clear()  # anything announced before now was missed
                cache.listening = True
                await lost.wait()
                log.warning("the API key cache stopped listening for revocations; reconnecting")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("the API key cache cannot listen for revocations", extra={"detail": repr(exc)})
            finally:
                cache.listening = False
                cache.clear()
                if conn is not None and not conn.is_closed():
                    await conn.close()
            await asyncio.sleep(retry_seconds)

    task = asyncio.create_task(listen(), name="api-key-cache-listener")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def resolve_api_key(pool: asyncpg.Pool, cache: KeyCache, key: str) -> Principal:
    """The key's principal: its role capped by its user's membership role (see auth_api_key in sql/0037). A key
    already seen costs no database round trip (KeyCache); its expiry is checked here every time."""
    digest = hash_key(key)
    principal = cache.get(digest)
    if principal is None:
        generation = cache.generation
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
        cache.put(digest, principal, generation=generation)
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


_AUTH_SCOPES = frozenset({"http", "websocket"})


class AuthMiddleware:
    """Who the caller is: `scope["user"]` and `scope["auth"]` become its `Principal`, or the request is a 401.

    Raw ASGI, reading the server's header list as it comes (the hot path: Litestar's authentication middleware built
    a connection object and a header map per request). Skipped, as Litestar's `AbstractAuthenticationMiddleware`
    skips them: routes with `opt["exclude_from_auth"]`, OPTIONS (a browser's CORS preflight carries no credentials),
    and paths matching `exclude` (regular expressions)."""

    __slots__ = ("app", "exclude")

    def __init__(self, app: Any, exclude: list[str] | None = None) -> None:
        self.app = app
        self.exclude = re.compile("|".join(exclude)) if exclude else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in _AUTH_SCOPES and not self._bypass(scope):
            principal = await authenticate(scope)
            scope["user"] = principal
            scope["auth"] = principal
        await self.app(scope, receive, send)

    def _bypass(self, scope: Any) -> bool:
        handler = scope.get("route_handler")
        if handler is not None and handler.opt.get("exclude_from_auth"):
            return True
        if scope.get("method") in _UNAUTHENTICATED_METHODS:
            return True
        if self.exclude is None:
            return False
        path = scope["raw_path"].decode() if getattr(handler, "is_mount", False) else scope["path"]
        return self.exclude.search(path) is not None


async def authenticate(scope: Any) -> Principal:
    """The caller of this ASGI scope: `Authorization: Bearer <API key or platform JWT>` (or `X-API-Key: <API key>`),
    resolved with the app's key cache; raises Unauthorized. Sets the request's tenant for the log context."""
    authorization = api_key = None
    for name, value in scope["headers"]:
        name = name.lower()
        if name == b"authorization":
            if authorization is None:
                authorization = value
        elif name == b"x-api-key" and api_key is None:
            api_key = value
    scheme, _, token = authorization.decode("latin-1").partition(" ") if authorization else ("", "", "")
    if not token and api_key:
        scheme, token = "bearer", api_key.decode("latin-1")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "missing credentials: send `Authorization: Bearer <API key or token>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = token.strip()
    state = scope["litestar_app"].state
    if token.startswith(KEY_PREFIX):
        principal = await resolve_api_key(state.pool, state.key_cache, token)
    else:
        principal = await resolve_jwt(state.pool, state.settings, token)
    tenant = str(principal.tenant_id)
    scope.setdefault("state", {})["tenant_id"] = tenant
    tenant_id_var.set(tenant)
    return principal


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


class ReadsSkipWriteGuards(ReceiveRoutePlugin):
    """A GET (or HEAD) handler drops the `writes_need` guards it inherits: for a read they never refuse anything,
    and Litestar copies the route handler for every guard it calls (a few percent of a read's CPU). What the
    handler's other guards say, and the OpenAPI document (no 403 for reads), stay as they were."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler, _ in route.route_handler_map.values():
            if not handler.http_methods <= _READ_METHODS:
                continue
            guards = handler.resolve_guards()
            kept = [g for g in guards if not getattr(g, "reads_free", False)]
            if len(kept) != len(guards):
                handler._resolved_guards = kept  # what resolve_guards() returns from now on (Litestar's own cache)


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
