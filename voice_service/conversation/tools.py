"""The tools the conversation LLM may call (`end_call`, `transfer_call`): their OpenAI schemas, argument parsing
and target lookup. The transfer itself is the call's telephony provider's `transfer` (TelephonyProvider).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from providers.telephony.base import TelephonyProvider
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


async def transfer_call(
    provider: TelephonyProvider, provider_call_id: str, to_e164: str, *, caller_id: str | None
) -> None:
    """Move the live call to `to_e164` through its provider. Raises ProviderError."""
    await provider.transfer(provider_call_id, to_e164, caller_id=caller_id)
