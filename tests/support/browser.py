"""Driving the console in a real Chromium (Debian's package) with Playwright, and what every page is checked for.

Playwright's own browser download is not used: the tests launch the system Chromium (`CHROMIUM` below) with a fresh
profile directory per browser. `Watched` records what a person would notice on each page: console errors, failed
requests, error responses; `check_page` saves a screenshot (under .artifacts/screenshots, gitignored) and runs an
axe-core accessibility check (serious and critical violations fail the test).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".artifacts" / "screenshots"
AXE_PATH = ROOT / "tests" / "vendor" / "axe-core-4.14.1.min.js"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def find_chromium() -> str | None:
    """CHROMIUM_PATH, else Debian's `chromium` on PATH (apt-get install chromium)."""
    explicit = os.environ.get("CHROMIUM_PATH")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def why_no_browser() -> str | None:
    """None when the browser tests can run; otherwise what is missing, in words for the test summary."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the `playwright` package is not installed (a dev dependency: `make install`)"
    if find_chromium() is None:
        return "no Chromium found (install Debian's: `apt-get install -y chromium`, or set CHROMIUM_PATH)"
    return None


@dataclass
class Watched:
    """What went wrong on a page, as its user would have seen or the browser logged it."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    error_responses: list[tuple[int, str]] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)
    downloads: set[str] = field(default_factory=set)

    def expect_status(self, *statuses: int) -> None:
        """The next step answers with these statuses on purpose (a refused form is a 422)."""
        self.expected_statuses.update(statuses)

    def assert_clean(self, where: str) -> None:
        unexpected = [(s, u) for s, u in self.error_responses if s not in self.expected_statuses]
        # Chromium logs every error response as a console error too; those of expected statuses are not faults.
        expected_logs = [f"status of {s}" for s in self.expected_statuses]
        errors = [e for e in self.console_errors if not any(x in e for x in expected_logs)]
        # A file download ends its request as "aborted" (the browser hands the body to the download instead).
        failed = [f for f in self.failed_requests if not (f.split(": ")[0].split(" ", 1)[1] in self.downloads
                                                         and "ERR_ABORTED" in f)]
        assert not errors, f"{where}: console errors {errors}"
        assert not failed, f"{where}: failed requests {failed}"
        assert not unexpected, f"{where}: error responses {unexpected}"
        self.console_errors.clear()
        self.failed_requests.clear()
        self.error_responses.clear()
        self.expected_statuses.clear()


def watch(page: Any) -> Watched:
    w = Watched()
    page.on("console", lambda msg: w.console_errors.append(f"{msg.text} (at {msg.location.get('url')}:"
                                                           f"{msg.location.get('lineNumber')})")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: w.console_errors.append(f"uncaught: {exc} {getattr(exc, 'stack', '')}"))

    def failed(request: Any) -> None:
        # A live view's event stream, or the tab's icon still loading, is cut when the page navigates away: that
        # is the browser leaving, not a fault (a failed response still shows in error_responses).
        aborted = "ERR_ABORTED" in (request.failure or "")
        if aborted and ("/console/live/" in request.url or request.url.split("?")[0].endswith("/favicon.svg")):
            return
        # A player that seeks cancels the range it was loading and asks for another: not a fault either.
        if request.resource_type == "media" and "ERR_ABORTED" in (request.failure or ""):
            return
        w.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

    page.on("requestfailed", failed)
    page.on("download", lambda download: w.downloads.add(download.url))
    page.on("response", lambda r: w.error_responses.append((r.status, r.url)) if r.status >= 400 else None)
    return w


@asynccontextmanager
async def chromium(playwright: Any, chromium_path: str) -> AsyncIterator[Any]:
    """A fresh browser (its own new profile directory); yields its one context."""
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    try:
        context = await playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium_path, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900},
            timezone_id="Europe/Berlin", locale="en-GB",
        )
        try:
            yield context
        finally:
            await context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


_AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.map(n => n.target.join(" ")).slice(0, 5)}));
}"""


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (the script is evaluated, not added as a <script>, so the
    page's Content-Security-Policy is not loosened for it)."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE_PATH.read_text(encoding="utf-8"))
    result: list[dict[str, Any]] = await page.evaluate(_AXE_RUN)
    return result


async def check_page(page: Any, watched: Watched, name: str) -> None:
    """A screenshot for review, no serious or critical accessibility violation, nothing failed."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"),
                          full_page=True)
    bad = [v for v in await axe_violations(page) if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: accessibility violations {bad}"
    watched.assert_clean(name)


def nav(page: Any, name: str) -> Any:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


async def sign_in(page: Any, base_url: str, key: str, watched: Watched, *, shot: str | None = None) -> None:
    await page.goto(f"{base_url}/console")
    await page.wait_for_url(re.compile(r"/console/sign-in"))
    if shot:
        await check_page(page, watched, shot)
    await page.get_by_label("API key or platform token").fill(key)
    await page.keyboard.press("Enter")  # the form works from the keyboard
    await page.wait_for_url(re.compile(r"/console$"))
