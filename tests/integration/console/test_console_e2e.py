"""The console's main flow in a real browser, on real calls: sign in → import a CSV of leads → create a batch from
them → watch its live progress reach completion → open a call → its transcript, cost breakdown and analysis.

Everything runs on this machine: the service under uvicorn with its job workers and the conversation engine, the
simulator carrier placing and answering the calls over the real media WebSocket, and the local fake Deepgram, OpenAI
and TTS servers speaking the providers' protocols. Every page: no console error, no failed request, a screenshot, an
axe-core check. Skipped (loudly) without Chromium.
"""

from __future__ import annotations

import re
import uuid
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.openai import FakeOpenAI, Reply, Text, ToolCall, ToolCalls
from tests.fakes.server import LocalServer, PathRouter
from tests.fakes.tts import FakeTts
from tests.support.browser import check_page, nav, sign_in, watch, why_no_browser
from tests.support.console import fund
from voice_service.simulator import Scenario, Simulator
from voice_service.simulator.audio import speech_like
from voice_service.simulator.harness import RunningService

_MISSING = why_no_browser()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(_MISSING is not None, reason=f"browser tests: {_MISSING}")]

TIMEOUT_MS = 20_000
CALLER_LINE = "I'd like to hear more about the offer."
GOODBYE = "Great, I will send you the details. Goodbye!"
ANALYSIS = {"summary": "The lead wants the offer's details by e-mail.", "sentiment": "positive",
            "lead_category": "warm", "success_evaluation": {"success": True, "score": 8, "reason": "Interested."},
            "lead_extraction": {"budget": 1200}}


def _respond(body: dict[str, Any]) -> Reply:
    if body.get("response_format"):  # the post-call analysis
        return Text(msgspec.json.encode(ANALYSIS).decode())
    return ToolCalls([ToolCall("end_call", {})], text=GOODBYE)


@pytest.fixture(scope="module")
async def fakes_url() -> AsyncIterator[str]:
    router = PathRouter({"/v1/listen": FakeDeepgram(script=lambda _: CALLER_LINE),
                         "/v1/speak": FakeTts(seconds_per_char=0.01, chunk_ms=40),
                         "/v1/chat": FakeOpenAI(responder=_respond)})
    async with LocalServer(router) as srv:
        yield srv.http_url


@pytest.fixture(scope="module")
def stack_overrides(fakes_url: str) -> dict[str, Any]:
    """The stack runs its job workers and the conversation engine, on the fake providers."""
    return {"console_live_interval_seconds": 1.0, "run_workers": True, "conversation_engine": True,
            "drain_timeout_seconds": 2.0, "deepgram_api_key": "test-key",
            "deepgram_base_url": fakes_url.replace("http://", "ws://"), "deepgram_http_url": fakes_url,
            "openai_api_key": "test-key", "openai_base_url": f"{fakes_url}/v1", "default_tts_provider": "deepgram",
            "default_tts_voice": "aura-2-thalia-en"}


def caller_wav(tmp_path: Path) -> str:
    """The callee: listens to the greeting, says one line, then waits for the agent to end the call."""
    rate = 16000
    audio = bytes(int(1.2 * rate) * 2) + speech_like(0.8, rate, seed=1) + bytes(int(8.0 * rate) * 2)
    path = tmp_path / f"callee-{uuid.uuid4().hex[:8]}.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(audio)
    return str(path)


async def test_import_launch_watch_and_review_a_call(stack: tuple[Simulator, RunningService], browser: Any,
                                                     make_tenant: Any, pg_dsn: str, tmp_path: Path) -> None:
    from playwright.async_api import expect

    sim, svc = stack
    base = svc.base_url
    tenant = await make_tenant()
    async with httpx.AsyncClient(base_url=base, timeout=30) as api:
        r = await api.post("/v1/agents", headers=tenant.headers, json={
            "name": "Ava", "agent_instructions": "You present the spring offer.",
            "outbound_starter_prompt": "Hi {{first_name}}, this is Ava from Acme.",
            "analysis_schema": {"type": "object", "properties": {"budget": {"type": "number"}}}})
        assert r.status_code == 201, r.text
        number = (await api.post("/v1/numbers", headers=tenant.headers, json={
            "phone_number": f"+4420794{uuid.uuid4().int % 100000:05d}", "provider": "twilio"})).json()
    await fund(pg_dsn, tenant.id, "20")
    phones = [f"+4420795{uuid.uuid4().int % 100000:05d}" for _ in range(2)]
    for phone in phones:
        sim.scenarios[phone] = Scenario(wav=caller_wav(tmp_path), hangup_after=None)

    page = await browser.new_page()
    w = watch(page)
    await sign_in(page, base, tenant.key, w)

    # Import a CSV of leads: the report says what went in and which row was refused, and why.
    await nav(page, "Leads").click()
    await expect(page.get_by_text("No leads yet.")).to_be_visible()
    await check_page(page, w, "e2e-01-leads-empty")
    await page.get_by_role("link", name="Import a CSV file").first.click()
    csv = ("phone,first_name,last_name,company_name,timezone\n"
           f"{phones[0]},Ann,Lee,Acme,Europe/London\n{phones[1]},Ben,Okafor,Globex,Europe/London\n"
           "0800-NOPE,Cy,Broken,,\n")
    await page.get_by_label("CSV file").set_input_files(
        files=[{"name": "leads.csv", "mimeType": "text/csv", "buffer": csv.encode()}])
    await page.get_by_role("button", name="Import").click()
    await expect(page.get_by_test_id("inserted")).to_have_text("2")
    await expect(page.get_by_test_id("rejected")).to_have_text("1")
    await expect(page.get_by_role("cell", name=re.compile("'0800-NOPE' is not a valid phone number"))).to_be_visible()
    await check_page(page, w, "e2e-02-import-report")

    # Select both leads and create a batch from them; the review shows the calls and the wallet reservation.
    await page.get_by_role("link", name="See the leads").click()
    await page.get_by_label("Select Ann Lee").check()
    await page.get_by_label("Select Ben Okafor").check()
    await check_page(page, w, "e2e-03-leads-selected")
    await page.get_by_role("button", name="Create a batch from the selected leads").click()
    await expect(page.get_by_text("2 leads selected")).to_be_visible()
    await page.get_by_label("Name").fill("Spring offer")
    await page.get_by_label("Agent").select_option(label="Ava")
    await page.get_by_label("Call from").select_option(value=number["id"])
    await check_page(page, w, "e2e-04-batch-form")
    await page.get_by_role("button", name="Review the batch").click()
    await expect(page.get_by_test_id("calls")).to_have_text("2")
    await expect(page.get_by_test_id("reservation")).to_have_text(re.compile(r"^\d+\.\d\d USD$"))
    await check_page(page, w, "e2e-05-batch-review")
    await page.get_by_role("button", name="Launch 2 calls").click()

    # The live progress reaches completion without a reload.
    await expect(page.get_by_role("status")).to_have_text("The batch is launched.")
    progress = page.locator("#batch-progress")
    await expect(progress.locator(".badge-completed")).to_be_visible(timeout=90_000)
    await expect(page.get_by_test_id("done-of-total")).to_have_text("2 of 2")
    await expect(page.get_by_test_id("completed")).to_have_text("2")
    await expect(page.get_by_test_id("eta")).to_have_text("finished")
    await check_page(page, w, "e2e-06-batch-completed")

    # Open a call: the transcript as a conversation, the cost breakdown with its total, the analysis.
    await page.reload()  # the entries list is not live; it shows each entry's call
    await page.get_by_role("link", name=f"Call to {phones[0]}").click()
    await expect(page.get_by_role("heading", name=re.compile("Call to"))).to_contain_text(phones[0])
    turns = page.locator("#transcript .turn-text")
    await expect(turns).to_have_text(["Hi Ann, this is Ava from Acme.", CALLER_LINE, GOODBYE])
    for _ in range(120):  # billing and the analysis run as jobs right after the call
        if await page.locator('[data-analysis="summary"]').count():
            break
        await page.wait_for_timeout(500)
        await page.reload()
    assert await page.locator('[data-analysis="summary"]').count(), await page.locator("#analysis").inner_text()
    await expect(page.get_by_test_id("cost-total")).to_have_text(re.compile(r"^0\.\d{6} USD$"))
    cost_rows = page.locator("#cost-heading + .table-wrap tbody tr")
    await expect(cost_rows.first).to_be_visible()
    assert {"telephony", "stt", "llm", "tts"} <= {
        (await c.inner_text()).split()[0] for c in await cost_rows.locator("td:first-child").all()}
    await expect(page.locator('[data-analysis="summary"]')).to_have_text(ANALYSIS["summary"])
    await expect(page.locator('[data-analysis="sentiment"]')).to_have_text("positive")
    await expect(page.locator('[data-analysis="category"]')).to_have_text("warm")
    await expect(page.locator('[data-analysis="fields"]')).to_contain_text("1200")
    await expect(page.get_by_role("cell", name="voice_call.analyzed")).to_be_visible()

    # The recording: encoded by a job after the call; the page's player plays it, and a turn seeks it.
    for _ in range(120):
        if await page.locator("audio#recording").count():
            break
        await page.wait_for_timeout(500)
        await page.reload()
    player = page.locator("audio#recording")
    await expect(player).to_have_count(1)
    await page.wait_for_function("() => document.getElementById('recording').readyState >= 1")
    duration = await page.evaluate("document.getElementById('recording').duration")
    assert duration > 1.0, duration  # the greeting, the caller's line and the goodbye
    await page.evaluate("document.getElementById('recording').muted = true")
    await page.evaluate("document.getElementById('recording').play()")
    await page.wait_for_function("() => document.getElementById('recording').currentTime > 0.5")
    await page.evaluate("document.getElementById('recording').pause()")
    await check_page(page, w, "e2e-07-call")
