"""Batch pages: the list, a new batch (from selected leads or a CSV file, with the launch previewed before it is
confirmed: what will be called, what skipped and why, the wallet reservation), one batch's live progress with its
controls (pause, resume, cancel — optionally hanging up the calls under way) and its entries.

Launching, pausing, resuming and cancelling are the API's own service calls under the API's rule (members and up;
members only with the numbers their permissions grant). The live view is one server-sent-event stream per page,
fed by one producer per batch (console/live.py) that reads the batch once a second however many pages watch it, on
however many instances of the service.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
import zoneinfo
from collections.abc import AsyncIterator
from functools import cache
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, get, post
from litestar.response import Redirect, Response, ServerSentEvent, ServerSentEventMessage, Template

from voice_service.agents import service as agents
from voice_service.auth import Principal, requires, writes_need
from voice_service.batches import progress as batch_progress
from voice_service.batches import service as batches
from voice_service.batches.schemas import BatchCreate
from voice_service.calls import service as calls
from voice_service.console import batch_form, forms
from voice_service.console.clock import tz_name, user_tz
from voice_service.console.live import LiveHub
from voice_service.console.templating import page, render
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import AppError, BadRequest, NotFound
from voice_service.numbers import service as numbers
from voice_service.params import QueryParameter
from voice_service.schemas import BATCH_BODY_MAX_BYTES

log = logging.getLogger(__name__)

PAGE_SIZE = 25
ENTRY_PAGE_SIZE = 50
LIVE_INTERVAL_SECONDS = 1.0  # a watched batch costs one query a second, whatever the number of pages watching it
STATUSES = ("scheduled", "running", "paused", "completed", "cancelled")
ENTRY_STATUSES = ("queued", "dialing", "in_progress", "retrying", "completed", "failed", "skipped", "cancelled")
PROGRESS = "console/batches/_progress.html"
_Q = {"default": None, "max_length": 200}
_payload_decoder = msgspec.json.Decoder(BatchCreate)
_encoder = msgspec.json.Encoder()


def batch_id_of(text: str) -> uuid.UUID:
    return forms.uuid_in_path(text, "batch")


@cache
def time_zones() -> list[str]:
    """Zones people pick from: UTC and the Area/City names (not the legacy aliases)."""
    return ["UTC", *sorted(z for z in zoneinfo.available_timezones()
                           if "/" in z and z.split("/")[0] in {"Africa", "America", "Antarctica", "Asia", "Atlantic",
                                                                "Australia", "Europe", "Indian", "Pacific"})]


def _fragment_context(p: batch_progress.BatchProgress, *, can_act: bool, csrf: str, tz: Any) -> dict[str, Any]:
    return {"p": p, "can_act": can_act, "csrf": csrf, "tz": tz}


def _service_errors(exc: AppError) -> dict[str, str]:
    """A refusal of the launch, keyed by the form's input."""
    field = (exc.field or "").split("[")[0].split(".")[0]
    key = {"calling_window": "window_start", "retry": "max_attempts", "entries": "entries",
           "from_number_ids": "from_number_id", "wallet": "_form"}.get(field, field or "_form")
    if key not in batch_form.LABELS:
        key = "_form"
    text = exc.detail[0].upper() + exc.detail[1:]
    return {key: f"{batch_form.label(key)}: {exc.detail}" if key != "_form" else text}


class BatchPages(Controller):
    path = "/batches"
    guards = [writes_need("member")]  # the API's rule for /v1/batches

    @get("/", name="console:batches")
    async def list_batches(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                           status: str | None = QueryParameter(name="status", **_Q),
                           cursor: str | None = QueryParameter(name="cursor", **_Q)) -> Template:
        errors: dict[str, str] = {}
        if status and status not in STATUSES:
            errors["status"] = "Status: choose one of the listed statuses"
        items: list[Any] = []
        next_cursor = None
        if not errors:
            result = await batches.list_(conn, principal, PAGE_SIZE, cursor, status or None)
            items, next_cursor = result.items, result.next_cursor
        agent_list = (await agents.list_(conn, principal, 200, None)).items
        return page(request, "console/batches/list.html", status_code=422 if errors else 200, nav="batches",
                    batches=items, next_cursor=next_cursor, paged=cursor is not None, status=status or "",
                    statuses=STATUSES, errors=errors, agent_names={a.id: a.name for a in agent_list},
                    query=urlencode({"status": status}) if status else "")

    @get("/new", name="console:batch-new", guards=[requires("member")])
    async def new_batch(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller) -> Template:
        lead_ids = [v for v in request.query_params.getall("lead", []) if isinstance(v, str)]
        form = batch_form.default_form(lead_ids, user_tz(request))
        return await self._form(request, conn, principal, form, {})

    @post("/new", name="console:batch-review", status_code=200,
          request_max_body_size=BATCH_BODY_MAX_BYTES)
    async def review_batch(self, request: Request[Any, Any, Any], principal: Caller) -> Template:
        """The form checked, and the launch previewed (nothing is written): confirm to launch it."""
        form, errors = await batch_form.form_from_request(await request.form())
        values, more = batch_form.parse(form)
        errors = {**more, **errors}
        preview = None
        payload = ""
        state = request.app.state
        async with tenant_tx(state.pool, principal.tenant_id) as conn:
            if not errors:
                data = msgspec.convert(values, BatchCreate)
                try:
                    preview = await batch_progress.preview(conn, principal, data, settings=state.settings)
                    payload = _encoder.encode(data).decode()
                except AppError as exc:
                    if exc.status in (401, 403) and exc.field is None:
                        raise
                    errors = _service_errors(exc)
            return await self._form(request, conn, principal, form, errors, preview=preview, payload=payload,
                                    status_code=422 if errors else 200)

    @post("/launch", name="console:batch-launch", status_code=303,
          request_max_body_size=2 * BATCH_BODY_MAX_BYTES)
    async def launch_batch(self, request: Request[Any, Any, Any], principal: Caller) -> Response[Any] | Template:
        form = await request.form()
        payload = form.get("payload")
        key = form.get("idempotency_key")
        if not isinstance(payload, str) or not isinstance(key, str) or not key:
            raise BadRequest("the launch form is incomplete; review the batch again")
        try:
            data = _payload_decoder.decode(payload)
        except msgspec.DecodeError:
            raise BadRequest("the launch form was changed; review the batch again") from None
        state = request.app.state
        try:
            async with tenant_tx(state.pool, principal.tenant_id) as conn:
                _, batch = await batches.create_idempotent(conn, principal, data, key=key, body=payload.encode(),
                                                           path="/console/batches/launch", settings=state.settings)
        except AppError as exc:
            if exc.status in (401, 403, 404) and exc.field is None:
                raise
            async with tenant_tx(state.pool, principal.tenant_id) as conn:
                values = msgspec.to_builtins(data)
                form_back = batch_form.form_from_values(values)
                return await self._form(request, conn, principal, form_back, _service_errors(exc), status_code=422)
        return Redirect(f"/console/batches/{batch.id}?launched=true", status_code=303)

    async def _form(self, request: Request[Any, Any, Any], conn: Any, principal: Principal,
                    form: batch_form.BatchForm, errors: dict[str, str], *, preview: Any = None, payload: str = "",
                    status_code: int = 200) -> Template:
        agent_list = (await agents.list_(conn, principal, 200, None)).items
        number_list = (await numbers.list_(conn, principal, 200, None, None, "active")).items
        return page(request, "console/batches/new.html", status_code=status_code, nav="batches", form=form,
                    errors=errors, label=batch_form.label, agents=agent_list, numbers=number_list,
                    zone_options=[(z, z) for z in time_zones()], weekdays=batch_form.WEEKDAYS,
                    retry_reasons=batch_form.RETRY_REASONS,
                    agent_options=[(str(a.id), a.name) for a in agent_list],
                    number_options=[(str(n.id), f"{n.phone_number} ({n.provider})") for n in number_list],
                    preview=preview, payload=payload, idempotency_key=secrets.token_urlsafe(16),
                    file_rows_json=batch_form.rows_json(form.file_rows) if form.file_rows else "",
)

    @get("/{batch_id:str}", name="console:batch")
    async def show_batch(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, batch_id: str,
                         launched: bool = QueryParameter(name="launched", default=False),
                         status: str | None = QueryParameter(name="status", **_Q),
                         cursor: str | None = QueryParameter(name="cursor", **_Q)) -> Template:
        number = batch_id_of(batch_id)
        batch = await batches.get(conn, principal, number)
        errors: dict[str, str] = {}
        if status and status not in ENTRY_STATUSES:
            errors["status"] = "Status: choose one of the listed statuses"
        entries: list[Any] = []
        next_cursor = None
        if not errors:
            result = await batches.list_entries(conn, principal, number, ENTRY_PAGE_SIZE, cursor, status or None)
            entries, next_cursor = result.items, result.next_cursor
        if request.headers.get("hx-target") == "entry-results":
            return page(request, "console/batches/_entries.html", status_code=422 if errors else 200,
                        batch=batch, entries=entries, next_cursor=next_cursor, paged=cursor is not None,
                        status=status or "", errors=errors, query=urlencode({"status": status}) if status else "")
        p = await batch_progress.progress(conn, principal, number)
        agent = None
        try:
            agent = await agents.get(conn, principal, batch.agent_id)
        except NotFound:
            agent = None
        return page(request, "console/batches/detail.html", status_code=422 if errors else 200, nav="batches",
                    batch=batch, p=p, agent=agent, launched=launched, entries=entries, next_cursor=next_cursor,
                    paged=cursor is not None, status=status or "", entry_statuses=ENTRY_STATUSES, errors=errors,
                    can_act=principal.at_least("member"), query=urlencode({"status": status}) if status else "")

    async def _control(self, request: Request[Any, Any, Any], principal: Principal, batch_id: str,
                       action: str) -> Response[Any] | Template:
        number = batch_id_of(batch_id)
        state = request.app.state
        form = await request.form()
        hang_up = action == "cancel" and form.get("hangup_live") == "true"
        live_call_ids: list[uuid.UUID] = []
        async with tenant_tx(state.pool, principal.tenant_id) as conn:
            if action == "pause":
                await batches.pause(conn, principal, number)
            elif action == "resume":
                await batches.resume(conn, principal, number)
            else:
                await batches.cancel(conn, principal, number)
                if hang_up:
                    now = await batch_progress.progress(conn, principal, number, live_limit=1000)
                    live_call_ids = [c.call_id for c in now.live_calls if c.call_id is not None]
        failed = await _hang_up(state.runtime, principal, live_call_ids)
        if request.headers.get("hx-request") != "true":
            return Redirect(f"/console/batches/{number}", status_code=303)
        async with tenant_tx(state.pool, principal.tenant_id) as conn:
            p = await batch_progress.progress(conn, principal, number)
        notice = None
        if hang_up:
            notice = (f"Hung up {len(live_call_ids) - failed} of {len(live_call_ids)} calls in progress."
                      if live_call_ids else "No call was in progress.")
        return page(request, PROGRESS, **_fragment_context(p, can_act=True, csrf=request.auth.csrf_token,
                                                           tz=user_tz(request)), notice=notice)

    @post("/{batch_id:str}/pause", name="console:batch-pause", status_code=200)
    async def pause(self, request: Request[Any, Any, Any], principal: Caller, batch_id: str) -> Response[Any] | Template:
        return await self._control(request, principal, batch_id, "pause")

    @post("/{batch_id:str}/resume", name="console:batch-resume", status_code=200)
    async def resume(self, request: Request[Any, Any, Any], principal: Caller,
                     batch_id: str) -> Response[Any] | Template:
        return await self._control(request, principal, batch_id, "resume")

    @post("/{batch_id:str}/cancel", name="console:batch-cancel", status_code=200)
    async def cancel(self, request: Request[Any, Any, Any], principal: Caller,
                     batch_id: str) -> Response[Any] | Template:
        return await self._control(request, principal, batch_id, "cancel")


async def _hang_up(runtime: Any, principal: Principal, call_ids: list[uuid.UUID]) -> int:
    """Hang up a cancelled batch's calls under way (through the carrier, so whichever instance holds each call's
    media); returns how many could not be."""
    if not call_ids:
        return 0
    results = await asyncio.gather(*(calls.hangup_call(runtime, principal.tenant_id, c) for c in call_ids),
                                   return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        if not isinstance(failure, Exception):
            raise failure
        log.warning("console: hanging up a cancelled batch's call failed", exc_info=failure)
    return len(failures)


class FragmentCache:
    """The progress fragment of each (batch, zone, role) for the feed's latest version: rendered once, whatever the
    number of pages of that kind watching, and forgotten when the batch's feed moves on."""

    def __init__(self, limit: int = 4096) -> None:
        self._items: dict[tuple[Any, ...], tuple[tuple[int, int], str]] = {}
        self._limit = limit

    def get(self, key: tuple[Any, ...], version: tuple[int, int], render_it: Any) -> str:
        hit = self._items.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        html: str = render_it()
        if len(self._items) >= self._limit:
            self._items.clear()
        self._items[key] = (version, html)
        return html


_fragments = FragmentCache()


class BatchLive(Controller):
    path = "/live/batches"

    @get("/{batch_id:str}", name="console:batch-live")
    async def batch_live(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                         batch_id: str) -> ServerSentEvent:
        """The progress fragment each second, then, once the batch is over, a `done` event that closes the page's
        stream. One producer reads the batch for every page watching it, on any instance (one query a second per
        batch, whatever the pages' zones, roles and processes); each kind of page (zone, role) has its fragment
        rendered once per update."""
        number = batch_id_of(batch_id)
        await batches.get(conn, principal, number)  # another tenant's batch: 404 before any stream starts
        state = request.app.state
        hub: LiveHub = state.console_hub
        tz = user_tz(request)
        can_act = principal.at_least("member")
        topic = ("batch", principal.tenant_id, number)

        async def produce() -> batch_progress.BatchProgress:
            async with tenant_tx(state.pool, principal.tenant_id) as tx:
                return await batch_progress.progress(tx, principal, number)

        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            deadline = time.monotonic() + hub.max_stream_seconds
            async with hub.watch(topic, produce, interval=LIVE_INTERVAL_SECONDS,
                                 shared_as=batch_progress.BatchProgress) as feed:
                version = 0
                while (remaining := deadline - time.monotonic()) > 0:
                    try:
                        got = await asyncio.wait_for(feed.next_after(version), remaining)
                    except TimeoutError:
                        break
                    if got is None:
                        break
                    version, p = got
                    html = _fragments.get((*topic, tz_name(tz), can_act), (feed.serial, version), lambda p=p: render(
                        PROGRESS, **_fragment_context(p, can_act=can_act, csrf="", tz=tz), notice=None))
                    yield ServerSentEventMessage(event="progress", data=html)
                    if p.finished:
                        yield ServerSentEventMessage(event="done", data="finished")
                        break

        return ServerSentEvent(stream(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
