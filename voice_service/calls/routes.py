"""HTTP routes for calls: place one outbound call (idempotent), list and get call logs."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody
from litestar.response import Stream

from voice_service.auth import writes_need
from voice_service.calls import live, service
from voice_service.calls import repository as repo
from voice_service.calls.export import export_csv
from voice_service.calls.schemas import Call, CallCreate, CallStatusName, Direction
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import BadRequest, Conflict, ServiceUnavailable
from voice_service.openapi import problems
from voice_service.pagination import Page
from voice_service.params import BIGINT_MAX, Cursor, Limit, QueryParameter
from voice_service.runtime import Runtime

_encoder = msgspec.json.Encoder()
_PATH = "/v1/calls"


CreatedAfter = QueryParameter(name="created_after", default=None,
                              description="Only calls created at or after this time (RFC 3339, with a time zone)")
CreatedBefore = QueryParameter(name="created_before", default=None,
                               description="Only calls created before this time (RFC 3339, with a time zone)")


def _filters(status: str | None, direction: str | None, agent_id: int | None, lead_id: uuid.UUID | None,
             batch_id: uuid.UUID | None) -> dict[str, Any]:
    return {"status": status, "direction": direction, "agent_id": agent_id, "lead_id": lead_id,
            "batch_id": batch_id}


def _request_hash(data: CallCreate) -> bytes:
    return hashlib.sha256(_encoder.encode(data)).digest()


class CallController(Controller):
    path = _PATH
    tags = ["calls"]
    guards = [writes_need("member")]

    @post(
        "/",
        operation_id="createCall",
        summary="Place one outbound call",
        description=(
            "Creates the call log (status `pending`), reserves its estimated cost on the wallet (402 with the "
            "estimate when the wallet cannot cover it and ENFORCE_WALLET_BALANCE is on; released when the call is "
            "billed) and places the call through the number's provider. "
            "A provider error (invalid number, auth, rate limit, outage) does not fail the request: the call is "
            "returned with status `failed`, `end_reason` = the error code and `metadata.provider_error`. "
            "With an `Idempotency-Key` header, the same key and body return the first response; the same key "
            "with another body is a 409."
        ),
        status_code=201,
        responses=problems(
            s403="The key may not place this call: a viewer, a member without the number or voice permission, or "
                 "a lead (or number) that asked not to be called.",
            s409="The Idempotency-Key was used with another body, or its first request is still running.",
            s503="The service is shutting down, or the number's carrier is not configured; retry later.",
        ),
    )
    async def create_call(
        self, request: Request[Any, Any, Any], principal: Caller, data: JSONBody[CallCreate]
    ) -> Response[Call]:
        runtime: Runtime = request.app.state.runtime
        if request.app.state.draining or live.registry_of_app(request.app).draining:
            raise ServiceUnavailable(
                "the service is shutting down; retry shortly", headers={"Retry-After": "5"}
            )
        key = request.headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 255:
            raise BadRequest("Idempotency-Key must be 1 to 255 characters", field="Idempotency-Key")
        tenant_id = principal.tenant_id
        request_hash = _request_hash(data)
        async with tenant_tx(runtime.pool, tenant_id) as conn:
            if key is not None:
                seen = await repo.claim_idempotency_key(conn, tenant_id, key, "POST", _PATH, request_hash)
                if seen is not None:
                    if bytes(seen["request_hash"]) != request_hash:
                        raise Conflict(
                            "this Idempotency-Key was used with another request body", field="Idempotency-Key"
                        )
                    if seen["status_code"] is None:
                        raise Conflict(
                            "a request with this Idempotency-Key is still in progress",
                            field="Idempotency-Key",
                        )
                    # The first response's JSON, as stored (the annotation documents its schema: a Call).
                    replay: Response[Any] = Response(
                        bytes(seen["response_body"]),
                        status_code=seen["status_code"],
                        media_type="application/json",
                        headers={"Idempotent-Replayed": "true"},
                    )
                    return replay
            ref = await service.create_outbound(conn, runtime.call_listeners, principal, data,
                                                settings=runtime.settings)
        try:
            await service.place_call(runtime, ref)
        except BaseException:
            if key is not None:
                # The call has been marked failed; a retry with the same key may place a new one.
                async with tenant_tx(runtime.pool, tenant_id) as conn:
                    await repo.release_idempotency_key(conn, tenant_id, key, "POST", _PATH)
            raise
        async with tenant_tx(runtime.pool, tenant_id) as conn:
            call = await service.get_call(conn, tenant_id, ref.id)
            body = _encoder.encode(call)
            if key is not None:
                await repo.save_idempotent_response(conn, tenant_id, key, "POST", _PATH, 201, body)
        created: Response[Any] = Response(
            body, status_code=201, media_type="application/json", headers={"Location": f"{_PATH}/{ref.id}"}
        )
        return created

    @get(
        "/",
        operation_id="listCalls",
        summary="List calls, newest first; filter by status, direction, agent, lead, batch or creation time",
    )
    async def list_calls(
        self,
        conn: Conn,
        principal: Caller,
        limit: int = Limit,
        cursor: str | None = Cursor,
        status: CallStatusName | None = QueryParameter(name="status", default=None),
        direction: Direction | None = QueryParameter(name="direction", default=None),
        agent_id: int | None = QueryParameter(name="agent_id", ge=1, le=BIGINT_MAX, default=None),
        lead_id: uuid.UUID | None = QueryParameter(name="lead_id", default=None),
        batch_id: uuid.UUID | None = QueryParameter(name="batch_id", default=None),
        created_after: datetime | None = CreatedAfter,
        created_before: datetime | None = CreatedBefore,
    ) -> Page[Call]:
        """Cursor-paginated, newest first: pass the page's `next_cursor` back as `cursor` for the next
        page; `next_cursor` is null on the last page.
        Filters: `status`, `direction`, `agent_id`, `lead_id`, `batch_id`, and the creation time range
        `created_after` (inclusive) / `created_before` (exclusive), RFC 3339 date-times with a time zone.
        Each item is the call as `GET /v1/calls/{call_id}` returns it, without its two heavy fields:
        `transcripts` and `cost_breakdown` are left out of lists (get the call for them); `cost` and `currency`
        are there."""
        filters = _filters(status, direction, agent_id, lead_id, batch_id)
        return await service.list_calls(conn, principal.tenant_id, limit, cursor, filters,
                                        created_after=created_after, created_before=created_before)

    @get(
        "/export.csv",
        operation_id="exportCalls",
        summary="Export calls as CSV, with their cost per category and analysis (the list's filters)",
        media_type="text/csv; charset=utf-8",
        response_description="CSV with a header row (`id, created_at, direction, status, end_reason, from, to, "
        "…, cost, currency, cost_telephony, cost_stt, cost_llm, cost_tts, analysis_status, summary, sentiment, "
        "lead_category, success, lead_extraction`), newest call first.",
    )
    async def export_calls(
        self,
        request: Request[Any, Any, Any],
        principal: Caller,
        status: CallStatusName | None = QueryParameter(name="status", default=None),
        direction: Direction | None = QueryParameter(name="direction", default=None),
        agent_id: int | None = QueryParameter(name="agent_id", ge=1, le=BIGINT_MAX, default=None),
        lead_id: uuid.UUID | None = QueryParameter(name="lead_id", default=None),
        batch_id: uuid.UUID | None = QueryParameter(name="batch_id", default=None),
        created_after: datetime | None = CreatedAfter,
        created_before: datetime | None = CreatedBefore,
    ) -> Stream:
        """Every call of the tenant matching the filters (the same as `GET /v1/calls`, without paging), streamed
        as it is read: one row per call with its cost, its cost per category (from the cost breakdown) and its
        analysis (summary, sentiment, lead category, success, the extracted lead fields as JSON). Amounts are
        decimal strings; times RFC 3339. Cells a spreadsheet would take for a formula are prefixed with `'`."""
        filters = _filters(status, direction, agent_id, lead_id, batch_id)
        rows = export_csv(request.app.state.pool, principal.tenant_id, filters,
                          created_after=created_after, created_before=created_before)
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        return Stream(rows, media_type="text/csv; charset=utf-8",
                      headers={"Content-Disposition": f'attachment; filename="calls-{day}.csv"'})

    @get("/{call_id:uuid}", operation_id="getCall", summary="Get a call's whole record")
    async def get_call(self, conn: Conn, principal: Caller, call_id: uuid.UUID) -> Call:
        """Status, timing and end reason; `transcripts` (each turn: `role` agent|user, `text`, `heard` — what the
        caller heard of an agent turn cut off —, `start_ms`/`end_ms` from the start of the call's media,
        `interrupted`); `cost_breakdown` (the billed items: category, provider, model, unit, quantity,
        unit_price, cost) beside `cost` and `currency`, empty until the call is billed; metadata."""
        return await service.get_call(conn, principal.tenant_id, call_id)


route_handlers: list[Any] = [CallController]
