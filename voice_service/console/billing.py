"""Billing pages: the wallet with its reservations and ledger, the usage events, the price catalog, and the CSV
exports of calls and of their costs.

Everything is read through the billing service exactly as `/v1/billing/*` reads it; every role of the tenant may
read billing (the API's rule). The exports stream a date range's rows straight from a database cursor
(voice_service/calls/export.py), so a month of calls is never held in memory.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get
from litestar.response import Stream, Template

from voice_service.billing import service as billing
from voice_service.calls import export as calls_csv
from voice_service.console.clock import day_start, today, tz_name, user_tz
from voice_service.console.templating import page
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import NotFound
from voice_service.params import QueryParameter

PAGE_SIZE = 25
CATEGORIES = ("llm", "stt", "tts", "telephony", "enrichment", "vm_infrastructure")
FEATURES = ("voice-agent", "voice-agent-analysis")
_Q = {"default": None, "max_length": 200}
_FIRST_DAY, _LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)
MAX_EXPORT_DAYS = 366


_CALL_DEBIT = re.compile(r"^debit:voice_call:([0-9a-f-]{36})$")
_ANALYSIS_DEBIT = re.compile(r"^call analysis ([0-9a-f-]{36})$")


def ledger_call_id(key: str, description: str | None) -> str | None:
    """The call a ledger row is about (its cost, or its analysis's), for a link; None for top-ups and the rest."""
    m = _CALL_DEBIT.match(key) or _ANALYSIS_DEBIT.match(description or "")
    return m.group(1) if m else None


def _day(text: str | None, key: str, label: str, errors: dict[str, str]) -> date | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        errors[key] = f"{label}: enter a day as YYYY-MM-DD"
        return None
    if not _FIRST_DAY <= day <= _LAST_DAY:
        errors[key] = f"{label}: enter a day between {_FIRST_DAY} and {_LAST_DAY}"
        return None
    return day


def export_range(start: str | None, end: str | None, tz: Any) -> tuple[date, date, dict[str, str]]:
    """The export's days (first and last, inclusive, in the user's zone): this month so far by default."""
    errors: dict[str, str] = {}
    now = today(tz)
    first = _day(start, "from", "From", errors) or now.replace(day=1)
    last = _day(end, "to", "To", errors) or now
    if not errors:
        if last < first:
            errors["to"] = "To: choose a day on or after the first day"
        elif (last - first).days >= MAX_EXPORT_DAYS:
            errors["to"] = f"To: an export covers at most {MAX_EXPORT_DAYS} days; export a year at a time"
    return first, last, errors


class BillingPages(Controller):
    path = "/billing"

    @get("/", name="console:billing")
    async def wallet(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                     cursor: str | None = QueryParameter(name="cursor", **_Q)) -> Template:
        held = await billing.get_wallet(conn, principal, request.app.state.settings.enforce_wallet_balance)
        ledger = await billing.list_ledger(conn, principal, PAGE_SIZE, cursor)
        first, last, _ = export_range(None, None, user_tz(request))
        return page(request, "console/billing/wallet.html", nav="billing", section="wallet", wallet=held,
                    ledger=ledger.items, next_cursor=ledger.next_cursor, paged=cursor is not None,
                    export_from=first.isoformat(), export_to=last.isoformat(), errors={}, call_of=ledger_call_id)

    @get("/usage", name="console:billing-usage")
    async def usage(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                    feature: str | None = QueryParameter(name="feature", **_Q),
                    cursor: str | None = QueryParameter(name="cursor", **_Q)) -> Template:
        errors: dict[str, str] = {}
        if feature and feature not in FEATURES:
            errors["feature"] = "Kind: choose calls or analyses"
        items: list[Any] = []
        next_cursor = None
        if not errors:
            result = await billing.list_usage_events(conn, principal, PAGE_SIZE, cursor, feature_key=feature or None,
                                                     call_id=None)
            items, next_cursor = result.items, result.next_cursor
        return page(request, "console/billing/usage.html", status_code=422 if errors else 200, nav="billing",
                    section="usage", events=items, next_cursor=next_cursor, paged=cursor is not None,
                    feature=feature or "", features=FEATURES, errors=errors,
                    query=urlencode({"feature": feature}) if feature else "")

    @get("/prices", name="console:billing-prices")
    async def prices(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                     category: str | None = QueryParameter(name="category", **_Q)) -> Template:
        errors: dict[str, str] = {}
        if category and category not in CATEGORIES:
            errors["category"] = "Category: choose one of the listed categories"
        items: list[Any] = []
        if not errors:
            items = (await billing.list_prices(conn, principal, category=category or None, provider=None,
                                               include_inactive=False)).items
        return page(request, "console/billing/prices.html", status_code=422 if errors else 200, nav="billing",
                    section="prices", prices=items, category=category or "", categories=CATEGORIES, errors=errors)

    @get("/export", name="console:billing-export")
    async def export_form(self, request: Request[Any, Any, Any],
                          start: str | None = QueryParameter(name="from", **_Q),
                          end: str | None = QueryParameter(name="to", **_Q)) -> Template:
        first, last, errors = export_range(start, end, user_tz(request))
        return page(request, "console/billing/export.html", status_code=422 if errors else 200, nav="billing",
                    section="export", export_from=start or first.isoformat(), export_to=end or last.isoformat(),
                    errors=errors)

    @get("/export/{kind:str}", name="console:billing-export-file")
    async def export_file(self, request: Request[Any, Any, Any], principal: Caller, kind: str,
                          start: str | None = QueryParameter(name="from", **_Q),
                          end: str | None = QueryParameter(name="to", **_Q)) -> Stream | Template:
        if kind not in ("calls.csv", "costs.csv"):
            raise NotFound("there is no such export; choose calls.csv or costs.csv")
        tz = user_tz(request)
        first, last, errors = export_range(start, end, tz)
        if errors:
            return page(request, "console/billing/export.html", status_code=422, nav="billing", section="export",
                        export_from=start or "", export_to=end or "", errors=errors)
        since, until = day_start(first, tz), day_start(last + timedelta(days=1), tz)
        pool = request.app.state.pool
        writer = calls_csv.call_rows if kind == "calls.csv" else calls_csv.cost_rows

        async def body() -> AsyncIterator[bytes]:
            async with tenant_tx(pool, principal.tenant_id) as conn:
                async for chunk in writer(conn, principal.tenant_id, since, until, tz):
                    yield chunk

        name = f"{kind.removesuffix('.csv')}-{first.isoformat()}-to-{last.isoformat()}.csv"
        return Stream(body(), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store",
            "X-Time-Zone": tz_name(tz),
        })
