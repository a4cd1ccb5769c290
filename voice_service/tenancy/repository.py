"""SQL for tenants, users, memberships, API keys, voice permissions, voice profiles and console sessions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from voice_service.db import fetch_one, tenant_transaction


# --- tenants (admin connection: the migrating user, outside RLS; used by the CLI and bootstrap) -------------
async def count_tenants(admin: asyncpg.Connection) -> int:
    return int(await admin.fetchval("SELECT count(*) FROM tenants WHERE deleted_at IS NULL"))


async def insert_tenant(conn: asyncpg.Connection, tenant_id: uuid.UUID, name: str, slug: str) -> None:
    await conn.execute("INSERT INTO tenants (id, name, slug) VALUES ($1, $2, $3)", tenant_id, name, slug)


async def tenant_exists(admin: asyncpg.Connection, tenant_id: uuid.UUID) -> bool:
    return bool(await admin.fetchval("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1 AND deleted_at IS NULL)",
                                     tenant_id))


# --- users and memberships -------------------------------------------------------------------------------
async def user_for_email(conn: asyncpg.Connection, email: str) -> uuid.UUID:
    """The user with this email, whichever tenants it belongs to, created if there is none (sql/0037): the
    caller cannot tell the two apart."""
    value: uuid.UUID = await conn.fetchval("SELECT user_for_email($1)", email)
    return value


async def membership_role(conn: asyncpg.Connection, user_id: uuid.UUID) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT role FROM memberships WHERE user_id = $1 AND deleted_at IS NULL", user_id
    )
    return value


async def insert_membership(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID, role: str) -> None:
    await conn.execute(
        "INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, $3)", tenant_id, user_id, role
    )


# --- API keys ---------------------------------------------------------------------------------------------
_KEY_COLS = "id, name, role, key_prefix AS prefix, user_id, created_at, last_used_at, expires_at, revoked_at"


async def insert_api_key(conn: asyncpg.Connection, tenant_id: uuid.UUID, *, name: str, role: str, key_hash: bytes,
                         prefix: str, user_id: uuid.UUID | None, expires_at: datetime | None,
                         created_by: uuid.UUID | None) -> asyncpg.Record:
    return await fetch_one(
        conn,
        f"""INSERT INTO api_keys (tenant_id, name, role, key_hash, key_prefix, user_id, expires_at, created_by_key_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_KEY_COLS}""",
        tenant_id, name, role, key_hash, prefix, user_id, expires_at, created_by,
    )


async def list_api_keys(conn: asyncpg.Connection, tenant_id: uuid.UUID, *, limit: int,
                        after: tuple[datetime, str] | None) -> list[asyncpg.Record]:
    args: list[Any] = [tenant_id, limit + 1]
    cond = ""
    if after:
        cond = "AND (created_at, id) < ($3, $4::uuid)"
        args += [after[0], after[1]]
    return await conn.fetch(
        f"""SELECT {_KEY_COLS} FROM api_keys WHERE tenant_id = $1 AND deleted_at IS NULL {cond}
            ORDER BY created_at DESC, id DESC LIMIT $2""",
        *args,
    )


async def api_key_role(conn: asyncpg.Connection, tenant_id: uuid.UUID, key_id: uuid.UUID) -> str | None:
    """The role of a live key of the tenant, locked until the transaction ends (None: no such key)."""
    value: str | None = await conn.fetchval(
        "SELECT role FROM api_keys WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE",
        tenant_id, key_id,
    )
    return value


async def revoke_api_key(conn: asyncpg.Connection, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
    row = await conn.fetchval(
        """UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()), deleted_at = now()
           WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING id""",
        tenant_id, key_id,
    )
    return row is not None


# --- voice permissions ------------------------------------------------------------------------------------
_PERM_COLS = "id, user_id, number_id, voice_id, is_active, metadata, created_at, updated_at"


async def list_permissions(conn: asyncpg.Connection, tenant_id: uuid.UUID, *, user_id: uuid.UUID | None, limit: int,
                           after: tuple[datetime, str] | None) -> list[asyncpg.Record]:
    args: list[Any] = [tenant_id, limit + 1, user_id]
    cond = "AND ($3::uuid IS NULL OR user_id = $3)"
    if after:
        cond += " AND (created_at, id) < ($4, $5::uuid)"
        args += [after[0], after[1]]
    return await conn.fetch(
        f"""SELECT {_PERM_COLS} FROM voice_permissions WHERE tenant_id = $1 {cond}
            ORDER BY created_at DESC, id DESC LIMIT $2""",
        *args,
    )


async def insert_permission(conn: asyncpg.Connection, tenant_id: uuid.UUID, *, user_id: uuid.UUID,
                            number_id: uuid.UUID | None, voice_id: uuid.UUID | None, is_active: bool,
                            metadata: dict[str, Any]) -> asyncpg.Record:
    return await fetch_one(
        conn,
        f"""INSERT INTO voice_permissions (tenant_id, user_id, number_id, voice_id, is_active, metadata)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_PERM_COLS}""",
        tenant_id, user_id, number_id, voice_id, is_active, metadata,
    )


async def delete_permission(conn: asyncpg.Connection, tenant_id: uuid.UUID, perm_id: uuid.UUID) -> bool:
    return (await conn.fetchval(
        "DELETE FROM voice_permissions WHERE tenant_id = $1 AND id = $2 RETURNING id", tenant_id, perm_id
    )) is not None


async def member_may_use(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID, *,
                         number_id: uuid.UUID | None, voice_id: uuid.UUID | None) -> tuple[bool, bool]:
    """(number allowed, voice allowed) for a member, from active VOICE_PERMISSIONS rows."""
    row = await conn.fetchrow(
        """SELECT
             $3::uuid IS NULL OR EXISTS (SELECT 1 FROM voice_permissions p WHERE p.tenant_id = $1
                 AND p.user_id = $2 AND p.is_active AND p.number_id = $3) AS number_ok,
             $4::uuid IS NULL OR EXISTS (SELECT 1 FROM voice_permissions p WHERE p.tenant_id = $1
                 AND p.user_id = $2 AND p.is_active AND p.voice_id = $4) AS voice_ok""",
        tenant_id, user_id, number_id, voice_id,
    )
    assert row is not None
    return bool(row["number_ok"]), bool(row["voice_ok"])


# --- voice user profiles ----------------------------------------------------------------------------------
_PROFILE_COLS = "user_id, default_agent_id, default_number_id, preferences, metadata, updated_at"


async def get_profile(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_PROFILE_COLS} FROM voice_user_profiles WHERE tenant_id = $1 AND user_id = $2", tenant_id, user_id
    )


async def upsert_profile(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID,
                         fields: dict[str, Any]) -> asyncpg.Record:
    cols = ["default_agent_id", "default_number_id", "preferences", "metadata"]
    values = [fields.get(c) for c in cols]
    present = [c in fields for c in cols]
    return await fetch_one(
        conn,
        f"""INSERT INTO voice_user_profiles (tenant_id, user_id, default_agent_id, default_number_id,
                                             preferences, metadata)
            VALUES ($1, $2, $3, $4, coalesce($5, '{{}}'::jsonb), coalesce($6, '{{}}'::jsonb))
            ON CONFLICT (tenant_id, user_id) DO UPDATE SET
              default_agent_id = CASE WHEN $7 THEN EXCLUDED.default_agent_id
                                      ELSE voice_user_profiles.default_agent_id END,
              default_number_id = CASE WHEN $8 THEN EXCLUDED.default_number_id
                                       ELSE voice_user_profiles.default_number_id END,
              preferences = CASE WHEN $9 THEN EXCLUDED.preferences ELSE voice_user_profiles.preferences END,
              metadata = CASE WHEN $10 THEN EXCLUDED.metadata ELSE voice_user_profiles.metadata END
            RETURNING {_PROFILE_COLS}""",
        tenant_id, user_id, *values, *present,
    )


async def create_tenant_with_key(admin: asyncpg.Connection, *, tenant_id: uuid.UUID, name: str, slug: str,
                                 key_hash: bytes, prefix: str, role: str = "owner") -> None:
    """Used by the CLI and bootstrap on the admin connection; RLS policies still hold for the app role."""
    async with tenant_transaction(admin, tenant_id):
        await insert_tenant(admin, tenant_id, name, slug)
        await insert_api_key(admin, tenant_id, name="bootstrap owner key", role=role, key_hash=key_hash,
                             prefix=prefix, user_id=None, expires_at=None, created_by=None)


# --- console sessions (the operator console's server-side sessions; rules in voice_service/console/sessions.py) ---
_SESSION_COLS = "session_id, tenant_id, kind, role, user_id, key_id, label, expires_at"


async def resolve_console_session(pool: asyncpg.Pool, token_hash: bytes, idle_seconds: int) -> asyncpg.Record | None:
    """Before the tenant is known: through the SECURITY DEFINER function (see sql/0060)."""
    return await pool.fetchrow(
        f"SELECT {_SESSION_COLS} FROM console_session_resolve($1, $2)", token_hash, idle_seconds
    )


async def insert_console_session(conn: asyncpg.Connection, tenant_id: uuid.UUID, *, token_hash: bytes, kind: str,
                                 api_key_id: uuid.UUID | None, user_id: uuid.UUID | None, expires_at: datetime,
                                 user_agent: str | None) -> None:
    await conn.execute(
        """INSERT INTO console_sessions (tenant_id, token_hash, kind, api_key_id, user_id, expires_at, user_agent)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        tenant_id, token_hash, kind, api_key_id, user_id, expires_at, user_agent,
    )


async def purge_console_sessions(conn: asyncpg.Connection, tenant_id: uuid.UUID, idle_seconds: int) -> None:
    """The tenant's sessions that can no longer be used (either end passed)."""
    await conn.execute(
        """DELETE FROM console_sessions WHERE tenant_id = $1
           AND (expires_at <= now() OR last_seen_at <= now() - make_interval(secs => $2))""",
        tenant_id, idle_seconds,
    )


async def end_console_session(pool: asyncpg.Pool, token_hash: bytes) -> None:
    await pool.execute("SELECT console_session_end($1)", token_hash)


async def list_members(conn: asyncpg.Connection, tenant_id: uuid.UUID, *, limit: int) -> list[asyncpg.Record]:
    """The tenant's members (users with a live membership), by e-mail."""
    return await conn.fetch(
        """SELECT u.id, u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id
           WHERE m.tenant_id = $1 AND m.deleted_at IS NULL ORDER BY u.email LIMIT $2""",
        tenant_id,
        limit,
    )
