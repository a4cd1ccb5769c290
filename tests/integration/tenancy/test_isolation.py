"""Tenant isolation over every resource route: B never sees or touches A's rows.

The same loop runs twice: as written, and with every application-level `tenant_id = $n` filter neutralised at the
asyncpg layer (the SQL text is rewritten before it reaches PostgreSQL), so only row-level security stands between
the tenants. Both must hold.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import pytest

_FILTER = re.compile(r"\b(?:\w+\.)?tenant_id\s*=\s*\$(\d+)")
_METHODS = ("execute", "fetch", "fetchrow", "fetchval")


@pytest.fixture
def without_app_tenant_filter(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Rewrite `tenant_id = $n` into an always-true test on $n (keeps the parameter's type inferable)."""
    rewritten: list[str] = []

    for name in _METHODS:
        original = getattr(asyncpg.connection.Connection, name)

        def make(orig: Any) -> Any:
            async def patched(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
                new = _FILTER.sub(lambda m: f"(${m.group(1)}::uuid IS NOT NULL)", query)
                if new != query:
                    rewritten.append(new)
                return await orig(self, new, *args, **kwargs)

            return patched

        monkeypatch.setattr(asyncpg.connection.Connection, name, make(original))
    return rewritten


async def _seed(client: Any, t: Any) -> dict[str, Any]:
    h = t.headers
    voice = (await client.post("/v1/voices", json={"provider": "elevenlabs", "provider_voice_id": "v-" +
                                                   uuid.uuid4().hex[:6], "name": "Ava"}, headers=h)).json()
    agent = (await client.post("/v1/agents", json={"name": "Sales", "voice_id": voice["id"]}, headers=h)).json()
    phone = f"+14152{uuid.uuid4().int % 1_000_000:06d}"
    number = await client.post("/v1/numbers", json={"phone_number": phone, "provider": "twilio"}, headers=h)
    assert number.status_code == 201, number.text
    lead = await client.post("/v1/leads", json={"first_name": "Ann", "phone": f"+4420794{uuid.uuid4().int % 100000:05d}"},
                             headers=h)
    assert lead.status_code == 201, lead.text
    key = (await client.post("/v1/api-keys", json={"name": "member", "role": "member",
                                                   "user_email": f"m{uuid.uuid4().hex[:6]}@example.com"},
                             headers=h)).json()
    perm = await client.post("/v1/voice-permissions", json={"user_id": key["user_id"],
                                                            "number_id": number.json()["id"]}, headers=h)
    assert perm.status_code == 201, perm.text
    assert "id" in voice, voice
    assert "id" in agent, agent
    assert "id" in key, key
    assert "id" in lead.json(), lead.text
    return {"voice": voice["id"], "agent": agent["id"], "number": number.json()["id"], "lead": lead.json()["id"],
            "api_key": key["id"], "permission": perm.json()["id"]}


ITEM_ROUTES = [
    ("voice", "/v1/voices/{}", {"name": "x"}),
    ("agent", "/v1/agents/{}", {"name": "x"}),
    ("number", "/v1/numbers/{}", {"status": "inactive"}),
    ("lead", "/v1/leads/{}", {"first_name": "x"}),
]
LIST_ROUTES = [("voice", "/v1/voices"), ("agent", "/v1/agents"), ("number", "/v1/numbers"), ("lead", "/v1/leads"),
               ("api_key", "/v1/api-keys"), ("permission", "/v1/voice-permissions")]


async def _check_isolation(client: Any, a: Any, b: Any) -> None:
    ids = await _seed(client, a)
    await _seed(client, b)  # B has rows of its own, so "empty list" is not what makes the test pass
    for kind, route, patch in ITEM_ROUTES:
        url = route.format(ids[kind])
        assert (await client.get(url, headers=a.headers)).status_code == 200, url
        for method, kwargs in (("get", {}), ("patch", {"json": patch}), ("delete", {})):
            r = await client.request(method.upper(), url, headers=b.headers, **kwargs)
            assert r.status_code == 404, (method, url, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        assert (await client.get(url, headers=a.headers)).status_code == 200, f"B's request changed A's {kind}"
    for kind, route in LIST_ROUTES:
        seen_b = {item["id"] for item in (await client.get(route, headers=b.headers)).json()["items"]}
        seen_a = {item["id"] for item in (await client.get(route, headers=a.headers)).json()["items"]}
        assert ids[kind] in seen_a, route
        assert ids[kind] not in seen_b, route
        assert seen_b, f"B sees none of its own {kind}s"
    r = await client.delete(f"/v1/api-keys/{ids['api_key']}", headers=b.headers)
    assert r.status_code == 404
    r = await client.delete(f"/v1/voice-permissions/{ids['permission']}", headers=b.headers)
    assert r.status_code == 404
    # References across tenants are refused, not silently linked.
    r = await client.post("/v1/agents", json={"name": "x", "voice_id": ids["voice"]}, headers=b.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "voice_id"
    r = await client.post("/v1/numbers", json={"phone_number": "+14155550000", "provider": "twilio",
                                               "default_agent_id": ids["agent"]}, headers=b.headers)
    assert r.status_code == 422


async def test_isolation_with_application_filters(client: Any, make_tenant: Any) -> None:
    await _check_isolation(client, await make_tenant(), await make_tenant())


async def test_isolation_holds_on_rls_alone(client: Any, make_tenant: Any,
                                            without_app_tenant_filter: list[str]) -> None:
    a, b = await make_tenant(), await make_tenant()
    await _check_isolation(client, a, b)
    # The rewrite really happened on the statements that read and write tenant rows.
    assert any("voice_agents" in q for q in without_app_tenant_filter)
    assert any("voice_agent_numbers" in q for q in without_app_tenant_filter)
    assert any("leads" in q for q in without_app_tenant_filter)
