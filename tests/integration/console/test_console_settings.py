"""The console's settings and catalog pages over HTTP: API keys (shown once, revoked, roles capped), webhook endpoints
(secret shown once, a test event delivered to that endpoint only, the delivery log, re-enable, delete), member
permissions, numbers and voices — each form's refusals named at their field, viewers kept out, tenants apart."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from tests.support.batches import unique_phone
from tests.support.console import api_key, signed_in, text_of


async def test_api_keys_are_shown_once_and_revoked(console: Any, tenant: Any, client: Any,
                                                   admin_conn: asyncpg.Connection) -> None:
    c = await signed_in(console, tenant.key)
    page = await c.http.get("/console/settings/api-keys")
    assert page.status_code == 200 and "bootstrap" in page.text or "owner" in page.text
    r = await c.post("/console/settings/api-keys", {"name": "CRM sync", "role": "viewer", "expires_on": "2999-01-01"})
    assert r.status_code == 200
    key = re.search(r'id="new-key-value" value="(vsk_[^"]+)"', r.text)
    assert key is not None and "shown only this once" in r.text
    assert r.headers["cache-control"] == "no-store"
    assert (await client.get("/v1/agents", headers={"Authorization": f"Bearer {key.group(1)}"})).status_code == 200
    listing = await c.http.get("/console/settings/api-keys")
    assert "CRM sync" in listing.text and key.group(1) not in listing.text
    assert key.group(1)[:12] in listing.text  # the prefix, to recognise it
    # Refusals at their field.
    r = await c.post("/console/settings/api-keys", {"name": "", "role": "emperor", "expires_on": "2001-01-01"})
    assert r.status_code == 422
    assert 'id="name-error">Name is required' in r.text and 'id="role-error">Role: choose one of the options' in r.text
    assert 'id="expires_on-error">Expires on: choose a day in the future' in r.text
    # Revoke: the key stops working at once.
    key_id = (await client.get("/v1/api-keys", headers=tenant.headers)).json()["items"][0]["id"]
    r = await c.post(f"/console/settings/api-keys/{key_id}/revoke", {})
    assert r.status_code == 303 and r.headers["location"].endswith("revoked=true")
    assert (await client.get("/v1/agents", headers={"Authorization": f"Bearer {key.group(1)}"})).status_code == 401
    # An admin cannot mint an owner key; a viewer cannot mint any.
    admin = await signed_in(console, (await api_key(client, tenant, "admin"))["key"])
    r = await admin.post("/console/settings/api-keys", {"name": "Boss", "role": "owner"})
    assert r.status_code == 422 and "Role: a admin cannot create a key with the owner role" in text_of(r.text)
    viewer = await signed_in(console, (await api_key(client, tenant, "viewer"))["key"])
    assert "Create a key" not in (await viewer.http.get("/console/settings/api-keys")).text
    assert (await viewer.post("/console/settings/api-keys", {"name": "x", "role": "viewer"})).status_code == 403


async def test_webhook_endpoints_test_event_and_delivery_log(console: Any, tenant: Any, client: Any,
                                                             admin_conn: asyncpg.Connection) -> None:
    c = await signed_in(console, tenant.key)
    assert "No webhook endpoints" in (await c.http.get("/console/settings/webhooks")).text
    r = await c.post("/console/settings/webhooks", {"url": "http://127.0.0.1/hook", "event_types": "voice_call.analyzed"})
    assert r.status_code == 422 and 'id="url-error">URL: url ' in r.text
    r = await c.post("/console/settings/webhooks", {"url": "example.com/hook"})
    assert r.status_code == 422 and "URL: enter the full address, starting with https://" in r.text
    r = await c.post("/console/settings/webhooks", {"url": "https://hooks.example.com/voice",
                                                    "event_types": "voice_call.analyzed, Bad Type"})
    assert r.status_code == 422 and 'id="event_types-error">Event types: names such as' in r.text
    r = await c.post("/console/settings/webhooks", {"url": "https://hooks.example.com/voice",
                                                    "event_types": "voice_call.analyzed voice_call.cost_recorded",
                                                    "description": "CRM"})
    assert r.status_code == 200 and "shown only this once" in r.text
    secret = re.search(r'id="new-secret-value" value="(whsec_[^"]+)"', r.text)
    assert secret is not None
    endpoint = (await client.get("/v1/webhook-endpoints", headers=tenant.headers)).json()["items"][0]
    assert endpoint["event_types"] == ["voice_call.analyzed", "voice_call.cost_recorded"]
    other = (await client.post("/v1/webhook-endpoints", json={"url": "https://other.example.com/h"},
                               headers=tenant.headers)).json()
    r = await c.post(f"/console/settings/webhooks/{endpoint['id']}/test", {})
    assert r.status_code == 303 and r.headers["location"].endswith("done=tested")
    deliveries = await admin_conn.fetch("SELECT endpoint_id, event_type, status FROM webhook_deliveries "
                                        "WHERE tenant_id = $1", tenant.id)
    assert [(str(d["endpoint_id"]), d["event_type"]) for d in deliveries] == [(endpoint["id"], "webhook_endpoint.test")]
    assert other["id"] not in {str(d["endpoint_id"]) for d in deliveries}  # to this endpoint only
    detail = await c.http.get(r.headers["location"])
    assert "A test event is on its way" in detail.text and "webhook_endpoint.test" in detail.text
    assert secret.group(1) not in detail.text
    # Disabled after failures: re-enable.
    await admin_conn.execute("UPDATE webhook_endpoints SET status = 'disabled', disabled_at = now(), "
                             "disabled_reason = '10 failed deliveries in a row' WHERE id = $1::uuid", endpoint["id"])
    detail = await c.http.get(f"/console/settings/webhooks/{endpoint['id']}")
    assert "10 failed deliveries in a row" in detail.text and "Send a test event" not in detail.text
    r = await c.post(f"/console/settings/webhooks/{endpoint['id']}/test", {})
    assert r.status_code == 409
    r = await c.post(f"/console/settings/webhooks/{endpoint['id']}/enable", {})
    assert r.status_code == 303
    got = (await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers)).json()
    assert got["status"] == "active"
    r = await c.post(f"/console/settings/webhooks/{endpoint['id']}/delete", {})
    assert r.status_code == 303
    assert (await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers)).status_code == 404
    viewer = await signed_in(console, (await api_key(client, tenant, "viewer"))["key"])
    assert (await viewer.post(f"/console/settings/webhooks/{other['id']}/test", {})).status_code == 403
    assert (await viewer.post(f"/console/settings/webhooks/{other['id']}/delete", {})).status_code == 403


async def test_numbers_voices_and_permissions(console: Any, tenant: Any, client: Any, make_tenant: Any) -> None:
    c = await signed_in(console, tenant.key)
    agent = (await client.post("/v1/agents", json={"name": "Ava"}, headers=tenant.headers)).json()
    r = await c.post("/console/numbers", {"phone_number": "12345", "provider": "pigeon"})
    assert r.status_code == 422
    assert 'id="phone_number-error">Phone number: enter the number in international format' in r.text
    phone = unique_phone("+1212")
    r = await c.post("/console/numbers", {"phone_number": phone, "provider": "simulator",
                                          "default_agent_id": str(agent["id"])})
    assert r.status_code == 303
    number = (await client.get("/v1/numbers", headers=tenant.headers)).json()["items"][0]
    assert number["phone_number"] == phone and number["default_agent_id"] == agent["id"]
    r = await c.post("/console/numbers", {"phone_number": phone, "provider": "simulator"})
    assert r.status_code == 422 and "Phone number: this phone number is already registered" in text_of(r.text)
    r = await c.post(f"/console/numbers/{number['id']}", {"status": "inactive", "default_agent_id": ""})
    assert r.status_code == 303
    number = (await client.get(f"/v1/numbers/{number['id']}", headers=tenant.headers)).json()
    assert number["status"] == "inactive" and number["default_agent_id"] is None

    r = await c.post("/console/voices", {"provider": "deepgram", "provider_voice_id": "", "language": "english"})
    assert r.status_code == 422 and 'id="provider_voice_id-error">' in r.text and 'id="language-error">' in r.text
    r = await c.post("/console/voices", {"provider": "deepgram", "provider_voice_id": "aura-2-thalia-en",
                                         "name": "Thalia", "language": "en-US", "gender": "female"})
    assert r.status_code == 303
    voice = (await client.get("/v1/voices", headers=tenant.headers)).json()["items"][0]
    assert voice["name"] == "Thalia" and voice["gender"] == "female"
    r = await c.post(f"/console/voices/{voice['id']}", {"provider": "deepgram", "provider_voice_id": "aura-2-thalia-en",
                                                        "name": "Thalia (warm)"})
    assert r.status_code == 303
    assert (await client.get(f"/v1/voices/{voice['id']}", headers=tenant.headers)).json()["name"] == "Thalia (warm)"

    member = await client.post("/v1/api-keys", json={"name": "Mo", "role": "member", "user_email": "mo@example.com"},
                               headers=tenant.headers)
    member_user = member.json()["user_id"]
    page = await c.http.get("/console/settings/permissions")
    assert "mo@example.com" in page.text and "No grants yet" in page.text
    r = await c.post("/console/settings/permissions", {"user_id": member_user})
    assert r.status_code == 422 and "Number: choose a number, a voice, or both" in r.text
    r = await c.post("/console/settings/permissions", {"user_id": member_user, "number_id": number["id"],
                                                       "voice_id": voice["id"]})
    assert r.status_code == 303
    grants = (await client.get("/v1/voice-permissions", headers=tenant.headers)).json()["items"]
    assert [(g["number_id"], g["voice_id"]) for g in grants] == [(number["id"], voice["id"])]
    listing = text_of((await c.http.get("/console/settings/permissions")).text)
    assert f"mo@example.com {phone} Thalia (warm) active" in listing
    r = await c.post(f"/console/settings/permissions/{grants[0]['id']}/delete", {})
    assert r.status_code == 303
    assert (await client.get("/v1/voice-permissions", headers=tenant.headers)).json()["items"] == []

    viewer = await signed_in(console, (await api_key(client, tenant, "viewer"))["key"])
    for path, data in (("/console/numbers", {"phone_number": unique_phone(), "provider": "simulator"}),
                       ("/console/voices", {"provider": "openai", "provider_voice_id": "alloy"}),
                       ("/console/settings/permissions", {"user_id": member_user, "number_id": number["id"]}),
                       (f"/console/numbers/{number['id']}/delete", {}), (f"/console/voices/{voice['id']}/delete", {})):
        assert (await viewer.post(path, data)).status_code == 403, path
    stranger = await signed_in(console, (await make_tenant()).key)
    for path in (f"/console/numbers/{number['id']}", f"/console/voices/{voice['id']}"):
        assert (await stranger.http.get(path)).status_code == 404, path
    assert (await stranger.post(f"/console/numbers/{number['id']}/delete", {})).status_code == 404
    r = await c.post(f"/console/voices/{voice['id']}/delete", {})
    assert r.status_code == 303
