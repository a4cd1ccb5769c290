"""The calls domain's fixtures: its simulated stack verifies Vonage's signed webhooks with a known secret."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from tests.support.calls import VONAGE_SECRET


@pytest.fixture(scope="module")
def stack_overrides() -> dict[str, Any]:
    return {"vonage_signature_secret": VONAGE_SECRET}


@pytest.fixture
def make_tenant(make_tenant: Any) -> Any:
    """This domain's tests place and answer calls, which reserve their estimated cost: their tenants have credit."""
    return functools.partial(make_tenant, credit="100")
