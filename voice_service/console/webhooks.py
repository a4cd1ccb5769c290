"""Settings › Webhooks: the endpoints events are pushed to, a new endpoint (its signing secret shown once), and one
endpoint's delivery log with its actions: re-enable after repeated failures, send a test event, delete.

The events service applies the API's rules (admins and owners write; the URL must be a public https address unless
the service allows otherwise); a test event is a real `webhook_endpoint.test` event, signed and delivered to that
endpoint only, and logged like any delivery.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Response, Template

from voice_service.auth import requires, writes_need
from voice_service.console import forms
from voice_service.console.templating import page
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import AppError
from voice_service.events import service as events
from voice_service.events.schemas import WebhookEndpointCreate
from voice_service.params import QueryParameter

PAGE_SIZE = 25
DELIVERY_PAGE_SIZE = 20
KNOWN_EVENTS = ("voice_call.cost_recorded", "voice_call.analyzed", "voice_call.cost_adjusted",
                "voice_call.recording_ready", "voice_call.recording_deleted")
LABELS = {"url": "URL", "description": "Description", "event_types": "Event types", "_form": ""}
_SPLIT = re.compile(r"[\s,]+")


def label(key: str) -> str:
    return LABELS.get(key.split(".")[0], key)


def endpoint_id_of(text: str) -> uuid.UUID:
    return forms.uuid_in_path(text, "webhook endpoint")



class WebhookPages(Controller):
    path = "/settings/webhooks"
    guards = [writes_need("admin")]  # the API's rule for /v1/webhook-endpoints

    @get("/", name="console:webhooks")
    async def list_endpoints(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                             cursor: str | None = QueryParameter(name="cursor", default=None, max_length=200),
                             deleted: bool = QueryParameter(name="deleted", default=False)) -> Template:
        return await self._list(request, conn, principal, cursor, form={}, errors={}, deleted=deleted)

    async def _list(self, request: Request[Any, Any, Any], conn: Any, principal: Any, cursor: str | None, *,
                    form: dict[str, str], errors: dict[str, str], deleted: bool = False,
                    status_code: int = 200) -> Template:
        result = await events.list_endpoints(conn, principal, PAGE_SIZE, cursor)
        return page(request, "console/settings/webhooks.html", status_code=status_code, nav="settings",
                    section="webhooks", endpoints=result.items, next_cursor=result.next_cursor,
                    paged=cursor is not None, form=form, errors=errors, label=label, known_events=KNOWN_EVENTS,
                    deleted=deleted)

    @post("/", name="console:webhook-create", status_code=200)
    async def create_endpoint(self, request: Request[Any, Any, Any], principal: Caller) -> Template:
        data = await request.form()
        form = {k: forms.text(data, k) for k in ("url", "description", "event_types")}
        values: dict[str, Any] = {"url": form["url"], "description": form["description"] or None,
                                  "event_types": [t for t in _SPLIT.split(form["event_types"]) if t]}
        errors = forms.check(WebhookEndpointCreate, values, key=lambda f, _: f, label=label)
        if "url" in errors and form["url"] and not re.match(r"^https?://", form["url"]):
            errors["url"] = "URL: enter the full address, starting with https://"
        if "event_types" in errors:
            errors["event_types"] = ("Event types: names such as voice_call.analyzed, separated by commas "
                                     "(at most 50)")
        state = request.app.state
        created = None
        if not errors:
            try:
                async with tenant_tx(state.pool, principal.tenant_id) as conn:
                    created = await events.create_endpoint(conn, principal, WebhookEndpointCreate(**values),
                                                           state.settings)
            except AppError as exc:
                if exc.field is None and exc.status in (401, 403):
                    raise
                key = (exc.field or "_form").split(".")[0]
                errors[key] = f"{label(key)}: {exc.detail}" if key != "_form" else exc.detail
        if created is not None:
            return page(request, "console/settings/webhook_created.html", nav="settings", section="webhooks",
                        endpoint=created)
        async with tenant_tx(state.pool, principal.tenant_id) as conn:
            return await self._list(request, conn, principal, None, form=form, errors=errors, status_code=422)

    @get("/{endpoint_id:str}", name="console:webhook")
    async def show_endpoint(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, endpoint_id: str,
                            cursor: str | None = QueryParameter(name="cursor", default=None, max_length=200),
                            done: str | None = QueryParameter(name="done", default=None, max_length=20)) -> Template:
        number = endpoint_id_of(endpoint_id)
        endpoint = await events.get_endpoint(conn, principal, number)
        deliveries = await events.list_deliveries(conn, principal, number, DELIVERY_PAGE_SIZE, cursor)
        notice = {"enabled": "The endpoint is active again: new events will be delivered to it.",
                  "tested": "A test event is on its way; its delivery shows below within a few seconds "
                            "(reload to see it)."}.get(done or "")
        return page(request, "console/settings/webhook.html", nav="settings", section="webhooks", endpoint=endpoint,
                    deliveries=deliveries.items, next_cursor=deliveries.next_cursor, paged=cursor is not None,
                    notice=notice)

    async def _act(self, request: Request[Any, Any, Any], principal: Any, endpoint_id: str, action: str
                   ) -> Response[Any]:
        number = endpoint_id_of(endpoint_id)
        async with tenant_tx(request.app.state.pool, principal.tenant_id) as conn:
            if action == "enable":
                await events.enable_endpoint(conn, principal, number)
            elif action == "test":
                await events.send_test_event(conn, principal, number)
            else:
                await events.delete_endpoint(conn, principal, number)
        if action == "delete":
            return Redirect("/console/settings/webhooks?deleted=true", status_code=303)
        done = {"enable": "enabled", "test": "tested"}[action]
        return Redirect(f"/console/settings/webhooks/{number}?done={done}", status_code=303)

    @post("/{endpoint_id:str}/enable", name="console:webhook-enable", status_code=303, guards=[requires("admin")])
    async def enable(self, request: Request[Any, Any, Any], principal: Caller, endpoint_id: str) -> Response[Any]:
        return await self._act(request, principal, endpoint_id, "enable")

    @post("/{endpoint_id:str}/test", name="console:webhook-test", status_code=303)
    async def test(self, request: Request[Any, Any, Any], principal: Caller, endpoint_id: str) -> Response[Any]:
        return await self._act(request, principal, endpoint_id, "test")

    @post("/{endpoint_id:str}/delete", name="console:webhook-delete", status_code=303)
    async def delete(self, request: Request[Any, Any, Any], principal: Caller, endpoint_id: str) -> Response[Any]:
        return await self._act(request, principal, endpoint_id, "delete")
