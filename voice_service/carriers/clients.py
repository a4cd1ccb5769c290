"""The process's telephony provider clients, built from the carriers' declared settings on first use and closed
with the Runtime.

A carrier declares the setting names it reads (providers/telephony/carrier.py); this module looks each one up
(a Settings field of that name, or else the environment variable of the upper-cased name, so that a carrier a
deployment adds needs no Settings field) and hands the carrier's `build` a plain mapping. A carrier without its
required settings is unavailable: ServiceUnavailable names the environment variables to set.
"""

from __future__ import annotations

import os

import msgspec

from providers.telephony.base import TelephonyProvider, WebhookRequest
from providers.telephony.carrier import Carrier, CarrierConfig
from providers.telephony.registry import carrier
from voice_service.errors import ServiceUnavailable
from voice_service.runtime import Runtime
from voice_service.settings import Settings

__all__ = ["carrier_config", "get_provider", "webhook_provider"]

_SETTING_NAMES = frozenset(field.name for field in msgspec.structs.fields(Settings))


def carrier_config(settings: Settings, declared: Carrier) -> CarrierConfig:
    """The values of the settings a carrier declares. Raises ServiceUnavailable when a required one is unset."""
    config: dict[str, str | None] = {}
    for name in declared.settings:
        value = getattr(settings, name) if name in _SETTING_NAMES else os.environ.get(name.upper())
        config[name] = None if value is None or value == "" else str(value)
    if any(config[name] is None for name in declared.required):
        names = ", ".join(name.upper() for name in declared.required)
        raise ServiceUnavailable(f"{declared.title} is not configured ({names})")
    return config


async def get_provider(runtime: Runtime, name: str) -> TelephonyProvider:
    """The provider client `name` (twilio, vonage, simulator, …) of this process; closed when the Runtime closes.
    Raises ServiceUnavailable for an unknown or unconfigured carrier."""
    clients = runtime.carrier_clients
    provider = clients.get(name)
    if provider is not None:
        return provider
    async with runtime.carrier_clients_lock:
        provider = clients.get(name)
        if provider is None:
            try:
                declared = carrier(name)
            except ValueError as exc:
                raise ServiceUnavailable(str(exc)) from None
            config = carrier_config(runtime.settings, declared)
            try:
                provider = declared.build(config)
            except ValueError as exc:
                raise ServiceUnavailable(f"{declared.title} is misconfigured: {exc}") from None
            runtime.exit_stack.push_async_callback(provider.aclose)
            clients[name] = provider
    return provider


async def webhook_provider(
    runtime: Runtime, family: tuple[Carrier, ...], request: WebhookRequest
) -> TelephonyProvider | None:
    """The client that must verify a webhook on routes shared by `family`: the first configured one that owns it
    (Twilio-format webhooks name their AccountSid), else the family's first carrier; None when that one is not
    configured (nothing can verify the webhook)."""
    for member in family:
        try:
            provider = await get_provider(runtime, member.name)
        except ServiceUnavailable:
            continue  # that account is not configured: nothing it signed can be checked
        if provider.owns_webhook(request):
            return provider
    try:
        return await get_provider(runtime, family[0].name)
    except ServiceUnavailable:
        return None
