"""The console in a real browser: Chromium (Debian's package) driven by Playwright against the real service under
uvicorn on 127.0.0.1, with the simulator carrier placing real calls.

A walk through as the owner (sign in → overview → agents: create with a refused value shown at its field, then edit →
calls list and filters → call detail → numbers → sign out), the overview's live update, a viewer who cannot act, and a
signed-out browser that reaches no page. Every page: no console errors, no failed requests, a screenshot
(.artifacts/screenshots) and an axe-core check with no serious or critical violation.

Skipped (loudly, in the test summary) when Chromium or Playwright is missing.
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from tests.support.browser import check_page, nav, sign_in, watch, why_no_browser
from voice_service.simulator import Scenario, Simulator
from voice_service.simulator.harness import RunningService


@pytest.fixture
def make_tenant(make_tenant: Any) -> Any:
    """These tests place and answer calls, which reserve their estimated cost: their tenants have credit."""
    return functools.partial(make_tenant, credit="100")


_MISSING = why_no_browser()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(_MISSING is not None, reason=f"browser tests: {_MISSING}")]



def _phone() -> str:
    return f"+4420794{uuid.uuid4().int % 100000:05d}"


async def _seed_calls(api: httpx.AsyncClient, sim: Simulator, tenant: Any) -> dict[str, Any]:
    """An agent and a number made through the API, and two calls through the simulator: one answered and ended,
    one the carrier refused."""
    h = tenant.headers
    agent = (await api.post("/v1/agents", json={"name": "Greeter", "outbound_starter_prompt": "Hello!"},
                            headers=h)).json()
    number = (await api.post("/v1/numbers", json={"phone_number": _phone(), "provider": "twilio",
                                                  "default_agent_id": agent["id"]}, headers=h)).json()
    answered_to, refused_to = _phone(), _phone()
    sim.scenarios[answered_to] = Scenario(talk_seconds=0.5, hangup_after=0.2)
    sim.scenarios[refused_to] = Scenario(rest_status=400)
    calls = {}
    for name, to in (("answered", answered_to), ("refused", refused_to)):
        r = await api.post("/v1/calls", json={"agent_id": agent["id"], "from_number_id": number["id"], "to": to},
                           headers=h)
        assert r.status_code == 201, r.text
        calls[name] = r.json()
    for _ in range(300):
        call = (await api.get(f"/v1/calls/{calls['answered']['id']}", headers=h)).json()
        if call["status"] == "ended":
            break
        await asyncio.sleep(0.05)
    assert call["status"] == "ended", call
    refused = (await api.get(f"/v1/calls/{calls['refused']['id']}", headers=h)).json()
    assert refused["status"] == "failed", refused
    return {"agent": agent, "number": number, "answered": call, "refused": refused}


async def test_owner_walks_through_the_console(
    stack: tuple[Simulator, RunningService], api: httpx.AsyncClient, browser: Any, tenant: Any
) -> None:
    from playwright.async_api import expect

    sim, svc = stack
    seeded = await _seed_calls(api, sim, tenant)
    page = await browser.new_page()
    w = watch(page)
    base = svc.base_url

    await sign_in(page, base, tenant.key, w, shot="01-sign-in")
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await expect(page.get_by_test_id("today")).to_have_text("2")
    await expect(page.get_by_test_id("answer-rate")).to_have_text("100 %")
    failures = page.get_by_role("region", name="Last failures")
    await expect(failures).to_contain_text(seeded["refused"]["to"])
    await expect(failures).to_contain_text(seeded["refused"]["end_reason"])
    await check_page(page, w, "02-overview")

    # Agents: the list, then a new agent refused for two wrong fields, each error next to its input.
    await nav(page, "Agents").click()
    await expect(page.get_by_role("link", name="Greeter")).to_be_visible()
    await check_page(page, w, "03-agents")
    await page.get_by_role("link", name="New agent").click()
    await expect(page.get_by_role("heading", name="New agent")).to_be_visible()
    await check_page(page, w, "04-agent-new")
    await page.get_by_label("Name", exact=True).fill("Closer")
    await page.get_by_label("Greeting on outbound calls").fill("Hi {{first_name}}, it's Sam from Acme.")
    await page.locator("#tt-0-name").fill("Sales desk")
    await page.locator("#tt-0-phone").fill("12345")
    await page.get_by_label("Analysis schema").fill('{"type": "object", "properties": {"budget": ')
    w.expect_status(422)
    await page.get_by_role("button", name="Create agent").click()
    await expect(page.locator("#tt-0-phone-error")).to_contain_text("Transfer target 1 phone number: enter the "
                                                                    "number in international format")
    await expect(page.locator("#analysis_schema-error")).to_contain_text("Analysis schema is not valid JSON")
    await expect(page.locator("[data-error-summary]")).to_be_focused()
    await expect(page.locator("#tt-0-phone")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#tt-0-name")).to_have_value("Sales desk")  # what was typed is kept
    await check_page(page, w, "05-agent-refused")
    await page.locator("#tt-0-phone").fill("+14155550100")
    await page.get_by_label("Analysis schema").fill('{"type": "object", "properties": {"budget": {"type": "number"}}}')
    await page.get_by_role("button", name="Create agent").click()
    await expect(page.get_by_role("status")).to_have_text("Saved.")
    await expect(page.get_by_role("heading", name="Edit agent: Closer")).to_be_visible()
    agent_id = int(re.search(r"/console/agents/(\d+)", page.url).group(1))  # type: ignore[union-attr]
    await check_page(page, w, "06-agent-saved")

    # Edit: another transfer target through the htmx "add" button, a new name.
    await page.get_by_label("Name", exact=True).fill("Closer (EU)")
    await page.get_by_role("button", name="Add a transfer target").click()
    await expect(page.locator("#tt-2-name")).to_be_visible()
    await page.locator("#tt-2-name").fill("Manager")
    await page.locator("#tt-2-phone").fill("+442079460000")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("heading", name="Edit agent: Closer (EU)")).to_be_visible()
    agent = (await api.get(f"/v1/agents/{agent_id}", headers=tenant.headers)).json()
    assert agent["name"] == "Closer (EU)"
    assert [t["name"] for t in agent["config"]["transfer_targets"]] == ["Sales desk", "Manager"]
    assert agent["outbound_starter_prompt"] == "Hi {{first_name}}, it's Sam from Acme."
    assert agent["analysis_schema"]["properties"]["budget"] == {"type": "number"}
    await check_page(page, w, "07-agent-edited")

    # Calls: both calls, a filter applied in place (htmx) with the address kept in step, then one call's record.
    await nav(page, "Calls").click()
    rows = page.locator("#call-results tbody tr")
    await expect(rows).to_have_count(2)
    await check_page(page, w, "08-calls")
    await page.get_by_label("Status").select_option("failed")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(seeded["refused"]["end_reason"])
    await expect(page).to_have_url(re.compile(r"status=failed"))
    await check_page(page, w, "09-calls-failed")
    await page.get_by_label("Status").select_option("")
    await expect(rows).to_have_count(2)
    await page.locator(f'a[href="/console/calls/{seeded["answered"]["id"]}"]').click()
    await expect(page.get_by_role("heading", name=re.compile("Call to"))).to_contain_text(seeded["answered"]["to"])
    await expect(page.locator("dl.facts")).to_contain_text(seeded["answered"]["id"])
    await expect(page.locator("dl.facts")).to_contain_text("Greeter")
    await check_page(page, w, "10-call-detail")

    await nav(page, "Numbers").click()
    await expect(page.get_by_role("cell", name=seeded["number"]["phone_number"])).to_be_visible()
    await check_page(page, w, "11-numbers")

    # Signed out, no page opens again: the browser lands on the sign-in page.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("You have signed out.")).to_be_visible()
    for path in ("/console", "/console/agents", f"/console/agents/{agent_id}", "/console/calls"):
        await page.goto(base + path)
        await expect(page.get_by_role("heading", name="Sign in to the voice console")).to_be_visible()
    w.assert_clean("after sign-out")


async def test_overview_updates_live(stack: tuple[Simulator, RunningService], browser: Any, tenant: Any,
                                     admin_conn: asyncpg.Connection) -> None:
    from playwright.async_api import expect

    page = await browser.new_page()
    w = watch(page)
    await sign_in(page, stack[1].base_url, tenant.key, w)
    await expect(page.get_by_test_id("live")).to_have_text("0")
    await admin_conn.execute(
        """INSERT INTO voice_call_logs (id, tenant_id, created_at, status, direction, provider, started_at, to_e164,
                                        metadata)
           SELECT uuid_v7(now()), $1, now(), 'ongoing', 'outbound', 'twilio', now(), '+14155550123', $2::jsonb""",
        tenant.id, msgspec.json.encode({}).decode())
    # No reload: the figure changes through the page's event stream.
    await expect(page.get_by_test_id("live")).to_have_text("1")
    await expect(page.get_by_test_id("today")).to_have_text("1")
    await check_page(page, w, "12-overview-live")


async def test_a_viewer_sees_but_cannot_act(stack: tuple[Simulator, RunningService], api: httpx.AsyncClient,
                                            browser: Any, tenant: Any) -> None:
    from playwright.async_api import expect

    base = stack[1].base_url
    agent = (await api.post("/v1/agents", json={"name": "Ava", "agent_instructions": "Be brief."},
                            headers=tenant.headers)).json()
    viewer = (await api.post("/v1/api-keys", json={"name": "Auditor", "role": "viewer"},
                             headers=tenant.headers)).json()
    page = await browser.new_page()
    w = watch(page)
    await sign_in(page, base, viewer["key"], w)
    await expect(page.locator(".who")).to_contain_text("viewer")
    await nav(page, "Agents").click()
    await expect(page.get_by_role("link", name="Ava")).to_be_visible()
    await expect(page.get_by_role("link", name="New agent")).to_have_count(0)
    await page.get_by_role("link", name="Ava").click()
    await expect(page.get_by_text("Be brief.")).to_be_visible()
    await expect(page.locator("form#agent-form")).to_have_count(0)
    await check_page(page, w, "13-agent-as-viewer")
    # Even a hand-made request with this session's valid CSRF token is refused by the role check.
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    r = await page.request.post(f"{base}/console/agents/{agent['id']}",
                                form={"_csrf": token, "name": "Renamed", "language": "en-US"}, max_redirects=0)
    assert r.status == 403
    w.expect_status(403)
    await page.goto(f"{base}/console/agents/new")
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    await check_page(page, w, "14-viewer-refused")
    assert (await api.get(f"/v1/agents/{agent['id']}", headers=tenant.headers)).json()["name"] == "Ava"


async def test_session_cookie_and_signed_out_browser(stack: tuple[Simulator, RunningService], browser: Any,
                                                     tenant: Any) -> None:
    from playwright.async_api import expect

    base = stack[1].base_url
    page = await browser.new_page()
    w = watch(page)
    for path in ("/console", "/console/calls", "/console/numbers", f"/console/calls/{uuid.uuid4()}"):
        await page.goto(base + path)
        await expect(page.get_by_role("heading", name="Sign in to the voice console")).to_be_visible()
    await sign_in(page, base, tenant.key, w)
    cookies = {c["name"]: c for c in await browser.cookies()}
    session = cookies["console_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax" and session["path"] == "/console"
    assert session["secure"] is False  # served over plain http on 127.0.0.1 (https: Secure, see test_console.py)
    assert cookies["console_tz"]["value"] == "Europe%2FBerlin"  # the browser's zone, reported by console.js
    # The page's scripts cannot read the session, and browser storage holds neither credential nor page content
    # (htmx keeps only the current path there; its page snapshots are turned off).
    assert "console_session" not in await page.evaluate("document.cookie")
    stored = await page.evaluate(
        "JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
    csrf = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert tenant.key not in stored and csrf not in stored and session["value"] not in stored
    assert "htmx-history-cache" not in stored and await page.evaluate("localStorage.length") == 0
    w.assert_clean("cookies")
