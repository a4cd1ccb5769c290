"""The conversation domain's fixtures: the fake Deepgram, OpenAI and TTS servers (one local server per module), the
simulated stack pointed at them, and the conversation engine installed as the media sessions' handler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fakes.server import LocalServer, PathRouter
from tests.support.conversation import ENGINE, Fakes, conversation_overrides
from voice_service.calls import live
from voice_service.conversation import install
from voice_service.simulator import Simulator
from voice_service.simulator.harness import RunningService


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[Fakes]:
    f = Fakes()
    router = PathRouter({"/v1/listen": f.deepgram, "/v1/speak": f.tts, "/v1/chat": f.openai})
    async with LocalServer(router) as srv:
        f.url = srv.http_url
        yield f


@pytest.fixture(scope="module")
def stack_overrides(fakes: Fakes) -> dict[str, Any]:
    return conversation_overrides(fakes.url)


@pytest.fixture
async def engine(stack: tuple[Simulator, RunningService]) -> AsyncIterator[None]:
    """The conversation engine answers the stack's media sessions for this test (the previous handler after)."""
    previous = install(stack[1].app.state.runtime, ENGINE)
    yield
    live.session_handler_factory = previous
