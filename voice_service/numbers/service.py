"""Rules for phone numbers: valid E.164, one active owner across tenants, agents from the same tenant."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from providers.telephony.registry import names as carrier_names
from voice_service.agents.repository import agents
from voice_service.auth import Principal
from voice_service.crud import fields_of
from voice_service.errors import Conflict, NotFound, ValidationFailed
from voice_service.numbers.repository import numbers
from voice_service.numbers.schemas import Number, NumberCreate, NumberUpdate
from voice_service.pagination import Page, check_limit, decode_cursor, page_from_rows
from voice_service.phones import require_phone

_CONFLICT = "this phone number is already registered and active (here or in another account)"


def to_number(row: asyncpg.Record) -> Number:
    return Number(**dict(row))


async def _check_agent(conn: asyncpg.Connection, principal: Principal, agent_id: Any) -> None:
    if agent_id is not None and not (0 < agent_id < 2**63 and await agents.exists(conn, principal.tenant_id,
                                                                                  agent_id)):
        raise ValidationFailed("no agent with this id in your tenant", field="default_agent_id")


def _check_provider(provider: object) -> None:
    if isinstance(provider, str) and provider not in carrier_names():
        raise ValidationFailed(f"unknown telephony provider {provider!r}; one of: {', '.join(carrier_names())}",
                               field="provider")


async def create(conn: asyncpg.Connection, principal: Principal, data: NumberCreate) -> Number:
    _check_provider(data.provider)
    phone = require_phone(data.phone_number, "phone_number")
    await _check_agent(conn, principal, data.default_agent_id)
    fields = fields_of(data)
    fields.pop("phone_number")
    fields.update(e164=phone.e164, country_code=phone.country_code, base_number=phone.base_number)
    try:
        row = await numbers.insert(conn, principal.tenant_id, fields)
    except asyncpg.UniqueViolationError:
        raise Conflict(_CONFLICT, field="phone_number") from None
    return to_number(row)


async def get(conn: asyncpg.Connection, principal: Principal, number_id: uuid.UUID) -> Number:
    row = await numbers.get(conn, principal.tenant_id, number_id)
    if row is None:
        raise NotFound("number not found")
    return to_number(row)


async def update(conn: asyncpg.Connection, principal: Principal, number_id: uuid.UUID,
                 data: NumberUpdate) -> Number:
    fields = fields_of(data, not_null=("provider", "status", "metadata"))
    _check_provider(fields.get("provider"))
    await _check_agent(conn, principal, fields.get("default_agent_id"))
    try:
        row = await numbers.update(conn, principal.tenant_id, number_id, fields)
    except asyncpg.UniqueViolationError:
        raise Conflict(_CONFLICT, field="status") from None
    if row is None:
        raise NotFound("number not found")
    return to_number(row)


async def delete(conn: asyncpg.Connection, principal: Principal, number_id: uuid.UUID) -> None:
    if not await numbers.soft_delete(conn, principal.tenant_id, number_id):
        raise NotFound("number not found")


async def list_(conn: asyncpg.Connection, principal: Principal, limit: int, cursor: str | None,
                provider: str | None, status: str | None) -> Page[Number]:
    rows = await numbers.page(conn, principal.tenant_id, limit=check_limit(limit),
                              after=decode_cursor(cursor) if cursor else None,
                              filters={"provider": provider, "status": status})
    return page_from_rows(rows, limit, to_number)
