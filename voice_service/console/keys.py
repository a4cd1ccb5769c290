"""Settings › API keys: the tenant's keys (never the keys themselves), a new key shown once, revoking a key.

The tenancy service applies the API's rules: admins and owners manage keys, a key never gets a role above its
creator's, and a key revokes keys of at most its own role. Revoking evicts the key from this process's cache at
once (as `DELETE /v1/api-keys/{id}` does) and ends every console session signed in with it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Response, Template

from voice_service.auth import ROLES, requires, writes_need
from voice_service.console import forms
from voice_service.console.clock import user_tz
from voice_service.console.templating import page
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import AppError, NotFound
from voice_service.params import QueryParameter
from voice_service.tenancy import service as tenancy
from voice_service.tenancy.schemas import ApiKeyCreate

PAGE_SIZE = 25
LABELS = {"name": "Name", "role": "Role", "user_email": "Member's e-mail", "expires_on": "Expires on",
          "_form": ""}


def label(key: str) -> str:
    return LABELS.get(key, key)



class ApiKeyPages(Controller):
    path = "/settings"
    guards = [writes_need("admin")]  # the API's rule for /v1/api-keys

    @get("/", name="console:settings")
    async def settings(self) -> Redirect:
        return Redirect("/console/settings/api-keys", status_code=303)

    @get("/api-keys", name="console:api-keys")
    async def list_keys(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                        cursor: str | None = QueryParameter(name="cursor", default=None, max_length=200),
                        revoked: bool = QueryParameter(name="revoked", default=False)) -> Template:
        return await self._page(request, conn, principal, cursor=cursor, form={"role": "member"}, errors={},
                                revoked=revoked)

    async def _page(self, request: Request[Any, Any, Any], conn: Any, principal: Any, *, cursor: str | None,
                    form: dict[str, str], errors: dict[str, str], revoked: bool = False,
                    status_code: int = 200) -> Template:
        result = await tenancy.list_api_keys(conn, principal, PAGE_SIZE, cursor)
        roles = [r for r in ROLES if principal.at_least(r)]
        return page(request, "console/settings/api_keys.html", status_code=status_code, nav="settings",
                    section="api-keys", keys=result.items, next_cursor=result.next_cursor, paged=cursor is not None,
                    form=form, errors=errors, roles=list(reversed(roles)), label=label, revoked=revoked,
                    now=datetime.now(UTC))

    @post("/api-keys", name="console:api-key-create", status_code=200)
    async def create_key(self, request: Request[Any, Any, Any], principal: Caller) -> Template:
        data = await request.form()
        form = {k: forms.text(data, k) for k in ("name", "role", "user_email", "expires_on")}
        values: dict[str, Any] = {"name": form["name"], "role": form["role"] or "member"}
        errors: dict[str, str] = {}
        if form["user_email"]:
            values["user_email"] = form["user_email"]
        if form["expires_on"]:
            try:
                day = date.fromisoformat(form["expires_on"])
            except ValueError:
                errors["expires_on"] = "Expires on: enter a day as YYYY-MM-DD"
            else:
                expires = datetime.combine(day, time.max, tzinfo=user_tz(request)).astimezone(UTC)
                if expires <= datetime.now(UTC):
                    errors["expires_on"] = "Expires on: choose a day in the future"
                values["expires_at"] = expires
        errors.update(forms.check(ApiKeyCreate, values, key=lambda f, _: f, label=label))
        created = None
        pool = request.app.state.pool
        if not errors:
            try:
                async with tenant_tx(pool, principal.tenant_id) as conn:
                    created = await tenancy.create_api_key(conn, principal, ApiKeyCreate(**values))
            except AppError as exc:
                if exc.field is None and exc.status in (401, 403):
                    raise
                errors[exc.field or "_form"] = f"{label(exc.field or '_form')}: {exc.detail}".lstrip(": ")
        if created is not None:
            return page(request, "console/settings/api_key_created.html", nav="settings", section="api-keys",
                        key=created)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            return await self._page(request, conn, principal, cursor=None, form=form, errors=errors,
                                    status_code=422)

    @post("/api-keys/{key_id:str}/revoke", name="console:api-key-revoke", status_code=303,
          guards=[requires("admin")])
    async def revoke_key(self, request: Request[Any, Any, Any], principal: Caller, key_id: str) -> Response[Any]:
        try:
            number = uuid.UUID(key_id)
        except ValueError:
            raise NotFound("there is no API key with this id") from None
        async with tenant_tx(request.app.state.pool, principal.tenant_id) as conn:
            await tenancy.revoke_api_key(conn, principal, number)
        request.app.state.key_cache.evict_key(number)
        return Redirect("/console/settings/api-keys?revoked=true", status_code=303)
