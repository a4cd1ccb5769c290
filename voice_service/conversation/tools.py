"""The tools the conversation LLM may call (`end_call`, `transfer_call`) and the call transfer itself.

Transfer goes through the call's telephony provider with the provider's own REST client. The provider
protocol has no transfer method (yet), so this module reaches the adapters' clients:

* Twilio (and the simulator, Twilio's wire format): update the live call with `<Dial>` TwiML. Twilio then
  ends the `<Connect><Stream>` (the media socket gets `stop`) and dials the target.
* Vonage: `PUT /v1/calls/{uuid}` with a `transfer` action to an NCCO that connects the target. The
  WebSocket leg is closed by Vonage (1000) once the phone leg has moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import aiohttp
import msgspec
from twilio.base.exceptions import TwilioException, TwilioRestException

from providers.telephony.base import ProviderError, TelephonyProvider
from providers.telephony.twilio import TwilioProvider
from providers.telephony.vonage import VonageProvider
from voice_service.agents.schemas import TransferTarget

END_CALL = "end_call"
TRANSFER_CALL = "transfer_call"

_args_decoder = msgspec.json.Decoder(dict[str, Any])


def tool_schemas(transfer_targets: Sequence[TransferTarget]) -> list[dict[str, Any]]:
    """OpenAI `tools` for a call: end_call always, transfer_call when the agent has transfer targets."""
    tools: list[dict[str, Any]] = [
        {
            "type": "function",
            "function": {
                "name": END_CALL,
                "description": "Hang up the call once the conversation is over. Say goodbye in the same turn.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "reason": {"type": "string", "description": "Why the call ends, in a few words."}
                    },
                    "required": [],
                    "additionalProperties": False,
                },
            },
        }
    ]
    if transfer_targets:
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": TRANSFER_CALL,
                    "description": "Transfer the caller to a person or team. Tell the caller first.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "target": {
                                "type": "string",
                                "enum": [t.name for t in transfer_targets],
                                "description": "Who to transfer the caller to.",
                            }
                        },
                        "required": ["target"],
                        "additionalProperties": False,
                    },
                },
            }
        )
    return tools


def parse_arguments(arguments: str) -> dict[str, Any]:
    """The model's JSON arguments; malformed JSON (models do write it) counts as no arguments."""
    try:
        return _args_decoder.decode(arguments or "{}")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return {}


def find_target(targets: Sequence[TransferTarget], wanted: Any) -> TransferTarget | None:
    """A configured target by name (case-insensitive) or by its exact E.164 number; never any other number."""
    if not isinstance(wanted, str):
        return None
    key = wanted.strip().casefold()
    for target in targets:
        if target.name.casefold() == key or target.phone == wanted.strip():
            return target
    return None


def _dial_twiml(to_e164: str, caller_id: str | None) -> str:
    caller = f" callerId={quoteattr(caller_id)}" if caller_id else ""
    return f"<Response><Dial{caller}><Number>{escape(to_e164)}</Number></Dial></Response>"


async def transfer_call(
    provider: TelephonyProvider, provider_call_id: str, to_e164: str, *, caller_id: str | None
) -> None:
    """Move the live call to `to_e164`. Raises ProviderError."""
    if isinstance(provider, TwilioProvider):
        try:
            # TwilioProvider has no transfer method; its lazily built REST client is the one to use.
            await provider._rest().calls(provider_call_id).update_async(twiml=_dial_twiml(to_e164, caller_id))
        except TwilioRestException as exc:
            code = "rejected" if 400 <= exc.status < 500 else "unavailable"
            raise ProviderError(code, exc.msg, status=exc.status, retryable=exc.status >= 500) from exc
        except (TwilioException, aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError("unavailable", f"Twilio transfer failed: {exc!r}", retryable=True) from exc
        return
    if isinstance(provider, VonageProvider):
        connect: dict[str, Any] = {
            "action": "connect",
            "endpoint": [{"type": "phone", "number": to_e164.removeprefix("+")}],
        }
        if caller_id:
            connect["from"] = caller_id.removeprefix("+")
        body = {"action": "transfer", "destination": {"type": "ncco", "ncco": [connect]}}
        response = await provider._request("PUT", f"/v1/calls/{provider_call_id}", body)
        if response.status_code >= 300:
            detail = response.text[:300]
            code = "rejected" if response.status_code < 500 else "unavailable"
            raise ProviderError(
                code,
                f"Vonage transfer failed: {detail}",
                status=response.status_code,
                retryable=code == "unavailable",
            )
        return
    raise ProviderError("rejected", f"provider {provider.name!r} cannot transfer calls")
