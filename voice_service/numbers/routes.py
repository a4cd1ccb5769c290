"""HTTP routes for the phone numbers."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, delete, get, patch, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from voice_service.auth import writes_need
from voice_service.deps import Caller, Conn
from voice_service.numbers import service
from voice_service.numbers.schemas import Number, NumberCreate, NumberUpdate
from voice_service.openapi import problems
from voice_service.pagination import Page
from voice_service.params import Cursor, Limit, QueryParameter


class NumberController(Controller):
    path = "/v1/numbers"
    tags = ["numbers"]
    guards = [writes_need("admin")]

    @get("/", operation_id="listNumbers", summary="List numbers, newest first; filter by provider or status")
    async def list_numbers(self, conn: Conn, principal: Caller, limit: int = Limit,
                          cursor: str | None = Cursor,
                          provider: str | None = QueryParameter(name="provider", default=None, max_length=50),
                          status: str | None = QueryParameter(name="status", default=None, max_length=20),
                          ) -> Page[Number]:
        """Cursor-paginated, newest first: pass the page's `next_cursor` back as `cursor` for the next
        page; `next_cursor` is null on the last page.
        `provider` and `status` filter."""
        return await service.list_(conn, principal, limit, cursor, provider, status)

    @post("/", operation_id="createNumber", summary="Add a phone number",
          responses=problems(s409="The number is active in a tenant already."))
    async def create_voice(self, conn: Conn, principal: Caller, data: JSONBody[NumberCreate]) -> Number:
        """Registers a number the tenant holds with a carrier (`provider`). A number can be active in one
        tenant at a time: 409 while another tenant has it active. Needs the admin role."""
        return await service.create(conn, principal, data)

    @get("/{number_id:uuid}", operation_id="getNumber", summary="Get a number")
    async def get_voice(self, conn: Conn, principal: Caller, number_id: uuid.UUID) -> Number:
        """The number, its carrier, status and default (inbound) agent."""
        return await service.get(conn, principal, number_id)

    @patch("/{number_id:uuid}", operation_id="updateNumber", summary="Update a number (only the fields sent)",
           responses=problems(s409="The number is active in another tenant."))
    async def update_voice(self, conn: Conn, principal: Caller, number_id: uuid.UUID,
                           data: JSONBody[NumberUpdate]) -> Number:
        """Only the fields sent change. Setting `status` to `active` is a 409 when another tenant has the
        number active. Needs the admin role."""
        return await service.update(conn, principal, number_id, data)

    @delete("/{number_id:uuid}", operation_id="deleteNumber", summary="Delete a number (soft)",
            status_code=HTTP_204_NO_CONTENT)
    async def delete_voice(self, conn: Conn, principal: Caller, number_id: uuid.UUID) -> None:
        """Soft delete: the number no longer takes or places calls. Needs the admin role."""
        await service.delete(conn, principal, number_id)


route_handlers: list[Any] = [NumberController]
