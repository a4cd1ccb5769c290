"""Call pages: the list with filters (status, direction, agent, batch, day, and the analysis' sentiment and lead
category) and pagination, and one call's page
(built in console/call_detail.py).

The list reads through the calls service exactly as `GET /v1/calls` does. A day filter is a local day in the user's
time zone: the page starts from that day's end through the service's own keyset cursor and stops at its start, so no
other query is needed. Filters and pages swap only the results when htmx is on; every link also works without it.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, get
from litestar.response import Template

from voice_service.agents import service as agents
from voice_service.batches import service as batches
from voice_service.calls import service as calls
from voice_service.calls import views as call_views
from voice_service.console.call_detail import call_context, call_id_of
from voice_service.console.clock import day_bounds, user_tz
from voice_service.console.templating import page
from voice_service.deps import Caller, Conn
from voice_service.pagination import encode_cursor
from voice_service.params import QueryParameter

PAGE_SIZE = 25
STATUSES = ("pending", "ringing", "ongoing", "ended", "declined", "cancelled", "failed")
DIRECTIONS = ("outbound", "inbound", "web")
SENTIMENTS = ("positive", "neutral", "negative")
_LAST_ID = "ffffffff-ffff-ffff-ffff-ffffffffffff"  # sorts after every id at the same instant
_Q = {"default": None, "max_length": 200}
_FIRST_DAY, _LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)


class CallFilters(msgspec.Struct, kw_only=True):
    """The filter inputs as typed (strings), kept to re-fill the form and to build page links."""

    status: str = ""
    direction: str = ""
    agent_id: str = ""
    batch_id: str = ""
    date: str = ""
    sentiment: str = ""
    category: str = ""

    def query(self, **extra: str) -> str:
        values = {k: v for k, v in msgspec.structs.asdict(self).items() if v} | {k: v for k, v in extra.items() if v}
        return urlencode(values)

    @property
    def active(self) -> bool:
        return any(msgspec.structs.asdict(self).values())


def _checked(f: CallFilters) -> tuple[dict[str, Any], date | None, dict[str, str]]:
    """The service's filters and the day, or errors that name the filter."""
    filters: dict[str, Any] = {}
    errors: dict[str, str] = {}
    day: date | None = None
    if f.status:
        if f.status in STATUSES:
            filters["status"] = f.status
        else:
            errors["status"] = "Status: choose one of the listed statuses"
    if f.direction:
        if f.direction in DIRECTIONS:
            filters["direction"] = f.direction
        else:
            errors["direction"] = "Direction: choose inbound, outbound or web"
    if f.agent_id:
        agent_id = int(f.agent_id) if f.agent_id.isdigit() and len(f.agent_id) <= 19 else 0
        if 0 < agent_id < 2**63:
            filters["agent_id"] = agent_id
        else:
            errors["agent_id"] = "Agent: choose one of your agents"
    if f.batch_id:
        try:
            filters["batch_id"] = uuid.UUID(f.batch_id)
        except ValueError:
            errors["batch_id"] = "Batch: choose one of your batches"
    if f.sentiment and f.sentiment not in SENTIMENTS:
        errors["sentiment"] = "Sentiment: choose positive, neutral or negative"
    if len(f.category) > 100:
        errors["category"] = "Category: at most 100 characters"
    if f.date:
        try:
            day = date.fromisoformat(f.date)
        except ValueError:
            errors["date"] = "Date: enter a day as YYYY-MM-DD"
        else:
            if not _FIRST_DAY <= day <= _LAST_DAY:
                day = None
                errors["date"] = f"Date: enter a day between {_FIRST_DAY} and {_LAST_DAY}"
    return filters, day, errors


class CallPages(Controller):
    path = "/calls"

    @get("/", name="console:calls")
    async def list_calls(
        self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
        status: str | None = QueryParameter(name="status", **_Q),
        direction: str | None = QueryParameter(name="direction", **_Q),
        agent_id: str | None = QueryParameter(name="agent_id", **_Q),
        batch_id: str | None = QueryParameter(name="batch_id", **_Q),
        day: str | None = QueryParameter(name="date", **_Q),
        sentiment: str | None = QueryParameter(name="sentiment", **_Q),
        category: str | None = QueryParameter(name="category", **_Q),
        cursor: str | None = QueryParameter(name="cursor", **_Q),
    ) -> Template:
        f = CallFilters(status=status or "", direction=direction or "", agent_id=agent_id or "",
                        batch_id=batch_id or "", date=day or "", sentiment=sentiment or "",
                        category=(category or "").strip())
        filters, on_day, errors = _checked(f)
        items: list[Any] = []
        next_cursor: str | None = None
        if not errors:
            start = None
            start_cursor = cursor
            if on_day is not None:
                start, end = day_bounds(on_day, user_tz(request))
                if start_cursor is None:
                    start_cursor = encode_cursor(end - timedelta(microseconds=1), _LAST_ID)
            if f.sentiment or f.category:
                result = await call_views.list_calls_by_analysis(
                    conn, principal.tenant_id, PAGE_SIZE, start_cursor, filters, sentiment=f.sentiment or None,
                    category=f.category or None)
            else:
                result = await calls.list_calls(conn, principal.tenant_id, PAGE_SIZE, start_cursor, filters)
            items, next_cursor = result.items, result.next_cursor
            if start is not None:
                kept = [c for c in items if c.created_at >= start]
                if len(kept) < len(items):
                    items, next_cursor = kept, None
        agent_list = (await agents.list_(conn, principal, 200, None)).items
        batch_list = (await batches.list_(conn, principal, 100, None, None)).items
        partial = (request.headers.get("hx-request") == "true"
                   and request.headers.get("hx-target") == "call-results")
        return page(request, "console/calls/_results.html" if partial else "console/calls/list.html",
                    status_code=422 if errors else 200, nav="calls", calls=items, next_cursor=next_cursor,
                    paged=cursor is not None, filters=f, errors=errors, statuses=STATUSES, directions=DIRECTIONS,
                    sentiments=SENTIMENTS,
                    agents=agent_list, agent_names={a.id: a.name for a in agent_list}, batches=batch_list)

    @get("/{call_id:str}", name="console:call")
    async def show_call(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, call_id: str,
                        rerun: bool = QueryParameter(name="rerun", default=False)) -> Template:
        context = await call_context(conn, principal, call_id_of(call_id))
        return page(request, "console/calls/detail.html", nav="calls", rerun=rerun, **context)
