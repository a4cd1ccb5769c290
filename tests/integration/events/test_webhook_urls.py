"""Webhook URLs whose host is not plain ASCII: registration normalises the host (Unicode compatibility forms such as
full-width digits, then IDNA) and checks what will really be called, or refuses with a 422 naming `url`; a stored
URL no delivery can use fails visibly, its delivery marked failed with the reason, instead of crashing every job."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from tests.fakes.server import LocalServer
from tests.support.webhooks import Receiver, delivery_ids, delivery_log, emit_cost_event
from voice_service.events.delivery import deliver
from voice_service.runtime import Runtime

# The API refuses plain http and private addresses here; `strict_runtime` refuses private targets at delivery,
# `local_runtime` allows them (events/conftest.py).
pytestmark = pytest.mark.usefixtures("strict_api")


@pytest.mark.parametrize(
    "url",
    [
        "https://１２７.０.０.１/",  # full-width digits: 127.0.0.1
        "https://１２７．０．０．１/hook",  # full-width dots too
        "https://①②⑦.0.0.1/",  # circled digits fold to 127 as well
        "https://[::1]/",
        "https://exa mple.com/hook",  # not a host name at all
        "https://" + "a" * 64 + ".example.com/",  # a label over 63 characters
    ],
)
async def test_urls_that_fold_to_a_refused_or_invalid_host_are_refused(client: Any, tenant: Any, url: str) -> None:
    r = await client.post("/v1/webhook-endpoints", json={"url": url}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["url"]
    assert (await client.get("/v1/webhook-endpoints", headers=tenant.headers)).json()["items"] == []


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://ｈｏｏｋｓ.example.com/v", "https://hooks.example.com/v"),
        ("https://bücher.example/hook?x=1", "https://xn--bcher-kva.example/hook?x=1"),
        ("https://ＨＯＯＫＳ.example.com:8443/v", "https://hooks.example.com:8443/v"),
        ("https://hooks.example.com/v", "https://hooks.example.com/v"),  # plain ASCII: kept as sent
    ],
)
async def test_the_host_is_stored_as_it_will_be_called(client: Any, tenant: Any, url: str, stored: str) -> None:
    r = await client.post("/v1/webhook-endpoints", json={"url": url}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    assert r.json()["url"] == stored


async def _stored_endpoint(client: Any, tenant: Any, admin: asyncpg.Connection, url: str) -> str:
    """An endpoint whose stored URL is `url`, as registration before this fix could leave it."""
    r = await client.post("/v1/webhook-endpoints", json={"url": "https://hooks.example.com/v"}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    await admin.execute("UPDATE webhook_endpoints SET url = $1 WHERE id = $2", url, uuid.UUID(r.json()["id"]))
    return r.json()["id"]  # type: ignore[no-any-return]


async def test_a_stored_url_no_delivery_can_use_fails_visibly(
    client: Any, tenant: Any, admin_conn: asyncpg.Connection, local_runtime: Runtime
) -> None:
    endpoint_id = await _stored_endpoint(client, tenant, admin_conn, "https://exa mple.com/hook")
    await emit_cost_event(local_runtime, tenant.id, {"n": 1})
    [delivery_id] = await delivery_ids(admin_conn, endpoint_id)

    assert await deliver(local_runtime, tenant.id, delivery_id) == "failed"  # not retried: it can never work
    [delivery] = await delivery_log(client, tenant, endpoint_id)
    assert delivery["status"] == "failed" and delivery["attempts"] == 1
    assert "url" in delivery["last_error"] and "exa mple.com" in delivery["last_error"]


async def test_a_stored_full_width_url_is_delivered_to_the_host_it_folds_to(
    client: Any, tenant: Any, admin_conn: asyncpg.Connection, local_runtime: Runtime
) -> None:
    receiver = Receiver()
    async with LocalServer(receiver) as srv:
        wide = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in "127.0.0.1")
        endpoint_id = await _stored_endpoint(client, tenant, admin_conn, f"http://{wide}:{srv.port}/hook")
        await emit_cost_event(local_runtime, tenant.id, {"n": 1})
        [delivery_id] = await delivery_ids(admin_conn, endpoint_id)
        assert await deliver(local_runtime, tenant.id, delivery_id) == "succeeded"
    assert len(receiver.received) == 1
