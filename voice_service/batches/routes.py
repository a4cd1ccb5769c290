"""HTTP routes for batches: launch (with Idempotency-Key), read, list entries, add entries, pause/resume/cancel."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from voice_service.auth import writes_need
from voice_service.batches import service
from voice_service.batches.schemas import (
    Batch,
    BatchCreate,
    BatchEntry,
    BatchStatus,
    EntriesAdd,
    EntriesAdded,
    EntryStatus,
)
from voice_service.deps import Caller, Conn
from voice_service.pagination import Page
from voice_service.params import Cursor, Limit, QueryParameter
from voice_service.schemas import BATCH_BODY_MAX_BYTES


class BatchController(Controller):
    path = "/v1/batches"
    tags = ["batches"]
    guards = [writes_need("member")]
    request_max_body_size = BATCH_BODY_MAX_BYTES

    @get("/", operation_id="listBatches", summary="List batches, newest first")
    async def list_batches(
        self,
        conn: Conn,
        principal: Caller,
        limit: int = Limit,
        cursor: str | None = Cursor,
        status: BatchStatus | None = QueryParameter(name="status", default=None),
    ) -> Page[Batch]:
        return await service.list_(conn, principal, limit, cursor, status)

    @post(
        "/",
        operation_id="createBatch",
        summary="Launch a batch of outbound calls",
        status_code=HTTP_201_CREATED,
    )
    async def create_batch(
        self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, data: JSONBody[BatchCreate]
    ) -> Response[Batch]:
        """Entries are lead ids or phone rows (upserted as leads), at most 10,000 per request. Invalid phones,
        duplicates and do-not-call leads become `skipped` entries with the reason. Honours `Idempotency-Key`."""
        status, batch = await service.create_idempotent(
            conn,
            principal,
            data,
            key=request.headers.get("idempotency-key"),
            body=await request.body(),
            path=request.url.path,
            settings=request.app.state.settings,
        )
        return Response(batch, status_code=status)

    @get("/{batch_id:uuid}", operation_id="getBatch", summary="Get a batch with its progress counters")
    async def get_batch(self, conn: Conn, principal: Caller, batch_id: uuid.UUID) -> Batch:
        return await service.get(conn, principal, batch_id)

    @get(
        "/{batch_id:uuid}/entries", operation_id="listBatchEntries", summary="List a batch's entries in order"
    )
    async def list_entries(
        self,
        conn: Conn,
        principal: Caller,
        batch_id: uuid.UUID,
        limit: int = Limit,
        cursor: str | None = Cursor,
        status: EntryStatus | None = QueryParameter(name="status", default=None),
    ) -> Page[BatchEntry]:
        return await service.list_entries(conn, principal, batch_id, limit, cursor, status)

    @post(
        "/{batch_id:uuid}/entries",
        operation_id="addBatchEntries",
        summary="Add entries to a batch",
        status_code=HTTP_200_OK,
    )
    async def add_entries(
        self, conn: Conn, principal: Caller, batch_id: uuid.UUID, data: JSONBody[EntriesAdd]
    ) -> EntriesAdded:
        return await service.add_entries(conn, principal, batch_id, data)

    @post(
        "/{batch_id:uuid}/pause",
        operation_id="pauseBatch",
        summary="Pause: no new calls start",
        status_code=HTTP_200_OK,
    )
    async def pause(self, conn: Conn, principal: Caller, batch_id: uuid.UUID) -> Batch:
        return await service.pause(conn, principal, batch_id)

    @post(
        "/{batch_id:uuid}/resume",
        operation_id="resumeBatch",
        summary="Resume a paused batch",
        status_code=HTTP_200_OK,
    )
    async def resume(self, conn: Conn, principal: Caller, batch_id: uuid.UUID) -> Batch:
        return await service.resume(conn, principal, batch_id)

    @post(
        "/{batch_id:uuid}/cancel",
        operation_id="cancelBatch",
        summary="Cancel: stop dialling at once (calls already talking are not ended)",
        status_code=HTTP_200_OK,
    )
    async def cancel(self, conn: Conn, principal: Caller, batch_id: uuid.UUID) -> Batch:
        return await service.cancel(conn, principal, batch_id)


route_handlers: list[Any] = [BatchController]
