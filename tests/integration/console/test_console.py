"""The operator console over HTTP (no browser): sessions, cookie flags, CSRF, roles, tenant isolation, forms and
the figures and lists the pages show. The browser tests (test_console_browser.py) drive the same pages in Chromium.

The console is reached as a browser would reach it over https (the test settings' PUBLIC_BASE_URL is https, so the
session cookie is Secure and the client sends it back only over https).
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
import msgspec
import pytest

from tests.support.console import api_key, insert_call

PAGES = ["/console", "/console/agents", "/console/agents/new", "/console/calls", "/console/numbers",
         f"/console/calls/{uuid.uuid4()}", "/console/agents/1", "/console/live/overview", "/console/nowhere"]


async def test_sign_in_keeps_only_a_hash_on_the_server_and_sets_a_strict_cookie(
    console: Any, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    c = await console()
    r = await c.sign_in(tenant.key)
    assert r.status_code == 303 and r.headers["location"] == "/console"
    cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("console_session="))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/console"} <= flags, cookie
    # The database has the token's hash, not the token; the key itself is stored nowhere in the session.
    row = await admin_conn.fetchrow("SELECT * FROM console_sessions WHERE tenant_id = $1", tenant.id)
    assert bytes(row["token_hash"]) == hashlib.sha256(c.session_token.encode()).digest()
    assert c.session_token not in str(dict(row)) and tenant.key not in str(dict(row))
    assert row["kind"] == "api_key" and row["api_key_id"] is not None
    # The credential never reaches a page.
    for path in ("/console", "/console/agents", "/console/calls", "/console/numbers"):
        page = await c.http.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        assert tenant.key not in page.text and c.session_token not in page.text


async def test_a_wrong_key_is_refused_with_a_message(console: Any) -> None:
    c = await console()
    r = await c.sign_in("vsk_not-a-real-key")
    assert r.status_code == 401
    assert "not accepted" in r.text and 'aria-invalid="true"' in r.text
    assert "console_session" not in c.http.cookies
    r = await c.sign_in("eyJhbGciOiJIUzI1NiJ9.e30.x")  # a JWT while platform tokens are not configured
    assert r.status_code == 401 and "not enabled" in r.text


async def test_a_signed_out_browser_reaches_no_page(console: Any, tenant: Any) -> None:
    c = await console()
    for path in PAGES:
        r = await c.http.get(path)
        assert r.status_code == 303, (path, r.status_code)
        assert r.headers["location"].startswith("/console/sign-in"), path
        r = await c.http.get(path, headers={"HX-Request": "true"})
        assert r.status_code == 401 and r.headers["hx-redirect"].startswith("/console/sign-in"), path
    assert (await c.post("/console/agents/new", {"name": "x"})).status_code == 303
    # Signed in, then signed out: the old cookie opens nothing, even replayed by hand.
    await c.sign_in(tenant.key)
    token = c.session_token
    r = await c.post("/console/sign-out", {})
    assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in")
    assert "console_session" not in c.http.cookies
    replay = await console()
    replay.http.cookies.set("console_session", token, domain="console.test", path="/console")
    for path in PAGES:
        r = await replay.http.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in"), path


async def test_sign_in_returns_to_the_page_asked_for_and_never_off_site(console: Any, tenant: Any) -> None:
    c = await console()
    first = await c.http.get("/console/calls?status=failed")
    assert first.headers["location"] == "/console/sign-in?next=/console/calls%3Fstatus%3Dfailed"
    r = await c.sign_in(tenant.key, next_path="/console/calls?status=failed")
    assert r.headers["location"] == "/console/calls?status=failed"
    evil = await console()
    r = await evil.sign_in(tenant.key, next_path="https://evil.example/")
    assert r.headers["location"] == "/console"


async def test_sessions_expire_when_idle_and_after_their_lifetime(
    console: Any, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    idle = await console()
    await idle.sign_in(tenant.key)
    assert (await idle.http.get("/console")).status_code == 200
    await admin_conn.execute(
        "UPDATE console_sessions SET last_seen_at = now() - interval '61 minutes' WHERE token_hash = $1",
        hashlib.sha256(idle.session_token.encode()).digest())
    r = await idle.http.get("/console")
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in"
    assert "console_session" not in idle.http.cookies  # the dead cookie is cleared

    old = await console()
    await old.sign_in(tenant.key)
    row = await admin_conn.fetchrow("SELECT created_at, expires_at FROM console_sessions WHERE token_hash = $1",
                                    hashlib.sha256(old.session_token.encode()).digest())
    assert timedelta(hours=11, minutes=59) < row["expires_at"] - row["created_at"] <= timedelta(hours=12)
    await admin_conn.execute(
        "UPDATE console_sessions SET created_at = now() - interval '13 hours', expires_at = now() - interval '1 hour'"
        " WHERE token_hash = $1", hashlib.sha256(old.session_token.encode()).digest())
    assert (await old.http.get("/console")).status_code == 303


async def test_revoking_the_key_ends_its_console_sessions(client: Any, console: Any, tenant: Any) -> None:
    key = await api_key(client, tenant, "admin")
    c = await console()
    await c.sign_in(key["key"])
    assert (await c.http.get("/console/agents")).status_code == 200
    assert (await client.delete(f"/v1/api-keys/{key['id']}", headers=tenant.headers)).status_code == 204
    assert (await c.http.get("/console/agents")).status_code == 303


async def test_a_platform_token_signs_in_until_it_expires(
    client: Any, console: Any, app: Any, tenant: Any, admin_conn: asyncpg.Connection, monkeypatch: Any
) -> None:
    import jwt

    secret = "console-test-secret-0123456789-abcdef"
    monkeypatch.setattr(app.state, "settings", msgspec.structs.replace(app.state.settings, jwt_secret=secret))
    email = f"u{uuid.uuid4().hex[:6]}@example.com"
    user_id = await admin_conn.fetchval("INSERT INTO users (email) VALUES ($1) RETURNING id", email)
    await admin_conn.execute("INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'member')",
                             tenant.id, user_id)
    exp = int(time.time()) + 600
    token = jwt.encode({"sub": str(user_id), "tid": str(tenant.id), "exp": exp}, secret, algorithm="HS256")
    c = await console()
    assert (await c.sign_in(token)).status_code == 303
    page = await c.http.get("/console")
    assert email in page.text and "member" in page.text and token not in page.text
    expires = await admin_conn.fetchval("SELECT expires_at FROM console_sessions WHERE user_id = $1", user_id)
    assert expires == datetime.fromtimestamp(exp, UTC)  # the token's own end, sooner than 12 hours
    # Leaving the tenant ends the session at once.
    await admin_conn.execute("UPDATE memberships SET deleted_at = now() WHERE user_id = $1", user_id)
    assert (await c.http.get("/console")).status_code == 303


async def test_forms_without_the_csrf_token_are_refused(console: Any, tenant: Any, client: Any) -> None:
    c = await console()
    await c.sign_in(tenant.key)
    before = (await client.get("/v1/agents", headers=tenant.headers)).json()["items"]
    for token in (None, "", "0" * 64, c.csrf[:-1] + ("0" if c.csrf[-1] != "0" else "1")):
        data = {"name": "Sneaky", "language": "en-US"} | ({"_csrf": token} if token is not None else {})
        r = await c.http.post("/console/agents/new", data=data)
        assert r.status_code == 403, r.text
        assert "did not come from the console" in r.text
    assert (await c.http.post("/console/sign-out", data={})).status_code == 403
    assert (await c.http.get("/console")).status_code == 200  # still signed in
    # htmx sends the token in a header instead; without it the refusal is a short message.
    r = await c.http.post("/console/agents/new", data={"name": "Sneaky"}, headers={"HX-Request": "true"})
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/plain")
    assert (await client.get("/v1/agents", headers=tenant.headers)).json()["items"] == before
    r = await c.http.post("/console/agents/new", data={"name": "Welcome", "language": "en-US"},
                          headers={"HX-Request": "true", "X-CSRF-Token": c.csrf})
    assert r.status_code == 200 and r.headers["hx-redirect"].startswith("/console/agents/")
    # Another session's token does not fit this session.
    other = await console()
    await other.sign_in(tenant.key)
    assert other.csrf != c.csrf
    r = await c.http.post("/console/agents/new", data={"name": "X", "_csrf": other.csrf})
    assert r.status_code == 403
    # The sign-in form has its own token (a sign-in cannot be forced on a browser from another site).
    fresh = await console()
    r = await fresh.http.post("/console/sign-in", data={"credential": tenant.key})
    assert r.status_code == 403 and "console_session" not in fresh.http.cookies


async def test_a_viewer_sees_but_cannot_act(client: Any, console: Any, tenant: Any) -> None:
    agent = (await client.post("/v1/agents", json={"name": "Ava", "agent_instructions": "Be kind."},
                               headers=tenant.headers)).json()
    viewer = await console()
    await viewer.sign_in((await api_key(client, tenant, "viewer"))["key"])
    listing = await viewer.http.get("/console/agents")
    assert listing.status_code == 200 and "Ava" in listing.text and "New agent" not in listing.text
    shown = await viewer.http.get(f"/console/agents/{agent['id']}")
    assert shown.status_code == 200 and "Be kind." in shown.text and "<form id=\"agent-form\"" not in shown.text
    assert "needs the admin or owner role" in shown.text
    r = await viewer.http.get("/console/agents/new")
    assert r.status_code == 403 and "admin role" in r.text
    r = await viewer.post("/console/agents/new", {"name": "Mallory", "language": "en-US"})
    assert r.status_code == 403
    r = await viewer.post(f"/console/agents/{agent['id']}", {"name": "Renamed", "language": "en-US"})
    assert r.status_code == 403
    names = [a["name"] for a in (await client.get("/v1/agents", headers=tenant.headers)).json()["items"]]
    assert names == ["Ava"]
    # A member's writes follow the API's rule for agents too (admin and owner only).
    member = await console()
    await member.sign_in((await api_key(client, tenant, "member"))["key"])
    assert (await member.post("/console/agents/new", {"name": "M", "language": "en-US"})).status_code == 403


async def test_another_tenants_rows_are_not_found(client: Any, console: Any, make_tenant: Any,
                                                  admin_conn: asyncpg.Connection) -> None:
    a, b = await make_tenant(), await make_tenant()
    b_agent = (await client.post("/v1/agents", json={"name": "B's agent"}, headers=b.headers)).json()
    b_call = await insert_call(admin_conn, b.id, status="ended")
    c = await console()
    await c.sign_in(a.key)
    for path in (f"/console/calls/{b_call}", f"/console/agents/{b_agent['id']}"):
        r = await c.http.get(path)
        assert r.status_code == 404, (path, r.text[:200])
        assert "Not found" in r.text and "B's agent" not in r.text
    r = await c.post(f"/console/agents/{b_agent['id']}", {"name": "Hijacked", "language": "en-US"})
    assert r.status_code == 404
    assert (await client.get(f"/v1/agents/{b_agent['id']}", headers=b.headers)).json()["name"] == "B's agent"
    assert "B&#39;s agent" not in (await c.http.get("/console/agents")).text


async def test_agent_form_reports_every_wrong_field_next_to_it(console: Any, tenant: Any, client: Any) -> None:
    c = await console()
    await c.sign_in(tenant.key)
    r = await c.post("/console/agents/new", {
        "name": "", "language": "english please", "tt-0-name": "Sales desk", "tt-0-phone": "12345",
        "tt-1-name": "", "tt-1-phone": "", "tt-1-description": "",
        "analysis_schema": '{"type": "object", "properties": {"budget": {"type": "number"}',
    })
    assert r.status_code == 422
    html = r.text
    assert re.search(r'id="name-error">Name is required<', html)
    assert re.search(r'id="language-error">Language: enter a language tag', html)
    assert re.search(r'id="tt-0-phone-error">Transfer target 1 phone number: enter the number in international', html)
    assert re.search(r'id="analysis_schema-error">Analysis schema is not valid JSON: .*line 1', html)
    assert 'aria-describedby="name-error"' in html and 'aria-invalid="true"' in html
    assert 'value="Sales desk"' in html  # what was typed comes back
    assert "4 things need fixing" in html
    # A schema that is JSON but not a valid JSON Schema: the service's own check, shown at the field.
    r = await c.post("/console/agents/new", {"name": "Ava", "language": "en-US",
                                             "analysis_schema": '{"type": "nonsense"}'})
    assert r.status_code == 422
    assert re.search(r'id="analysis_schema-error">Analysis schema: .*nonsense', r.text)
    # htmx gets only the form back, to swap in place.
    r = await c.post("/console/agents/new", {"name": "", "language": "en-US"}, headers={"HX-Request": "true"})
    assert r.status_code == 422 and r.text.lstrip().startswith("<form") and "<html" not in r.text
    assert (await client.get("/v1/agents", headers=tenant.headers)).json()["items"] == []


async def test_agent_created_and_edited_in_the_console_is_the_api_agent(
    console: Any, tenant: Any, client: Any
) -> None:
    voice = (await client.post("/v1/voices", json={"provider": "elevenlabs", "provider_voice_id": "v-ava",
                                                    "name": "Ava"}, headers=tenant.headers)).json()
    c = await console()
    await c.sign_in(tenant.key)
    new_form = await c.http.get("/console/agents/new")
    assert "Ava (elevenlabs)" in new_form.text
    r = await c.post("/console/agents/new", {
        "name": "Support", "language": "en-GB", "gender": "female", "voice_id": voice["id"],
        "agent_instructions": "Help callers.", "outbound_starter_prompt": "Hello {{first_name}}!",
        "tt-0-name": "Desk", "tt-0-phone": "+14155550100", "tt-0-description": "billing questions",
        "tt-1-name": "", "tt-1-phone": "", "tt-1-description": "",
        "analysis_schema": '{"type": "object", "properties": {"budget": {"type": "number"}}}',
    })
    assert r.status_code == 303, r.text
    agent_id = int(r.headers["location"].split("/")[3].split("?")[0])
    agent = (await client.get(f"/v1/agents/{agent_id}", headers=tenant.headers)).json()
    assert (agent["name"], agent["language"], agent["gender"], agent["voice_id"]) == ("Support", "en-GB", "female",
                                                                                      voice["id"])
    assert agent["outbound_starter_prompt"] == "Hello {{first_name}}!"
    assert agent["config"]["transfer_targets"] == [{"name": "Desk", "phone": "+14155550100",
                                                   "description": "billing questions"}]
    assert agent["analysis_schema"]["properties"] == {"budget": {"type": "number"}}
    # Settings the form does not show (here: temperature, set through the API) survive an edit from the console.
    await client.patch(f"/v1/agents/{agent_id}", json={"config": {**agent["config"], "temperature": 0.2}},
                       headers=tenant.headers)
    shown = await c.http.get(f"/console/agents/{agent_id}?saved=true")
    assert "Saved." in shown.text and "Hello {{first_name}}!" in shown.text and 'value="Desk"' in shown.text
    r = await c.post(f"/console/agents/{agent_id}", {
        "name": "Support team", "language": "en-GB", "voice_id": "", "gender": "",
        "agent_instructions": "Help callers politely.", "tt-0-name": "", "tt-0-phone": "", "tt-0-description": "",
        "analysis_schema": "",
    })
    assert r.status_code == 303 and r.headers["location"] == f"/console/agents/{agent_id}?saved=true"
    agent = (await client.get(f"/v1/agents/{agent_id}", headers=tenant.headers)).json()
    assert (agent["name"], agent["voice_id"], agent["gender"], agent["analysis_schema"]) == (
        "Support team", None, None, None)
    assert agent["config"]["transfer_targets"] == [] and agent["config"]["temperature"] == 0.2
    assert agent["outbound_starter_prompt"] is None  # an emptied prompt is cleared, as PATCH null would


async def test_autoescaping_shows_markup_as_text(console: Any, tenant: Any, client: Any) -> None:
    await client.post("/v1/agents", json={"name": "<script>alert(1)</script>"}, headers=tenant.headers)
    c = await console()
    await c.sign_in(tenant.key)
    html = (await c.http.get("/console/agents")).text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_security_headers_on_every_console_response(console: Any, tenant: Any) -> None:
    c = await console()
    responses = [await c.http.get("/console/sign-in"), await c.http.get("/console/agents"),
                 await c.http.get("/console/static/console.css")]
    await c.sign_in(tenant.key)
    responses += [await c.http.get("/console"), await c.http.get("/console/nowhere"),
                  await c.post("/console/agents/new", {}, csrf=False)]
    for r in responses:
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["x-frame-options"] == "DENY"
    assert responses[4].status_code == 404 and "no console page at this address" in responses[4].text
    assert responses[1].headers["cache-control"] == "no-store"  # the sign-in redirect
    assert (await c.http.get("/console")).headers["cache-control"] == "no-store"


async def test_pages_have_no_inline_script_or_style(console: Any, tenant: Any, client: Any,
                                                    admin_conn: asyncpg.Connection) -> None:
    agent = (await client.post("/v1/agents", json={"name": "Ava"}, headers=tenant.headers)).json()
    call = await insert_call(admin_conn, tenant.id, status="ended", agent_id=agent["id"])
    c = await console()
    signin = (await c.http.get("/console/sign-in")).text
    await c.sign_in(tenant.key)
    pages = [signin] + [(await c.http.get(p)).text for p in (
        "/console", "/console/agents", "/console/agents/new", f"/console/agents/{agent['id']}", "/console/calls",
        f"/console/calls/{call}", "/console/numbers")]
    for html in pages:
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
        assert not re.search(r"\sstyle=", html) and "<style" not in html, "inline style"
        assert not re.search(r"\son[a-z]+=", html), "inline event handler"
        for label_for in re.findall(r'<label for="([^"]+)"', html):
            assert f'id="{label_for}"' in html, f"label for a missing input: {label_for}"


# --- calls: list, filters, pages, detail, overview figures ---------------------------------------------------


async def test_calls_list_filters_pages_and_links_to_detail(
    console: Any, tenant: Any, client: Any, admin_conn: asyncpg.Connection
) -> None:
    ava = (await client.post("/v1/agents", json={"name": "Ava"}, headers=tenant.headers)).json()
    bob = (await client.post("/v1/agents", json={"name": "Bob"}, headers=tenant.headers)).json()
    now = datetime.now(UTC)
    ended = [await insert_call(admin_conn, tenant.id, status="ended", agent_id=ava["id"], duration=65,
                                cost="0.0421", created_at=now - timedelta(minutes=i)) for i in range(30)]
    failed = await insert_call(admin_conn, tenant.id, status="failed", agent_id=bob["id"], end_reason="invalid_number",
                                direction="outbound", created_at=now - timedelta(minutes=40))
    inbound = await insert_call(admin_conn, tenant.id, status="ended", direction="inbound", agent_id=bob["id"],
                                 duration=5, created_at=now - timedelta(days=3))
    c = await console()
    await c.sign_in(tenant.key)

    def ids(html: str) -> list[str]:
        return re.findall(r'<a href="/console/calls/([0-9a-f-]{36})">', html)

    first = await c.http.get("/console/calls")
    assert ids(first.text) == [str(i) for i in ended[:25]]  # newest first, 25 a page
    assert "1 min 05 s" in first.text and "0.0421 USD" in first.text and ">Ava<" in first.text
    older = re.search(r'href="(/console/calls\?cursor=[^"]+)"', first.text)
    assert older is not None
    second = await c.http.get(older.group(1).replace("&amp;", "&"))
    assert ids(second.text) == [str(i) for i in ended[25:]] + [str(failed), str(inbound)]
    assert "← Newest" in second.text

    r = await c.http.get("/console/calls", params={"status": "failed"})
    assert ids(r.text) == [str(failed)] and "invalid_number" in r.text
    r = await c.http.get("/console/calls", params={"direction": "inbound"})
    assert ids(r.text) == [str(inbound)]
    r = await c.http.get("/console/calls", params={"agent_id": str(bob["id"]), "status": "ended"})
    assert ids(r.text) == [str(inbound)]
    day = (now - timedelta(days=3)).date().isoformat()
    r = await c.http.get("/console/calls", params={"date": day})
    assert ids(r.text) == [str(inbound)]
    r = await c.http.get("/console/calls", params={"status": "exploded", "date": "31/12/2024"})
    assert r.status_code == 422
    assert 'id="status-error">Status: choose one of the listed statuses' in r.text
    assert 'id="date-error">Date: enter a day as YYYY-MM-DD' in r.text
    r = await c.http.get("/console/calls", params={"status": "cancelled"})
    assert "No calls match these filters" in r.text and "Clear the filters" in r.text
    # htmx asks for the results only.
    r = await c.http.get("/console/calls", params={"status": "failed"},
                         headers={"HX-Request": "true", "HX-Target": "call-results"})
    assert "<html" not in r.text and ids(r.text) == [str(failed)]

    detail = await c.http.get(f"/console/calls/{failed}")
    assert detail.status_code == 200
    assert str(failed) in detail.text and "invalid_number" in detail.text and ">Bob<" in detail.text


async def test_day_filter_follows_the_users_time_zone(console: Any, tenant: Any,
                                                       admin_conn: asyncpg.Connection) -> None:
    # 2024-03-10 23:30 in Los Angeles is 2024-03-11 06:30 UTC (DST began that morning).
    late = datetime(2024, 3, 11, 6, 30, tzinfo=UTC)
    call = await insert_call(admin_conn, tenant.id, status="ended", created_at=late, duration=10)
    c = await console()
    await c.sign_in(tenant.key)
    c.http.cookies.set("console_tz", "America/Los_Angeles", domain="console.test", path="/console")
    r = await c.http.get("/console/calls", params={"date": "2024-03-10"})
    assert str(call) in r.text and "2024-03-10 23:30" in r.text and "Times in America/Los_Angeles" in r.text
    assert str(call) not in (await c.http.get("/console/calls", params={"date": "2024-03-11"})).text
    c.http.cookies.set("console_tz", "Not/AZone", domain="console.test", path="/console")
    r = await c.http.get("/console/calls", params={"date": "2024-03-11"})
    assert str(call) in r.text and "2024-03-11 06:30" in r.text and "Times in UTC" in r.text


async def test_overview_figures(console: Any, tenant: Any, admin_conn: asyncpg.Connection, client: Any) -> None:
    c = await console()
    await c.sign_in(tenant.key)
    empty = await c.http.get("/console")
    assert "No calls today yet" in empty.text and "No failed calls" in empty.text
    now = datetime.now(UTC)
    await insert_call(admin_conn, tenant.id, status="ended", duration=60, created_at=now - timedelta(minutes=3))
    await insert_call(admin_conn, tenant.id, status="ended", duration=120, created_at=now - timedelta(minutes=2))
    await insert_call(admin_conn, tenant.id, status="declined", end_reason="busy", created_at=now - timedelta(minutes=2))
    await insert_call(admin_conn, tenant.id, status="failed", end_reason="provider_unavailable",
                       to="+14155550999", created_at=now - timedelta(minutes=1))
    await insert_call(admin_conn, tenant.id, status="ongoing", created_at=now)
    await insert_call(admin_conn, tenant.id, status="ended", duration=999, created_at=now - timedelta(days=2))
    await admin_conn.execute(
        """INSERT INTO billing_usage_events (tenant_id, feature_key, total_cost, currency, status, idempotency_key)
           VALUES ($1, 'voice-agent', 0.25, 'USD', 'charged', $2), ($1, 'voice-agent', 0.50, 'USD', 'voided', $3),
                  ($1, 'voice-agent', 9.00, 'USD', 'charged', $4)""",
        tenant.id, f"t:{uuid.uuid4()}", f"t:{uuid.uuid4()}", f"t:{uuid.uuid4()}")
    await admin_conn.execute("UPDATE billing_usage_events SET created_at = now() - interval '3 days' "
                             "WHERE tenant_id = $1 AND total_cost = 9", tenant.id)
    html = (await c.http.get("/console")).text

    def figure(name: str) -> str:
        m = re.search(rf'data-figure="{name}">\s*(.*?)\s*</dd>', html, re.S)
        assert m is not None, name
        return re.sub(r"\s+", " ", m.group(1))

    assert figure("live") == "1"
    assert figure("today") == "5"
    assert figure("answer-rate") == "67 %"  # 2 answered, 1 declined; the failed call never rang
    assert figure("avg-duration") == "1 min 30 s"
    assert figure("spend") == "0.25 USD"
    wallet = (await client.get("/v1/billing/wallet", headers=tenant.headers)).json()
    assert figure("balance") == f"{float(wallet['available_balance']):,.2f} {wallet['currency']}"
    assert "provider_unavailable" in html and "+14155550999" in html and "busy" not in html


async def test_live_overview_stream_sends_the_figures_and_ends_by_itself(
    console: Any, tenant: Any, app: Any, admin_conn: asyncpg.Connection, monkeypatch: Any
) -> None:
    await insert_call(admin_conn, tenant.id, status="ongoing")
    monkeypatch.setattr(app.state.console_hub, "max_stream_seconds", 0.5)
    c = await console()
    await c.sign_in(tenant.key)
    r = await c.http.get("/console/live/overview")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-store"
    events = [e for e in r.text.split("\r\n\r\n") if e.strip()]
    assert events and events[0].startswith("event: overview")
    assert re.search(r'data-figure="live">1<', events[0].replace("\r\ndata: ", "\n"))


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the app sends (asyncpg's query methods, wrapped)."""
    seen: list[str] = []
    for name in ("execute", "fetch", "fetchrow", "fetchval"):
        original = getattr(asyncpg.connection.Connection, name)

        def make(orig: Any) -> Any:
            async def counted(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
                if "pgqueuer" not in query:  # the job workers' polls run in this process too, whatever the page
                    seen.append(query)
                return await orig(self, query, *args, **kwargs)
            return counted

        monkeypatch.setattr(asyncpg.connection.Connection, name, make(original))
    return seen


async def test_pages_cost_a_few_queries_whatever_the_rows(
    console: Any, make_tenant: Any, client: Any, admin_conn: asyncpg.Connection, statements: list[str]
) -> None:
    """No N+1: a page with 25 rows sends the same statements as a page with one."""

    async def seed(tenant: Any, n: int) -> None:
        for i in range(n):
            agent = (await client.post("/v1/agents", json={"name": f"A{i}"}, headers=tenant.headers)).json()
            await client.post("/v1/numbers", json={"phone_number": f"+14152{uuid.uuid4().int % 1_000_000:06d}",
                                                   "provider": "twilio", "default_agent_id": agent["id"]},
                              headers=tenant.headers)
            await insert_call(admin_conn, tenant.id, status="failed", agent_id=agent["id"], end_reason="x")

    counts: dict[int, dict[str, int]] = {}
    sent: dict[str, list[str]] = {}
    for n in (1, 25):
        tenant = await make_tenant()
        await seed(tenant, n)
        c = await console()
        await c.sign_in(tenant.key)
        counts[n] = {}
        for path in ("/console", "/console/agents", "/console/calls", "/console/numbers"):
            statements.clear()
            assert (await c.http.get(path)).status_code == 200
            counts[n][path] = len(statements)
            sent[path] = list(statements)
    assert counts[1] == counts[25], counts
    # Session check, BEGIN+tenant, the page's reads (calls: agents and batches for the filters), COMMIT.
    assert max(counts[25].values()) <= 8, (counts, sent)


async def test_hostile_addresses_and_forms_are_never_a_500(console: Any, tenant: Any) -> None:
    c = await console()
    await c.sign_in(tenant.key)
    nasty = ["x", "-1", "0", "99999999999999999999", "9999-12-31", "0001-01-01", "%00", "\u0000", "'; --", "ä" * 300]
    for value in nasty:
        for path in ("/console/calls/{}", "/console/agents/{}"):
            r = await c.http.get(path.format(quote(value, safe="")))
            assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), (path, value)
        for name in ("status", "direction", "agent_id", "batch_id", "date", "cursor"):
            r = await c.http.get("/console/calls", params={name: value})
            assert r.status_code < 500 and r.headers["content-type"].startswith("text/html"), (name, value, r.text)
        for path in ("/console/agents", "/console/numbers"):
            r = await c.http.get(path, params={"cursor": value})
            assert r.status_code < 500, (path, value)
        r = await c.post("/console/agents/new", {"name": value, "language": value, "voice_id": value,
                                                 "gender": value, "tt-0-phone": value, "analysis_schema": value})
        assert r.status_code == 422, (value, r.text[:300])
    r = await c.http.post("/console/agents/new", content=b"\xff\xfe\x00", headers={
        "content-type": "application/x-www-form-urlencoded", "X-CSRF-Token": c.csrf})
    assert r.status_code == 422
