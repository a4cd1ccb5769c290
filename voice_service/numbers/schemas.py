"""Phone number schemas (E.164 in and out; stored as country_code + base_number + e164)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from voice_service.openapi import example
from voice_service.schemas import E164, AgentRef, FreeJson, check_free_json

# One of the registered telephony carriers (providers/telephony/registry.py); the service checks which, so a carrier
# added to the registry needs no change here.
ProviderName = Annotated[
    str, Meta(min_length=1, max_length=50, description="a registered telephony carrier: twilio, vonage, simulator, …")
]
NumberStatus = Literal["active", "inactive", "suspended"]


@example({"id": "4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d", "phone_number": "+14155550142", "country_code": "1",
          "base_number": 4155550142, "provider": "twilio", "status": "active", "default_agent_id": 7,
          "metadata": {}, "created_at": "2025-03-01T09:00:00Z", "updated_at": "2025-03-01T09:00:00Z"})
class Number(msgspec.Struct):
    """A phone number of the tenant, with a carrier: calls are placed from it and inbound calls to it answered."""

    id: uuid.UUID
    phone_number: Annotated[str, Meta(description="E.164.")]
    country_code: Annotated[str, Meta(description="The country calling code, e.g. 1 or 44.")]
    base_number: Annotated[int, Meta(description="The national number without the country code.")]
    provider: Annotated[str, Meta(description="The carrier: twilio, vonage, simulator, …")]
    status: Annotated[str, Meta(description="active, inactive or suspended: only active numbers call.")]
    default_agent_id: Annotated[int | None, Meta(description="The agent that answers inbound calls; null: "
                                                              "inbound calls are refused politely.")]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@example({"phone_number": "+14155550142", "provider": "twilio", "default_agent_id": 7})
class NumberCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A number the tenant holds with a carrier."""

    phone_number: E164
    provider: ProviderName
    status: Annotated[NumberStatus, Meta(description="Only active numbers place and take calls.")] = "active"
    default_agent_id: Annotated[AgentRef | None, Meta(description="The agent that answers inbound calls.")] = None
    metadata: Annotated[FreeJson, Meta(description="Your own data (at most 16 KB).")] = {}

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})


@example({"tenant_id": "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c", "phone_number": "+14155550142",
          "provider": "twilio", "default_agent_id": 7})
class NumberAssign(msgspec.Struct, forbid_unknown_fields=True):
    """The platform gives a tenant a number (POST /v1/admin/numbers): no carrier account check."""

    tenant_id: Annotated[uuid.UUID, Meta(description="The tenant that gets the number.")]
    phone_number: Annotated[E164, Meta(description="The number (E.164).")]
    provider: Annotated[ProviderName, Meta(description="The carrier.")]
    status: Annotated[NumberStatus, Meta(description="Only active numbers place and take calls.")] = "active"
    default_agent_id: Annotated[AgentRef | None, Meta(description="The agent that answers inbound calls.")] = None
    metadata: Annotated[FreeJson, Meta(description="Your own data (at most 16 KB).")] = {}

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})


@example({"status": "inactive"})
class NumberUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The fields to change; a field not sent keeps its value."""

    provider: Annotated[ProviderName, Meta(description="The carrier.")] | UnsetType = UNSET
    status: Annotated[NumberStatus, Meta(description="Only active numbers place and take calls.")] | UnsetType = UNSET
    default_agent_id: Annotated[AgentRef | None, Meta(description="The agent that answers inbound calls; null: inbound "
                                                             "calls are refused politely.")] | UnsetType = UNSET
    metadata: Annotated[FreeJson, Meta(description="Your own data (at most 16 KB).")] | UnsetType = UNSET

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})
