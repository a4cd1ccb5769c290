"""Rules for phone numbers: valid E.164, on the carrier account, held by one tenant, agents from the same tenant.

A number belongs to the tenant that registered it until that tenant deletes it: inactive, it stays reserved (a
unique index over every number not deleted, sql/0078). A tenant registers a number of a carrier only if that
carrier's account (the one this service is configured with) holds it: the carrier's `owns_number` capability
(Twilio's IncomingPhoneNumbers, Vonage's Numbers API, the simulator's own list, whatever a new carrier declares),
asked before any transaction is opened. The platform (PLATFORM_ADMIN_TOKEN) may assign a number without that check
(a number being ported in, say). Refusals never tell one tenant that another holds the number.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg

from providers.telephony.base import ProviderError
from providers.telephony.registry import carrier
from providers.telephony.registry import names as carrier_names
from voice_service.agents.repository import agents
from voice_service.auth import Principal
from voice_service.carriers.clients import get_provider
from voice_service.crud import fields_of
from voice_service.db import tenant_tx
from voice_service.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from voice_service.numbers.repository import numbers, tenant_exists
from voice_service.numbers.schemas import Number, NumberAssign, NumberCreate, NumberUpdate
from voice_service.pagination import Page, check_limit, decode_cursor, page_from_rows
from voice_service.phones import require_phone
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

# The same answer whoever holds the number (this tenant or another): a refusal must not tell who has it.
_CONFLICT = "this phone number is already registered"


def to_number(row: asyncpg.Record) -> Number:
    return Number(**dict(row))


async def _check_agent(conn: asyncpg.Connection, tenant_id: uuid.UUID, agent_id: Any) -> None:
    if agent_id is not None and not (0 < agent_id < 2**63 and await agents.exists(conn, tenant_id, agent_id)):
        raise ValidationFailed("no agent with this id in your tenant", field="default_agent_id")


def _check_provider(provider: object) -> None:
    if isinstance(provider, str) and provider not in carrier_names():
        raise ValidationFailed(f"unknown telephony provider {provider!r}; one of: {', '.join(carrier_names())}",
                               field="provider")


async def _check_on_account(runtime: Runtime, provider: str, e164: str) -> None:
    """The number must be on the account this service uses with `provider` (422 otherwise; 503 when the carrier
    cannot tell). Outside any transaction: it asks the carrier."""
    declared = carrier(provider)
    try:
        client = await get_provider(runtime, provider)
    except ServiceUnavailable as exc:
        # No account of that carrier on this service: nothing can place or answer calls on such a number.
        raise ValidationFailed(
            f"this service has no {declared.title} account, so it cannot take {declared.title} numbers "
            f"({exc.detail})", field="provider") from None
    try:
        held = await client.owns_number(e164)
    except ProviderError as exc:
        log.warning("number ownership check failed", extra={"carrier": provider, "code": exc.code,
                                                            "detail": exc.message[:300]})
        raise ServiceUnavailable(
            f"{declared.title} could not confirm that {e164} is on its account ({exc.code}); try again later",
            headers={"Retry-After": "30"},
        ) from None
    if not held:
        raise ValidationFailed(
            f"{e164} is not a number of the {declared.title} account this service uses: a number must be bought or "
            "ported there first (or be assigned by the platform)",
            field="phone_number",
        )


def _fields(data: NumberCreate | NumberAssign) -> dict[str, Any]:
    _check_provider(data.provider)
    phone = require_phone(data.phone_number, "phone_number")
    fields = fields_of(data)
    fields.pop("phone_number")
    fields.pop("tenant_id", None)
    fields.update(e164=phone.e164, country_code=phone.country_code, base_number=phone.base_number)
    return fields


async def _insert(runtime: Runtime, tenant_id: uuid.UUID, fields: dict[str, Any]) -> Number:
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        await _check_agent(conn, tenant_id, fields.get("default_agent_id"))
        try:
            row = await numbers.insert(conn, tenant_id, fields)
        except asyncpg.UniqueViolationError:
            raise Conflict(_CONFLICT, field="phone_number") from None
        return to_number(row)


async def create(runtime: Runtime, principal: Principal, data: NumberCreate) -> Number:
    """A tenant registers a number its carrier's account holds."""
    fields = _fields(data)
    await _check_on_account(runtime, fields["provider"], fields["e164"])
    return await _insert(runtime, principal.tenant_id, fields)


async def assign(runtime: Runtime, data: NumberAssign) -> Number:
    """The platform gives a tenant a number (no carrier check: the platform vouches for it)."""
    fields = _fields(data)
    async with tenant_tx(runtime.pool, data.tenant_id) as conn:
        if not await tenant_exists(conn, data.tenant_id):
            raise NotFound("no such tenant", field="tenant_id")
    return await _insert(runtime, data.tenant_id, fields)


async def get(conn: asyncpg.Connection, principal: Principal, number_id: uuid.UUID) -> Number:
    row = await numbers.get(conn, principal.tenant_id, number_id)
    if row is None:
        raise NotFound("number not found")
    return to_number(row)


async def update(runtime: Runtime, principal: Principal, number_id: uuid.UUID, data: NumberUpdate) -> Number:
    """Change a number; moving it to another carrier is registering it with that carrier (its account checked)."""
    fields = fields_of(data, not_null=("provider", "status", "metadata"))
    _check_provider(fields.get("provider"))
    tenant_id = principal.tenant_id
    if "provider" in fields:
        async with tenant_tx(runtime.pool, tenant_id) as conn:
            current = await numbers.get(conn, tenant_id, number_id)
        if current is None:
            raise NotFound("number not found")
        if current["provider"] != fields["provider"]:
            await _check_on_account(runtime, fields["provider"], current["phone_number"])
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        await _check_agent(conn, tenant_id, fields.get("default_agent_id"))
        try:
            row = await numbers.update(conn, tenant_id, number_id, fields)
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
