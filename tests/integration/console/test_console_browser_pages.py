"""Every console page in Chromium, with what people do on it: leads (search as you type, do-not-call), batches (the
live view and its controls), billing (wallet, usage, prices, an export download), settings (an API key shown once
and revoked, a webhook endpoint and its test event, a permission granted), numbers and voices (a refused value at
its field, then saved), and a call's page (transcript, player: a click on a turn seeks the recording, latency
chart, costs, analysis, events) — and as a viewer, the same pages without their actions.

Each page: no console error, no failed request, a screenshot in .artifacts/screenshots, no serious or critical
axe-core violation. Skipped (loudly) without Chromium.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest

from tests.integration.console.test_console_call import _call
from tests.support.browser import check_page, nav, sign_in, watch, why_no_browser
from tests.support.console import fund
from voice_service.recordings.service import audio_key
from voice_service.recordings.storage import storage_from_settings
from voice_service.settings import Settings
from voice_service.simulator import Simulator
from voice_service.simulator.harness import RunningService

_MISSING = why_no_browser()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(_MISSING is not None, reason=f"browser tests: {_MISSING}")]

TIMEOUT_MS = 15_000  # a step's wait; the conftest's browser default


def mp3(path: Path, seconds: float = 70.0) -> Path:
    """A real two-channel MP3 (a quiet tone) a browser can play and seek."""
    import av

    rate = 16000
    container = av.open(str(path), "w", format="mp3")
    stream = container.add_stream("libmp3lame", rate=rate, layout="stereo")
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.05 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    pcm = np.repeat(tone, 2).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
    frame.sample_rate = rate
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return path


async def _seed(base: str, tenant: Any, pg_dsn: str) -> dict[str, Any]:
    h = tenant.headers
    async with httpx.AsyncClient(base_url=base, timeout=30) as api:
        agent = (await api.post("/v1/agents", json={"name": "Ava"}, headers=h)).json()
        number = (await api.post("/v1/numbers", json={"phone_number": f"+1212555{uuid.uuid4().int % 10000:04d}",
                                                      "provider": "simulator"}, headers=h)).json()
        leads = [(await api.post("/v1/leads", json={"phone": f"+1415555{uuid.uuid4().int % 10000:04d}",
                                                    "first_name": name, "company_name": company}, headers=h)).json()
                 for name, company in (("Alice", "Acme"), ("Bob", "Initech"), ("Carol", "Globex"))]
        await fund(pg_dsn, tenant.id, "25")
        batch = (await api.post("/v1/batches", json={"agent_id": agent["id"], "from_number_id": number["id"],
                                                     "name": "Spring offer",
                                                     "entries": [{"lead_id": x["id"]} for x in leads]},
                                headers=h)).json()
    return {"agent": agent, "number": number, "leads": leads, "batch": batch}


async def test_every_page_as_the_owner(stack: tuple[Simulator, RunningService], browser: Any, make_tenant: Any,
                                       pg_dsn: str, settings: Settings, admin_conn: asyncpg.Connection,
                                       tmp_path: Path) -> None:
    from playwright.async_api import expect

    base = stack[1].base_url
    tenant = await make_tenant()
    seeded = await _seed(base, tenant, pg_dsn)
    page = await browser.new_page()
    w = watch(page)
    await sign_in(page, base, tenant.key, w)

    # Leads: search as you type (the results swap in place), do-not-call set from the list.
    await nav(page, "Leads").click()
    await expect(page.locator("#lead-results tbody tr")).to_have_count(3)
    await check_page(page, w, "p01-leads")
    await page.get_by_label("Search", exact=True).fill("ini")
    await expect(page.locator("#lead-results tbody tr")).to_have_count(1)
    await expect(page).to_have_url(re.compile(r"q=ini"))
    await page.get_by_role("button", name="Set do not call for Bob").click()
    await expect(page.get_by_role("button", name="Allow calls for Bob")).to_be_visible()
    await check_page(page, w, "p02-leads-search-dnc")
    await page.get_by_role("link", name="Bob").click()
    await expect(page.get_by_text("Batches skip this lead.")).to_be_visible()
    await check_page(page, w, "p03-lead")

    # Batches: the list, the live view, pause / resume / cancel in place.
    await nav(page, "Batches").click()
    await check_page(page, w, "p04-batches")
    await page.get_by_role("link", name="Spring offer").click()
    await expect(page.get_by_test_id("queued")).to_have_text("3")
    await check_page(page, w, "p05-batch")
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#batch-progress .badge-paused")).to_be_visible()
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator("#batch-progress .badge-running")).to_be_visible()
    await page.get_by_label("Also hang up the calls in progress").check()
    await page.get_by_role("button", name="Cancel the batch").click()
    await expect(page.get_by_text("No call was in progress.")).to_be_visible()
    await expect(page.get_by_test_id("cancelled")).to_have_text("3")
    await expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    await check_page(page, w, "p06-batch-cancelled")
    await page.get_by_role("link", name="← All batches").click()
    await page.get_by_role("link", name="New batch").click()
    await check_page(page, w, "p07-batch-new")

    # Billing: wallet and ledger, usage, prices, an export.
    await nav(page, "Billing").click()
    await expect(page.get_by_test_id("available")).to_have_text(re.compile(r"USD$"))
    await check_page(page, w, "p08-billing")
    for tab, shot in (("Usage events", "p09-usage"), ("Prices", "p10-prices"), ("Export", "p11-export")):
        await page.get_by_role("navigation", name="Billing").get_by_role("link", name=tab).click()
        await check_page(page, w, shot)
    async with page.expect_download() as download:
        await page.get_by_role("button", name="Download costs (CSV)").click()
    assert (await download.value).suggested_filename.startswith("costs-")

    # Settings: a key shown once then revoked, a webhook endpoint and its test event, a permission.
    await nav(page, "Settings").click()
    await check_page(page, w, "p12-api-keys")
    await page.get_by_label("Name").fill("CRM sync")
    await page.get_by_label("Role").select_option("viewer")
    await page.get_by_role("button", name="Create the key").click()
    key = await page.get_by_label(re.compile("API key “CRM sync”")).input_value()
    assert key.startswith("vsk_")
    await check_page(page, w, "p13-api-key-created")
    await page.get_by_role("link", name="Done").click()
    await page.get_by_role("button", name="Revoke the key CRM sync").click()
    await expect(page.get_by_text("The key is revoked")).to_be_visible()
    await page.get_by_role("navigation", name="Settings").get_by_role("link", name="Webhooks").click()
    await page.get_by_label("URL").fill("https://hooks.example.com/voice")
    await page.get_by_role("button", name="Add the endpoint").click()
    await expect(page.get_by_label("Signing secret")).to_have_value(re.compile("^whsec_"))
    await check_page(page, w, "p14-webhook-created")
    await page.get_by_role("link", name="See the endpoint").click()
    await page.get_by_role("button", name="Send a test event").click()
    await expect(page.get_by_role("cell", name="webhook_endpoint.test")).to_be_visible()
    await check_page(page, w, "p15-webhook")
    async with httpx.AsyncClient(base_url=base) as api:
        r = await api.post("/v1/api-keys", json={"name": "Mo", "role": "member", "user_email": "mo@example.com"},
                           headers=tenant.headers)
        assert r.status_code == 201
    await page.get_by_role("navigation", name="Settings").get_by_role("link", name="Permissions").click()
    await page.get_by_label("Member").select_option(label="mo@example.com")
    await page.get_by_label("Number").select_option(value=seeded["number"]["id"])
    await page.get_by_role("button", name="Grant").click()
    await expect(page.get_by_text("Granted.")).to_be_visible()
    await check_page(page, w, "p16-permissions")

    # Numbers and voices: a refused value named at its field, then saved.
    await nav(page, "Numbers").click()
    await page.get_by_label("Phone number").fill("555 0100")
    w.expect_status(422)
    await page.get_by_role("button", name="Add the number").click()
    await expect(page.locator("#phone_number-error")).to_contain_text("international format")
    await check_page(page, w, "p17-numbers-refused")
    await page.get_by_label("Phone number").fill(f"+1312555{uuid.uuid4().int % 10000:04d}")
    await page.get_by_label("Carrier").select_option("simulator")
    await page.get_by_role("button", name="Add the number").click()
    await expect(page.get_by_text("The number is added.")).to_be_visible()
    await page.get_by_role("link", name=seeded["number"]["phone_number"]).click()
    await page.get_by_label("Status").select_option("inactive")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("status")).to_have_text("Saved.")
    await check_page(page, w, "p17b-number")
    await nav(page, "Voices").click()
    await page.get_by_label("Voice id at the provider").fill("aura-2-thalia-en")
    await page.get_by_label("Name (optional)", exact=True).fill("Thalia")
    await page.get_by_role("button", name="Add the voice").click()
    await expect(page.get_by_role("link", name="Thalia")).to_be_visible()
    await check_page(page, w, "p18-voices")
    await page.get_by_role("link", name="Thalia").click()
    await check_page(page, w, "p18b-voice")
    await page.goto(f"{base}/console/settings/webhooks")
    await expect(page.get_by_role("link", name="https://hooks.example.com/voice")).to_be_visible()
    await check_page(page, w, "p18c-webhooks")
    await page.goto(f"{base}/console/leads/import")
    await check_page(page, w, "p18d-leads-import")

    # A call's page: the player seeks to the turn clicked; the latency chart, costs, analysis, events.
    call_id = await _call(admin_conn, tenant.id, recording=True)
    await storage_from_settings(settings).put(audio_key(tenant.id, call_id), mp3(tmp_path / "call.mp3"),
                                              content_type="audio/mpeg")
    await page.goto(f"{base}/console/calls/{call_id}")
    await expect(page.locator("svg.chart rect")).to_have_count(5)
    await page.get_by_role("button", name="0:03 — play from here").click()
    await page.wait_for_function("() => document.getElementById('recording').currentTime > 3.0")
    await page.evaluate("document.getElementById('recording').pause()")
    await check_page(page, w, "p19-call")
    await nav(page, "Overview").click()
    await check_page(page, w, "p20-overview")


async def test_a_viewer_sees_every_page_without_its_actions(stack: tuple[Simulator, RunningService], browser: Any,
                                                            make_tenant: Any, pg_dsn: str) -> None:
    from playwright.async_api import expect

    base = stack[1].base_url
    tenant = await make_tenant()
    seeded = await _seed(base, tenant, pg_dsn)
    async with httpx.AsyncClient(base_url=base) as api:
        viewer = (await api.post("/v1/api-keys", json={"name": "Auditor", "role": "viewer"},
                                 headers=tenant.headers)).json()
    page = await browser.new_page()
    w = watch(page)
    await sign_in(page, base, viewer["key"], w)
    checks = [
        ("/console/leads", "Import a CSV file"), ("/console/batches", "New batch"),
        (f"/console/batches/{seeded['batch']['id']}", "Cancel the batch"), ("/console/numbers", "Add the number"),
        ("/console/voices", "Add the voice"), ("/console/settings/api-keys", "Create the key"),
        ("/console/settings/webhooks", "Add the endpoint"), ("/console/settings/permissions", "Grant"),
        (f"/console/leads/{seeded['leads'][0]['id']}", "Set do not call"),
    ]
    for i, (path, action) in enumerate(checks):
        await page.goto(base + path)
        await expect(page.locator("main h1")).to_be_visible()
        await expect(page.get_by_role("button", name=action, exact=True)).to_have_count(0)
        await expect(page.get_by_role("link", name=action, exact=True)).to_have_count(0)
        await check_page(page, w, f"v{i + 1:02d}-viewer-{path.strip('/').replace('/', '-')[:40]}")
