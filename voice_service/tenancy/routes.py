"""HTTP routes: API keys, voice permissions, the caller's voice profile."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, post, put
from litestar.params import JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from voice_service.auth import writes_need
from voice_service.deps import Caller, Conn
from voice_service.errors import BadRequest
from voice_service.openapi import problems
from voice_service.pagination import Page
from voice_service.params import Cursor, Limit, QueryParameter
from voice_service.tenancy import service
from voice_service.tenancy.schemas import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    VoicePermission,
    VoicePermissionCreate,
    VoiceProfile,
    VoiceProfileUpdate,
)


class ApiKeyController(Controller):
    path = "/v1/api-keys"
    tags = ["api-keys"]
    guards = [writes_need("admin")]

    @get("/", operation_id="listApiKeys", summary="List API keys (never the keys themselves)")
    async def list_keys(self, conn: Conn, principal: Caller, limit: int = Limit,
                        cursor: str | None = Cursor) -> Page[ApiKey]:
        """Cursor-paginated, newest first: pass the page's `next_cursor` back as `cursor` for the next
        page; `next_cursor` is null on the last page.
        The keys themselves are never shown again: only their prefix."""
        return await service.list_api_keys(conn, principal, limit, cursor)

    @post("/", operation_id="createApiKey", summary="Create an API key; the key is in the response, once",
          responses=problems(s403="The key's role is below admin, or the new key's role is above the caller's."))
    async def create_key(self, conn: Conn, principal: Caller, data: JSONBody[ApiKeyCreate]) -> ApiKeyCreated:
        """The key (`vsk_…`) is in this response only; store it. Needs the admin role, and a key cannot be
        given a higher role than the caller's (403). `user_email` binds the key to a user (created as a
        member if new): members' keys must be bound to place calls."""
        return await service.create_api_key(conn, principal, data)

    @delete("/{key_id:uuid}", operation_id="revokeApiKey", summary="Revoke an API key",
            status_code=HTTP_204_NO_CONTENT,
        responses=problems(s403="The key's role is below admin, or the key to revoke has a higher role."),
    )
    async def revoke_key(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                         key_id: uuid.UUID) -> None:
        """The key stops working at once (401 on its next request). An admin cannot revoke an owner's key."""
        await service.revoke_api_key(conn, principal, key_id)
        request.app.state.key_cache.evict_key(key_id)


class VoicePermissionController(Controller):
    path = "/v1/voice-permissions"
    tags = ["voice-permissions"]
    guards = [writes_need("admin")]

    @get("/", operation_id="listVoicePermissions", summary="List voice permissions (optionally for one user)")
    async def list_permissions(self, conn: Conn, principal: Caller,
                               user_id: uuid.UUID | None = QueryParameter(name="user_id", default=None),
                               limit: int = Limit, cursor: str | None = Cursor) -> Page[VoicePermission]:
        """Cursor-paginated, newest first: pass the page's `next_cursor` back as `cursor` for the next
        page; `next_cursor` is null on the last page.
        `user_id` shows one member's grants."""
        return await service.list_permissions(conn, principal, user_id, limit, cursor)

    @post("/", operation_id="createVoicePermission", summary="Grant a member a number and/or a voice",
          responses=problems(s409="This grant exists already."))
    async def create_permission(self, conn: Conn, principal: Caller,
                                data: JSONBody[VoicePermissionCreate]) -> VoicePermission:
        """Lets a member call from a number and/or speak with a voice (members place calls only with
        granted numbers and voices; admins and owners need no grants). Needs the admin role."""
        return await service.create_permission(conn, principal, data)

    @delete("/", operation_id="deleteVoicePermission", summary="Remove a voice permission (?id=)",
            status_code=HTTP_204_NO_CONTENT)
    async def delete_permission_q(self, conn: Conn, principal: Caller,
                                  id: uuid.UUID | None = QueryParameter(name="id", default=None)) -> None:  # noqa: A002
        """The same as `DELETE /v1/voice-permissions/{perm_id}`, with the id in `?id=`."""
        if id is None:
            raise BadRequest("pass the permission's id as ?id=", field="id")
        await service.delete_permission(conn, principal, id)

    @delete("/{perm_id:uuid}", operation_id="deleteVoicePermissionById", summary="Remove a voice permission",
            status_code=HTTP_204_NO_CONTENT)
    async def delete_permission(self, conn: Conn, principal: Caller, perm_id: uuid.UUID) -> None:
        """Removes one grant. Needs the admin role."""
        await service.delete_permission(conn, principal, perm_id)


class VoiceProfileController(Controller):
    path = "/v1/voice-profiles"
    tags = ["voice-profiles"]
    guards = [writes_need("member")]

    @get("/me", operation_id="getMyVoiceProfile", summary="The calling user's voice defaults")
    async def get_me(self, conn: Conn, principal: Caller) -> VoiceProfile:
        """The calling user's own voice defaults (keys not bound to a user have none: empty defaults)."""
        return await service.get_profile(conn, principal)

    @put("/me", operation_id="putMyVoiceProfile", summary="Set the calling user's voice defaults")
    async def put_me(self, conn: Conn, principal: Caller, data: JSONBody[VoiceProfileUpdate]) -> VoiceProfile:
        """Replaces the calling user's voice defaults (`preferences` at most 16 KB)."""
        return await service.put_profile(conn, principal, data)


route_handlers: list[Any] = [ApiKeyController, VoicePermissionController, VoiceProfileController]
