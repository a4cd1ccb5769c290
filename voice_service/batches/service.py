"""Batch rules: validating a launch, turning request rows into entries (skipped ones keep their reason), the
Idempotency-Key, and the controls (pause, resume, cancel). SQL lives in repository.py; dispatch in dispatcher.py.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from voice_service.agents.repository import agents
from voice_service.auth import Principal
from voice_service.batches import dispatcher, policy
from voice_service.batches import events as batch_events
from voice_service.batches import repository as repo
from voice_service.batches.schemas import (
    Batch,
    BatchCounts,
    BatchCreate,
    BatchEntry,
    CallingWindow,
    EntriesAdd,
    EntriesAdded,
    EntryIn,
    RetryPolicy,
)
from voice_service.billing import wallet
from voice_service.enqueue import enqueue
from voice_service.errors import BadRequest, Conflict, NotFound, ValidationFailed
from voice_service.leads import repository as leads_repo
from voice_service.pagination import Page, check_limit, decode_cursor, encode_cursor
from voice_service.tenancy.service import check_call_permission
from voice_service.voices.repository import voices

__all__ = [
    "add_entries",
    "cancel",
    "create",
    "create_idempotent",
    "get",
    "list_",
    "list_entries",
    "pause",
    "prepare_entries",
    "resume",
    "to_batch",
    "to_entry",
]

ESTIMATE_MINUTES_PER_CALL = wallet.ESTIMATE_MINUTES_PER_CALL
_json = msgspec.json.Encoder()
_batch_decoder = msgspec.json.Decoder(Batch)

# Lead fields copied into an entry's prompt variables ({{first_name}} …); the entry's own variables win.
_LEAD_VARIABLES = ("first_name", "last_name", "company_name", "email")


def to_batch(r: asyncpg.Record) -> Batch:
    window = r["calling_window"]
    return Batch(
        id=r["id"],
        name=r["name"],
        status=r["status"],
        agent_id=r["agent_id"],
        voice_id=r["voice_id"],
        from_number_ids=list(r["from_number_ids"]),
        start_at=r["start_at"],
        timezone=r["timezone"],
        calling_window=msgspec.convert(window, CallingWindow) if window else None,
        max_concurrency=r["max_concurrency"],
        calls_per_second=r["calls_per_second"],
        retry=msgspec.convert(r["retry_policy"] or {}, RetryPolicy),
        variables=r["variables"],
        total_calls=r["total_calls"],
        completed_calls=r["completed_calls"],
        failed_calls=r["failed_calls"],
        counts=BatchCounts(
            total=r["total_calls"],
            queued=r["queued_calls"],
            in_progress=r["in_progress_calls"],
            retrying=r["retrying_calls"],
            completed=r["completed_calls"],
            failed=r["failed_calls"],
            skipped=r["skipped_calls"],
            cancelled=r["cancelled_calls"],
        ),
        initiated_by_user_id=r["initiated_by_user_id"],
        metadata=r["metadata"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        started_at=r["started_at"],
        completed_at=r["completed_at"],
    )


def to_entry(r: asyncpg.Record) -> BatchEntry:
    return BatchEntry(**dict(r))


# --- turning request rows into entries ---


@dataclass
class PreparedEntries:
    positions: list[int] = field(default_factory=list)
    lead_ids: list[uuid.UUID | None] = field(default_factory=list)
    phones: list[str | None] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    outcomes: list[str | None] = field(default_factory=list)
    messages: list[str | None] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    queued: int = 0

    def add(
        self,
        *,
        lead_id: uuid.UUID | None,
        phone: str | None,
        variables: dict[str, Any],
        zone: str,
        skip: tuple[str, str] | None = None,
    ) -> None:
        self.positions.append(len(self.positions))
        self.lead_ids.append(lead_id)
        self.phones.append(phone)
        self.variables.append(_json.encode(variables).decode())
        self.statuses.append("skipped" if skip else "queued")
        self.outcomes.append(skip[0] if skip else None)
        self.messages.append(skip[1] if skip else None)
        self.zones.append(zone)
        if skip is None:
            self.queued += 1

    def columns(self, base_position: int) -> list[list[Any]]:
        return [
            [p + base_position for p in self.positions],
            self.lead_ids,
            self.phones,
            self.variables,
            self.statuses,
            self.outcomes,
            self.messages,
            self.zones,
        ]


def _lead_vars(lead: asyncpg.Record | None) -> dict[str, Any]:
    if lead is None:
        return {}
    return {k: lead[k] for k in _LEAD_VARIABLES if lead[k] is not None}


async def prepare_entries(
    conn: asyncpg.Connection,
    principal: Principal,
    rows: Sequence[EntryIn],
    *,
    batch_tz: str,
    batch_id: uuid.UUID | None = None,
) -> PreparedEntries:
    """Resolve leads and phones; invalid phones, duplicates (within the batch) and do-not-call leads become
    skipped entries with the reason. Phone rows are upserted as leads (one statement)."""
    parsed: list[str | None] = []
    for i, row in enumerate(rows):
        if (row.lead_id is None) == (row.phone is None):
            raise ValidationFailed("each entry needs lead_id or phone (not both)", field=f"entries[{i}]")
        if row.phone is not None:
            parsed.append(policy.e164(row.phone))
        else:
            parsed.append(None)

    lead_ids = list({r.lead_id for r in rows if r.lead_id is not None})
    leads = (
        {r["id"]: r for r in await repo.leads_by_ids(conn, principal.tenant_id, lead_ids)} if lead_ids else {}
    )

    # First occurrence of each phone wins (in request order); phones already in the batch are duplicates too.
    seen: set[str] = set()
    if batch_id is not None:
        candidates = [p for p in parsed if p] + [
            leads[r.lead_id]["phone"] for r in rows if r.lead_id in leads and leads[r.lead_id]["phone"]
        ]
        seen = await repo.phones_in_batch(conn, principal.tenant_id, batch_id, candidates)
    first: list[bool] = []
    for i, row in enumerate(rows):
        phone = (
            parsed[i]
            if row.phone is not None
            else (leads[row.lead_id]["phone"] if row.lead_id in leads else None)
        )
        is_first = phone is not None and phone not in seen
        if phone is not None:
            seen.add(phone)
        first.append(is_first)

    upsert_rows = [(i, row) for i, row in enumerate(rows) if row.phone is not None and parsed[i] and first[i]]
    upserted: dict[str, asyncpg.Record] = {}
    lead: asyncpg.Record | None
    if upsert_rows:
        cols: list[list[str | None]] = [[], [], [], [], [], []]
        for i, row in upsert_rows:
            tz = row.timezone if row.timezone and policy.zone(row.timezone) is not None else None
            for c, v in zip(
                cols, (parsed[i], row.first_name, row.last_name, row.email, row.company_name, tz), strict=True
            ):
                c.append(v)
        for lead in await leads_repo.upsert_by_phone(conn, principal.tenant_id, principal.user_id, cols):
            upserted[lead["phone"]] = lead

    out = PreparedEntries()
    for i, row in enumerate(rows):
        if row.lead_id is not None:
            lead = leads.get(row.lead_id)
            phone = lead["phone"] if lead else None
            if lead is None:
                out.add(
                    lead_id=None,
                    phone=None,
                    variables=row.variables,
                    zone=batch_tz,
                    skip=("lead_not_found", f"no lead {row.lead_id} in your tenant"),
                )
                continue
            if phone is None:
                out.add(
                    lead_id=lead["id"],
                    phone=None,
                    variables=row.variables,
                    zone=batch_tz,
                    skip=("no_phone", "the lead has no phone number"),
                )
                continue
        else:
            phone = parsed[i]
            if phone is None:
                out.add(
                    lead_id=None,
                    phone=None,
                    variables=row.variables,
                    zone=batch_tz,
                    skip=(
                        "invalid_phone",
                        f"{row.phone!r} is not a valid phone number (E.164, e.g. +15551234567)",
                    ),
                )
                continue
            lead = upserted.get(phone)
        lead_id = lead["id"] if lead else None
        variables = {**_lead_vars(lead), **row.variables}
        zone = policy.timezone_for(phone, (lead["timezone"] if lead else None) or row.timezone, batch_tz)
        if not first[i]:
            out.add(
                lead_id=lead_id,
                phone=phone,
                variables=variables,
                zone=zone,
                skip=("duplicate", "this phone number is already in the batch"),
            )
        elif lead is not None and lead["do_not_call"]:
            out.add(
                lead_id=lead_id,
                phone=phone,
                variables=variables,
                zone=zone,
                skip=("do_not_call", "the lead asked not to be called"),
            )
        else:
            out.add(lead_id=lead_id, phone=phone, variables=variables, zone=zone)
    return out


# --- launching ---


async def _check_numbers(
    conn: asyncpg.Connection, principal: Principal, data: BatchCreate, voice_id: uuid.UUID | None
) -> list[uuid.UUID]:
    """The batch's numbers, each active and allowed to the caller together with `voice_id`, the voice the calls
    will use (the batch's, else the agent's default)."""
    ids: list[uuid.UUID] = []
    fields: dict[uuid.UUID, str] = {}
    if data.from_number_id is not None:
        ids.append(data.from_number_id)
        fields[data.from_number_id] = "from_number_id"
    for i, n in enumerate(data.from_number_ids):
        if n not in fields:
            ids.append(n)
            fields[n] = f"from_number_ids[{i}]"
    if not ids:
        raise ValidationFailed(
            "give from_number_id (or from_number_ids) to call from", field="from_number_id"
        )
    found = {r["id"]: r for r in await repo.numbers_by_ids(conn, principal.tenant_id, ids)}
    for n in ids:
        row = found.get(n)
        if row is None:
            raise ValidationFailed("no phone number with this id in your tenant", field=fields[n])
        if row["status"] != "active":
            raise ValidationFailed(
                f"number {row['e164']} is {row['status']}; only active numbers can call", field=fields[n]
            )
        await check_call_permission(conn, principal, number_id=n, voice_id=voice_id)
    return ids


async def _reserve(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    provider: str,
    n_calls: int,
    *,
    enforce: bool,
    settings: Any,
) -> None:
    if n_calls <= 0:
        return
    amount: Decimal = await wallet.estimate_call_cost(
        conn, tenant_id, provider, n_calls, minutes=ESTIMATE_MINUTES_PER_CALL, settings=settings
    )
    await wallet.reserve_for_batch(
        conn, tenant_id=tenant_id, batch_id=batch_id, amount=amount, n_calls=n_calls, enforce=enforce
    )


async def create(
    conn: asyncpg.Connection, principal: Principal, data: BatchCreate, *, settings: Any
) -> Batch:
    tenant_id = principal.tenant_id
    agent = await agents.get(conn, tenant_id, data.agent_id)
    if agent is None:
        raise ValidationFailed("no agent with this id in your tenant", field="agent_id")
    if data.voice_id is not None and not await voices.exists(conn, tenant_id, data.voice_id):
        raise ValidationFailed("no voice with this id in your tenant", field="voice_id")
    number_ids = await _check_numbers(conn, principal, data, data.voice_id or agent["voice_id"])
    if policy.zone(data.timezone) is None:
        raise ValidationFailed(
            f"{data.timezone!r} is not an IANA time zone (e.g. America/New_York)", field="timezone"
        )
    window = msgspec.to_builtins(data.calling_window) if data.calling_window else None
    if window is not None and (problem := policy.check_window(window)):
        raise ValidationFailed(problem, field="calling_window")
    retry = msgspec.to_builtins(data.retry)
    retry["retry_on"] = sorted(set(retry["retry_on"]))

    prepared = await prepare_entries(conn, principal, data.entries, batch_tz=data.timezone)
    at = dispatcher.now()
    start_at = data.start_at if data.start_at is not None and data.start_at > at else None
    row = await repo.insert_batch(
        conn,
        tenant_id,
        {
            "name": data.name,
            "initiated_by_user_id": principal.user_id,
            "agent_id": data.agent_id,
            "voice_id": data.voice_id,
            "from_number_id": number_ids[0],
            "from_number_ids": number_ids,
            "status": "scheduled" if start_at else "running",
            "start_at": start_at,
            "timezone": data.timezone,
            "calling_window": window,
            "max_concurrency": data.max_concurrency,
            "calls_per_second": None
            if data.calls_per_second is None
            else Decimal(str(data.calls_per_second)),
            "retry_policy": retry,
            "variables": data.variables,
            "metadata": data.metadata,
        },
    )
    batch_id = row["id"]
    await repo.insert_entries(conn, tenant_id, batch_id, start_at or at, prepared.columns(0))
    await repo.after_entries_added(
        conn, tenant_id, batch_id, sorted(set(prepared.zones)), len(prepared.positions)
    )
    numbers = await repo.numbers_by_ids(conn, tenant_id, number_ids[:1])
    await _reserve(
        conn,
        tenant_id,
        batch_id,
        numbers[0]["provider"],
        prepared.queued,
        enforce=settings.enforce_wallet_balance,
        settings=settings,
    )
    if prepared.queued:
        delay = (start_at - at) if start_at else None
        await enqueue(conn, dispatcher.JOB, dispatcher.payload(tenant_id, batch_id), delay=delay)
    else:
        await dispatcher.maybe_complete(conn, tenant_id, batch_id)
    final = await repo.get_batch(conn, tenant_id, batch_id)
    assert final is not None
    return to_batch(final)


async def create_idempotent(
    conn: asyncpg.Connection,
    principal: Principal,
    data: BatchCreate,
    *,
    key: str | None,
    body: bytes,
    path: str,
    settings: Any,
) -> tuple[int, Batch]:
    """Same key and body → the first response; same key, another body → 409. The key is stored in the request's
    transaction, so a failed request leaves no key behind."""
    if key is None:
        return 201, await create(conn, principal, data, settings=settings)
    if not 1 <= len(key) <= 255:
        raise BadRequest("Idempotency-Key must be 1-255 characters", field="Idempotency-Key")
    digest = hashlib.sha256(body).digest()
    stored = await repo.claim_idempotency_key(conn, principal.tenant_id, key, "POST", path, digest)
    if stored is not None:
        if stored["request_hash"] != digest:
            raise Conflict(
                "this Idempotency-Key was already used with a different request body", field="Idempotency-Key"
            )
        if stored["status_code"] is None or stored["response_body"] is None:
            raise Conflict(
                "a request with this Idempotency-Key is still being processed", field="Idempotency-Key"
            )
        return stored["status_code"], _batch_decoder.decode(stored["response_body"])
    batch = await create(conn, principal, data, settings=settings)
    await repo.save_idempotent_response(
        conn, principal.tenant_id, key, "POST", path, 201, _json.encode(batch)
    )
    return 201, batch


async def add_entries(
    conn: asyncpg.Connection, principal: Principal, batch_id: uuid.UUID, data: EntriesAdd
) -> EntriesAdded:
    tenant_id = principal.tenant_id
    b = await repo.get_batch(conn, tenant_id, batch_id, lock=True)
    if b is None:
        raise NotFound("batch not found")
    if b["status"] in ("completed", "cancelled"):
        raise Conflict(f"the batch is {b['status']}; start a new batch", field="status")
    numbers = await repo.numbers_by_ids(conn, tenant_id, list(b["from_number_ids"]))
    for n in numbers:
        await check_call_permission(conn, principal, number_id=n["id"], voice_id=b["voice_id"])
    prepared = await prepare_entries(conn, principal, data.entries, batch_tz=b["timezone"], batch_id=batch_id)
    at = dispatcher.now()
    due = b["start_at"] if b["start_at"] is not None and b["start_at"] > at else at
    await repo.insert_entries(conn, tenant_id, batch_id, due, prepared.columns(b["next_position"]))
    row = await repo.after_entries_added(
        conn, tenant_id, batch_id, sorted(set(prepared.zones)), b["next_position"] + len(prepared.positions)
    )
    if prepared.queued and row["status"] in ("scheduled", "running"):
        await enqueue(
            conn,
            dispatcher.JOB,
            dispatcher.payload(tenant_id, batch_id),
            delay=(due - at) if due > at else None,
        )
    return EntriesAdded(
        added=prepared.queued, skipped=len(prepared.positions) - prepared.queued, batch=to_batch(row)
    )


# --- reading ---


async def get(conn: asyncpg.Connection, principal: Principal, batch_id: uuid.UUID) -> Batch:
    row = await repo.get_batch(conn, principal.tenant_id, batch_id)
    if row is None:
        raise NotFound("batch not found")
    return to_batch(row)


async def list_(
    conn: asyncpg.Connection, principal: Principal, limit: int, cursor: str | None, status: str | None
) -> Page[Batch]:
    limit = check_limit(limit)
    rows = await repo.list_batches(
        conn, principal.tenant_id, limit=limit, after=decode_cursor(cursor) if cursor else None, status=status
    )
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more and rows else None
    return Page(items=[to_batch(r) for r in rows], next_cursor=nxt)


async def list_entries(
    conn: asyncpg.Connection,
    principal: Principal,
    batch_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    status: str | None,
) -> Page[BatchEntry]:
    limit = check_limit(limit)
    if not await repo.get_batch(conn, principal.tenant_id, batch_id):
        raise NotFound("batch not found")
    after: int | None = None
    if cursor:
        _, position = decode_cursor(cursor, id_kind="int")
        after = int(position)
    rows = await repo.list_entries(
        conn, principal.tenant_id, batch_id, limit=limit, after_position=after, status=status
    )
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1]["created_at"], rows[-1]["position"]) if more and rows else None
    return Page(items=[to_entry(r) for r in rows], next_cursor=nxt)


# --- controls ---


async def _locked(conn: asyncpg.Connection, principal: Principal, batch_id: uuid.UUID) -> asyncpg.Record:
    row = await repo.get_batch(conn, principal.tenant_id, batch_id, lock=True)
    if row is None:
        raise NotFound("batch not found")
    return row


async def pause(conn: asyncpg.Connection, principal: Principal, batch_id: uuid.UUID) -> Batch:
    """No new calls start; calls already talking go on."""
    b = await _locked(conn, principal, batch_id)
    if b["status"] in ("completed", "cancelled"):
        raise Conflict(f"the batch is {b['status']}", field="status")
    if b["status"] != "paused":
        b = await repo.set_status(conn, principal.tenant_id, batch_id, "paused")
    return to_batch(b)


async def resume(conn: asyncpg.Connection, principal: Principal, batch_id: uuid.UUID) -> Batch:
    b = await _locked(conn, principal, batch_id)
    if b["status"] in ("completed", "cancelled"):
        raise Conflict(f"the batch is {b['status']}", field="status")
    if b["status"] == "paused":
        at = dispatcher.now()
        waiting = b["start_at"] is not None and b["start_at"] > at and b["started_at"] is None
        b = await repo.set_status(conn, principal.tenant_id, batch_id, "scheduled" if waiting else "running")
        await repo.set_wake(conn, principal.tenant_id, batch_id, None)
        await enqueue(conn, dispatcher.JOB, dispatcher.payload(principal.tenant_id, batch_id))
        if not await dispatcher.maybe_complete(conn, principal.tenant_id, batch_id):
            return to_batch(b)
        b = await _locked(conn, principal, batch_id)
    return to_batch(b)


async def cancel(conn: asyncpg.Connection, principal: Principal, batch_id: uuid.UUID) -> Batch:
    """Stops dialling at once: waiting entries are cancelled, calls claimed for a later pacing slot are not
    placed; calls already ringing or talking are not ended."""
    b = await _locked(conn, principal, batch_id)
    if b["status"] == "completed":
        raise Conflict("the batch is completed", field="status")
    if b["status"] != "cancelled":
        await repo.cancel_waiting_entries(conn, principal.tenant_id, batch_id)
        b = await repo.set_status(conn, principal.tenant_id, batch_id, "cancelled", finished=True)
        await batch_events.batch_cancelled(conn, principal.tenant_id, b)
        await dispatcher.release_reservation(conn, principal.tenant_id, batch_id)
    return to_batch(b)
