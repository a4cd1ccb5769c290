"""Schemas of live call control: the commands' bodies and answers, and the listen token."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from voice_service.openapi import example
from voice_service.schemas import E164

__all__ = ["CommandResult", "ListenToken", "SayRequest", "TransferRequest"]

SAY_MAX_CHARS = 1000


@example({"text": "One moment please, I am checking that for you.", "interrupt": False})
class SayRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What the agent says now."""

    text: Annotated[str, Meta(min_length=1, max_length=SAY_MAX_CHARS,
                              description="The line the agent speaks; it goes into the transcript.")]
    interrupt: Annotated[bool, Meta(description="true: the agent stops what it is saying at once; false: it "
                                                "finishes the sentence it is saying first.")] = True


@example({"to": "+14155550123"})
class TransferRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Where the call goes."""

    to: Annotated[E164, Meta(description="The number the carrier connects the caller to (E.164).")]


@example({"call_id": "0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b", "command": "say", "status": "ongoing",
          "end_reason": None, "note": None})
class CommandResult(msgspec.Struct):
    """What became of a live-call command."""

    call_id: uuid.UUID
    command: Literal["end", "say", "transfer"]
    status: str  # the call's status once the command was applied (`ended` after an end, as a rule)
    end_reason: str | None = None
    # Set when the command could not reach the call's media and something else was done (see `end`).
    note: str | None = None


@example({"token": "lt_9bV3q1m2Zx7kP0aQwErTy", "expires_at": "2025-03-04T15:21:10Z",
          "listen_url": "/v1/calls/0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b/listen?token=lt_9bV3q1m2Zx7kP0aQwErTy"})
class ListenToken(msgspec.Struct):
    """A single-use token for the listen WebSocket (browsers cannot send an API key header there)."""

    token: str
    expires_at: datetime
    listen_url: str  # path and query of the listen WebSocket with this token
