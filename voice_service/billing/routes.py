"""HTTP routes for billing (prices, wallet, ledger, usage events) and the platform-admin top-up API."""

from __future__ import annotations

import hmac
import uuid
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from voice_service.auth import writes_need
from voice_service.billing import service
from voice_service.billing.schemas import (
    LedgerTransaction,
    Price,
    PriceCreate,
    PriceList,
    Topup,
    TopupCreate,
    UsageEvent,
    Wallet,
)
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import Forbidden, Unauthorized
from voice_service.openapi import problems
from voice_service.pagination import Page
from voice_service.params import Cursor, Limit, QueryParameter


class BillingController(Controller):
    path = "/v1/billing"
    tags = ["billing"]
    guards = [writes_need("admin")]

    @get(
        "/pricing",
        operation_id="listPrices",
        summary="The pricing catalog in force: global list prices and the tenant's overrides",
    )
    async def list_prices(
        self,
        conn: Conn,
        principal: Caller,
        category: str | None = QueryParameter(name="category", default=None, max_length=50),
        provider: str | None = QueryParameter(name="provider", default=None, max_length=100),
        include_inactive: bool = QueryParameter(name="include_inactive", default=False),
    ) -> PriceList:
        """The prices used to price calls: global list prices (`tenant_id` null) and this tenant's
        overrides, newest effective first. `include_inactive` adds deactivated and superseded rows."""
        return await service.list_prices(
            conn, principal, category=category, provider=provider, include_inactive=include_inactive
        )

    @post(
        "/pricing",
        operation_id="createPrice",
        summary="Add a tenant price (overrides the global row for the same category/provider/model/unit)",
        description="Effective from `effective_from` (default now). The newest effective row wins; calls are "
        "priced with the rows in force when they started. unit_price is per unit (per token, per "
        "character, per minute).",
    )
    async def create_price(self, conn: Conn, principal: Caller, data: JSONBody[PriceCreate]) -> Price:
        return await service.create_price(conn, principal, data)

    @delete(
        "/pricing/{price_id:uuid}",
        operation_id="deactivatePrice",
        status_code=HTTP_204_NO_CONTENT,
        summary="Deactivate a tenant price (the global row applies again)",
    )
    async def deactivate_price(self, conn: Conn, principal: Caller, price_id: uuid.UUID) -> None:
        """The tenant's price stops applying; the global price for the same category, provider, model
        and unit applies again. Needs the admin role."""
        await service.deactivate_price(conn, principal, price_id)

    @get("/wallet", operation_id="getWallet", summary="The tenant wallet: balance, reserved, available")
    async def get_wallet(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller) -> Wallet:
        """`current_balance` minus `reserved_balance` (held for running batches) is `available_balance`.
        Calls are debited when billed; with ENFORCE_WALLET_BALANCE a batch that the available balance
        cannot cover is refused (402)."""
        return await service.get_wallet(conn, principal, request.app.state.settings.enforce_wallet_balance)

    @get("/ledger", operation_id="listLedgerTransactions", summary="Ledger transactions, newest first")
    async def list_ledger(
        self, conn: Conn, principal: Caller, limit: int = Limit, cursor: str | None = Cursor
    ) -> Page[LedgerTransaction]:
        """Cursor-paginated, newest first: pass the page's `next_cursor` back as `cursor` for the next
        page; `next_cursor` is null on the last page.
        Every change of the wallet balance (top-ups, call debits, adjustments), immutable, with the
        balance before and after."""
        return await service.list_ledger(conn, principal, limit, cursor)

    @get(
        "/usage-events",
        operation_id="listUsageEvents",
        summary="Billing usage events (one per call, one per analysis run, one per adjustment), newest first",
    )
    async def list_usage_events(
        self,
        conn: Conn,
        principal: Caller,
        limit: int = Limit,
        cursor: str | None = Cursor,
        feature_key: str | None = QueryParameter(name="feature_key", default=None, max_length=100),
        call_id: uuid.UUID | None = QueryParameter(name="call_id", default=None),
    ) -> Page[UsageEvent]:
        """Cursor-paginated, newest first: pass the page's `next_cursor` back as `cursor` for the next
        page; `next_cursor` is null on the last page.
        Filters: `feature_key`, `call_id`."""
        return await service.list_usage_events(
            conn, principal, limit, cursor, feature_key=feature_key, call_id=call_id
        )


def platform_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: `Authorization: Bearer <PLATFORM_ADMIN_TOKEN>` (the API is off while the setting is unset)."""
    expected = connection.app.state.settings.platform_admin_token
    if not expected:
        raise Forbidden("the platform admin API is disabled (set PLATFORM_ADMIN_TOKEN)")
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("invalid platform admin token", headers={"WWW-Authenticate": "Bearer"})


class PlatformAdminController(Controller):
    path = "/v1/billing/admin"
    tags = ["billing"]
    guards = [platform_admin]
    opt = {"exclude_from_auth": True}  # not a tenant API key: the platform's own token (the guard checks it)

    @post(
        "/topups",
        operation_id="adminTopup",
        status_code=HTTP_200_OK,
        summary="Credit a tenant wallet (the billing system posts payments here; idempotent per key)",
        security=[{"platformAdmin": []}],
        responses=problems(
            s401="The platform admin token is missing or wrong.",
            s403="The platform admin API is disabled: PLATFORM_ADMIN_TOKEN is not set.",
            s404="No such tenant.",
        ),
    )
    async def topup(self, request: Request[Any, Any, Any], data: JSONBody[TopupCreate]) -> Topup:
        """For the billing platform, not tenants: authenticated with `Authorization: Bearer <PLATFORM_ADMIN_TOKEN>`
        (the API is off, 403, while that setting is unset). Posting the same `idempotency_key` twice credits
        once; the second answer is the first top-up."""
        async with tenant_tx(request.app.state.pool, data.tenant_id) as conn:
            return await service.admin_topup(conn, data)


route_handlers: list[Any] = [BillingController, PlatformAdminController]
