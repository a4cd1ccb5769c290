"""Roles and API keys, probed as an attacker with keys of every role: a key revokes only keys of at most its own
role; a key's role never exceeds its user's membership role; creating a key for an email says nothing about other
tenants' users; an expired key stops working at once, whatever the key cache holds."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _email() -> str:
    return f"u{uuid.uuid4().hex[:10]}@example.com"


def _problem(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    if field is not None:
        assert field in [e.get("field") for e in body.get("errors", [])], body
    return body


async def _key(client: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/api-keys", json={"name": "k", **body}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_a_key_revokes_only_keys_of_at_most_its_own_role(client: Any, tenant: Any) -> None:
    keys = (await client.get("/v1/api-keys", headers=tenant.headers)).json()["items"]
    [owner_key] = [k for k in keys if k["role"] == "owner"]
    admin = await _key(client, tenant.headers, role="admin")
    other_admin = await _key(client, tenant.headers, role="admin")
    member = await _key(client, tenant.headers, role="member")

    body = _problem(await client.delete(f"/v1/api-keys/{owner_key['id']}", headers=_bearer(admin["key"])), 403)
    assert "owner" in body["detail"]
    assert (await client.get("/v1/agents", headers=tenant.headers)).status_code == 200  # the owner is not locked out
    # Equal or lower roles: allowed.
    assert (await client.delete(f"/v1/api-keys/{member['id']}", headers=_bearer(admin["key"]))).status_code == 204
    assert (
        await client.delete(f"/v1/api-keys/{other_admin['id']}", headers=_bearer(admin["key"]))
    ).status_code == 204
    # The owner may revoke anyone's key, the admin's included.
    assert (await client.delete(f"/v1/api-keys/{admin['id']}", headers=tenant.headers)).status_code == 204
    _problem(await client.get("/v1/agents", headers=_bearer(admin["key"])), 401)


async def test_a_keys_role_never_exceeds_its_users_membership(client: Any, tenant: Any) -> None:
    email = _email()
    member = await _key(client, tenant.headers, role="member", user_email=email)
    admin = await _key(client, tenant.headers, role="admin")
    # By email (the path that used to let it through) and by id: the user is only a member.
    for who in ({"user_email": email}, {"user_id": member["user_id"]}):
        _problem(
            await client.post(
                "/v1/api-keys", json={"name": "x", "role": "admin", **who}, headers=_bearer(admin["key"])
            ),
            422,
            "role",
        )
    same = await _key(client, _bearer(admin["key"]), role="viewer", user_email=email.upper())
    assert same["user_id"] == member["user_id"]  # the same user, found case-insensitively


async def test_a_downgraded_membership_caps_the_keys_already_issued(
    client: Any, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    admin = await _key(client, tenant.headers, role="admin", user_email=_email())
    assert (await client.post("/v1/agents", json={"name": "x"}, headers=_bearer(admin["key"]))).status_code == 201
    await admin_conn.execute(
        "UPDATE memberships SET role = 'viewer' WHERE user_id = $1 AND tenant_id = $2", uuid.UUID(admin["user_id"]),
        tenant.id,
    )
    later = await _key(client, tenant.headers, role="viewer", user_id=admin["user_id"])
    _problem(await client.post("/v1/agents", json={"name": "x"}, headers=_bearer(later["key"])), 403)
    # A key not yet in this process's cache is resolved with the lower of the two roles.
    client.app.state.key_cache.clear()
    _problem(await client.post("/v1/agents", json={"name": "x"}, headers=_bearer(admin["key"])), 403)


async def test_creating_a_key_for_an_email_reveals_nothing_about_other_tenants(
    client: Any, make_tenant: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    bobs = _email()
    bob_in_b = await _key(client, b.headers, role="member", user_email=bobs)

    known = await client.post("/v1/api-keys", json={"name": "k", "role": "member", "user_email": bobs},
                              headers=a.headers)
    unknown = await client.post("/v1/api-keys", json={"name": "k", "role": "member", "user_email": _email()},
                                headers=a.headers)
    # The same answer whether or not another tenant has a user with this email (it used to be 409 "already
    # exists" for one and 201 for the other).
    assert (known.status_code, unknown.status_code) == (201, 201), (known.text, unknown.text)
    assert set(known.json()) == set(unknown.json())
    assert known.json()["role"] == unknown.json()["role"] == "member"
    # The person is one user with a membership in each tenant; B's membership and key are untouched.
    assert known.json()["user_id"] == bob_in_b["user_id"]
    assert (await client.get("/v1/agents", headers=_bearer(bob_in_b["key"]))).status_code == 200
    assert (await client.get("/v1/agents", headers=_bearer(known.json()["key"]))).status_code == 200
    # A's key works in A only.
    b_agent = (await client.post("/v1/agents", json={"name": "B only"}, headers=b.headers)).json()
    _problem(await client.get(f"/v1/agents/{b_agent['id']}", headers=_bearer(known.json()["key"])), 404)


async def test_an_expired_key_stops_working_at_once(client: Any, tenant: Any) -> None:
    # Expires well inside the key cache's 5 s: the second request is answered from the cache's entry.
    expires = datetime.now(UTC) + timedelta(seconds=3)
    key = await _key(client, tenant.headers, role="admin", expires_at=expires.isoformat())
    assert (await client.get("/v1/agents", headers=_bearer(key["key"]))).status_code == 200  # now in the key cache
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.05)
    _problem(await client.get("/v1/agents", headers=_bearer(key["key"])), 401)
