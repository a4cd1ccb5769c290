"""HTTP routes for the voice catalog."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, delete, get, patch, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from voice_service.auth import writes_need
from voice_service.deps import Caller, Conn
from voice_service.pagination import Page
from voice_service.params import Cursor, Limit, QueryParameter
from voice_service.voices import service
from voice_service.voices.schemas import Voice, VoiceCreate, VoiceUpdate


class VoiceController(Controller):
    path = "/v1/voices"
    tags = ["voices"]
    guards = [writes_need("admin")]

    @get("/", operation_id="listVoices", summary="List voices, newest first; filter by provider or language")
    async def list_voices(self, conn: Conn, principal: Caller, limit: int = Limit,
                          cursor: str | None = Cursor,
                          provider: str | None = QueryParameter(name="provider", default=None, max_length=50),
                          language: str | None = QueryParameter(name="language", default=None, max_length=35),
                          ) -> Page[Voice]:
        """Cursor-paginated, newest first: pass the page's `next_cursor` back as `cursor` for the next
        page; `next_cursor` is null on the last page.
        `provider` and `language` filter."""
        return await service.list_(conn, principal, limit, cursor, provider, language)

    @post("/", operation_id="createVoice", summary="Add a voice to the catalog")
    async def create_voice(self, conn: Conn, principal: Caller, data: JSONBody[VoiceCreate]) -> Voice:
        """Adds a TTS voice (provider, provider voice id, language) that agents and calls can speak with.
        Needs the admin role."""
        return await service.create(conn, principal, data)

    @get("/{voice_id:uuid}", operation_id="getVoice", summary="Get a voice")
    async def get_voice(self, conn: Conn, principal: Caller, voice_id: uuid.UUID) -> Voice:
        """One voice of the catalog."""
        return await service.get(conn, principal, voice_id)

    @patch("/{voice_id:uuid}", operation_id="updateVoice", summary="Update a voice (only the fields sent)")
    async def update_voice(self, conn: Conn, principal: Caller, voice_id: uuid.UUID,
                           data: JSONBody[VoiceUpdate]) -> Voice:
        """Only the fields sent change. Needs the admin role."""
        return await service.update(conn, principal, voice_id, data)

    @delete("/{voice_id:uuid}", operation_id="deleteVoice", summary="Delete a voice (soft)",
            status_code=HTTP_204_NO_CONTENT)
    async def delete_voice(self, conn: Conn, principal: Caller, voice_id: uuid.UUID) -> None:
        """Soft delete: agents still naming it fall back to the default voice. Needs the admin role."""
        await service.delete(conn, principal, voice_id)


route_handlers: list[Any] = [VoiceController]
