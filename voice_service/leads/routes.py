"""HTTP routes for leads: CRUD and the bulk import."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from voice_service.auth import writes_need
from voice_service.deps import Caller, Conn
from voice_service.leads import importer, service
from voice_service.leads.schemas import ImportReport, Lead, LeadCreate, LeadUpdate
from voice_service.pagination import Page
from voice_service.params import Cursor, Limit, QueryParameter


@dataclass
class _ImportOperation(Operation):
    """The import handler reads its raw body itself; this documents the two accepted formats."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="Up to 100,000 leads. Fields as in createLead; other columns/keys go to custom_fields.",
            content={
                "text/csv": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.STRING, description="CSV with a header row; `phone` required"
                    )
                ),
                "application/json": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT))
                ),
            },
        )


class LeadController(Controller):
    path = "/v1/leads"
    tags = ["leads"]
    guards = [writes_need("member")]

    @get(
        "/",
        operation_id="listLeads",
        summary="List leads, newest first; filter by phone (exact E.164), stage, status or do_not_call",
    )
    async def list_leads(
        self,
        conn: Conn,
        principal: Caller,
        limit: int = Limit,
        cursor: str | None = Cursor,
        phone: str | None = QueryParameter(name="phone", default=None, max_length=32),
        stage: str | None = QueryParameter(name="stage", default=None, max_length=100),
        status: str | None = QueryParameter(name="status", default=None, max_length=100),
        do_not_call: bool | None = QueryParameter(name="do_not_call", default=None),
    ) -> Page[Lead]:
        return await service.list_(
            conn, principal, limit, cursor, phone=phone, stage=stage, status=status, do_not_call=do_not_call
        )

    @post("/", operation_id="createLead", summary="Create a lead")
    async def create_lead(self, conn: Conn, principal: Caller, data: JSONBody[LeadCreate]) -> Lead:
        return await service.create(conn, principal, data)

    @post(
        "/import",
        operation_id="importLeads",
        status_code=HTTP_200_OK,
        request_max_body_size=importer.MAX_BYTES,
        operation_class=_ImportOperation,
        summary="Import up to 100,000 leads (text/csv with a header row, or a JSON array); upsert by phone",
        description="Rows are matched on their E.164 phone: existing leads get the provided fields, new phones "
        "become leads. Invalid rows are skipped and reported with their line number (CSV: the "
        "header is line 1; JSON: array index + 1). Columns that are not lead fields go to "
        "custom_fields.",
    )
    async def import_leads(
        self, request: Request[Any, Any, Any], conn: Conn, principal: Caller
    ) -> ImportReport:
        media_type, options = request.content_type
        body = await request.body()
        return await importer.run_import(conn, principal, media_type, options, body)

    @get("/{lead_id:uuid}", operation_id="getLead", summary="Get a lead")
    async def get_lead(self, conn: Conn, principal: Caller, lead_id: uuid.UUID) -> Lead:
        return await service.get(conn, principal, lead_id)

    @patch(
        "/{lead_id:uuid}",
        operation_id="updateLead",
        summary="Update a lead (only the fields sent; do_not_call is lifted only by an explicit false)",
    )
    async def update_lead(
        self, conn: Conn, principal: Caller, lead_id: uuid.UUID, data: JSONBody[LeadUpdate]
    ) -> Lead:
        return await service.update(conn, principal, lead_id, data)

    @delete(
        "/{lead_id:uuid}",
        operation_id="deleteLead",
        summary="Delete a lead (soft)",
        status_code=HTTP_204_NO_CONTENT,
    )
    async def delete_lead(self, conn: Conn, principal: Caller, lead_id: uuid.UUID) -> None:
        await service.delete(conn, principal, lead_id)


route_handlers: list[Any] = [LeadController]
