"""Rules for the voice catalog."""

from __future__ import annotations

import uuid

import asyncpg

from voice_service.auth import Principal
from voice_service.crud import fields_of
from voice_service.errors import NotFound
from voice_service.pagination import Page, check_limit, decode_cursor, page_from_rows
from voice_service.voices.repository import voices
from voice_service.voices.schemas import Voice, VoiceCreate, VoiceUpdate


def to_voice(row: asyncpg.Record) -> Voice:
    return Voice(**dict(row))


async def create(conn: asyncpg.Connection, principal: Principal, data: VoiceCreate) -> Voice:
    return to_voice(await voices.insert(conn, principal.tenant_id, fields_of(data)))


async def get(conn: asyncpg.Connection, principal: Principal, voice_id: uuid.UUID) -> Voice:
    row = await voices.get(conn, principal.tenant_id, voice_id)
    if row is None:
        raise NotFound("voice not found")
    return to_voice(row)


async def update(conn: asyncpg.Connection, principal: Principal, voice_id: uuid.UUID, data: VoiceUpdate) -> Voice:
    row = await voices.update(conn, principal.tenant_id, voice_id,
                              fields_of(data, not_null=("provider", "provider_voice_id", "metadata")))
    if row is None:
        raise NotFound("voice not found")
    return to_voice(row)


async def delete(conn: asyncpg.Connection, principal: Principal, voice_id: uuid.UUID) -> None:
    if not await voices.soft_delete(conn, principal.tenant_id, voice_id):
        raise NotFound("voice not found")


async def list_(conn: asyncpg.Connection, principal: Principal, limit: int, cursor: str | None,
                provider: str | None, language: str | None) -> Page[Voice]:
    rows = await voices.page(conn, principal.tenant_id, limit=check_limit(limit),
                             after=decode_cursor(cursor) if cursor else None,
                             filters={"provider": provider, "language": language})
    return page_from_rows(rows, limit, to_voice)
