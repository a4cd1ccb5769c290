"""HTTP routes for agents."""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, delete, get, patch, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from voice_service.agents import service
from voice_service.agents.schemas import Agent, AgentCreate, AgentUpdate
from voice_service.auth import writes_need
from voice_service.deps import Caller, Conn, reader_of
from voice_service.pagination import Page
from voice_service.params import Cursor, Limit


class AgentController(Controller):
    path = "/v1/agents"
    tags = ["agents"]
    guards = [writes_need("admin")]

    @get("/", operation_id="listAgents", summary="List agents, newest first")
    async def list_agents(self, request: Request[Any, Any, Any], limit: int = Limit,
                          cursor: str | None = Cursor) -> Response[Page[Agent]]:
        """Cursor-paginated, newest first: pass the page's `next_cursor` back as `cursor` for the next
        page; `next_cursor` is null on the last page."""
        # The page comes pre-encoded by PostgreSQL as this Page[Agent]'s JSON (one round trip, no re-encoding):
        # the annotation documents the body; the bytes are that document.
        body: Any = await service.read_page(reader_of(request), limit, cursor)
        return Response(body, media_type=MediaType.JSON)

    @post("/", operation_id="createAgent", summary="Create an agent")
    async def create_agent(self, conn: Conn, principal: Caller, data: JSONBody[AgentCreate]) -> Agent:
        """Needs the admin role. `voice_id` must be a voice of the tenant's catalog (422 otherwise); the
        `config` fields not sent take their defaults, which the response shows."""
        return await service.create(conn, principal, data)

    @get("/{agent_id:int}", operation_id="getAgent", summary="Get an agent")
    async def get_agent(self, request: Request[Any, Any, Any], agent_id: int) -> Response[Agent]:
        """The agent with its full config (defaults filled in)."""
        # Pre-encoded as this Agent's JSON (service.read_json): the annotation documents the body.
        body: Any = await service.read_json(reader_of(request), agent_id)
        return Response(body, media_type=MediaType.JSON)

    @patch("/{agent_id:int}", operation_id="updateAgent", summary="Update an agent (only the fields sent)")
    async def update_agent(self, conn: Conn, principal: Caller, agent_id: int,
                           data: JSONBody[AgentUpdate]) -> Agent:
        """Only the fields sent change; `null` clears a nullable field (e.g. `"voice_id": null`).
        Needs the admin role."""
        return await service.update(conn, principal, agent_id, data)

    @delete("/{agent_id:int}", operation_id="deleteAgent", summary="Delete an agent (soft)",
            status_code=HTTP_204_NO_CONTENT)
    async def delete_agent(self, conn: Conn, principal: Caller, agent_id: int) -> None:
        """Soft delete: the agent disappears from lists and reads (404), its past calls keep pointing at it.
        Needs the admin role."""
        await service.delete(conn, principal, agent_id)


route_handlers: list[Any] = [AgentController]
