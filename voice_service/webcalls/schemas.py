"""Web-call schemas: the request that creates a browser call to an agent, and what its creator gets back."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from voice_service.openapi import example
from voice_service.schemas import AgentRef, FreeJson, check_free_json

# scheme://host[:port], as a browser sends it in the Origin header (no path, no trailing slash).
Origin = Annotated[
    str,
    Meta(
        pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$",
        max_length=200,
        description="a web page's origin as browsers send it: scheme, host and port, e.g. https://shop.example.com",
    ),
]
MAX_ALLOWED_ORIGINS = 20


@example({"agent_id": 7, "variables": {"first_name": "Ann"}, "allowed_origins": ["https://shop.example.com"]})
class WebCallCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Start a call from a browser to `agent_id`. `variables` and the lead's fields fill the agent's prompts'
    `{{placeholders}}`, as on a phone call."""

    agent_id: Annotated[AgentRef, Meta(description="The agent that talks.")]
    variables: Annotated[FreeJson, Meta(description="Values for the prompts' `{{placeholders}}` (at most "
                                                    "16 KB).")] = {}
    lead_id: Annotated[uuid.UUID | None, Meta(description="The lead on the call: its fields fill the "
                                                          "prompts, and the call is linked to it.")] = None
    allowed_origins: Annotated[list[Origin], Meta(max_length=MAX_ALLOWED_ORIGINS,
                                                  description="Web pages allowed to open this call's socket, "
                                                              "besides the service's own origin and "
                                                              "CORS_ALLOWED_ORIGINS.")] = []

    def __post_init__(self) -> None:
        check_free_json({"variables": self.variables})


@example({"call_id": "0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b", "agent_id": 7, "status": "pending",
          "socket_url": "wss://voice.example.com/v1/web-calls/0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b/socket",
          "token": "wc_4Jm2Qx9Lr0TzVb7Yk3Hs", "token_expires_at": "2025-03-04T15:21:10Z", "protocol": "web-call.v1"})
class WebCall(msgspec.Struct, kw_only=True):
    """A created web call: hand `socket_url` and `token` to the browser that will talk to the agent."""

    call_id: uuid.UUID  # the call log's id (GET /v1/calls/{id})
    agent_id: int
    status: str
    socket_url: str  # wss://…/v1/web-calls/{call_id}/socket
    token: str  # single-use: send it in the socket's `start` message
    token_expires_at: datetime
    protocol: str = "web-call.v1"
