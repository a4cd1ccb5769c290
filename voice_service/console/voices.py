"""The voices pages: the tenant's voice catalog (a text-to-speech provider's voice, by its id there), adding a voice,
editing and removing one. Writes go through the voices service under the API's rule (admins and owners)."""

from __future__ import annotations

import uuid
from typing import Any, get_args

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Response, Template

from voice_service.auth import Principal, writes_need
from voice_service.console import forms
from voice_service.console.templating import page
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import AppError
from voice_service.params import QueryParameter
from voice_service.voices import service as voices
from voice_service.voices.schemas import TtsProviderName, VoiceCreate, VoiceUpdate

PAGE_SIZE = 25
PROVIDERS = get_args(TtsProviderName)
FIELDS = ("provider", "provider_voice_id", "name", "language", "gender", "accent", "description", "voice_sample_url")
LABELS = {"provider": "Provider", "provider_voice_id": "Voice id at the provider", "name": "Name",
          "language": "Language", "gender": "Gender", "accent": "Accent", "description": "Description",
          "voice_sample_url": "Sample URL", "_form": ""}


def label(key: str) -> str:
    return LABELS.get(key, key)


def voice_id_of(text: str) -> uuid.UUID:
    return forms.uuid_in_path(text, "voice")


def _values(data: Any) -> tuple[dict[str, str], dict[str, Any]]:
    form = {k: v.strip() if isinstance(v := data.get(k), str) else "" for k in FIELDS}
    values: dict[str, Any] = {k: (form[k] or None) for k in FIELDS}
    values["provider"] = form["provider"]
    values["provider_voice_id"] = form["provider_voice_id"]
    return form, values


class VoicePages(Controller):
    path = "/voices"
    guards = [writes_need("admin")]  # the API's rule for /v1/voices

    @get("/", name="console:voices")
    async def list_voices(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                          cursor: str | None = QueryParameter(name="cursor", default=None, max_length=200),
                          done: str | None = QueryParameter(name="done", default=None, max_length=20)) -> Template:
        return await self._list(request, conn, principal, cursor, form={"provider": "deepgram"}, errors={}, done=done)

    async def _list(self, request: Request[Any, Any, Any], conn: Any, principal: Principal, cursor: str | None, *,
                    form: dict[str, str], errors: dict[str, str], done: str | None = None,
                    status_code: int = 200) -> Template:
        result = await voices.list_(conn, principal, PAGE_SIZE, cursor, None, None)
        notice = {"added": "The voice is added.", "removed": "The voice is removed."}.get(done or "")
        return page(request, "console/voices/list.html", status_code=status_code, nav="voices", voices=result.items,
                    next_cursor=result.next_cursor, paged=cursor is not None, form=form, errors=errors, label=label,
                    notice=notice, provider_options=[(p, p) for p in PROVIDERS])

    @post("/", name="console:voice-create", status_code=303)
    async def create_voice(self, request: Request[Any, Any, Any], principal: Caller) -> Response[Any] | Template:
        form, values = _values(await request.form())
        errors = forms.check(VoiceCreate, values, key=lambda f, _: f, label=label)
        pool = request.app.state.pool
        if not errors:
            try:
                async with tenant_tx(pool, principal.tenant_id) as conn:
                    await voices.create(conn, principal, VoiceCreate(**values))
            except AppError as exc:
                if exc.field is None and exc.status in (401, 403):
                    raise
                errors[exc.field if exc.field in LABELS else "_form"] = exc.detail
        if not errors:
            return Redirect("/console/voices?done=added", status_code=303)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            return await self._list(request, conn, principal, None, form=form, errors=errors, status_code=422)

    @get("/{voice_id:str}", name="console:voice")
    async def show_voice(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, voice_id: str,
                         saved: bool = QueryParameter(name="saved", default=False)) -> Template:
        voice = await voices.get(conn, principal, voice_id_of(voice_id))
        form = {k: str(getattr(voice, k) or "") for k in FIELDS}
        return page(request, "console/voices/edit.html", nav="voices", voice=voice, form=form, errors={}, label=label,
                    saved=saved, provider_options=[(p, p) for p in PROVIDERS])

    @post("/{voice_id:str}", name="console:voice-update", status_code=303)
    async def update_voice(self, request: Request[Any, Any, Any], principal: Caller,
                           voice_id: str) -> Response[Any] | Template:
        key = voice_id_of(voice_id)
        form, values = _values(await request.form())
        errors = forms.check(VoiceUpdate, values, key=lambda f, _: f, label=label)
        pool = request.app.state.pool
        async with tenant_tx(pool, principal.tenant_id) as conn:
            voice = await voices.get(conn, principal, key)
            if not errors:
                await voices.update(conn, principal, key, VoiceUpdate(**values))
        if not errors:
            return Redirect(f"/console/voices/{key}?saved=true", status_code=303)
        return page(request, "console/voices/edit.html", status_code=422, nav="voices", voice=voice, form=form,
                    errors=errors, label=label, saved=False, provider_options=[(p, p) for p in PROVIDERS])

    @post("/{voice_id:str}/delete", name="console:voice-delete", status_code=303)
    async def delete_voice(self, request: Request[Any, Any, Any], principal: Caller, voice_id: str) -> Response[Any]:
        key = voice_id_of(voice_id)
        async with tenant_tx(request.app.state.pool, principal.tenant_id) as conn:
            await voices.delete(conn, principal, key)
        return Redirect("/console/voices?done=removed", status_code=303)
