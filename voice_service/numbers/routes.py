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
        return await service.list_(conn, principal, limit, cursor, provider, status)

    @post("/", operation_id="createNumber", summary="Add a phone number")
    async def create_voice(self, conn: Conn, principal: Caller, data: JSONBody[NumberCreate]) -> Number:
        return await service.create(conn, principal, data)

    @get("/{number_id:uuid}", operation_id="getNumber", summary="Get a number")
    async def get_voice(self, conn: Conn, principal: Caller, number_id: uuid.UUID) -> Number:
        return await service.get(conn, principal, number_id)

    @patch("/{number_id:uuid}", operation_id="updateNumber", summary="Update a number (only the fields sent)")
    async def update_voice(self, conn: Conn, principal: Caller, number_id: uuid.UUID,
                           data: JSONBody[NumberUpdate]) -> Number:
        return await service.update(conn, principal, number_id, data)

    @delete("/{number_id:uuid}", operation_id="deleteNumber", summary="Delete a number (soft)",
            status_code=HTTP_204_NO_CONTENT)
    async def delete_voice(self, conn: Conn, principal: Caller, number_id: uuid.UUID) -> None:
        await service.delete(conn, principal, number_id)


route_handlers: list[Any] = [NumberController]
