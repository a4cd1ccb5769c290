"""The outbox: the one way domain events are written.

`emit` inserts the DOMAIN_EVENTS row, a pending delivery for every webhook endpoint subscribed to its type, and
one delivery job per delivery, all on the caller's connection and in its transaction: an event, its deliveries
and their jobs exist exactly when the change they describe was committed.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from voice_service.enqueue import enqueue_many
from voice_service.events import repository as repo

DELIVER_JOB = "events.deliver"


async def emit(
    conn: asyncpg.Connection,
    *,
    tenant_id: uuid.UUID,
    event_type: str,
    aggregate_type: str,
    aggregate_id: uuid.UUID | None,
    payload: dict[str, Any],
) -> uuid.UUID:
    """Write one event (inside the caller's transaction); returns the event id consumers dedupe on."""
    row = await repo.insert_event(conn, tenant_id, event_type, aggregate_type, aggregate_id, payload)
    deliveries = await repo.fan_out(conn, tenant_id, row["id"], event_type)
    await enqueue_many(
        conn, DELIVER_JOB, [{"tenant_id": str(tenant_id), "delivery_id": str(d)} for d in deliveries]
    )
    event_id: uuid.UUID = row["id"]
    return event_id


TEST_EVENT = "webhook_endpoint.test"


async def emit_test(conn: asyncpg.Connection, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID,
                    payload: dict[str, Any]) -> uuid.UUID | None:
    """A `webhook_endpoint.test` event delivered to that endpoint only (signed and logged like any delivery);
    returns the delivery's id, or None when the endpoint is not active."""
    row = await repo.insert_event(conn, tenant_id, TEST_EVENT, "webhook_endpoint", endpoint_id, payload)
    delivery = await repo.delivery_to(conn, tenant_id, endpoint_id, row["id"], TEST_EVENT)
    if delivery is not None:
        await enqueue_many(conn, DELIVER_JOB, [{"tenant_id": str(tenant_id), "delivery_id": str(delivery)}])
    return delivery
