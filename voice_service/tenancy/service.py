"""Rules for tenants, API keys, voice permissions and profiles (no SQL here: see repository.py)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import msgspec

from voice_service.auth import ROLE_RANK, Principal, new_api_key
from voice_service.errors import Conflict, Forbidden, NotFound, ValidationFailed
from voice_service.pagination import Page, check_limit, decode_cursor, page_from_rows
from voice_service.tenancy import repository as repo
from voice_service.tenancy.schemas import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    VoicePermission,
    VoicePermissionCreate,
    VoiceProfile,
    VoiceProfileUpdate,
)


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return (slug or "tenant")[:60]


async def create_tenant(admin: asyncpg.Connection, name: str) -> tuple[uuid.UUID, str]:
    """Creates a tenant and an owner API key; returns (tenant id, the key, shown once)."""
    tenant_id = uuid.uuid4()
    key, digest, prefix = new_api_key()
    slug = f"{slugify(name)}-{tenant_id.hex[:6]}"
    try:
        await repo.create_tenant_with_key(admin, tenant_id=tenant_id, name=name, slug=slug, key_hash=digest,
                                          prefix=prefix)
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a tenant named {name!r} already exists", field="name") from None
    return tenant_id, key


async def create_api_key(conn: asyncpg.Connection, principal: Principal, data: ApiKeyCreate) -> ApiKeyCreated:
    if ROLE_RANK[data.role] > ROLE_RANK[principal.role]:
        raise Forbidden(f"a {principal.role} cannot create a key with the {data.role} role", field="role")
    user_id = data.user_id
    if data.user_id and data.user_email:
        raise ValidationFailed("give user_id or user_email, not both", field="user_email")
    if data.user_email:
        # Users are global: an email another tenant already knows is the same person, who joins this tenant
        # with the key's role. The answer is the same whether or not the email was known, so it says nothing
        # about other tenants' users.
        user_id = await repo.user_for_email(conn, data.user_email)
        role = await repo.membership_role(conn, user_id)
        if role is None:
            if data.role == "owner":
                raise ValidationFailed("a tenant has one owner; create the key with another role", field="role")
            await repo.insert_membership(conn, principal.tenant_id, user_id, data.role)
        elif ROLE_RANK[data.role] > ROLE_RANK[role]:
            raise ValidationFailed(f"the user's membership role is {role}; a key cannot exceed it", field="role")
    elif user_id is not None:
        role = await repo.membership_role(conn, user_id)
        if role is None:
            raise ValidationFailed("no member of this tenant has this id", field="user_id")
        if ROLE_RANK[data.role] > ROLE_RANK[role]:
            raise ValidationFailed(f"the user's membership role is {role}; a key cannot exceed it", field="role")
    key, digest, prefix = new_api_key()
    row = await repo.insert_api_key(conn, principal.tenant_id, name=data.name, role=data.role, key_hash=digest,
                                    prefix=prefix, user_id=user_id, expires_at=data.expires_at,
                                    created_by=principal.key_id)
    return ApiKeyCreated(**dict(row), key=key)


async def list_api_keys(conn: asyncpg.Connection, principal: Principal, limit: int,
                        cursor: str | None) -> Page[ApiKey]:
    rows = await repo.list_api_keys(conn, principal.tenant_id, limit=check_limit(limit),
                                    after=decode_cursor(cursor) if cursor else None)
    return page_from_rows(rows, limit, lambda r: ApiKey(**dict(r)))


async def revoke_api_key(conn: asyncpg.Connection, principal: Principal, key_id: uuid.UUID) -> None:
    """A key revokes keys of at most its own role (an admin cannot lock the owner out)."""
    role = await repo.api_key_role(conn, principal.tenant_id, key_id)
    if role is None:
        raise NotFound("API key not found")
    if ROLE_RANK[role] > ROLE_RANK[principal.role]:
        raise Forbidden(f"a {principal.role} cannot revoke a key with the {role} role")
    await repo.revoke_api_key(conn, principal.tenant_id, key_id)


def _perm(row: asyncpg.Record) -> VoicePermission:
    return VoicePermission(**dict(row))


async def list_permissions(conn: asyncpg.Connection, principal: Principal, user_id: uuid.UUID | None, limit: int,
                           cursor: str | None) -> Page[VoicePermission]:
    rows = await repo.list_permissions(conn, principal.tenant_id, user_id=user_id, limit=check_limit(limit),
                                       after=decode_cursor(cursor) if cursor else None)
    return page_from_rows(rows, limit, _perm)


async def create_permission(conn: asyncpg.Connection, principal: Principal,
                            data: VoicePermissionCreate) -> VoicePermission:
    if data.number_id is None and data.voice_id is None:
        raise ValidationFailed("a permission names a number_id, a voice_id, or both", field="number_id")
    if await repo.membership_role(conn, data.user_id) is None:
        raise ValidationFailed("no member of this tenant has this id", field="user_id")
    row = await repo.insert_permission(conn, principal.tenant_id, user_id=data.user_id, number_id=data.number_id,
                                       voice_id=data.voice_id, is_active=data.is_active, metadata=data.metadata)
    return _perm(row)


async def delete_permission(conn: asyncpg.Connection, principal: Principal, perm_id: uuid.UUID) -> None:
    if not await repo.delete_permission(conn, principal.tenant_id, perm_id):
        raise NotFound("voice permission not found")


async def check_call_permission(conn: asyncpg.Connection, principal: Principal, *, number_id: uuid.UUID | None,
                                voice_id: uuid.UUID | None) -> None:
    """Members place calls only with numbers and voices VOICE_PERMISSIONS grant them; admins and owners with any."""
    if principal.at_least("admin"):
        return
    if not principal.at_least("member"):
        raise Forbidden("viewers cannot place calls")
    if principal.user_id is None:
        raise Forbidden("a member key must be bound to a user to place calls")
    number_ok, voice_ok = await repo.member_may_use(conn, principal.tenant_id, principal.user_id,
                                                    number_id=number_id, voice_id=voice_id)
    if not number_ok:
        raise Forbidden("you have no permission to call from this number", field="from_number_id")
    if not voice_ok:
        raise Forbidden("you have no permission to use this voice", field="voice_id")


def _require_user(principal: Principal) -> uuid.UUID:
    if principal.user_id is None:
        raise NotFound("this credential is not bound to a user, so it has no voice profile")
    return principal.user_id


async def get_profile(conn: asyncpg.Connection, principal: Principal) -> VoiceProfile:
    user_id = _require_user(principal)
    row = await repo.get_profile(conn, principal.tenant_id, user_id)
    if row is None:
        return VoiceProfile(user_id=user_id, default_agent_id=None, default_number_id=None, preferences={},
                            metadata={}, updated_at=None)
    return VoiceProfile(**dict(row))


async def put_profile(conn: asyncpg.Connection, principal: Principal, data: VoiceProfileUpdate) -> VoiceProfile:
    user_id = _require_user(principal)
    fields: dict[str, Any] = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
    row = await repo.upsert_profile(conn, principal.tenant_id, user_id, fields)
    return VoiceProfile(**dict(row))


class Member(msgspec.Struct, frozen=True):
    id: uuid.UUID
    email: str
    role: str


async def list_members(conn: asyncpg.Connection, principal: Principal, limit: int = 500) -> list[Member]:
    return [Member(id=r["id"], email=r["email"], role=r["role"])
            for r in await repo.list_members(conn, principal.tenant_id, limit=limit)]
