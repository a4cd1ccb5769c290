"""The service's own database logins, apart from the owner's (sql/0075_service_roles.sql says why).

- The owner is whoever DATABASE_URL names (on the embedded server: its superuser). It owns the tables, applies the
  migrations and runs the command line's admin commands; the API and the jobs never use it.
- The app login belongs to `voice_app` and to nothing else: the API's pool and the job handlers. It is no
  superuser, has no BYPASSRLS and cannot become another role, so row-level security holds for every statement.
- The worker login belongs to `voice_worker` and to nothing else: pgqueuer's queue manager, which sees every
  tenant's jobs and no tenant table.

APP_DATABASE_URL / WORKER_DATABASE_URL name logins a deployment manages itself (e.g. `CREATE ROLE voice_api LOGIN
PASSWORD '…' IN ROLE voice_app`). Unset, the service creates `<database>_app_login` / `<database>_worker_login`
when it starts (with the owner's connection, under an advisory lock), with a random password kept in the owner-only
table `service_logins`: every process that has the owner's URL (API replicas, `voice-service worker`) then logs in
with the same password, and no password is ever written to disk or to the repository. Named after the database
because roles are shared by every database of a server, their grants are not.

Either way, `check_login` refuses at start-up a login that could leave its role (a superuser, BYPASSRLS, CREATEROLE,
or a member of any role besides its own group, the owner included).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from voice_service.db import APP_ROLE, WORKER_ROLE
from voice_service.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["APP_ROLE", "WORKER_ROLE", "ServiceLogins", "check_login", "login_dsn", "service_logins"]

# Every process starting against the same database takes this lock while it creates the logins.
LOGINS_LOCK_KEY = 7_305_114_290_003
_NAME_MAX = 63  # PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes


@dataclass(frozen=True)
class ServiceLogins:
    app: str  # DSN of the app login (the API's pool, job handlers, the dispatcher's lease connection)
    worker: str  # DSN of the worker login (pgqueuer's queue manager)


def login_dsn(owner_dsn: str, user: str, password: str) -> str:
    """The owner's DSN (same server, database and options) with another user and password."""
    parts = urlsplit(owner_dsn)
    _, _, hostport = parts.netloc.rpartition("@")
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{hostport}"
    # A user or password given as query parameters would override the ones in the netloc.
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if k not in ("user", "password")])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _database(dsn: str) -> str:
    name = unquote(urlsplit(dsn).path.lstrip("/"))
    return name or unquote(urlsplit(dsn).username or "postgres")


def login_name(database: str, group: str) -> str:
    suffix = "_app_login" if group == APP_ROLE else "_worker_login"
    return database.encode()[: _NAME_MAX - len(suffix)].decode(errors="ignore") + suffix


async def _run(conn: asyncpg.Connection, template: str, *args: str) -> None:
    """A utility statement (no bind parameters there): names and literals quoted by the server's format()."""
    placeholders = ", ".join(f"${i}::text" for i in range(2, len(args) + 2))
    await conn.execute(await conn.fetchval(f"SELECT format($1::text, {placeholders})", template, *args))


async def _ensure_login(conn: asyncpg.Connection, name: str, group: str) -> str:
    """The password of login role `name` (a member of `group` only), created or repaired as needed. In the
    caller's transaction."""
    stored = await conn.fetchval("SELECT password FROM service_logins WHERE role_name = $1", name)
    exists = bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name))
    if stored is not None and exists:
        return str(stored)
    password = secrets.token_urlsafe(32)
    if exists:  # a role of that name without its password here (the table was emptied): give it a new one
        await _run(conn, "ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD %L",
                   name, password)
        await _run(conn, "GRANT %I TO %I", group, name)
    else:
        await _run(conn, "CREATE ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION "
                   "PASSWORD %L IN ROLE %I", name, password, group)
    await conn.execute(
        "INSERT INTO service_logins (role_name, member_of, password) VALUES ($1, $2, $3) "
        "ON CONFLICT (role_name) DO UPDATE SET member_of = EXCLUDED.member_of, password = EXCLUDED.password",
        name, group, password,
    )
    log.info("database login created", extra={"role": name, "member_of": group})
    return password


async def service_logins(owner_dsn: str, settings: Settings) -> ServiceLogins:
    """The DSNs the service's pools log in with: APP_DATABASE_URL / WORKER_DATABASE_URL, or logins created here
    with the owner's connection (idempotent: an existing login keeps its password)."""
    if settings.app_database_url and settings.worker_database_url:
        return ServiceLogins(settings.app_database_url, settings.worker_database_url)
    database = _database(owner_dsn)
    conn = await asyncpg.connect(owner_dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOGINS_LOCK_KEY)
            app = settings.app_database_url
            if not app:
                name = login_name(database, APP_ROLE)
                app = login_dsn(owner_dsn, name, await _ensure_login(conn, name, APP_ROLE))
            worker = settings.worker_database_url
            if not worker:
                name = login_name(database, WORKER_ROLE)
                worker = login_dsn(owner_dsn, name, await _ensure_login(conn, name, WORKER_ROLE))
    finally:
        await conn.close()
    return ServiceLogins(app, worker)


async def check_login(conn: asyncpg.Connection | PoolConnectionProxy[Any], group: str) -> None:
    """Refuse (RuntimeError) a login that could leave `group`: a superuser, BYPASSRLS or CREATEROLE role, the
    tables' owner, or a member of any other role."""
    row = await conn.fetchrow(
        """SELECT session_user AS login, r.rolsuper, r.rolbypassrls, r.rolcreaterole,
                  pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = 'public.tenants'::regclass),
                              'MEMBER') AS owner,
                  ARRAY(SELECT m.rolname::text FROM pg_roles m
                        WHERE m.rolname <> session_user AND pg_has_role(session_user, m.oid, 'MEMBER')
                        ORDER BY 1) AS member_of
           FROM pg_roles r WHERE r.rolname = session_user"""
    )
    if row is None:
        raise RuntimeError("the service's database login is not in pg_roles")
    problems = [
        text for flag, text in (
            (row["rolsuper"], "is a superuser"), (row["rolbypassrls"], "has BYPASSRLS"),
            (row["rolcreaterole"], "has CREATEROLE"), (row["owner"], "is (or belongs to) the tables' owner"),
        ) if flag
    ]
    if list(row["member_of"]) != [group]:
        problems.append(f"must belong to {group} and to no other role (it belongs to {list(row['member_of'])})")
    if problems:
        raise RuntimeError(
            f"the service's database login {row['login']!r} " + "; ".join(problems) + ": it could leave row-level "
            f"security. Name a role that only belongs to {group} (see README, Database roles), or unset "
            f"{'APP' if group == APP_ROLE else 'WORKER'}_DATABASE_URL to let the service create one."
        )
