"""Provider lookup by name: a new telephony provider is one module plus one line here."""

from __future__ import annotations

from typing import Any

from providers.telephony.base import TelephonyProvider
from providers.telephony.simulator import SimulatorProvider
from providers.telephony.twilio import TwilioProvider
from providers.telephony.vonage import VonageProvider

__all__ = ["PROVIDERS", "build_provider"]

PROVIDERS: dict[str, type] = {
    "twilio": TwilioProvider,
    "vonage": VonageProvider,
    "simulator": SimulatorProvider,
}


def build_provider(name: str, **kwargs: Any) -> TelephonyProvider:
    """Instantiate the provider registered under `name` with its constructor's keyword arguments."""
    try:
        cls = PROVIDERS[name]
    except KeyError:
        raise ValueError(
            f"unknown telephony provider {name!r}; known: {', '.join(sorted(PROVIDERS))}"
        ) from None
    return cls(**kwargs)
