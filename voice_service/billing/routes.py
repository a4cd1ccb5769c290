"""HTTP routes for billing (prices, wallet, ledger, usage events) and the platform's billing API (prices, top-ups).

Prices are the platform's: a tenant key of any role reads them, and the tenant's own write routes answer 403.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from voice_service.auth import platform_admin, writes_need
from voice_service.billing import service
from voice_service.billing.schemas import (
    LedgerTransaction,
    PlatformPrice,
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
from voice_service.errors import Forbidden
from voice_service.openapi import problems
from voice_service.pagination import Page
from voice_service.params import Cursor, Limit, QueryParameter

_PLATFORM_PRICES = (
    "prices are set by the platform's billing system (POST /v1/billing/admin/pricing with the platform token), "
    "never with a tenant's key; GET /v1/billing/pricing shows the prices in force for your tenant"
)


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
        summary="Refused (403): prices are set by the platform",
        description="A tenant key of any role reads its prices but never changes what the tenant pays. The "
        "platform's billing system sets global and per-tenant prices with POST /v1/billing/admin/pricing.",
    )
    async def create_price(self, principal: Caller) -> Price:
        raise Forbidden(_PLATFORM_PRICES)

    @delete(
        "/pricing/{price_id:uuid}",
        operation_id="deactivatePrice",
        status_code=HTTP_204_NO_CONTENT,
        summary="Refused (403): prices are ended by the platform",
    )
    async def deactivate_price(self, principal: Caller, price_id: uuid.UUID) -> None:
        """Refused for every tenant key (403): prices, the tenant's own included, are set and ended only by the
        platform (`DELETE /v1/billing/admin/pricing/{price_id}` with the platform token)."""
        raise Forbidden(_PLATFORM_PRICES)

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


class PlatformAdminController(Controller):
    path = "/v1/billing/admin"
    tags = ["billing"]
    guards = [platform_admin]
    opt = {"exclude_from_auth": True}  # not a tenant API key: the platform's own token (the guard checks it)

    @post(
        "/pricing",
        operation_id="adminCreatePrice",
        summary="Set a price: global (no tenant_id) or one tenant's; from now on or a future instant",
        description="Never in the past (422 on effective_from): calls already made keep their price. The row it "
        "replaces (same tenant or global, category, provider, model, unit, direction, country, currency) ends "
        "where the new one starts. unit_price is per unit (per token, per character, per minute).",
    )
    async def create_price(self, request: Request[Any, Any, Any], data: JSONBody[PriceCreate]) -> PlatformPrice:
        return await service.platform_add_price(request.app.state.pool, data)

    @get("/pricing", operation_id="adminListPrices", summary="Global prices, and one tenant's with tenant_id")
    async def list_prices(
        self,
        request: Request[Any, Any, Any],
        tenant_id: uuid.UUID | None = QueryParameter(name="tenant_id", default=None),
        category: str | None = QueryParameter(name="category", default=None, max_length=50),
        provider: str | None = QueryParameter(name="provider", default=None, max_length=100),
        include_inactive: bool = QueryParameter(name="include_inactive", default=False),
    ) -> list[PlatformPrice]:
        """For the billing platform (`Authorization: Bearer <PLATFORM_ADMIN_TOKEN>`): the global catalog, or with
        `tenant_id` that tenant's own prices; only the rows in force now unless `include_inactive`."""
        return await service.platform_list_prices(request.app.state.pool, tenant_id, category=category,
                                                  provider=provider, include_inactive=include_inactive)

    @delete(
        "/pricing/{price_id:uuid}",
        operation_id="adminEndPrice",
        status_code=HTTP_204_NO_CONTENT,
        summary="End a price from now on (a price not in force yet is withdrawn)",
    )
    async def end_price(self, request: Request[Any, Any, Any], price_id: uuid.UUID) -> None:
        """For the billing platform (`Authorization: Bearer <PLATFORM_ADMIN_TOKEN>`): the price stops applying
        now; calls already billed keep it. A price whose `effective_from` is still ahead is withdrawn."""
        await service.platform_end_price(request.app.state.pool, price_id)

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
