"""Webhook endpoint security: SSRF checks on registration and at delivery (after DNS resolution), and signing
secrets encrypted at rest (old plaintext rows keep working and are encrypted on first use)."""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from standardwebhooks.webhooks import Webhook

from tests.fakes.server import LocalServer
from tests.support.webhooks import Receiver
from tests.support.webhooks import delivery_ids as _delivery_ids
from tests.support.webhooks import delivery_log as _log
from tests.support.webhooks import emit_cost_event as _event
from tests.support.webhooks import with_settings as _with
from voice_service.composition import open_runtime
from voice_service.events.delivery import deliver
from voice_service.events.signing import generate_secret
from voice_service.runtime import Runtime
from voice_service.settings import Settings

# The API refuses plain http and private addresses here (events/conftest.py).
pytestmark = pytest.mark.usefixtures("strict_api")
OTHER_KEY = base64.b64encode(os.urandom(32)).decode()


REJECTED = [
    "http://hooks.example.com/voice",  # not https
    "https://user:pass@hooks.example.com/voice",  # credentials
    "https://token@hooks.example.com/voice",
    "https://127.0.0.1/hook",  # loopback
    "https://127.9.9.9:8443/hook",
    "https://2130706433/hook",  # 127.0.0.1 as one decimal number
    "https://0x7f.1/hook",  # shorthand hex
    "https://0.0.0.0/hook",  # unspecified
    "https://10.1.2.3/hook",  # private
    "https://172.16.0.1/hook",
    "https://192.168.0.10/hook",
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "https://100.64.0.1/hook",  # CGNAT
    "https://224.0.0.1/hook",  # multicast
    "https://240.0.0.1/hook",  # reserved
    "https://[::1]/hook",
    "https://[::]/hook",
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "https://[::ffff:169.254.169.254]/hook",
    "https://[::ffff:a9fe:a9fe]/hook",
    "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "https://[fe80::1]/hook",  # link-local
    "https://[fd00::1]/hook",  # unique local
    "https://[ff02::1]/hook",  # multicast
    "https://hooks.example.com:99999/hook",  # not a port
]


@pytest.mark.parametrize("url", REJECTED)
async def test_disallowed_targets_are_rejected_naming_url(client: Any, tenant: Any, url: str) -> None:
    r = await client.post("/v1/webhook-endpoints", json={"url": url}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert [e["field"] for e in body["errors"]] == ["url"]
    assert (await client.get("/v1/webhook-endpoints", headers=tenant.headers)).json()["items"] == []


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/voice", "https://93.184.216.34/hook", "https://[2606:4700:4700::1111]/h"],
)
async def test_public_https_targets_are_accepted(client: Any, tenant: Any, url: str) -> None:
    r = await client.post("/v1/webhook-endpoints", json={"url": url}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    assert r.json()["url"] == url


async def test_settings_allow_http_and_private_targets_for_development(
    client: Any, tenant: Any, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with(app, monkeypatch, webhook_allow_insecure_targets=True)
    assert (
        await client.post(
            "/v1/webhook-endpoints", json={"url": "http://hooks.example.com/h"}, headers=tenant.headers
        )
    ).status_code == 201
    r = await client.post(
        "/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/h"}, headers=tenant.headers
    )
    assert r.status_code == 422
    _with(app, monkeypatch, webhook_allow_private_targets=True)
    r = await client.post(
        "/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/h"}, headers=tenant.headers
    )
    assert r.status_code == 201
    # Credentials stay refused whatever the settings.
    r = await client.post(
        "/v1/webhook-endpoints", json={"url": "http://u:p@127.0.0.1:9/h"}, headers=tenant.headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "url"


async def test_hostname_resolving_to_loopback_is_refused_at_delivery(
    client: Any,
    tenant: Any,
    app: Any,
    monkeypatch: pytest.MonkeyPatch,
    admin_conn: asyncpg.Connection,
    strict_runtime: Runtime,
    local_runtime: Runtime,
) -> None:
    _with(app, monkeypatch, webhook_allow_insecure_targets=True)
    receiver = Receiver()
    async with LocalServer(receiver) as srv:
        # A name, not a literal: registration cannot know where it points; the delivery resolves it.
        r = await client.post(
            "/v1/webhook-endpoints", json={"url": f"http://localhost:{srv.port}/hook"}, headers=tenant.headers
        )
        assert r.status_code == 201, r.text
        endpoint = r.json()
        await _event(strict_runtime, tenant.id, {"n": 1})
        [delivery_id] = await _delivery_ids(admin_conn, endpoint["id"])

        assert await deliver(strict_runtime, tenant.id, delivery_id) == "pending"  # a failed attempt, retried
        assert receiver.received == []
        [delivery] = await _log(client, tenant, endpoint["id"])
        [attempt] = delivery["log"]
        assert attempt["status_code"] is None
        assert "target refused" in attempt["error"] and "loopback" in attempt["error"]
        assert delivery["last_error"] == attempt["error"]
        r = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers)
        assert r.json()["consecutive_failures"] == 1

        # With private targets allowed (development), the same delivery goes through.
        await admin_conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = $1", delivery_id
        )
        assert await deliver(local_runtime, tenant.id, delivery_id) == "succeeded"
        assert len(receiver.received) == 1


async def test_stored_ip_literal_and_redirects_are_not_followed(
    client: Any,
    tenant: Any,
    app: Any,
    monkeypatch: pytest.MonkeyPatch,
    admin_conn: asyncpg.Connection,
    strict_runtime: Runtime,
    local_runtime: Runtime,
) -> None:
    target = Receiver()
    async with LocalServer(target) as inner:
        # An endpoint registered while private targets were allowed is still checked at delivery.
        _with(app, monkeypatch, webhook_allow_insecure_targets=True, webhook_allow_private_targets=True)
        r = await client.post(
            "/v1/webhook-endpoints", json={"url": f"{inner.http_url}/hook"}, headers=tenant.headers
        )
        endpoint = r.json()
        await _event(strict_runtime, tenant.id, {"n": 1})
        [delivery_id] = await _delivery_ids(admin_conn, endpoint["id"])
        assert await deliver(strict_runtime, tenant.id, delivery_id) == "pending"
        [delivery] = await _log(client, tenant, endpoint["id"])
        assert "target refused" in delivery["last_error"] and "127.0.0.1" in delivery["last_error"]
        assert target.received == []

        redirector = Receiver(status=302, location=f"{inner.http_url}/hook")
        async with LocalServer(redirector) as outer:
            r = await client.post(
                "/v1/webhook-endpoints", json={"url": f"{outer.http_url}/r"}, headers=tenant.headers
            )
            endpoint = r.json()
            await _event(local_runtime, tenant.id, {"n": 2})
            [delivery_id] = await _delivery_ids(admin_conn, endpoint["id"])
            assert await deliver(local_runtime, tenant.id, delivery_id) == "pending"
        assert len(redirector.received) == 1 and target.received == []
        [delivery] = await _log(client, tenant, endpoint["id"])
        assert delivery["last_status_code"] == 302 and delivery["last_error"] == "HTTP 302"


async def test_secret_is_encrypted_at_rest_and_signatures_verify(
    client: Any,
    tenant: Any,
    app: Any,
    monkeypatch: pytest.MonkeyPatch,
    admin_conn: asyncpg.Connection,
    local_runtime: Runtime,
    settings: Settings,
) -> None:
    _with(app, monkeypatch, webhook_allow_insecure_targets=True, webhook_allow_private_targets=True)
    receiver = Receiver()
    async with LocalServer(receiver) as srv:
        r = await client.post(
            "/v1/webhook-endpoints", json={"url": f"{srv.http_url}/h"}, headers=tenant.headers
        )
        created = r.json()
        secret = created["secret"]
        row = await admin_conn.fetchrow(
            "SELECT secret, secret_ciphertext, row_to_json(e)::text AS whole FROM webhook_endpoints e WHERE id = $1",
            uuid.UUID(created["id"]),
        )
        assert row["secret"] is None and row["secret_ciphertext"].startswith("v1:")
        raw = secret.removeprefix("whsec_")
        assert raw not in row["whole"] and secret not in row["whole"]
        got = (await client.get(f"/v1/webhook-endpoints/{created['id']}", headers=tenant.headers)).json()
        assert "secret" not in got and "secret_ciphertext" not in got

        event_id = await _event(local_runtime, tenant.id, {"cost": "0.01"})
        [delivery_id] = await _delivery_ids(admin_conn, created["id"])
        assert await deliver(local_runtime, tenant.id, delivery_id) == "succeeded"
        [(body, headers)] = receiver.received
        assert Webhook(secret).verify(body, headers)["id"] == str(event_id)

        # Under another key the stored secret cannot be read: the attempt fails, nothing is sent unsigned.
        changes = {
            "webhook_allow_insecure_targets": True,
            "webhook_allow_private_targets": True,
            "secrets_encryption_key": OTHER_KEY,
        }
        async with open_runtime(msgspec.structs.replace(settings, **changes)) as other:
            await _event(other, tenant.id, {"cost": "0.02"})
            second = (await _delivery_ids(admin_conn, created["id"]))[-1]
            assert await deliver(other, tenant.id, second) == "pending"
        assert len(receiver.received) == 1
        [latest, _] = await _log(client, tenant, created["id"])
        assert "signing secret unavailable" in latest["last_error"]


async def test_plaintext_secret_from_before_encryption_keeps_working_and_is_encrypted(
    client: Any, tenant: Any, admin_conn: asyncpg.Connection, local_runtime: Runtime
) -> None:
    receiver = Receiver()
    secret = generate_secret()
    async with LocalServer(receiver) as srv:
        endpoint_id = await admin_conn.fetchval(
            "INSERT INTO webhook_endpoints (tenant_id, url, secret) VALUES ($1, $2, $3) RETURNING id",
            tenant.id,
            f"{srv.http_url}/legacy",
            secret,
        )
        for n in (1, 2):
            await _event(local_runtime, tenant.id, {"n": n})
            delivery_id = (await _delivery_ids(admin_conn, endpoint_id))[-1]
            assert await deliver(local_runtime, tenant.id, delivery_id) == "succeeded"
            row = await admin_conn.fetchrow(
                "SELECT secret, secret_ciphertext FROM webhook_endpoints WHERE id = $1", endpoint_id
            )
            assert row["secret"] is None and row["secret_ciphertext"].startswith("v1:")
    assert len(receiver.received) == 2
    for body, headers in receiver.received:
        Webhook(secret).verify(body, headers)
