"""The phone numbers pages: the tenant's numbers with their carrier, status and default agent; adding a number,
changing its status or the agent that answers it, and removing it.

Writes go through the numbers service under the API's rule (admins and owners); a refused value is shown next to
its input.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Response, Template

from providers.telephony.registry import names as carrier_names
from voice_service.agents import service as agents
from voice_service.auth import Principal, writes_need
from voice_service.console import forms
from voice_service.console.templating import page
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import AppError
from voice_service.numbers import service as numbers
from voice_service.numbers.schemas import NumberCreate, NumberUpdate
from voice_service.params import QueryParameter

PAGE_SIZE = 25
STATUSES = ("active", "inactive", "suspended")
LABELS = {"phone_number": "Phone number", "provider": "Carrier", "status": "Status",
          "default_agent_id": "Answers inbound calls with", "_form": ""}


def label(key: str) -> str:
    return LABELS.get(key, key)


def number_id_of(text: str) -> uuid.UUID:
    return forms.uuid_in_path(text, "number")



def _agent(text: str, errors: dict[str, str]) -> int | None:
    if not text:
        return None
    if text.isdigit() and len(text) <= 18:
        return int(text)
    errors["default_agent_id"] = "Answers inbound calls with: choose one of your agents"
    return None


def _refusal(exc: AppError, errors: dict[str, str]) -> None:
    if exc.field is None and exc.status in (401, 403, 404):
        raise exc
    key = exc.field if exc.field in LABELS else "_form"
    errors[key] = f"{label(key)}: {exc.detail}" if key != "_form" else exc.detail


class NumberPages(Controller):
    path = "/numbers"
    guards = [writes_need("admin")]  # the API's rule for /v1/numbers

    @get("/", name="console:numbers")
    async def list_numbers(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                           cursor: str | None = QueryParameter(name="cursor", default=None, max_length=200),
                           done: str | None = QueryParameter(name="done", default=None, max_length=20)) -> Template:
        return await self._list(request, conn, principal, cursor, form={"provider": "twilio"}, errors={}, done=done)

    async def _list(self, request: Request[Any, Any, Any], conn: Any, principal: Principal, cursor: str | None, *,
                    form: dict[str, str], errors: dict[str, str], done: str | None = None,
                    status_code: int = 200) -> Template:
        result = await numbers.list_(conn, principal, PAGE_SIZE, cursor, None, None)
        agent_list = (await agents.list_(conn, principal, 200, None)).items
        notice = {"added": "The number is added.", "removed": "The number is removed."}.get(done or "")
        return page(request, "console/numbers/list.html", status_code=status_code, nav="numbers",
                    numbers=result.items, next_cursor=result.next_cursor, paged=cursor is not None,
                    agent_names={a.id: a.name for a in agent_list},
                    agent_options=[(str(a.id), a.name) for a in agent_list],
                    provider_options=[(p, p) for p in carrier_names()], form=form, errors=errors, label=label,
                    notice=notice)

    @post("/", name="console:number-create", status_code=303)
    async def create_number(self, request: Request[Any, Any, Any], principal: Caller) -> Response[Any] | Template:
        data = await request.form()
        form = {k: forms.text(data, k) for k in ("phone_number", "provider", "default_agent_id")}
        errors: dict[str, str] = {}
        values: dict[str, Any] = {"phone_number": form["phone_number"].replace(" ", ""), "provider": form["provider"],
                                  "default_agent_id": _agent(form["default_agent_id"], errors)}
        errors.update({k: v for k, v in forms.check(NumberCreate, values, key=lambda f, _: f, label=label).items()
                       if k not in errors})
        pool = request.app.state.pool
        if not errors:
            try:
                await numbers.create(request.app.state.runtime, principal, NumberCreate(**values))
            except AppError as exc:
                _refusal(exc, errors)
        if not errors:
            return Redirect("/console/numbers?done=added", status_code=303)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            return await self._list(request, conn, principal, None, form=form, errors=errors, status_code=422)

    @get("/{number_id:str}", name="console:number")
    async def show_number(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, number_id: str,
                          saved: bool = QueryParameter(name="saved", default=False)) -> Template:
        number = await numbers.get(conn, principal, number_id_of(number_id))
        form = {"status": number.status, "default_agent_id": str(number.default_agent_id or "")}
        return await self._edit(request, conn, principal, number, form, {}, saved=saved)

    async def _edit(self, request: Request[Any, Any, Any], conn: Any, principal: Principal, number: Any,
                    form: dict[str, str], errors: dict[str, str], *, saved: bool = False,
                    status_code: int = 200) -> Template:
        agent_list = (await agents.list_(conn, principal, 200, None)).items
        return page(request, "console/numbers/edit.html", status_code=status_code, nav="numbers", number=number,
                    form=form, errors=errors, label=label, saved=saved,
                    agent_options=[(str(a.id), a.name) for a in agent_list], status_options=[(s, s) for s in STATUSES],
                    agent_names={a.id: a.name for a in agent_list})

    @post("/{number_id:str}", name="console:number-update", status_code=303)
    async def update_number(self, request: Request[Any, Any, Any], principal: Caller,
                            number_id: str) -> Response[Any] | Template:
        key = number_id_of(number_id)
        data = await request.form()
        form = {k: forms.text(data, k) for k in ("status", "default_agent_id")}
        errors: dict[str, str] = {}
        values: dict[str, Any] = {"status": form["status"], "default_agent_id": _agent(form["default_agent_id"], errors)}
        errors.update({k: v for k, v in forms.check(NumberUpdate, values, key=lambda f, _: f, label=label).items()
                       if k not in errors})
        pool = request.app.state.pool
        if not errors:
            try:
                await numbers.update(request.app.state.runtime, principal, key, NumberUpdate(**values))
            except AppError as exc:
                _refusal(exc, errors)
        if not errors:
            return Redirect(f"/console/numbers/{key}?saved=true", status_code=303)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            number = await numbers.get(conn, principal, key)
            return await self._edit(request, conn, principal, number, form, errors, status_code=422)

    @post("/{number_id:str}/delete", name="console:number-delete", status_code=303)
    async def delete_number(self, request: Request[Any, Any, Any], principal: Caller, number_id: str) -> Response[Any]:
        key = number_id_of(number_id)
        async with tenant_tx(request.app.state.pool, principal.tenant_id) as conn:
            await numbers.delete(conn, principal, key)
        return Redirect("/console/numbers?done=removed", status_code=303)
