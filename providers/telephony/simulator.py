"""The built-in simulator "carrier": Twilio's wire formats, pointed at a local simulator process.

Numbers with provider `simulator` place calls against SIMULATOR_BASE_URL (the Twilio REST paths), get
Twilio-signed status callbacks and a Twilio Media Streams socket, all from `voice-service simulate` or the
test helper `voice_service.simulator.Simulator`. No account anywhere: the account sid and auth token are
the simulator's own (SIMULATOR_ACCOUNT_SID / SIMULATOR_AUTH_TOKEN).

It shares Twilio's routes (/v1/telephony/twilio/…): a webhook naming the simulator's AccountSid is checked
with the simulator's token, any other with Twilio's; naming the other account's sid does not help a forger,
because the HMAC must still verify with that account's secret.
"""

from __future__ import annotations

from collections.abc import Callable

from twilio.http import AsyncHttpClient

from providers.telephony.carrier import Carrier, CarrierConfig
from providers.telephony.twilio import ROUTES, TwilioProvider

__all__ = ["CARRIER", "SimulatorProvider"]


class SimulatorProvider(TwilioProvider):
    """TwilioProvider under another name (place_call, hangup and transfer on Twilio's REST paths): status
    events and call logs say `simulator`."""

    name = "simulator"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        base_url: str,
        http_client_factory: Callable[[], AsyncHttpClient] | None = None,
    ) -> None:
        super().__init__(account_sid, auth_token, base_url=base_url, http_client_factory=http_client_factory)


def _build(config: CarrierConfig) -> SimulatorProvider:
    return SimulatorProvider(
        account_sid=config["simulator_account_sid"] or "",
        auth_token=config["simulator_auth_token"] or "",
        base_url=config["simulator_base_url"] or "",
    )


CARRIER = Carrier(
    name="simulator",
    title="The simulator",
    routes=ROUTES,
    build=_build,
    settings=("simulator_account_sid", "simulator_auth_token", "simulator_base_url"),
)
