"""HTTP routes for events: the pull feed (`GET /v1/events`) and webhook endpoints (push)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from voice_service.auth import requires, writes_need
from voice_service.deps import Caller, Conn
from voice_service.events import service
from voice_service.events.schemas import (
    EventPage,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
)
from voice_service.pagination import MAX_LIMIT, Page
from voice_service.params import Cursor, Limit, QueryParameter


class EventController(Controller):
    path = "/v1/events"
    tags = ["events"]

    @get(
        "/",
        operation_id="listEvents",
        summary="Events after a cursor, oldest first (poll with `after` = the last `next_cursor`)",
        description="Every outbox event of the tenant, in commit-safe order: an event appears only once every "
        "transaction that started before it has finished, so paging never skips one. Consumers "
        "dedupe on `id`. `types` is a comma-separated list of event types.",
    )
    async def list_events(
        self,
        conn: Conn,
        principal: Caller,
        after: str | None = QueryParameter(name="after", default=None, max_length=60),
        types: str | None = QueryParameter(name="types", default=None, max_length=2000),
        limit: int = QueryParameter(name="limit", ge=1, le=MAX_LIMIT, default=100),
    ) -> EventPage:
        return await service.list_events(conn, principal, after=after, types=types, limit=limit)


class WebhookEndpointController(Controller):
    path = "/v1/webhook-endpoints"
    tags = ["events"]
    guards = [writes_need("admin")]

    @get("/", operation_id="listWebhookEndpoints", summary="List webhook endpoints, newest first")
    async def list_endpoints(
        self, conn: Conn, principal: Caller, limit: int = Limit, cursor: str | None = Cursor
    ) -> Page[WebhookEndpoint]:
        return await service.list_endpoints(conn, principal, limit, cursor)

    @post(
        "/",
        operation_id="createWebhookEndpoint",
        summary="Register a webhook endpoint; the signing secret is in this response only",
        description="Deliveries are signed with the Standard Webhooks scheme (`webhook-id` = event id, "
        "`webhook-timestamp`, `webhook-signature`). `event_types` [] = every type. The URL must be https "
        "and its host must not be a private, loopback, link-local or otherwise non-public address (checked "
        "again, after DNS resolution, at every delivery); otherwise 422 naming `url`.",
    )
    async def create_endpoint(
        self,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Caller,
        data: JSONBody[WebhookEndpointCreate],
    ) -> WebhookEndpointCreated:
        return await service.create_endpoint(conn, principal, data, request.app.state.settings)

    @get("/{endpoint_id:uuid}", operation_id="getWebhookEndpoint", summary="Get a webhook endpoint")
    async def get_endpoint(self, conn: Conn, principal: Caller, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        return await service.get_endpoint(conn, principal, endpoint_id)

    @delete(
        "/{endpoint_id:uuid}",
        operation_id="deleteWebhookEndpoint",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a webhook endpoint (its pending deliveries are abandoned)",
    )
    async def delete_endpoint(self, conn: Conn, principal: Caller, endpoint_id: uuid.UUID) -> None:
        await service.delete_endpoint(conn, principal, endpoint_id)

    @post(
        "/{endpoint_id:uuid}/enable",
        operation_id="enableWebhookEndpoint",
        status_code=HTTP_200_OK,
        guards=[requires("admin")],
        summary="Re-enable an endpoint disabled after repeated failures",
    )
    async def enable_endpoint(self, conn: Conn, principal: Caller, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        return await service.enable_endpoint(conn, principal, endpoint_id)

    @get(
        "/{endpoint_id:uuid}/deliveries",
        operation_id="listWebhookDeliveries",
        summary="The endpoint's deliveries, newest first, each with its attempt log",
    )
    async def list_deliveries(
        self,
        conn: Conn,
        principal: Caller,
        endpoint_id: uuid.UUID,
        limit: int = Limit,
        cursor: str | None = Cursor,
    ) -> Page[WebhookDelivery]:
        return await service.list_deliveries(conn, principal, endpoint_id, limit, cursor)


route_handlers: list[Any] = [EventController, WebhookEndpointController]
