"""What every step of a call's life shares: the row a call starts as, its one-time media tokens, and the other
domains' reactions to its changes.

The call log's status follows the provider's events and never moves backwards (STATUS_RANK); a duplicate or
out-of-order webhook changes nothing. Two moments end a call: the media socket closing (media_ended_at) and the
provider's final status (provider_final_at). Other domains react through the Runtime's CallListeners (see
listeners.py), each in the transaction that changed the call (`notify`): whenever either end is recorded,
`on_progress` (billing's post-call trigger); the first time a call reaches a terminal status, `on_final`
(batches); when it becomes ongoing, `on_answered` (batches). A provider price that arrives after the call was
billed goes to `on_provider_price` (billing's reconciliation). Creating a call runs `schedule_finalize_timeout`
(the agent's max_call_seconds + FINALIZE_GRACE), so a call whose end never arrives is billed anyway.

The steps themselves: placing.py (place, hang up), status.py (provider status events), inbound.py (a carrier
hands us a call), media.py (the media stream starts and ends); service.py is the API's one-call flow and the
domain's public face.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from voice_service.calls import call_events
from voice_service.calls import repository as repo
from voice_service.calls.listeners import CallListeners
from voice_service.calls.schemas import CallRef
from voice_service.db import Row
from voice_service.phones import parse_phone

__all__ = [
    "DEFAULT_MAX_CALL_SECONDS",
    "FINALIZE_GRACE",
    "MEDIA_TOKEN_TTL",
    "create_call",
    "finalize_after",
    "hash_token",
    "mint_token",
    "new_media_token",
    "notify",
]

# An outbound call rings for up to ~60 s before its stream opens; a queued call can wait a little more.
MEDIA_TOKEN_TTL = timedelta(minutes=15)
DEFAULT_MAX_CALL_SECONDS = 900  # agents' config.max_call_seconds default
# Past the longest a call may last: the finalize-timeout job bills a call whose end never arrived.
FINALIZE_GRACE = timedelta(minutes=10)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_media_token() -> str:
    return secrets.token_urlsafe(24)


# --- other domains' reactions (the Runtime's CallListeners) ---


async def notify(
    listeners: CallListeners,
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    *,
    progress: bool,
    final: bool,
    answered: bool = False,
    late_price: bool = False,
) -> None:
    if answered:
        await call_events.call_answered(conn, tenant_id, call_id, created_at)
        await listeners.on_answered(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)
    if final:
        await call_events.call_ended(conn, tenant_id, call_id, created_at)
        await listeners.on_final(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)
    if progress:
        await listeners.on_progress(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)
    elif late_price:
        # (on_progress reconciles a price that comes with the final status itself.)
        await listeners.on_provider_price(conn, tenant_id=tenant_id, call_id=call_id, call_created_at=created_at)


def finalize_after(agent_config: Mapping[str, Any] | None) -> timedelta:
    """When the finalize-timeout job of a call with this agent config runs, counted from the call's creation."""
    seconds = (agent_config or {}).get("max_call_seconds") or DEFAULT_MAX_CALL_SECONDS
    return timedelta(seconds=int(seconds)) + FINALIZE_GRACE


async def _schedule_finalize_timeout(
    listeners: CallListeners,
    conn: asyncpg.Connection,
    ref: CallRef,
    agent_id: int | None,
    agent_config: Mapping[str, Any] | None,
) -> None:
    if agent_config is None and agent_id is not None:
        agent = await repo.get_agent(conn, ref.tenant_id, agent_id)
        agent_config = agent["config"] if agent is not None else None
    await listeners.schedule_finalize_timeout(
        conn,
        tenant_id=ref.tenant_id,
        call_id=ref.id,
        call_created_at=ref.created_at,
        after=finalize_after(agent_config),
    )


# --- the call row ---


def _number_e164(number: Row) -> str:
    e164 = number.get("e164") or number.get("phone_number")
    if not e164:
        raise ValueError("from_number needs an `e164` (or `phone_number`) value")
    return str(e164)


async def create_call(
    conn: asyncpg.Connection,
    *,
    listeners: CallListeners,
    tenant_id: uuid.UUID,
    initiated_by_user_id: uuid.UUID | None,
    agent_id: int | None,
    from_number: Row,
    to_e164: str,
    lead_id: uuid.UUID | None,
    voice_id: uuid.UUID | None,
    variables: Mapping[str, Any],
    direction: str = "outbound",
    batch_id: uuid.UUID | None = None,
    batch_entry_id: uuid.UUID | None = None,
    attempt: int = 1,
    metadata: Mapping[str, Any] | None = None,
    from_e164: str | None = None,
    status: str = "pending",
    provider_call_id: str | None = None,
    agent_config: Mapping[str, Any] | None = None,
) -> CallRef:
    """Insert the call log row (UUIDv7 id) in the caller's transaction. `from_number` is the tenant's number
    (a numbers row or dict with id, e164/phone_number, provider); `from_e164` overrides the presented caller
    (inbound calls: the caller's number). Also schedules the call's finalize timeout
    (`listeners.schedule_finalize_timeout`), from the agent's max_call_seconds (`agent_config` when the caller has
    it; otherwise the agent is read)."""
    to_phone = parse_phone(to_e164)
    meta = dict(metadata or {})
    if variables:
        meta["variables"] = dict(variables)
    fields: dict[str, Any] = {
        "initiated_by_user_id": initiated_by_user_id,
        "lead_id": lead_id,
        "agent_id": agent_id,
        "voice_id": voice_id,
        "from_number_id": from_number.get("id"),
        "to_country_code": to_phone.country_code if to_phone else None,
        "to_base_number": to_phone.base_number if to_phone else None,
        "to_e164": to_e164,
        "from_e164": from_e164 if from_e164 is not None else _number_e164(from_number),
        "batch_id": batch_id,
        "batch_entry_id": batch_entry_id,
        "provider": from_number.get("provider"),
        "attempt": attempt,
        "status": status,
        "direction": direction,
        "metadata": meta,
    }
    if provider_call_id is not None:
        fields["provider_call_id"] = provider_call_id
    row = await repo.insert_call(conn, tenant_id, fields)
    ref = CallRef(id=row["id"], created_at=row["created_at"], tenant_id=tenant_id)
    if provider_call_id is not None and fields["provider"]:
        await repo.record_provider_id(
            conn, tenant_id, ref.id, ref.created_at, fields["provider"], provider_call_id
        )
    await _schedule_finalize_timeout(listeners, conn, ref, agent_id, agent_config)
    return ref


async def mint_token(conn: asyncpg.Connection, ref: CallRef) -> str:
    token = new_media_token()
    await repo.store_media_token(
        conn, ref.tenant_id, ref.id, ref.created_at, hash_token(token), datetime.now(UTC) + MEDIA_TOKEN_TTL
    )
    return token
