"""Talk to an agent from the console in a real browser: Chromium (Debian's package, driven by Playwright) with its
fake microphone playing a WAV of speech-like audio, against the real service under uvicorn and the fake Deepgram,
OpenAI and TTS servers. The page captures the microphone through its AudioWorklet, the service's conversation engine
answers, the agent's audio plays through the page's Web Audio graph (its played-audio counter and its analyser's
level show it), the transcript shows both sides live, and hanging up ends the call, logged as a web call.

Skipped (loudly, in the test summary) when Chromium or Playwright is missing.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from tests.fakes.server import LocalServer, PathRouter
from tests.support.browser import CHROMIUM_ARGS, check_page, find_chromium, sign_in, watch, why_no_browser
from tests.support.conversation import ENGINE, Fakes, caller_wav
from tests.support.pipeline import credit
from voice_service.calls import live
from voice_service.conversation import install
from voice_service.settings import Settings
from voice_service.simulator.harness import RunningService, running_service

_MISSING = why_no_browser()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(_MISSING is not None, reason=f"browser tests: {_MISSING}"),
]

TIMEOUT_MS = 20_000
GREETING = "Hello, this is Ava from Bistro Uno."
MENU = "We have a new spring menu this week, with fresh asparagus, wild garlic soup and a rhubarb tart to finish."
REPLY = "Sure, for what time?"
HEARD = "I'd like a table for two."


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[Fakes]:
    f = Fakes()
    router = PathRouter({"/v1/listen": f.deepgram, "/v1/speak": f.tts, "/v1/chat": f.openai})
    async with LocalServer(router) as srv:
        f.url = srv.http_url
        yield f


@pytest.fixture(scope="module")
async def svc(settings: Settings, fakes: Fakes) -> AsyncIterator[RunningService]:
    def make(base_url: str) -> Settings:
        return msgspec.structs.replace(
            settings,
            public_base_url=base_url,
            deepgram_api_key="test-key",
            deepgram_base_url=fakes.url.replace("http://", "ws://"),
            deepgram_http_url=fakes.url,
            openai_api_key="test-key",
            openai_base_url=f"{fakes.url}/v1",
            default_tts_provider="deepgram",
            default_tts_voice="aura-2-thalia-en",
        )

    async with running_service(make) as running:
        previous = install(running.app.state.runtime, ENGINE)
        try:
            yield running
        finally:
            live.session_handler_factory = previous


@asynccontextmanager
async def chromium_with_microphone(wav: str) -> AsyncIterator[Any]:
    """A fresh Chromium whose microphone is Chromium's fake capture device playing `wav` once (then silence)."""
    from playwright.async_api import async_playwright

    path = find_chromium()
    assert path is not None
    profile = tempfile.mkdtemp(prefix="webcall-chromium-")
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
    ]
    try:
        async with async_playwright() as pw:
            pw.selectors.set_test_id_attribute("data-figure")
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=path,
                args=args,
                viewport={"width": 1280, "height": 900},
                timezone_id="Europe/Berlin",
                locale="en-GB",
                permissions=["microphone"],
            )
            context.set_default_timeout(TIMEOUT_MS)
            try:
                yield context
            finally:
                await context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


async def test_talk_to_the_agent_from_the_agent_page(
    svc: RunningService, fakes: Fakes, tenant: Any, admin_conn: asyncpg.Connection, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    await credit(svc.app.state.runtime, tenant.id, "10")
    # 50 ms of audio a character: the greeting's first sentence plays for 1.75 s, the second for 5.2 s.
    fakes.reset(script=[HEARD], replies=[REPLY], seconds_per_char=0.05)
    async with httpx.AsyncClient(base_url=svc.base_url, timeout=30) as api:
        r = await api.post(
            "/v1/agents",
            json={
                "name": "Ava",
                "agent_instructions": "You book tables.",
                "inbound_starter_prompt": f"{GREETING} {MENU}",
                "config": {"interrupt_min_words": 2},
            },
            headers=tenant.headers,
        )
        assert r.status_code == 201, r.text
        agent = r.json()
    # The caller lets the first sentence play, then speaks over the second (a barge-in), once. The fake microphone
    # starts when the page asks for it, a moment before the call connects: the speech lands well inside the second
    # sentence however long that moment is (up to ~3 s).
    wav = caller_wav(tmp_path, [("silence", 5.0), ("speech", 1.0), ("silence", 1.0)])

    async with chromium_with_microphone(wav) as browser:
        page = await browser.new_page()
        w = watch(page)
        await sign_in(page, svc.base_url, tenant.key, w)
        await page.goto(f"{svc.base_url}/console/agents/{agent['id']}")
        talk = page.get_by_role("region", name="Talk to this agent")
        await expect(talk).to_be_visible()
        await check_page(page, w, "20-agent-talk-ready")

        await talk.get_by_role("button", name="Talk to this agent").click()
        status = talk.locator("[data-talk-status]")
        await expect(status).to_have_text("Connected: speak now.")
        lines = talk.get_by_role("list", name="Live transcript").get_by_role("listitem")
        # Both sides, live: the greeting, what the fake microphone said, the agent's answer.
        # A line is partial (words as they come) until its turn is over: then it is final. The greeting was cut
        # where the caller spoke: the service sent `clear`, the page dropped the rest; what was heard stays.
        finals = talk.locator("[data-talk-transcript] li:not(.partial)")
        await expect(finals.filter(has_text=GREETING)).to_have_text(
            f"Agent{GREETING} (interrupted)", timeout=TIMEOUT_MS
        )
        await expect(finals.filter(has_text=HEARD)).to_have_count(1, timeout=TIMEOUT_MS)
        # Played to the end, its mark echoed.
        await expect(finals.filter(has_text=REPLY)).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(lines).to_have_count(3)
        await expect(lines.nth(0)).to_contain_text("Agent")
        await expect(lines.nth(1)).to_contain_text("You")
        # The agent's audio reached the page and played: the worklet's counter and the analyser's level.
        played = int(await talk.get_by_test_id("agent-audio-ms").inner_text())
        assert played >= 1300, played  # at least the greeting's first sentence (counted in 100 ms steps)
        peak = float(await talk.get_by_test_id("agent-level").get_attribute("data-peak") or "0")
        assert peak > 0.01, peak
        assert int(await talk.get_by_test_id("mic-frames").inner_text()) > 0
        call_id = (await talk.locator("[data-talk-call]").inner_text()).strip()
        await check_page(page, w, "21-agent-talk-live")

        await talk.get_by_role("button", name="Hang up").click()
        await expect(status).to_have_text("Call ended: you hung up.")
        await expect(talk.get_by_role("button", name="Talk to this agent")).to_be_enabled()
        await check_page(page, w, "22-agent-talk-ended")

    row = await admin_conn.fetchrow("SELECT * FROM voice_call_logs WHERE id = $1", uuid.UUID(call_id))
    assert row is not None
    assert (row["direction"], row["provider"], row["status"]) == ("web", None, "ended")
    meta = msgspec.json.decode(row["metadata"]) if isinstance(row["metadata"], str) else row["metadata"]
    assert meta["end_reason"] == "caller_hung_up" and meta["web"]["origin"] == svc.base_url
    transcripts = (
        msgspec.json.decode(row["transcripts"]) if isinstance(row["transcripts"], str) else row["transcripts"]
    )
    assert [(t["role"], t["text"], t["interrupted"]) for t in transcripts] == [
        ("agent", GREETING, True),
        ("caller", HEARD, False),
        ("agent", REPLY, False),
    ]
    assert meta["conversation"]["barge_ins"] == 1
    assert re.fullmatch(r"[0-9a-f-]{36}", call_id), transcripts


async def test_a_viewer_has_no_talk_button(svc: RunningService, tenant: Any, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=svc.base_url, timeout=30) as api:
        agent = (await api.post("/v1/agents", json={"name": "Ava"}, headers=tenant.headers)).json()
        viewer = (
            await api.post("/v1/api-keys", json={"name": "viewer", "role": "viewer"}, headers=tenant.headers)
        ).json()
    wav = caller_wav(tmp_path, [("silence", 1.0)])
    async with chromium_with_microphone(wav) as browser:
        page = await browser.new_page()
        w = watch(page)
        await sign_in(page, svc.base_url, viewer["key"], w)
        await page.goto(f"{svc.base_url}/console/agents/{agent['id']}")
        await page.get_by_role("heading", name="Ava").wait_for()
        assert await page.get_by_role("region", name="Talk to this agent").count() == 0
        w.assert_clean("viewer agent page")
