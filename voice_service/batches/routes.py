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
    BatchCancel,
    BatchCreate,
    BatchEntry,
    BatchStatus,
    EntriesAdd,
    EntriesAdded,
    EntryStatus,
)
from voice_service.calls.control import control_of
from voice_service.calls.control_service import end_batch_calls
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import ServiceUnavailable
from voice_service.openapi import problems
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
        """Cursor-paginated, newest first: pass the page's `next_cursor` back as `cursor` for the next
        page; `next_cursor` is null on the last page.
        `status` filters."""
        return await service.list_(conn, principal, limit, cursor, status)

    @post(
        "/",
        operation_id="createBatch",
        summary="Launch a batch of outbound calls",
        status_code=HTTP_201_CREATED,
        responses=problems(
            s402="The wallet's available balance does not cover the batch's estimated cost (with "
                 "ENFORCE_WALLET_BALANCE).",
            s409="The Idempotency-Key was used with another body, or its first request is still running.",
        ),
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
        """The batch's settings and its counters (`counts`: entries by status, adding up to `total`)."""
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
        """In the order they were given (by position), `cursor`-paginated; `status` filters. Each entry
        shows its outcome, attempts, last call and error."""
        return await service.list_entries(conn, principal, batch_id, limit, cursor, status)

    @post(
        "/{batch_id:uuid}/entries",
        operation_id="addBatchEntries",
        summary="Add entries to a batch",
        status_code=HTTP_200_OK,
        responses=problems(402, s409="The batch is completed or cancelled."),
    )
    async def add_entries(
        self, conn: Conn, principal: Caller, batch_id: uuid.UUID, data: JSONBody[EntriesAdd]
    ) -> EntriesAdded:
        """Appends entries to a batch that is not completed or cancelled (409 otherwise), at most 10,000 per
        request, with the same rules as at creation; the wallet reservation grows accordingly (402 when it
        cannot)."""
        return await service.add_entries(conn, principal, batch_id, data)

    @post(
        "/{batch_id:uuid}/pause",
        operation_id="pauseBatch",
        summary="Pause: no new calls start",
        status_code=HTTP_200_OK,
        responses=problems(s409="The batch is completed or cancelled."),
    )
    async def pause(self, conn: Conn, principal: Caller, batch_id: uuid.UUID) -> Batch:
        """No new calls start; calls already ringing or talking go on. Pausing a paused batch changes nothing."""
        return await service.pause(conn, principal, batch_id)

    @post(
        "/{batch_id:uuid}/resume",
        operation_id="resumeBatch",
        summary="Resume a paused batch",
        status_code=HTTP_200_OK,
        responses=problems(s409="The batch is completed or cancelled."),
    )
    async def resume(self, conn: Conn, principal: Caller, batch_id: uuid.UUID) -> Batch:
        """Dialling starts again (or waits for `start_at`). Resuming a running batch changes nothing."""
        return await service.resume(conn, principal, batch_id)

    @post(
        "/{batch_id:uuid}/cancel",
        operation_id="cancelBatch",
        summary="Cancel: stop dialling at once; with {\"hangup_live\": true} end the calls in progress too",
        status_code=HTTP_200_OK,
        responses=problems(s409="The batch is completed."),
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        principal: Caller,
        batch_id: uuid.UUID,
        data: JSONBody[BatchCancel | None] = None,
    ) -> Batch:
        """Waiting entries are cancelled and no new call starts, those claimed for a later pacing slot
        included. Calls already ringing or talking go on, unless the body says `{"hangup_live": true}`: they are
        then hung up too, wherever their media is (`end_reason` `batch_cancelled`), before the answer. The wallet
        reservation is released and a `batch.cancelled` event is written. Cancelling a cancelled batch changes
        nothing."""
        runtime = request.app.state.runtime
        async with tenant_tx(runtime.pool, principal.tenant_id) as conn:
            batch = await service.cancel(conn, principal, batch_id)
        if data is not None and data.hangup_live:
            control = control_of(request.app)
            if control is None:
                raise ServiceUnavailable("live call control is not running on this instance")
            await end_batch_calls(runtime, control, principal.tenant_id, batch_id, reason="batch_cancelled")
        return batch


route_handlers: list[Any] = [BatchController]
