"""The API documentation page in a real Chromium with the network off: every request that leaves the service's own
address is blocked (and recorded), and the page must still render, load its script, style sheet and icon from the
service (/schema/assets/vendor/…), and list the operations, with their examples.

Skipped (loudly, in the test summary) when Chromium or Playwright is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from tests.support.browser import SCREENSHOTS, chromium, find_chromium, watch, why_no_browser
from voice_service.openapi.docs_page import ASSETS_PATH
from voice_service.settings import Settings
from voice_service.simulator.harness import RunningService, running_service

_MISSING = why_no_browser()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(_MISSING is not None, reason=f"browser tests: {_MISSING}")]


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[RunningService]:
    async with running_service(lambda url: msgspec.structs.replace(settings, public_base_url=url)) as svc:
        yield svc


@pytest.fixture(scope="module")
async def playwright() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        yield pw


@pytest.fixture
async def offline_browser(playwright: Any, service: RunningService) -> AsyncIterator[tuple[Any, list[str], list[str]]]:
    """A browser context in which only the service's own address answers; yields (context, requests to the
    service, requests blocked)."""
    chromium_path = find_chromium()
    assert chromium_path is not None
    served: list[str] = []
    blocked: list[str] = []

    async def only_the_service(route: Any) -> None:
        url = route.request.url
        if url.startswith(service.base_url + "/"):
            served.append(url)
            await route.continue_()
        else:
            blocked.append(url)
            await route.abort("internetdisconnected")

    async with chromium(playwright, chromium_path) as context:
        context.set_default_timeout(20_000)
        await context.route("**/*", only_the_service)
        yield context, served, blocked


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
async def test_the_documentation_page_renders_offline(
    offline_browser: tuple[Any, list[str], list[str]], service: RunningService, path: str
) -> None:
    context, served, blocked = offline_browser
    page = await context.new_page()
    watched = watch(page)
    response = await page.goto(service.base_url + path)
    assert response is not None and response.status == 200
    operations = page.locator(".opblock")
    await operations.first.wait_for(state="visible")
    count = await operations.count()
    assert count >= 60, count
    paths = await page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/v1/calls/export.csv" in p for p in paths) and any("/v1/event-types" in p for p in paths)

    # An operation opens on its description and its request body example.
    create_agent = page.locator("#operations-agents-createAgent")
    await create_agent.locator(".opblock-summary").click()
    await create_agent.locator(".opblock-body").wait_for(state="visible")
    body_text = await create_agent.inner_text()
    assert "Receptionist" in body_text and "Needs the admin role" in body_text
    assert "application/problem+json" in body_text

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"api-docs{path.replace('/', '-')}.png"))
    assert not blocked, f"the page reached outside the service: {blocked}"
    assets = [u for u in served if f"{ASSETS_PATH}/vendor/" in u]
    for name in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "favicon-32x32.png"):
        assert any(u.endswith(name) for u in assets), (name, served)
    watched.assert_clean(path)
