"""Fixtures every integration domain may use, each defined once here (the session's database, app and tenants are
in tests/conftest.py).

A module or a domain's conftest.py changes what these give by overriding the small fixture they read, never by
copying them: `runtime_settings` (the settings `runtime` opens with), `stack_overrides` (the settings the
simulated carrier stack starts with); or by overriding `runtime` itself with a fixture that asks for the original
(`def runtime(runtime): runtime.x = …; return runtime`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.fakes.server import LocalServer, PathRouter
from tests.support.batches import RecordingPlacer, drop_batch_jobs
from tests.support.conversation import ENGINE, Fakes
from tests.support.pipeline import NoLlm
from voice_service.batches import dispatcher
from voice_service.calls import live
from voice_service.composition import open_runtime
from voice_service.conversation import install
from voice_service.runtime import Runtime
from voice_service.settings import Settings
from voice_service.simulator import Simulator
from voice_service.simulator.harness import RunningService, simulated_stack


@pytest.fixture(scope="module")
def runtime_settings(settings: Settings) -> Settings:
    """The settings `runtime` opens with: the session's, unless a module or domain overrides this fixture."""
    return settings


@pytest.fixture(scope="module")
async def runtime(runtime_settings: Settings) -> AsyncIterator[Runtime]:
    """A process Runtime (a worker's view: pool, clients, every domain's listeners) on the test database, as a
    second instance beside the test app would open it. Its analysis LLM refuses: a test never reaches a real LLM
    unless its module installs one."""
    async with open_runtime(runtime_settings, apply_migrations=False) as rt:
        rt.analysis_llm = NoLlm()
        yield rt


@pytest.fixture(scope="module")
def stack_overrides() -> dict[str, Any]:
    """Settings changed for the module's simulated stack (none unless a module or domain overrides this)."""
    return {}


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, stack_overrides: dict[str, Any]
) -> AsyncIterator[tuple[Simulator, RunningService]]:
    """The real service under uvicorn on 127.0.0.1 and the simulator playing Twilio, Vonage and the simulator
    carrier against it; one per module."""
    async with simulated_stack(settings, **stack_overrides) as pair:
        yield pair


@pytest.fixture
async def engine(stack: tuple[Simulator, RunningService]) -> AsyncIterator[None]:
    """The conversation engine answers the stack's media sessions for this test (the previous handler after)."""
    previous = install(stack[1].app.state.runtime, ENGINE)
    yield
    live.session_handler_factory = previous


@pytest.fixture
async def api(stack: tuple[Any, RunningService]) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the module's running service (`stack`)."""
    async with httpx.AsyncClient(base_url=stack[1].base_url, timeout=30) as client:
        yield client


# --- batches run in-process (the batch tests, and the call checks that also go through a batch) -----------------


@pytest.fixture
def placer(runtime: Runtime) -> RecordingPlacer:
    """`runtime` places batch calls by recording them (nothing is dialled)."""
    p = RecordingPlacer()
    runtime.batch_placer = p
    return p


@pytest.fixture
async def batch_cleanup(tenant: Any, admin_conn: asyncpg.Connection) -> AsyncIterator[None]:
    """After the test: the dispatcher's real clock back, and the tenant's queued dispatch jobs dropped (no worker
    runs them here; they must not reach a later test's worker). Modules use it with `pytest.mark.usefixtures`."""
    yield
    dispatcher.set_clock(None)
    await drop_batch_jobs(admin_conn, tenant.id)


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[Fakes]:
    """The fake Deepgram, OpenAI and TTS servers behind one local server, for the module (conversations, live
    control, recordings of real calls)."""
    f = Fakes()
    router = PathRouter({"/v1/listen": f.deepgram, "/v1/speak": f.tts, "/v1/chat": f.openai})
    async with LocalServer(router) as srv:
        f.url = srv.http_url
        yield f
