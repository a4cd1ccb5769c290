"""Settings › Permissions: which numbers and voices each member may place calls with.

Admins and owners place calls with any number and voice; a member only with those granted here (the rule
`tenancy.service.check_call_permission` enforces for `POST /v1/calls` and batches). Grants and removals go through
the tenancy service as `/v1/voice-permissions` does.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Response, Template

from voice_service.auth import writes_need
from voice_service.console.templating import page
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import AppError, NotFound
from voice_service.numbers import service as numbers
from voice_service.params import QueryParameter
from voice_service.tenancy import service as tenancy
from voice_service.tenancy.schemas import VoicePermissionCreate
from voice_service.voices import service as voices

PAGE_SIZE = 50
LABELS = {"user_id": "Member", "number_id": "Number", "voice_id": "Voice", "_form": ""}


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


class PermissionPages(Controller):
    path = "/settings/permissions"
    guards = [writes_need("admin")]  # the API's rule for /v1/voice-permissions

    @get("/", name="console:permissions")
    async def list_permissions(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                               cursor: str | None = QueryParameter(name="cursor", default=None, max_length=200),
                               done: str | None = QueryParameter(name="done", default=None, max_length=20)
                               ) -> Template:
        return await self._page(request, conn, principal, cursor, form={}, errors={}, done=done)

    async def _page(self, request: Request[Any, Any, Any], conn: Any, principal: Any, cursor: str | None, *,
                    form: dict[str, str], errors: dict[str, str], done: str | None = None,
                    status_code: int = 200) -> Template:
        members = await tenancy.list_members(conn, principal)
        result = await tenancy.list_permissions(conn, principal, None, PAGE_SIZE, cursor)
        number_list = (await numbers.list_(conn, principal, 200, None, None, None)).items
        voice_list = (await voices.list_(conn, principal, 200, None, None, None)).items
        notice = {"granted": "Granted.", "removed": "Removed."}.get(done or "")
        return page(request, "console/settings/permissions.html", status_code=status_code, nav="settings",
                    section="permissions", members=members, permissions=result.items,
                    next_cursor=result.next_cursor, paged=cursor is not None, form=form, errors=errors,
                    notice=notice, emails={m.id: m.email for m in members},
                    number_names={n.id: n.phone_number for n in number_list},
                    voice_names={v.id: v.name or v.provider_voice_id for v in voice_list},
                    member_options=[(str(m.id), m.email) for m in members if m.role == "member"],
                    number_options=[(str(n.id), f"{n.phone_number} ({n.provider})") for n in number_list],
                    voice_options=[(str(v.id), f"{v.name or v.provider_voice_id} ({v.provider})") for v in voice_list])

    @post("/", name="console:permission-grant", status_code=303)
    async def grant(self, request: Request[Any, Any, Any], principal: Caller) -> Response[Any] | Template:
        data = await request.form()
        form = {k: v if isinstance(v := data.get(k), str) else "" for k in ("user_id", "number_id", "voice_id")}
        errors: dict[str, str] = {}
        user_id, number_id, voice_id = (_uuid(form[k]) for k in ("user_id", "number_id", "voice_id"))
        if user_id is None:
            errors["user_id"] = "Member: choose the member to grant"
        if form["number_id"] and number_id is None:
            errors["number_id"] = "Number: choose one of your numbers"
        if form["voice_id"] and voice_id is None:
            errors["voice_id"] = "Voice: choose one of your voices"
        if not errors and number_id is None and voice_id is None:
            errors["number_id"] = "Number: choose a number, a voice, or both"
        pool = request.app.state.pool
        if not errors:
            assert user_id is not None
            try:
                async with tenant_tx(pool, principal.tenant_id) as conn:
                    await tenancy.create_permission(conn, principal, VoicePermissionCreate(
                        user_id=user_id, number_id=number_id, voice_id=voice_id))
            except AppError as exc:
                if exc.field is None and exc.status in (401, 403):
                    raise
                key = exc.field if exc.field in LABELS else "_form"
                errors[key] = f"{LABELS[key]}: {exc.detail}" if key != "_form" else exc.detail
        if not errors:
            return Redirect("/console/settings/permissions?done=granted", status_code=303)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            return await self._page(request, conn, principal, None, form=form, errors=errors, status_code=422)

    @post("/{permission_id:str}/delete", name="console:permission-remove", status_code=303)
    async def remove(self, request: Request[Any, Any, Any], principal: Caller, permission_id: str) -> Response[Any]:
        number = _uuid(permission_id)
        if number is None:
            raise NotFound("there is no permission with this id")
        async with tenant_tx(request.app.state.pool, principal.tenant_id) as conn:
            await tenancy.delete_permission(conn, principal, number)
        return Redirect("/console/settings/permissions?done=removed", status_code=303)
