"""HTTP routes for calls: place one outbound call (idempotent), list and get call logs."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody, QueryParameter

from voice_service.auth import writes_need
from voice_service.calls import live, service
from voice_service.calls import repository as repo
from voice_service.calls.schemas import Call, CallCreate, CallStatusName, Direction
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import BadRequest, Conflict, ServiceUnavailable
from voice_service.pagination import Page
from voice_service.params import Cursor, Limit
from voice_service.runtime import Runtime

_encoder = msgspec.json.Encoder()
_PATH = "/v1/calls"


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
                    return Response(
                        bytes(seen["response_body"]),
                        status_code=seen["status_code"],
                        media_type="application/json",
                        headers={"Idempotent-Replayed": "true"},
                    )
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
        return Response(
            body, status_code=201, media_type="application/json", headers={"Location": f"{_PATH}/{ref.id}"}
        )

    @get(
        "/",
        operation_id="listCalls",
        summary="List calls, newest first; filter by status, direction, agent, lead or batch",
    )
    async def list_calls(
        self,
        conn: Conn,
        principal: Caller,
        limit: int = Limit,
        cursor: str | None = Cursor,
        status: CallStatusName | None = QueryParameter(name="status", default=None),
        direction: Direction | None = QueryParameter(name="direction", default=None),
        agent_id: int | None = QueryParameter(name="agent_id", default=None),
        lead_id: uuid.UUID | None = QueryParameter(name="lead_id", default=None),
        batch_id: uuid.UUID | None = QueryParameter(name="batch_id", default=None),
    ) -> Page[Call]:
        filters = {
            "status": status,
            "direction": direction,
            "agent_id": agent_id,
            "lead_id": lead_id,
            "batch_id": batch_id,
        }
        return await service.list_calls(conn, principal.tenant_id, limit, cursor, filters)

    @get("/{call_id:uuid}", operation_id="getCall", summary="Get a call log")
    async def get_call(self, conn: Conn, principal: Caller, call_id: uuid.UUID) -> Call:
        return await service.get_call(conn, principal.tenant_id, call_id)


route_handlers: list[Any] = [CallController]
