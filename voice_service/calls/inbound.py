"""Inbound calls: a carrier hands us a call to one of our numbers; it is routed to the number's tenant and default
agent, logged, and answered with a one-time media token (a retried answer webhook gets the same call)."""

from __future__ import annotations

import logging
import uuid

import msgspec

from providers.telephony.base import CallStatus
from voice_service.calls import repository as repo
from voice_service.calls.lifecycle import create_call
from voice_service.calls.lifecycle import mint_token as _mint_token
from voice_service.calls.schemas import CallRef
from voice_service.db import system_tx, tenant_tx
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["InboundAnswer", "start_inbound_call"]


class InboundAnswer(msgspec.Struct, frozen=True):
    call_id: uuid.UUID
    token: str


async def start_inbound_call(
    runtime: Runtime, *, provider: str, to_e164: str, from_e164: str | None, provider_call_id: str
) -> InboundAnswer | None:
    """Route a call to the number's tenant and default agent; None when nobody takes calls on `to_e164`. A new call
    reserves its estimated cost on the tenant's wallet (`reserve_call`): PaymentRequired (and no call) when the
    wallet cannot cover it, for the caller to answer with the carrier's polite rejection."""
    async with system_tx(runtime.pool) as conn:
        route = await conn.fetchrow("SELECT * FROM route_inbound_number($1)", to_e164)
        known = await repo.find_by_provider_id(conn, provider, provider_call_id)
    if route is None:
        log.warning(
            "inbound call to an unknown or inactive number", extra={"to": to_e164, "provider": provider}
        )
        return None
    if route["provider"] != provider:
        log.warning(
            "inbound call through another provider than the number's",
            extra={"to": to_e164, "provider": provider, "number_provider": route["provider"]},
        )
        return None
    if route["default_agent_id"] is None:
        log.warning("inbound call to a number without a default agent", extra={"to": to_e164})
        return None
    tenant_id = route["tenant_id"]
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        if known is not None and known["tenant_id"] == tenant_id:
            # The provider retried its answer webhook: same call, a fresh token.
            ref = CallRef(id=known["call_id"], created_at=known["call_created_at"], tenant_id=tenant_id)
        else:
            agent = await repo.get_agent(conn, tenant_id, route["default_agent_id"])
            number = {"id": route["number_id"], "e164": to_e164, "provider": provider}
            ref = await create_call(
                conn,
                listeners=runtime.call_listeners,
                tenant_id=tenant_id,
                initiated_by_user_id=None,
                agent_id=route["default_agent_id"],
                from_number=number,
                to_e164=to_e164,
                lead_id=None,
                voice_id=agent["voice_id"] if agent is not None else None,
                variables={},
                direction="inbound",
                from_e164=(from_e164 or "anonymous")[:64],
                status=CallStatus.RINGING.value,
                provider_call_id=provider_call_id,
                agent_config=(agent["config"] or {}) if agent is not None else None,
            )
            await runtime.call_listeners.reserve_call(conn, settings=runtime.settings, tenant_id=tenant_id,
                                                      call_id=ref.id, provider=provider, direction="inbound")
        token = await _mint_token(conn, ref)
    return InboundAnswer(call_id=ref.id, token=token)
