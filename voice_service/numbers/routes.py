"""HTTP routes for the phone numbers, and the platform's number assignments."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from voice_service.auth import platform_admin, writes_need
from voice_service.deps import Caller, Conn
from voice_service.numbers import service
from voice_service.numbers.schemas import Number, NumberAssign, NumberCreate, NumberUpdate
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

    @post("/", operation_id="createNumber", summary="Add a phone number of the carrier's account",
          responses=problems(s409="The number is held by a registration already.",
                             s503="The carrier could not say whether the number is on the account."))
    async def create_voice(self, request: Request[Any, Any, Any], principal: Caller,
                           data: JSONBody[NumberCreate]) -> Number:
        """Registers a number the tenant holds with a carrier (`provider`). The number must be on the account
        this service uses with that carrier (422 otherwise; 503 when the carrier cannot tell). A number another
        registration holds, active or not, is a 409 until that registration is deleted. Needs the admin role."""
        return await service.create(request.app.state.runtime, principal, data)

    @get("/{number_id:uuid}", operation_id="getNumber", summary="Get a number")
    async def get_voice(self, conn: Conn, principal: Caller, number_id: uuid.UUID) -> Number:
        """The number, its carrier, status and default (inbound) agent."""
        return await service.get(conn, principal, number_id)

    @patch("/{number_id:uuid}", operation_id="updateNumber", summary="Update a number (only the fields sent)",
           responses=problems(s503="The carrier could not say whether the number is on the account."))
    async def update_voice(self, request: Request[Any, Any, Any], principal: Caller, number_id: uuid.UUID,
                           data: JSONBody[NumberUpdate]) -> Number:
        """Only the fields sent change. Moving a number to another carrier checks that carrier's account, as
        registering does. Needs the admin role."""
        return await service.update(request.app.state.runtime, principal, number_id, data)

    @delete("/{number_id:uuid}", operation_id="deleteNumber", summary="Delete a number (soft)",
            status_code=HTTP_204_NO_CONTENT)
    async def delete_voice(self, conn: Conn, principal: Caller, number_id: uuid.UUID) -> None:
        """Soft delete: the number no longer takes or places calls. Needs the admin role."""
        await service.delete(conn, principal, number_id)


class PlatformNumberController(Controller):
    path = "/v1/admin/numbers"
    tags = ["numbers"]
    guards = [platform_admin]
    opt = {"exclude_from_auth": True}  # not a tenant API key: the platform's own token (the guard checks it)

    @post("/", operation_id="adminAssignNumber", summary="Give a tenant a number (no carrier account check)",
          description="For numbers the platform vouches for (ported in, not listed on the account yet). A number "
          "another registration holds is a 409.")
    async def assign(self, request: Request[Any, Any, Any], data: JSONBody[NumberAssign]) -> Number:
        return await service.assign(request.app.state.runtime, data)


route_handlers: list[Any] = [NumberController, PlatformNumberController]
