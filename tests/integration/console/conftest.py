"""Fixtures of the console's tests: a browser-like HTTP client that signs in (`console`), the module's simulated stack
with live views refreshing every second, and Chromium driven by Playwright for the browser tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support.browser import chromium, find_chromium
from tests.support.console import Console, console_factory

BROWSER_TIMEOUT_MS = 15_000


@pytest.fixture
def console(client: Any) -> Callable[[], Awaitable[Console]]:
    """`await console()`: a fresh browser-like client with its own cookies (see tests/support/console.py)."""
    return console_factory(client)


@pytest.fixture(scope="module")
def stack_overrides() -> dict[str, Any]:
    # Live views refresh every second here (5 s by default), so the live tests need not wait long.
    return {"console_live_interval_seconds": 1.0}


@pytest.fixture(scope="module")
async def playwright() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        pw.selectors.set_test_id_attribute("data-figure")
        yield pw


@pytest.fixture
async def browser(playwright: Any) -> AsyncIterator[Any]:
    """A fresh Chromium profile per test."""
    chromium_path = find_chromium()
    assert chromium_path is not None
    async with chromium(playwright, chromium_path) as context:
        context.set_default_timeout(BROWSER_TIMEOUT_MS)
        yield context
