"""HTTP routes for leads: CRUD and the bulk import."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.openapi.spec import (
    Example,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from voice_service.auth import writes_need
from voice_service.deps import Caller, Conn
from voice_service.leads import importer, service
from voice_service.leads.schemas import ImportReport, Lead, LeadCreate, LeadUpdate
from voice_service.leads.upload import read_upload
from voice_service.openapi import problems
from voice_service.openapi.plugin import TAKES_BODY
from voice_service.pagination import Page
from voice_service.params import Cursor, Limit, QueryParameter

_CSV_EXAMPLE = "First Name;Last Name;Phone Number;E-mail;Favourite colour\nAnn;Lee;(415) 555-0199;ann@example.com;teal\n"


@dataclass
class _ImportOperation(Operation):
    """The import handler reads its body itself; this documents the three ways to send it."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="Up to 100,000 leads, at most 64 MiB. Columns (CSV) or keys (JSON) are matched to lead "
            "fields by name as people write them (`First Name`, `Phone Number`, `Mobile`, `E-mail`, …) or by "
            "`mapping`; the others go to custom_fields. CSV separators `,` `;` tab and `|` are detected.",
            content={
                "text/csv": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, description="CSV with a header row; a phone column is "
                                                                       "required"),
                    examples={"csv": Example(summary="Semicolon-separated, national numbers "
                                                     "(with default_country=US)", value=_CSV_EXAMPLE)},
                ),
                "application/json": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT)),
                    examples={"json": Example(summary="Lead objects", value=[
                        {"phone": "+14155550199", "first_name": "Ann", "company": "Initech", "plan": "pro"}])},
                ),
                "multipart/form-data": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["file"],
                        properties={
                            "file": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY,
                                           description="The CSV or JSON file (a browser's file input)"),
                            "mapping": Schema(type=OpenAPIType.STRING, description="As the `mapping` query "
                                                                                   "parameter"),
                            "default_country": Schema(type=OpenAPIType.STRING, description="As the "
                                                                                           "`default_country` query "
                                                                                           "parameter"),
                        },
                    ),
                    examples={"upload": Example(summary="A file upload",
                                                value={"file": "leads.csv", "default_country": "US"})},
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
        """Cursor-paginated, newest first: pass the page's `next_cursor` back as `cursor` for the next
        page; `next_cursor` is null on the last page.
        Filters: `phone` (exact E.164), `stage`, `status`, `do_not_call`."""
        return await service.list_(
            conn, principal, limit, cursor, phone=phone, stage=stage, status=status, do_not_call=do_not_call
        )

    @post("/", operation_id="createLead", summary="Create a lead",
          responses=problems(s409="A lead with this phone exists in the tenant already."))
    async def create_lead(self, conn: Conn, principal: Caller, data: JSONBody[LeadCreate]) -> Lead:
        """`phone` is required and unique in the tenant (409 when a lead has it already); formatting
        characters are dropped and it is stored in E.164. Other fields may go to `custom_fields`."""
        return await service.create(conn, principal, data)

    @post(
        "/import",
        operation_id="importLeads",
        status_code=HTTP_200_OK,
        request_max_body_size=importer.MAX_BYTES,
        operation_class=_ImportOperation,
        opt={TAKES_BODY: True},
        responses=problems(s413="Over 64 MiB or 100,000 rows: split the file.",
                           s415="The body is not CSV, JSON or a multipart upload."),
        summary="Import up to 100,000 leads: CSV or JSON, as the body or a file upload; upsert by phone",
    )
    async def import_leads(
        self,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Caller,
        default_country: str | None = QueryParameter(
            name="default_country", default=None, max_length=2,
            description="ISO 3166 country (e.g. US) of phone numbers written without a country code, such as "
                        "(415) 555-0103; without it such numbers are rejected rows",
        ),
        mapping: str | None = QueryParameter(
            name="mapping", default=None, max_length=20000,
            description='A JSON object from column names to lead fields, winning over the names: '
                        '{"Tel. (work)": "phone", "Notes 2": null}; null drops a column, "custom_fields" keeps it '
                        "there",
        ),
    ) -> ImportReport:
        """Rows are matched on their phone (E.164): existing leads get the provided fields, new phones become
        leads; an empty cell never blanks a field. Send the file as the body (`text/csv` or `application/json`) or
        as a browser does (`multipart/form-data`, the file in a `file` field; `mapping` and `default_country` may
        be form fields too). Invalid rows are skipped and reported with their line number (CSV: the header is line
        1; JSON: array index + 1). The report says which column went to which field (`columns`) and which went
        to custom_fields."""
        upload = await read_upload(request, mapping, default_country)
        return await importer.run_import(conn, principal, upload.media_type, upload.options, upload.body,
                                         upload.how)

    @get("/{lead_id:uuid}", operation_id="getLead", summary="Get a lead")
    async def get_lead(self, conn: Conn, principal: Caller, lead_id: uuid.UUID) -> Lead:
        """One lead."""
        return await service.get(conn, principal, lead_id)

    @patch(
        "/{lead_id:uuid}",
        operation_id="updateLead",
        summary="Update a lead (only the fields sent; do_not_call is lifted only by an explicit false)",
        responses=problems(s409="Another lead has this phone."),
    )
    async def update_lead(
        self, conn: Conn, principal: Caller, lead_id: uuid.UUID, data: JSONBody[LeadUpdate]
    ) -> Lead:
        """Only the fields sent change. `do_not_call` set to true also stamps `do_not_call_at`; it is lifted
        only by an explicit `false`."""
        return await service.update(conn, principal, lead_id, data)

    @delete(
        "/{lead_id:uuid}",
        operation_id="deleteLead",
        summary="Delete a lead (soft)",
        status_code=HTTP_204_NO_CONTENT,
    )
    async def delete_lead(self, conn: Conn, principal: Caller, lead_id: uuid.UUID) -> None:
        """Soft delete: the lead leaves lists; its past calls keep their history."""
        await service.delete(conn, principal, lead_id)


route_handlers: list[Any] = [LeadController]
