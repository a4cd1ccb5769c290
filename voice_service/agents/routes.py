"""HTTP routes for agents."""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Response, delete, get, patch, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from voice_service.agents import service
from voice_service.agents.schemas import Agent, AgentCreate, AgentUpdate
from voice_service.auth import writes_need
from voice_service.deps import Caller, Conn, Reader
from voice_service.pagination import Page
from voice_service.params import Cursor, Limit


class AgentController(Controller):
    path = "/v1/agents"
    tags = ["agents"]
    guards = [writes_need("admin")]

    @get("/", operation_id="listAgents", summary="List agents, newest first")
    async def list_agents(self, reader: Reader, limit: int = Limit,
                          cursor: str | None = Cursor) -> Response[Page[Agent]]:
        return Response(await service.read_page(reader, limit, cursor), media_type=MediaType.JSON)

    @post("/", operation_id="createAgent", summary="Create an agent")
    async def create_agent(self, conn: Conn, principal: Caller, data: JSONBody[AgentCreate]) -> Agent:
        return await service.create(conn, principal, data)

    @get("/{agent_id:int}", operation_id="getAgent", summary="Get an agent")
    async def get_agent(self, reader: Reader, agent_id: int) -> Agent:
        return await service.read(reader, agent_id)

    @patch("/{agent_id:int}", operation_id="updateAgent", summary="Update an agent (only the fields sent)")
    async def update_agent(self, conn: Conn, principal: Caller, agent_id: int,
                           data: JSONBody[AgentUpdate]) -> Agent:
        return await service.update(conn, principal, agent_id, data)

    @delete("/{agent_id:int}", operation_id="deleteAgent", summary="Delete an agent (soft)",
            status_code=HTTP_204_NO_CONTENT)
    async def delete_agent(self, conn: Conn, principal: Caller, agent_id: int) -> None:
        await service.delete(conn, principal, agent_id)


route_handlers: list[Any] = [AgentController]
