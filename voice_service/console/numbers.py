"""The phone numbers page: the tenant's numbers with their provider, status and default agent."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.response import Template

from voice_service.agents import service as agents
from voice_service.console.templating import page
from voice_service.deps import Caller, Conn
from voice_service.numbers import service as numbers
from voice_service.params import QueryParameter

PAGE_SIZE = 25


class NumberPages(Controller):
    path = "/numbers"

    @get("/", name="console:numbers")
    async def list_numbers(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                           cursor: str | None = QueryParameter(name="cursor", default=None, max_length=200)
                           ) -> Template:
        result = await numbers.list_(conn, principal, PAGE_SIZE, cursor, None, None)
        agent_list = (await agents.list_(conn, principal, 200, None)).items
        return page(request, "console/numbers/list.html", nav="numbers", numbers=result.items,
                    next_cursor=result.next_cursor, paged=cursor is not None,
                    agent_names={a.id: a.name for a in agent_list})
