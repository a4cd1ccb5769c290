"""Schemas of live call control: the commands' bodies and answers, and the listen token."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from voice_service.schemas import E164

__all__ = ["CommandResult", "ListenToken", "SayRequest", "TransferRequest"]

SAY_MAX_CHARS = 1000


class SayRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What the agent says now."""

    text: Annotated[str, Meta(min_length=1, max_length=SAY_MAX_CHARS)]
    # true: the agent stops what it is saying at once; false: it finishes the sentence it is saying first.
    interrupt: bool = True


class TransferRequest(msgspec.Struct, forbid_unknown_fields=True):
    to: E164


class CommandResult(msgspec.Struct):
    call_id: uuid.UUID
    command: Literal["end", "say", "transfer"]
    status: str  # the call's status once the command was applied (`ended` after an end, as a rule)
    end_reason: str | None = None
    # Set when the command could not reach the call's media and something else was done (see `end`).
    note: str | None = None


class ListenToken(msgspec.Struct):
    token: str
    expires_at: datetime
    listen_url: str  # path and query of the listen WebSocket with this token
