"""Parameters shared by routes: list paging, and the bigint ids of agents (in paths and filters)."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter, QueryParameter

from voice_service.pagination import DEFAULT_LIMIT, MAX_LIMIT

Limit = QueryParameter(name="limit", ge=1, le=MAX_LIMIT, default=DEFAULT_LIMIT, description=f"page size (1–{MAX_LIMIT})")
Cursor = QueryParameter(name="cursor", default=None, max_length=200, description="`next_cursor` from the previous page")

# Agents' ids are PostgreSQL bigints: a value outside 1..2^63-1 is a 400 naming the parameter, never a database error.
BIGINT_MAX = 2**63 - 1
AgentId = Annotated[int, Parameter(ge=1, le=BIGINT_MAX, description="the agent's id")]
