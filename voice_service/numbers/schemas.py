"""Phone number schemas (E.164 in and out; stored as country_code + base_number + e164)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from voice_service.schemas import E164, FreeJson, check_free_json

# One of the registered telephony carriers (providers/telephony/registry.py); the service checks which, so a carrier
# added to the registry needs no change here.
ProviderName = Annotated[
    str, Meta(min_length=1, max_length=50, description="a registered telephony carrier: twilio, vonage, simulator, …")
]
NumberStatus = Literal["active", "inactive", "suspended"]


class Number(msgspec.Struct):
    id: uuid.UUID
    phone_number: str
    country_code: str
    base_number: int
    provider: str
    status: str
    default_agent_id: int | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class NumberCreate(msgspec.Struct, forbid_unknown_fields=True):
    phone_number: E164
    provider: ProviderName
    status: NumberStatus = "active"
    default_agent_id: int | None = None
    metadata: FreeJson = {}

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})


class NumberAssign(msgspec.Struct, forbid_unknown_fields=True):
    """The platform gives a tenant a number (POST /v1/admin/numbers): no carrier account check."""

    tenant_id: uuid.UUID
    phone_number: E164
    provider: ProviderName
    status: NumberStatus = "active"
    default_agent_id: int | None = None
    metadata: FreeJson = {}

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})


class NumberUpdate(msgspec.Struct, forbid_unknown_fields=True):
    provider: ProviderName | UnsetType = UNSET
    status: NumberStatus | UnsetType = UNSET
    default_agent_id: int | None | UnsetType = UNSET
    metadata: FreeJson | UnsetType = UNSET

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})
