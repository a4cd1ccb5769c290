"""Helpers for the webhook delivery tests: a local receiver, an event to deliver, the deliveries read back, and the
app's settings changed for one test."""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
import pytest

from tests.fakes.server import Receive, Scope, Send, headers_dict, read_body, send_json
from voice_service.db import tenant_tx
from voice_service.events.outbox import emit
from voice_service.runtime import Runtime

# The secrets-encryption key the webhook tests' app and runtimes run with (events/conftest.py).
SECRETS_KEY = base64.b64encode(os.urandom(32)).decode()


@dataclass
class Receiver:
    """A webhook receiver (an ASGI app for LocalServer): answers `status` (a redirect to `location` if set) and keeps
    each body and its headers."""

    status: int = 200
    location: str | None = None
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.received.append((await read_body(receive), headers_dict(scope)))
        if self.location:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status,
                    "headers": [(b"location", self.location.encode())],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await send_json(send, self.status, {"ok": True})


def with_settings(app: Any, monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    """Change the app's settings for this test (undone after it)."""
    monkeypatch.setattr(app.state, "settings", msgspec.structs.replace(app.state.settings, **changes))


async def emit_cost_event(runtime: Runtime, tenant_id: uuid.UUID, data: dict[str, Any]) -> uuid.UUID:
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        return await emit(
            conn,
            tenant_id=tenant_id,
            event_type="voice_call.cost_recorded",
            aggregate_type="voice_call",
            aggregate_id=uuid.uuid4(),
            payload=data,
        )


async def delivery_ids(admin: asyncpg.Connection, endpoint_id: Any) -> list[uuid.UUID]:
    rows = await admin.fetch(
        "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY created_at",
        uuid.UUID(str(endpoint_id)),
    )
    return [r["id"] for r in rows]


async def delivery_log(client: Any, tenant: Any, endpoint_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=tenant.headers)
    return r.json()["items"]  # type: ignore[no-any-return]
