"""Schemas for tenants, API keys, voice permissions and voice profiles."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from voice_service.schemas import AgentRef, FreeJson, check_free_json

Role = Literal["owner", "admin", "member", "viewer"]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Email = Annotated[str, Meta(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class ApiKey(msgspec.Struct):
    id: uuid.UUID
    name: str
    role: Role
    prefix: str
    user_id: uuid.UUID | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    role: Role = "member"
    user_id: uuid.UUID | None = None
    user_email: Email | None = None
    expires_at: datetime | None = None


class ApiKeyCreated(ApiKey):
    key: str = ""  # shown once, never stored


class VoicePermission(msgspec.Struct):
    id: uuid.UUID
    user_id: uuid.UUID
    number_id: uuid.UUID | None
    voice_id: uuid.UUID | None
    is_active: bool
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class VoicePermissionCreate(msgspec.Struct, forbid_unknown_fields=True):
    user_id: uuid.UUID
    number_id: uuid.UUID | None = None
    voice_id: uuid.UUID | None = None
    is_active: bool = True
    metadata: FreeJson = {}

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})


class VoiceProfile(msgspec.Struct):
    user_id: uuid.UUID
    default_agent_id: int | None
    default_number_id: uuid.UUID | None
    preferences: dict[str, Any]
    metadata: dict[str, Any]
    updated_at: datetime | None


class VoiceProfileUpdate(msgspec.Struct, forbid_unknown_fields=True):
    default_agent_id: AgentRef | None | UnsetType = UNSET
    default_number_id: uuid.UUID | None | UnsetType = UNSET
    preferences: FreeJson | UnsetType = UNSET
    metadata: FreeJson | UnsetType = UNSET

    def __post_init__(self) -> None:
        check_free_json({"preferences": self.preferences, "metadata": self.metadata})


class TenantCreated(msgspec.Struct):
    tenant_id: uuid.UUID
    name: str
    api_key: str
