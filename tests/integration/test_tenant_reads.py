"""Reads in one round trip (db.tenant_rows, sql/0096): row-level security sees exactly the caller's tenant, the
tenant does not outlive the statement on the pooled connection, and the agents' GET routes built on it answer as
before (404 for another tenant's agent, pages and cursors)."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.conftest import Tenant
from voice_service.db import create_pool, tenant_rows


async def test_rls_sees_only_the_given_tenant_and_the_setting_ends_with_the_statement(
    pg_dsn: str, make_tenant: Any, client: Any
) -> None:
    a: Tenant = await make_tenant()
    b: Tenant = await make_tenant()
    for tenant, name in ((a, "A's agent"), (b, "B's agent")):
        assert (await client.post("/v1/agents", headers=tenant.headers, json={"name": name})).status_code == 201
    pool = await create_pool(pg_dsn, min_size=1, max_size=1)  # one connection: every read reuses it
    try:
        # No tenant filter in the query itself: only RLS stands between B and A's rows.
        rows = await tenant_rows(pool, b.id, rowtype="voice_agents", columns="tenant_id, name",
                                 query="SELECT * FROM voice_agents")
        assert {r["tenant_id"] for r in rows} == {b.id} and [r["name"] for r in rows] == ["B's agent"]
        async with pool.acquire() as conn:
            # The same pooled connection afterwards: no tenant left behind, so RLS shows nothing.
            assert await conn.fetchval("SELECT current_setting('app.tenant_id', true)") in (None, "")
            assert await conn.fetch("SELECT id FROM voice_agents") == []
    finally:
        await pool.close()


async def test_agent_reads_stay_inside_the_tenant(client: Any, make_tenant: Any) -> None:
    a: Tenant = await make_tenant()
    b: Tenant = await make_tenant()
    made = [(await client.post("/v1/agents", headers=a.headers, json={"name": f"Agent {i}"})).json()
            for i in range(3)]
    one = await client.get(f"/v1/agents/{made[0]['id']}", headers=a.headers)
    assert one.status_code == 200 and one.json() == made[0]
    other = await client.get(f"/v1/agents/{made[0]['id']}", headers=b.headers)
    assert other.status_code == 404 and other.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/v1/agents", headers=b.headers)).json() == {"items": [], "next_cursor": None}
    first = (await client.get("/v1/agents?limit=2", headers=a.headers)).json()
    assert [x["id"] for x in first["items"]] == [made[2]["id"], made[1]["id"]]
    rest = (await client.get(f"/v1/agents?limit=2&cursor={first['next_cursor']}", headers=a.headers)).json()
    assert [x["id"] for x in rest["items"]] == [made[0]["id"]] and rest["next_cursor"] is None
    deleted = await client.delete(f"/v1/agents/{made[1]['id']}", headers=a.headers)
    assert deleted.status_code == 204
    assert (await client.get(f"/v1/agents/{made[1]['id']}", headers=a.headers)).status_code == 404


async def test_tenant_rows_is_not_callable_without_the_app_role(admin_conn: asyncpg.Connection) -> None:
    grantees = await admin_conn.fetch(
        "SELECT grantee FROM information_schema.routine_privileges WHERE routine_name = 'tenant_rows'"
    )
    assert "PUBLIC" not in {g["grantee"] for g in grantees}


async def test_a_page_encoded_by_postgresql_reads_exactly_as_each_agent_does(client: Any, make_tenant: Any) -> None:
    a: Tenant = await make_tenant()
    bodies = [
        {"name": "Plain"},
        {"name": "Full", "system_instructions": "Be brief. Ünïcödé \"quoted\" \\ back", "gender": "female",
         "analysis_schema": {"type": "object", "properties": {"budget": {"type": "number"}}},
         "metadata": {"team": "sales", "n": [1, 2.5, None], "nested": {"ok": True}},
         "config": {"goal": "Book a demo", "temperature": 0.3}},
    ]
    for body in bodies:
        assert (await client.post("/v1/agents", headers=a.headers, json=body)).status_code == 201
    page = await client.get("/v1/agents", headers=a.headers)
    assert page.status_code == 200 and page.headers["content-type"].startswith("application/json")
    items = page.json()["items"]
    singles = [(await client.get(f"/v1/agents/{item['id']}", headers=a.headers)).json() for item in items]
    assert items == singles  # every field, timestamps to the character
    assert [i["name"] for i in items] == ["Full", "Plain"] and items[1]["analysis_schema"] is None


async def test_the_list_keeps_its_documented_response(client: Any) -> None:
    spec = (await client.get("/schema/openapi.json")).json()
    ok = spec["paths"]["/v1/agents"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "Page" in ok["$ref"]
