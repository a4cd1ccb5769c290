"""HTTP routes for events: the pull feed (`GET /v1/events`) and webhook endpoints (push)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.openapi.spec import Example
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from voice_service.auth import requires, writes_need
from voice_service.deps import Caller, Conn
from voice_service.events import service
from voice_service.events.catalog import EventTypeInfo, event_types
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
        summary="Events after a cursor, oldest first (poll with `cursor` = the last `next_cursor`)",
        description="Every event of the tenant, in commit-safe order: an event appears only once every "
        "transaction that started before it has finished, so paging never skips one. Start without a cursor, "
        "then pass the page's `next_cursor` as `cursor`; `next_cursor` is there on the last page too (poll "
        "again with it later: the feed only grows). `after` is the former name of `cursor` and still works. "
        "Consumers dedupe on `id`. `types` is a comma-separated list of event types (`GET /v1/event-types`).",
    )
    async def list_events(
        self,
        conn: Conn,
        principal: Caller,
        cursor: str | None = QueryParameter(
            name="cursor", default=None, max_length=60, description="`next_cursor` of the previous page"
        ),
        after: str | None = QueryParameter(
            name="after", default=None, max_length=60, description="Former name of `cursor` (deprecated)"
        ),
        types: str | None = QueryParameter(
            name="types", default=None, max_length=2000, description="Only these event types, comma-separated",
            examples=[Example(value="voice_call.ended,voice_call.analyzed")],
        ),
        limit: int = QueryParameter(name="limit", ge=1, le=MAX_LIMIT, default=100,
                                    description=f"Page size (1–{MAX_LIMIT})"),
    ) -> EventPage:
        return await service.list_events(conn, principal, cursor=cursor, after=after, types=types, limit=limit)


class EventTypeController(Controller):
    path = "/v1/event-types"
    tags = ["events"]

    @get("/", operation_id="listEventTypes", summary="The event catalog: every event type and its payload schema")
    async def list_event_types(self) -> list[EventTypeInfo]:
        """Every type the event feed and webhooks carry, what it means, the JSON Schema of its `data`, and an
        example webhook body. The same bodies are in this document's `webhooks` section."""
        return event_types()


class WebhookEndpointController(Controller):
    path = "/v1/webhook-endpoints"
    tags = ["events"]
    guards = [writes_need("admin")]

    @get("/", operation_id="listWebhookEndpoints", summary="List webhook endpoints, newest first")
    async def list_endpoints(
        self, conn: Conn, principal: Caller, limit: int = Limit, cursor: str | None = Cursor
    ) -> Page[WebhookEndpoint]:
        """Cursor-paginated, newest first: pass the page's `next_cursor` back as `cursor` for the next
        page; `next_cursor` is null on the last page."""
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
        """The endpoint (never its secret), its status, and why it was disabled if it was."""
        return await service.get_endpoint(conn, principal, endpoint_id)

    @delete(
        "/{endpoint_id:uuid}",
        operation_id="deleteWebhookEndpoint",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a webhook endpoint (its pending deliveries are abandoned)",
    )
    async def delete_endpoint(self, conn: Conn, principal: Caller, endpoint_id: uuid.UUID) -> None:
        """Soft delete: no new deliveries; pending ones are abandoned. Needs the admin role."""
        await service.delete_endpoint(conn, principal, endpoint_id)

    @post(
        "/{endpoint_id:uuid}/enable",
        operation_id="enableWebhookEndpoint",
        status_code=HTTP_200_OK,
        guards=[requires("admin")],
        summary="Re-enable an endpoint disabled after repeated failures",
    )
    async def enable_endpoint(self, conn: Conn, principal: Caller, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        """An endpoint is disabled after 20 failed attempts in a row; this turns it back on (pending
        deliveries were abandoned; new events are delivered again). Needs the admin role."""
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
        """Cursor-paginated, newest first: pass the page's `next_cursor` back as `cursor` for the next
        page; `next_cursor` is null on the last page.
        Each delivery has its attempts (status code or error, duration)."""
        return await service.list_deliveries(conn, principal, endpoint_id, limit, cursor)


route_handlers: list[Any] = [EventController, EventTypeController, WebhookEndpointController]
