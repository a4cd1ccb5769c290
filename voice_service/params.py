"""Parameters shared by routes: list paging, the range of agents' bigint ids, and the typed way handlers declare
query parameters."""

from __future__ import annotations

from typing import Any

from litestar.params import QueryParameter as _QueryParameter

from voice_service.pagination import DEFAULT_LIMIT, MAX_LIMIT


def QueryParameter(**declaration: Any) -> Any:  # noqa: N802 (it stands in for Litestar's class of that name)
    """Litestar's `QueryParameter(...)` as a handler argument's default (`limit: int = QueryParameter(…)`).

    The same marker object, typed Any (as Litestar's own `Parameter()` function is) so that the type checker
    sees the argument's declared type rather than the marker's class."""
    return _QueryParameter(**declaration)


Limit = QueryParameter(name="limit", ge=1, le=MAX_LIMIT, default=DEFAULT_LIMIT, description=f"page size (1–{MAX_LIMIT})")
Cursor = QueryParameter(name="cursor", default=None, max_length=200, description="`next_cursor` from the previous page")

# Agents' ids are PostgreSQL bigints: a filter outside 1..2^63-1 is a 400 naming the parameter, never a database
# error.
BIGINT_MAX = 2**63 - 1
