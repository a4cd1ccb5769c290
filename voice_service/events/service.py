"""Rules for the pull feed and webhook endpoints (no SQL here: see repository.py)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import msgspec

from voice_service.auth import Principal
from voice_service.errors import BadRequest, Conflict, NotFound, ValidationFailed
from voice_service.events import outbox
from voice_service.events import repository as repo
from voice_service.events.catalog import EVENT_TYPES
from voice_service.events.schemas import (
    DeliveryAttempt,
    Event,
    EventPage,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
)
from voice_service.events.secretbox import box_for
from voice_service.events.signing import generate_secret
from voice_service.events.targets import TargetRejected, check_url
from voice_service.pagination import Page, check_limit, decode_cursor, page_from_rows
from voice_service.settings import Settings


def encode_event_cursor(txid: str, seq: int) -> str:
    return f"{txid}.{seq}"


# `<txid>.<seq>`: txid is an xid8 (unsigned 64-bit), seq a bigint; ASCII digits only (str.isdigit also takes
# full-width and superscript digits, which int() then reads or refuses).
_EVENT_CURSOR = re.compile(r"([0-9]{1,20})\.([0-9]{1,19})")


def decode_event_cursor(cursor: str, param: str = "cursor") -> tuple[int, int]:
    m = _EVENT_CURSOR.fullmatch(cursor)
    if m is None or int(m[1]) >= 2**64 or int(m[2]) >= 2**63:
        raise BadRequest(f"`{param}` is not a valid cursor; pass back `next_cursor` from a previous page",
                         field=param)
    return int(m[1]), int(m[2])


def _event(row: asyncpg.Record) -> Event:
    return Event(
        id=row["id"],
        seq=row["seq"],
        type=row["event_type"],
        aggregate_type=row["aggregate_type"],
        aggregate_id=row["aggregate_id"],
        data=row["payload"],
        created_at=row["created_at"],
    )


async def list_events(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    cursor: str | None = None,
    after: str | None = None,
    types: str | None,
    limit: int,
) -> EventPage:
    """`cursor` and its former name `after` are one parameter: both given and different is a 400."""
    check_limit(limit)
    if cursor and after and cursor != after:
        raise BadRequest("give the cursor once, as `cursor` (`after` is its former name)", field="after")
    param = "cursor" if cursor else "after"
    after = cursor or after
    position = decode_event_cursor(after, param) if after else None
    wanted = [t.strip() for t in types.split(",") if t.strip()] if types else None
    for name in wanted or ():
        if name not in EVENT_TYPES:
            raise BadRequest(f"`types`: {name!r} is not an event type; they are {_known_types()}", field="types")
    rows = await repo.page_events(conn, principal.tenant_id, after=position, types=wanted, limit=limit)
    rows = rows[:limit]
    items = [_event(r) for r in rows]
    if rows:
        next_cursor: str | None = encode_event_cursor(rows[-1]["txid"], rows[-1]["seq"])
    else:
        next_cursor = after
    return EventPage(items=items, next_cursor=next_cursor)


def _endpoint(row: asyncpg.Record) -> WebhookEndpoint:
    return WebhookEndpoint(**{k: row[k] for k in repo.ENDPOINT_COLUMNS})


def secret_context(tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> str:
    """The associated data of an endpoint's encrypted secret: it decrypts only in its own row."""
    return f"webhook_endpoint:{tenant_id}:{endpoint_id}"


def check_target(settings: Settings, url: str) -> str:
    """The URL the endpoint will be called at (its host normalised), or a 422 naming `url`."""
    try:
        return check_url(
            url,
            allow_insecure=settings.webhook_allow_insecure_targets,
            allow_private=settings.webhook_allow_private_targets,
        )
    except TargetRejected as exc:
        raise ValidationFailed(f"url {exc}", field="url") from None


def _known_types() -> str:
    return ", ".join(EVENT_TYPES) + " (GET /v1/event-types)"


async def create_endpoint(
    conn: asyncpg.Connection, principal: Principal, data: WebhookEndpointCreate, settings: Settings
) -> WebhookEndpointCreated:
    for i, name in enumerate(data.event_types):
        if name not in EVENT_TYPES:
            raise ValidationFailed(f"`event_types[{i}]`: {name!r} is not an event type; they are {_known_types()}",
                                   field=f"event_types[{i}]")
    url = check_target(settings, data.url)
    secret = generate_secret()
    endpoint_id = uuid.uuid4()
    box = await box_for(settings)
    row = await repo.insert_endpoint(
        conn,
        principal.tenant_id,
        endpoint_id=endpoint_id,
        url=url,
        description=data.description,
        event_types=sorted(set(data.event_types)),
        secret_ciphertext=box.encrypt(secret, secret_context(principal.tenant_id, endpoint_id)),
    )
    return WebhookEndpointCreated(**{k: row[k] for k in repo.ENDPOINT_COLUMNS}, secret=secret)


async def list_endpoints(
    conn: asyncpg.Connection, principal: Principal, limit: int, cursor: str | None
) -> Page[WebhookEndpoint]:
    rows = await repo.endpoints.page(
        conn, principal.tenant_id, limit=check_limit(limit), after=decode_cursor(cursor) if cursor else None
    )
    return page_from_rows(rows, limit, _endpoint)


async def get_endpoint(
    conn: asyncpg.Connection, principal: Principal, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    row = await repo.endpoints.get(conn, principal.tenant_id, endpoint_id)
    if row is None:
        raise NotFound("webhook endpoint not found")
    return _endpoint(row)


async def delete_endpoint(conn: asyncpg.Connection, principal: Principal, endpoint_id: uuid.UUID) -> None:
    if not await repo.delete_endpoint(conn, principal.tenant_id, endpoint_id):
        raise NotFound("webhook endpoint not found")


async def enable_endpoint(
    conn: asyncpg.Connection, principal: Principal, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    row = await repo.reenable_endpoint(conn, principal.tenant_id, endpoint_id)
    if row is None:
        raise NotFound("webhook endpoint not found")
    return _endpoint(row)


async def send_test_event(
    conn: asyncpg.Connection, principal: Principal, endpoint_id: uuid.UUID
) -> uuid.UUID:
    """Deliver a `webhook_endpoint.test` event to this endpoint (and no other); returns the delivery id."""
    endpoint = await get_endpoint(conn, principal, endpoint_id)
    if endpoint.status != "active":
        raise Conflict("the endpoint is disabled; re-enable it before sending a test event", field="status")
    delivery = await outbox.emit_test(conn, tenant_id=principal.tenant_id, endpoint_id=endpoint_id, payload={
        "endpoint_id": str(endpoint_id), "test": True,
        "message": "A test event: this endpoint receives the service's signed events.",
    })
    if delivery is None:  # disabled or deleted since it was read
        raise Conflict("the endpoint is not active", field="status")
    return delivery


def _delivery(row: asyncpg.Record) -> WebhookDelivery:
    fields: dict[str, Any] = {k: row[k] for k in row.keys() if k != "log"}  # noqa: SIM118 - Record
    return WebhookDelivery(**fields, log=msgspec.convert(row["log"], list[DeliveryAttempt]))


async def list_deliveries(
    conn: asyncpg.Connection, principal: Principal, endpoint_id: uuid.UUID, limit: int, cursor: str | None
) -> Page[WebhookDelivery]:
    await get_endpoint(conn, principal, endpoint_id)
    rows = await repo.page_deliveries(
        conn,
        principal.tenant_id,
        endpoint_id,
        limit=check_limit(limit),
        after=decode_cursor(cursor) if cursor else None,
    )
    return page_from_rows(rows, limit, _delivery)


async def events_of(conn: asyncpg.Connection, principal: Principal, aggregate_id: uuid.UUID,
                    limit: int = 100) -> list[Event]:
    """The events about one aggregate (a call's: started, ended, cost recorded, analysed…), oldest first."""
    return [_event(r) for r in await repo.events_of(conn, principal.tenant_id, aggregate_id, limit=limit)]
