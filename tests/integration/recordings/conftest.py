"""The recordings domain's fixtures."""

from __future__ import annotations

import functools
from typing import Any

import pytest


@pytest.fixture
def make_tenant(make_tenant: Any) -> Any:
    """This domain's tests place and answer calls, which reserve their estimated cost: their tenants have credit."""
    return functools.partial(make_tenant, credit="100")
