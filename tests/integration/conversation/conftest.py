"""The conversation domain's fixtures: the simulated stack pointed at the fake Deepgram, OpenAI and TTS servers
(`fakes`, tests/integration/conftest.py); `engine` (there too) installs the conversation engine."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from tests.support.conversation import Fakes, conversation_overrides


@pytest.fixture(scope="module")
def stack_overrides(fakes: Fakes) -> dict[str, Any]:
    return conversation_overrides(fakes.url)


@pytest.fixture
def make_tenant(make_tenant: Any) -> Any:
    """This domain's tests place and answer calls, which reserve their estimated cost: their tenants have credit."""
    return functools.partial(make_tenant, credit="100")
