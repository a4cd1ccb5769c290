"""The foundation as a user meets it: auth, CRUD, validation errors, roles, pagination, docs, metrics."""

from __future__ import annotations

import uuid
from typing import Any

import pytest


def _problem(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status
    if field is not None:
        fields = [e.get("field") for e in body.get("errors", [])]
        assert field in fields or field in body["detail"], body
    return body  # type: ignore[no-any-return]


async def test_health_and_openapi(client: Any) -> None:
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["database"] == "ok"
    spec = (await client.get("/schema/openapi.json")).json()
    for path in ("/v1/agents", "/v1/agents/{agent_id}", "/v1/numbers", "/v1/voices", "/v1/leads",
                 "/v1/leads/import", "/v1/api-keys", "/v1/voice-permissions", "/v1/voice-profiles/me"):
        assert path in spec["paths"], path
    ops = [op for item in spec["paths"].values() for op in item.values() if isinstance(op, dict)]
    assert all(op.get("operationId") and op.get("summary") for op in ops)


async def test_auth_required_and_revocation(client: Any, tenant: Any) -> None:
    _problem(await client.get("/v1/agents"), 401)
    _problem(await client.get("/v1/agents", headers={"Authorization": "Bearer vsk_nope"}), 401)
    _problem(await client.get("/v1/agents", headers={"Authorization": "Bearer not.a.jwt"}), 401)
    created = (await client.post("/v1/api-keys", json={"name": "tmp", "role": "admin"}, headers=tenant.headers)).json()
    assert created["key"].startswith("vsk_") and created["prefix"] == created["key"][:12]
    h = {"Authorization": f"Bearer {created['key']}"}
    assert (await client.get("/v1/agents", headers=h)).status_code == 200
    listed = (await client.get("/v1/api-keys", headers=tenant.headers)).json()["items"]
    assert all("key" not in k for k in listed)
    assert (await client.delete(f"/v1/api-keys/{created['id']}", headers=tenant.headers)).status_code == 204
    _problem(await client.get("/v1/agents", headers=h), 401)


async def test_agent_crud(client: Any, tenant: Any) -> None:
    h = tenant.headers
    body = {"name": "Receptionist", "system_instructions": "Be brief.", "agent_instructions": "Book demos.",
            "outbound_starter_prompt": "Hi {{first_name}}, this is Ava.", "language": "en-GB",
            "analysis_schema": {"type": "object", "properties": {"budget": {"type": "number"}}},
            "config": {"goal": "book a demo", "interrupt_min_words": 2}}
    r = await client.post("/v1/agents", json=body, headers=h)
    assert r.status_code == 201, r.text
    agent = r.json()
    assert isinstance(agent["id"], int) and agent["config"]["goal"] == "book a demo"
    assert agent["config"]["silence_hangup_seconds"] == 20.0  # defaults filled in
    r = await client.patch(f"/v1/agents/{agent['id']}", json={"inbound_starter_prompt": "Hello!"}, headers=h)
    assert r.json()["inbound_starter_prompt"] == "Hello!" and r.json()["name"] == "Receptionist"
    r = await client.patch(f"/v1/agents/{agent['id']}", json={"voice_id": None}, headers=h)
    assert r.status_code == 200
    assert (await client.delete(f"/v1/agents/{agent['id']}", headers=h)).status_code == 204
    _problem(await client.get(f"/v1/agents/{agent['id']}", headers=h), 404)
    _problem(await client.get(f"/v1/agents/{2**70}", headers=h), 404)


async def test_number_e164_and_cross_tenant_conflict(client: Any, make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    phone = f"+4420794{uuid.uuid4().int % 100000:05d}"
    r = await client.post("/v1/numbers", json={"phone_number": phone, "provider": "vonage"}, headers=a.headers)
    assert r.status_code == 201, r.text
    n = r.json()
    assert n["phone_number"] == phone and n["country_code"] == "44"
    body = _problem(await client.post("/v1/numbers", json={"phone_number": phone, "provider": "twilio"},
                                      headers=b.headers), 409, "phone_number")
    assert "already" in body["detail"]
    # Once A deactivates it, B may take it.
    await client.patch(f"/v1/numbers/{n['id']}", json={"status": "inactive"}, headers=a.headers)
    r = await client.post("/v1/numbers", json={"phone_number": phone, "provider": "twilio"}, headers=b.headers)
    assert r.status_code == 201
    listed = (await client.get("/v1/numbers?provider=twilio", headers=b.headers)).json()["items"]
    assert [x["phone_number"] for x in listed] == [phone]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/agents", {"name": 5}, "name"),
        ("/v1/agents", {"name": "x", "colour": "red"}, "colour"),
        ("/v1/agents", {"language": "en"}, "name"),
        ("/v1/agents", {"name": "nul\u0000byte"}, None),
        ("/v1/agents", {"name": "x", "config": {"colour": 1}}, "config.colour"),
        ("/v1/agents", {"name": "x" * 201}, "name"),
        ("/v1/agents", {"name": "x", "language": "english please"}, "language"),
        ("/v1/agents", {"name": "x", "analysis_schema": {"type": "nonsense"}}, "analysis_schema"),
        ("/v1/agents", {"name": "x", "config": {"temperature": 7}}, "config.temperature"),
        ("/v1/agents", {"name": "x", "voice_id": "not-a-uuid"}, "voice_id"),
        ("/v1/numbers", {"phone_number": "555-1234", "provider": "twilio"}, "phone_number"),
        ("/v1/numbers", {"phone_number": "+19999999999", "provider": "twilio"}, "phone_number"),
        ("/v1/numbers", {"phone_number": "+14155550123", "provider": "carrier-pigeon"}, "provider"),
        ("/v1/voices", {"provider": "openai"}, "provider_voice_id"),
        ("/v1/voice-permissions", {"user_id": str(uuid.uuid4())}, "number_id"),
        ("/v1/api-keys", {"name": "k", "role": "god"}, "role"),
    ],
)
async def test_bad_input_names_the_field(client: Any, tenant: Any, path: str, body: Any, field: str | None) -> None:
    r = await client.post(path, json=body, headers=tenant.headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    _problem(r, r.status_code, field)


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b"null", b"\xff\xfe", b'{"name": "a"' + b" " * 10, b""])
async def test_malformed_bodies_are_4xx(client: Any, tenant: Any, raw: bytes) -> None:
    for path in ("/v1/agents", "/v1/numbers", "/v1/voices", "/v1/api-keys", "/v1/voice-permissions"):
        r = await client.post(path, content=raw, headers={**tenant.headers, "content-type": "application/json"})
        assert 400 <= r.status_code < 500, (path, raw, r.status_code, r.text)


async def test_bad_cursor_and_limit(client: Any, tenant: Any) -> None:
    _problem(await client.get("/v1/agents?cursor=garbage!!", headers=tenant.headers), 400, "cursor")
    _problem(await client.get("/v1/agents?limit=0", headers=tenant.headers), 400)
    _problem(await client.get("/v1/agents?limit=5000", headers=tenant.headers), 400)


async def test_pagination_newest_first_no_duplicates(client: Any, tenant: Any) -> None:
    made = [(await client.post("/v1/voices", json={"provider": "openai", "provider_voice_id": f"v{i}"},
                               headers=tenant.headers)).json()["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        url = "/v1/voices?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=tenant.headers)).json()
        seen += [v["id"] for v in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(made))


async def test_roles(client: Any, tenant: Any) -> None:
    viewer = (await client.post("/v1/api-keys", json={"name": "v", "role": "viewer"}, headers=tenant.headers)).json()
    vh = {"Authorization": f"Bearer {viewer['key']}"}
    assert (await client.get("/v1/agents", headers=vh)).status_code == 200
    _problem(await client.post("/v1/agents", json={"name": "x"}, headers=vh), 403)
    _problem(await client.post("/v1/leads", json={"phone": "+14155550199"}, headers=vh), 403)
    member = (await client.post("/v1/api-keys", json={"name": "m", "role": "member", "user_email":
                                                      f"u{uuid.uuid4().hex[:6]}@ex.com"}, headers=tenant.headers)).json()
    mh = {"Authorization": f"Bearer {member['key']}"}
    _problem(await client.post("/v1/agents", json={"name": "x"}, headers=mh), 403)
    _problem(await client.post("/v1/api-keys", json={"name": "x", "role": "owner"}, headers=mh), 403)
    admin = (await client.post("/v1/api-keys", json={"name": "a", "role": "admin"}, headers=tenant.headers)).json()
    _problem(await client.post("/v1/api-keys", json={"name": "x", "role": "owner"},
                               headers={"Authorization": f"Bearer {admin['key']}"}), 403, "role")
    # The member's own profile works; it is bound to a user.
    r = await client.put("/v1/voice-profiles/me", json={"preferences": {"ui": "dark"}}, headers=mh)
    assert r.status_code == 200 and r.json()["preferences"] == {"ui": "dark"}
    assert (await client.get("/v1/voice-profiles/me", headers=mh)).json()["preferences"] == {"ui": "dark"}


async def test_metrics_and_request_id(client: Any, tenant: Any) -> None:
    r = await client.get("/v1/agents", headers={**tenant.headers, "x-request-id": "req-123"})
    assert r.headers["x-request-id"] == "req-123"
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/v1/agents"' in text
    assert "db_pool_connections" in text


async def test_jwt_auth(client: Any, app: Any, tenant: Any, admin_conn: Any, monkeypatch: Any) -> None:
    import time

    import jwt
    import msgspec

    user_id = await admin_conn.fetchval("INSERT INTO users (email) VALUES ($1) RETURNING id",
                                        f"j{uuid.uuid4().hex[:6]}@ex.com")
    await admin_conn.execute("INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'viewer')",
                             tenant.id, user_id)
    monkeypatch.setattr(app.state, "settings", msgspec.structs.replace(app.state.settings, jwt_secret="s3cret-s3cret-s3cret-s3cret-s3cret-42"))
    token = jwt.encode({"sub": str(user_id), "tid": str(tenant.id), "exp": int(time.time()) + 60}, "s3cret-s3cret-s3cret-s3cret-s3cret-42",
                       algorithm="HS256")
    h = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/agents", headers=h)).status_code == 200
    _problem(await client.post("/v1/agents", json={"name": "x"}, headers=h), 403)
    forged = jwt.encode({"sub": str(user_id), "tid": str(tenant.id), "exp": int(time.time()) + 60}, "wrong-wrong-wrong-wrong-wrong-wrong-wrong",
                        algorithm="HS256")
    _problem(await client.get("/v1/agents", headers={"Authorization": f"Bearer {forged}"}), 401)
