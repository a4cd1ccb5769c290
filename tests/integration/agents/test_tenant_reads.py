"""Reads in one round trip (db.read_once over sql/0096's functions): row-level security sees exactly the caller's
tenant, the tenant does not outlive the statement on the pooled connection, and the agents' GET routes built on them
answer as before (404 for another tenant's agent, pages and cursors; a page encoded by PostgreSQL reads exactly as
each agent does)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.serialization import encode_json

from tests.support.tenants import Tenant
from voice_service.agents.repository import agents, read_page_json
from voice_service.agents.service import to_agent
from voice_service.db import create_pool, read_once


async def read_agent(pool: asyncpg.Pool, tenant_id: uuid.UUID, agent_id: int) -> asyncpg.Record | None:
    """The agent's row over sql/0096's agent_read, as GET /v1/agents/{id} reads it (the reference the JSON it
    answers is compared with)."""
    rows = await read_once(pool, f"SELECT {agents.select} FROM agent_read($1, $2)", tenant_id, agent_id)
    return rows[0] if rows else None


async def test_a_read_sees_only_the_given_tenant_and_leaves_no_tenant_behind(
    pg_dsn: str, make_tenant: Any, client: Any
) -> None:
    a: Tenant = await make_tenant()
    b: Tenant = await make_tenant()
    made = (await client.post("/v1/agents", headers=a.headers, json={"name": "A's agent"})).json()
    pool = await create_pool(pg_dsn, min_size=1, max_size=1)  # one connection: every read reuses it
    try:
        assert (await read_agent(pool, a.id, made["id"]))["name"] == "A's agent"  # type: ignore[index]
        assert await read_agent(pool, b.id, made["id"]) is None
        items, last = await read_page_json(pool, b.id, limit=50, after=None)
        assert (items, last) == (b"[]", None)
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


async def test_the_read_functions_are_not_granted_to_public(admin_conn: asyncpg.Connection) -> None:
    grantees = await admin_conn.fetch(
        "SELECT grantee FROM information_schema.routine_privileges "
        "WHERE routine_name IN ('agent_read', 'agents_page_json')"
    )
    assert grantees and "PUBLIC" not in {g["grantee"] for g in grantees}


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


async def test_each_agent_keeps_its_page_json_through_every_write(
    client: Any, make_tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    """sql/0097: a page joins the JSON each row stores (a trigger writes it); every way a row changes keeps that
    JSON equal to the row, and a row stored without it still reads the same."""
    a: Tenant = await make_tenant()
    voice = await client.post("/v1/voices", headers=a.headers,
                              json={"name": "Ava", "provider": "openai", "provider_voice_id": "alloy"})
    assert voice.status_code == 201, voice.text
    made = (await client.post("/v1/agents", headers=a.headers,
                              json={"name": "Before", "voice_id": voice.json()["id"]})).json()
    patched = (await client.patch(f"/v1/agents/{made['id']}", headers=a.headers,
                                  json={"name": "After", "metadata": {"k": [1, "é"]}})).json()

    async def page_and_single() -> tuple[Any, Any]:
        items = (await client.get("/v1/agents", headers=a.headers)).json()["items"]
        single = (await client.get(f"/v1/agents/{made['id']}", headers=a.headers)).json()
        return items, single

    items, single = await page_and_single()
    assert items == [single] == [patched]
    # Written by hand, and by a cascade (the voice deleted: the agent's voice_id is set null by the foreign key).
    await admin_conn.execute(
        """UPDATE voice_agents SET config = config || '{"goal": "by hand"}' WHERE id = $1""", made["id"])
    await admin_conn.execute("DELETE FROM voice_agent_voices WHERE id = $1", uuid.UUID(voice.json()["id"]))
    items, single = await page_and_single()
    assert items == [single] and single["config"]["goal"] == "by hand" and single["voice_id"] is None
    stale = await admin_conn.fetchval(
        "SELECT count(*) FROM voice_agents a WHERE a.tenant_id = $1 AND a.api_json IS DISTINCT FROM agent_api_json(a)",
        a.id)
    assert stale == 0
    # A row stored with triggers off (a restore) has no JSON: the page encodes it when it reads it.
    async with admin_conn.transaction():
        await admin_conn.execute("SET LOCAL session_replication_role = replica")
        await admin_conn.execute("UPDATE voice_agents SET api_json = NULL WHERE id = $1", made["id"])
    items, single = await page_and_single()
    assert items == [single]


async def test_get_one_answers_the_bytes_the_agent_encodes_to(client: Any, make_tenant: Any, pg_dsn: str) -> None:
    """GET /v1/agents/{id} re-encodes the row's stored JSON (sql/0097) instead of building an Agent: its body is
    byte for byte what encoding the Agent read from the row's columns gives (Litestar's encoder, as before)."""
    a: Tenant = await make_tenant()
    bodies = [
        {"name": "Plain"},
        {"name": "Ünïcödé \"quoted\" \\ back\u2028\u0001", "system_instructions": "Line\nbreak\ttab",
         "gender": "female", "language": "fr-FR",
         "analysis_schema": {"type": "object", "properties": {"budget": {"type": "number", "minimum": 1.5e3}}},
         "metadata": {"z": 1, "a": [1, 2.5, None, True, 10**18, -0.0, 1e-7], "nested": {"é": "ü", "": {}}},
         "config": {"goal": "Book a demo", "temperature": 0.3, "silence_reprompt_seconds": 8}},
    ]
    pool = await create_pool(pg_dsn, min_size=1, max_size=1)
    try:
        for body in bodies:
            made = await client.post("/v1/agents", headers=a.headers, json=body)
            assert made.status_code == 201, made.text
            got = await client.get(f"/v1/agents/{made.json()['id']}", headers=a.headers)
            assert got.status_code == 200 and got.headers["content-type"] == "application/json"
            row = await read_agent(pool, a.id, made.json()["id"])
            assert row is not None
            assert got.content == encode_json(to_agent(row))
    finally:
        await pool.close()


async def test_the_read_lane_never_carries_a_tenant_from_one_read_to_the_next(
    pg_dsn: str, make_tenant: Any, client: Any
) -> None:
    # One lane connection, so every read below runs on the same connection, with no pool reset between them.
    a: Tenant = await make_tenant()
    b: Tenant = await make_tenant()
    made_a = (await client.post("/v1/agents", headers=a.headers, json={"name": "A's agent"})).json()
    made_b = (await client.post("/v1/agents", headers=b.headers, json={"name": "B's agent"})).json()
    pool = await create_pool(pg_dsn, min_size=1, max_size=2, read_lane=1)
    try:
        lane = pool.read_lane  # type: ignore[attr-defined]
        assert lane is not None and lane.size == 1
        for _ in range(2):
            assert (await read_agent(pool, a.id, made_a["id"]))["name"] == "A's agent"  # type: ignore[index]
            assert await read_agent(pool, b.id, made_a["id"]) is None
            assert (await read_agent(pool, b.id, made_b["id"]))["name"] == "B's agent"  # type: ignore[index]
            assert await read_agent(pool, a.id, made_b["id"]) is None
            items, _ = await read_page_json(pool, b.id, limit=50, after=None)
            assert [x["id"] for x in msgspec.json.decode(items)] == [made_b["id"]]
            # The lane's connection between reads: no tenant set, so RLS shows no row at all.
            assert (await lane.fetch("SELECT current_setting('app.tenant_id', true) AS t"))[0]["t"] in (None, "")
            assert await lane.fetch("SELECT id FROM voice_agents") == []
        assert lane._owned == 1  # the same connection all along
    finally:
        await pool.close()


async def test_a_read_lane_connection_that_fails_or_is_cancelled_goes_back_to_the_pool(
    pg_dsn: str, make_tenant: Any, client: Any
) -> None:
    a: Tenant = await make_tenant()
    made = (await client.post("/v1/agents", headers=a.headers, json={"name": "A's agent"})).json()
    pool = await create_pool(pg_dsn, min_size=1, max_size=2, read_lane=1)
    try:
        lane = pool.read_lane  # type: ignore[attr-defined]
        # A failed statement: the error reaches the caller, the connection goes back to the pool (reset there).
        with pytest.raises(asyncpg.PostgresError):
            await lane.fetch("SELECT 1/0")
        assert (await read_agent(pool, a.id, made["id"]))["name"] == "A's agent"  # type: ignore[index]
        # Cancelled mid-statement: the next read gets a working connection, with no tenant left on it.
        slow = asyncio.create_task(lane.fetch("SELECT set_config('app.tenant_id', $1, false), pg_sleep(5)",
                                              str(a.id)))
        await asyncio.sleep(0.2)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert (await lane.fetch("SELECT current_setting('app.tenant_id', true) AS t"))[0]["t"] in (None, "")
        assert (await read_agent(pool, a.id, made["id"]))["name"] == "A's agent"  # type: ignore[index]
        # More reads at once than the lane holds: the others read through the pool, none waits for the lane.
        done = await asyncio.gather(*(read_agent(pool, a.id, made["id"]) for _ in range(5)))
        assert all(r["name"] == "A's agent" for r in done)  # type: ignore[index]
        assert lane._owned == 1
    finally:
        await asyncio.wait_for(pool.close(), 10)  # closes with the pool: nothing left lent


async def test_a_closed_read_lane_refuses_reads(pg_dsn: str) -> None:
    pool = await create_pool(pg_dsn, min_size=1, max_size=2, read_lane=1)
    lane = pool.read_lane  # type: ignore[attr-defined]
    assert (await lane.fetch("SELECT 1 AS x"))[0]["x"] == 1
    await asyncio.wait_for(pool.close(), 10)
    with pytest.raises(asyncpg.InterfaceError):
        await lane.fetch("SELECT 1")
