"""The calls domain's fixtures: its simulated stack verifies Vonage's signed webhooks with a known secret."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.calls import VONAGE_SECRET


@pytest.fixture(scope="module")
def stack_overrides() -> dict[str, Any]:
    return {"vonage_signature_secret": VONAGE_SECRET}
