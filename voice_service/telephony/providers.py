"""The process's telephony provider clients, built from settings on first use and closed with the Runtime.

Twilio-format webhooks come from two "accounts": Twilio itself and the local simulator. Which auth token checks
a request is chosen by the AccountSid it names; naming the other account's sid does not help a forger, because
the HMAC must still verify with that account's token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from providers.telephony.base import TelephonyProvider
from providers.telephony.registry import build_provider
from voice_service.errors import ServiceUnavailable
from voice_service.runtime import Runtime
from voice_service.settings import Settings

__all__ = ["get_provider", "provider_for_twilio_account", "twilio_format_provider_name"]

_KEY = "telephony:{}"
_LOCK_KEY = "telephony:lock"


def _kwargs(name: str, settings: Settings) -> dict[str, object]:
    if name == "twilio":
        if not (settings.twilio_account_sid and settings.twilio_auth_token):
            raise ServiceUnavailable("Twilio is not configured (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)")
        return {
            "account_sid": settings.twilio_account_sid,
            "auth_token": settings.twilio_auth_token,
            "base_url": settings.twilio_base_url,
        }
    if name == "simulator":
        return {
            "account_sid": settings.simulator_account_sid,
            "auth_token": settings.simulator_auth_token,
            "base_url": settings.simulator_base_url,
        }
    if name == "vonage":
        if not (settings.vonage_application_id and settings.vonage_signature_secret):
            raise ServiceUnavailable(
                "Vonage is not configured (VONAGE_APPLICATION_ID, VONAGE_SIGNATURE_SECRET)"
            )
        # Without a private key the provider still verifies webhooks and answers calls; placing a call
        # fails with a clear error from the JWT signer.
        return {
            "application_id": settings.vonage_application_id,
            "private_key_pem": settings.vonage_private_key or "",
            "signature_secret": settings.vonage_signature_secret,
            "base_url": settings.vonage_base_url,
        }
    raise ServiceUnavailable(f"unknown telephony provider {name!r}")


async def get_provider(runtime: Runtime, name: str) -> TelephonyProvider:
    """The provider client `name` (twilio, vonage, simulator) of this process; closed when the Runtime closes."""
    key = _KEY.format(name)
    provider = runtime.extras.get(key)
    if provider is not None:
        return provider  # type: ignore[no-any-return]
    lock = runtime.extras.setdefault(_LOCK_KEY, asyncio.Lock())
    async with lock:
        provider = runtime.extras.get(key)
        if provider is None:
            provider = build_provider(name, **_kwargs(name, runtime.settings))
            runtime.exit_stack.push_async_callback(provider.aclose)
            runtime.extras[key] = provider
    return provider  # type: ignore[no-any-return]


def twilio_format_provider_name(settings: Settings, form: Mapping[str, str]) -> str:
    """`simulator` when a Twilio-format webhook names the simulator's account, else `twilio`."""
    return "simulator" if form.get("AccountSid") == settings.simulator_account_sid else "twilio"


async def provider_for_twilio_account(runtime: Runtime, form: Mapping[str, str]) -> TelephonyProvider:
    return await get_provider(runtime, twilio_format_provider_name(runtime.settings, form))
