"""Parameters shared by routes: list paging, and the range of agents' bigint ids."""

from __future__ import annotations

from litestar.params import QueryParameter

from voice_service.pagination import DEFAULT_LIMIT, MAX_LIMIT

Limit = QueryParameter(name="limit", ge=1, le=MAX_LIMIT, default=DEFAULT_LIMIT, description=f"page size (1–{MAX_LIMIT})")
Cursor = QueryParameter(name="cursor", default=None, max_length=200, description="`next_cursor` from the previous page")

# Agents' ids are PostgreSQL bigints: a filter outside 1..2^63-1 is a 400 naming the parameter, never a database
# error.
BIGINT_MAX = 2**63 - 1
