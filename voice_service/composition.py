"""The composition root's wiring: how the domains collaborate, and the Runtime that carries it.

Lower domains never import higher ones; where one reacts to another's change, it calls a typed listener that is
assembled here from the reacting domain's functions, by plain imports:

- a call changes (calls) → batches move the entry (`on_answered`, `on_final`), billing triggers the post-call job
  (`on_progress`, `on_provider_price`) and schedules its timeout (`schedule_finalize_timeout`); a call placed or
  answered outside a batch holds its estimated cost on the wallet (`reserve_call`);
- a call is billed (billing) → the call analysis gets its pending row and job (`on_call_billed`).

Only the entry points (app.py; cli.py through workers.py) and tests import this module: it is the one place that
knows every domain taking part in a call's life.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from voice_service import runtime as runtime_mod
from voice_service.batches import hooks as batch_hooks
from voice_service.billing import pipeline as billing_pipeline
from voice_service.billing import wallet
from voice_service.billing.listeners import BillingListeners
from voice_service.bootstrap import AfterBootstrap
from voice_service.call_analysis import service as call_analysis
from voice_service.calls.listeners import CallListeners
from voice_service.runtime import Runtime
from voice_service.settings import Settings

__all__ = ["AFTER_BOOTSTRAP", "billing_listeners", "call_listeners", "open_runtime"]

# Run right after the first start creates the bootstrap tenant (`make run`): the demo credit in its wallet.
AFTER_BOOTSTRAP: tuple[AfterBootstrap, ...] = (wallet.give_demo_credit,)


def call_listeners() -> CallListeners:
    return CallListeners(
        on_answered=batch_hooks.on_call_answered,
        on_final=batch_hooks.on_call_final,
        on_progress=billing_pipeline.on_call_progress,
        on_provider_price=billing_pipeline.on_provider_price,
        schedule_finalize_timeout=billing_pipeline.schedule_finalize_timeout,
        reserve_call=wallet.reserve_call,
    )


def billing_listeners() -> BillingListeners:
    return BillingListeners(on_call_billed=call_analysis.schedule_analysis)


@asynccontextmanager
async def open_runtime(settings: Settings, *, apply_migrations: bool = True) -> AsyncIterator[Runtime]:
    """The process Runtime (pool, clients), wired with every domain's listeners."""
    async with runtime_mod.open_runtime(
        settings,
        call_listeners=call_listeners(),
        billing_listeners=billing_listeners(),
        apply_migrations=apply_migrations,
    ) as runtime:
        yield runtime
