"""Lead pages: the searchable list (with a selection to launch a batch from), one lead, do-not-call set and lifted,
and the CSV import with its row report.

Reads and writes go through the leads service and the importer with the API's rule (members and up write); the
import is the API's own (`importer.run_import`), so the console reports exactly what `POST /v1/leads/import` would.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.response import Redirect, Response, Template

from voice_service.auth import requires, writes_need
from voice_service.calls import service as calls
from voice_service.console import forms
from voice_service.console.templating import page
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import AppError
from voice_service.leads import importer
from voice_service.leads import service as leads
from voice_service.leads.schemas import LeadUpdate
from voice_service.params import QueryParameter

PAGE_SIZES = (25, 50, 100, 200)
_Q = {"default": None, "max_length": 200}
CALLS_SHOWN = 10
MAX_SEARCH_CHARS = 200


def lead_id_of(text: str) -> uuid.UUID:
    return forms.uuid_in_path(text, "lead")


class LeadFilters(msgspec.Struct, kw_only=True):
    q: str = ""
    dnc: str = ""  # "", "yes", "no"
    per_page: int = PAGE_SIZES[0]

    def query(self, **extra: str) -> str:
        values: dict[str, Any] = {"q": self.q, "dnc": self.dnc}
        if self.per_page != PAGE_SIZES[0]:
            values["per_page"] = str(self.per_page)
        return urlencode({k: v for k, v in {**values, **extra}.items() if v})

    @property
    def active(self) -> bool:
        return bool(self.q or self.dnc)


def _filters(q: str | None, dnc: str | None, per_page: str | None) -> tuple[LeadFilters, dict[str, str]]:
    errors: dict[str, str] = {}
    size = PAGE_SIZES[0]
    if per_page:
        if per_page.isdigit() and int(per_page) in PAGE_SIZES:
            size = int(per_page)
        else:
            errors["per_page"] = "Leads per page: choose 25, 50, 100 or 200"
    if q and len(q.strip()) > MAX_SEARCH_CHARS:
        errors["q"] = f"Search: at most {MAX_SEARCH_CHARS} characters"
        q = ""
    if dnc and dnc not in ("yes", "no"):
        errors["dnc"] = "Do not call: choose yes, no or either"
        dnc = ""
    return LeadFilters(q=(q or "").strip(), dnc=dnc or "", per_page=size), errors


class LeadPages(Controller):
    path = "/leads"
    guards = [writes_need("member")]  # the API's rule for /v1/leads

    @get("/", name="console:leads")
    async def list_leads(
        self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
        q: str | None = QueryParameter(name="q", default=None, max_length=2000),
        dnc: str | None = QueryParameter(name="dnc", **_Q),
        per_page: str | None = QueryParameter(name="per_page", **_Q),
        cursor: str | None = QueryParameter(name="cursor", **_Q),
    ) -> Template:
        f, errors = _filters(q, dnc, per_page)
        items: list[Any] = []
        next_cursor = None
        if not errors:
            result = await leads.search(conn, principal, f.per_page, cursor, text=f.q or None,
                                        do_not_call={"yes": True, "no": False}.get(f.dnc))
            items, next_cursor = result.items, result.next_cursor
        partial = request.headers.get("hx-target") == "lead-results"
        return page(request, "console/leads/_results.html" if partial else "console/leads/list.html",
                    status_code=422 if errors else 200, nav="leads", leads=items, next_cursor=next_cursor,
                    paged=cursor is not None, filters=f, errors=errors, page_sizes=PAGE_SIZES)

    @get("/import", name="console:leads-import", guards=[requires("member")])
    async def import_form(self, request: Request[Any, Any, Any]) -> Template:
        return page(request, "console/leads/import.html", nav="leads", errors={}, report=None)

    @post("/import", name="console:leads-import-submit", status_code=200,
          request_max_body_size=importer.MAX_BYTES + 64 * 1024)
    async def import_leads(self, request: Request[Any, Any, Any], principal: Caller) -> Template:
        form = await request.form()
        upload = form.get("file")
        errors: dict[str, str] = {}
        report = None
        body = await upload.read() if isinstance(upload, UploadFile) else b""
        if not body.strip():
            errors["file"] = "CSV file: choose a CSV file of leads (a header row with a phone column, then one lead a row)"
        else:
            try:
                async with tenant_tx(request.app.state.pool, principal.tenant_id) as conn:
                    report = await importer.run_import(conn, principal, "text/csv", {}, body)
            except AppError as exc:
                if exc.status in (401, 403):
                    raise
                errors["file"] = f"CSV file: {exc.detail}"
        return page(request, "console/leads/import.html", status_code=422 if errors else 200, nav="leads",
                    errors=errors, report=report, filename=upload.filename if isinstance(upload, UploadFile) else "")

    @get("/{lead_id:str}", name="console:lead")
    async def show_lead(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, lead_id: str,
                        saved: bool = QueryParameter(name="saved", default=False)) -> Template:
        lead = await leads.get(conn, principal, lead_id_of(lead_id))
        recent = await calls.list_calls(conn, principal.tenant_id, CALLS_SHOWN, None, {"lead_id": lead.id})
        return page(request, "console/leads/detail.html", nav="leads", lead=lead, calls=recent.items,
                    more_calls=recent.next_cursor is not None, saved=saved, errors={})

    @post("/{lead_id:str}/do-not-call", name="console:lead-dnc", status_code=200)
    async def set_do_not_call(self, request: Request[Any, Any, Any], principal: Caller,
                              lead_id: str) -> Template | Response[Any]:
        """Set (with an optional reason) or lift a lead's do-not-call flag; htmx swaps the list row or the panel."""
        number = lead_id_of(lead_id)
        form = await request.form()
        value = form.get("do_not_call")
        reason = form.get("reason")
        reason = reason.strip() if isinstance(reason, str) else ""
        if value not in ("true", "false"):
            return Response("Do not call: choose to set or lift it.", status_code=422, media_type="text/plain")
        errors: dict[str, str] = {}
        if len(reason) > 2000:
            errors["reason"] = "Reason: at most 2000 characters"
        update = LeadUpdate(do_not_call=value == "true",
                            do_not_call_reason=(reason or None) if value == "true" else None)
        async with tenant_tx(request.app.state.pool, principal.tenant_id) as conn:
            if errors:
                lead = await leads.get(conn, principal, number)
            else:
                lead = await leads.update(conn, principal, number, update)
        target = request.headers.get("hx-target") or ""
        if target.startswith("lead-row-"):
            return page(request, "console/leads/_row.html", lead=lead)
        if target == "dnc-panel":
            return page(request, "console/leads/_dnc.html", status_code=422 if errors else 200, lead=lead,
                        errors=errors)
        if errors:
            return page(request, "console/leads/detail.html", status_code=422, nav="leads", lead=lead, calls=[],
                        more_calls=False, saved=False, errors=errors)
        return Redirect(f"/console/leads/{lead.id}?saved=true", status_code=303)
