"""The conversation domain's fixtures: the simulated stack pointed at the fake Deepgram, OpenAI and TTS servers
(`fakes`, tests/integration/conftest.py), and the conversation engine installed as the media sessions' handler."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.conversation import ENGINE, Fakes, conversation_overrides
from voice_service.calls import live
from voice_service.conversation import install
from voice_service.simulator import Simulator
from voice_service.simulator.harness import RunningService


@pytest.fixture(scope="module")
def stack_overrides(fakes: Fakes) -> dict[str, Any]:
    return conversation_overrides(fakes.url)


@pytest.fixture
async def engine(stack: tuple[Simulator, RunningService]) -> AsyncIterator[None]:
    """The conversation engine answers the stack's media sessions for this test (the previous handler after)."""
    previous = install(stack[1].app.state.runtime, ENGINE)
    yield
    live.session_handler_factory = previous


@pytest.fixture
def make_tenant(make_tenant: Any) -> Any:
    """This domain's tests place and answer calls, which reserve their estimated cost: their tenants have credit."""
    return functools.partial(make_tenant, credit="100")
