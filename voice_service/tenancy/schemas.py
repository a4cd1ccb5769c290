"""Schemas for tenants, API keys, voice permissions and voice profiles."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from voice_service.openapi import example
from voice_service.schemas import AgentRef, FreeJson, check_free_json

Role = Literal["owner", "admin", "member", "viewer"]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Email = Annotated[str, Meta(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


_KEY = {"id": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d", "name": "CRM sync", "role": "member",
        "prefix": "vsk_3kF9xQ2a", "user_id": "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b",
        "created_at": "2025-03-01T09:00:00Z", "last_used_at": None, "expires_at": None, "revoked_at": None}


@example(_KEY)
class ApiKey(msgspec.Struct):
    """An API key of the tenant (never the key itself: only its prefix)."""

    id: uuid.UUID
    name: str
    role: Annotated[Role, Meta(description="viewer < member < admin < owner.")]
    prefix: Annotated[str, Meta(description="The key's first 12 characters, to recognise it.")]
    user_id: Annotated[uuid.UUID | None, Meta(description="The user the key acts as, if bound to one.")]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


@example({"name": "CRM sync", "role": "member", "user_email": "ann@example.com"})
class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new key; at most the caller's own role."""

    name: Annotated[Name, Meta(description="What the key is for.", examples=["CRM sync"])]
    role: Annotated[Role, Meta(description="viewer reads; member also places calls (with permissions); admin "
                                           "and owner manage the tenant.")] = "member"
    user_id: Annotated[uuid.UUID | None, Meta(description="Bind the key to this existing user.")] = None
    user_email: Annotated[Email | None, Meta(description="Bind the key to the user with this email (created as "
                                                         "a member of the tenant if new).")] = None
    expires_at: Annotated[datetime | None, Meta(description="The key stops working then; null: never.")] = None


@example({**_KEY, "key": "vsk_3kF9xQ2aR7tY1uI8oP4aS6dF0gH2jK5l"})
class ApiKeyCreated(ApiKey):
    key: Annotated[str, Meta(description="The key: shown in this response only, never stored (only its hash "
                                         "is).")] = ""


@example({"id": "8e7d6c5b-4a39-4827-9615-04f3e2d1c0b9", "user_id": "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b",
          "number_id": "4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d", "voice_id": None, "is_active": True, "metadata": {},
          "created_at": "2025-03-01T09:00:00Z", "updated_at": "2025-03-01T09:00:00Z"})
class VoicePermission(msgspec.Struct):
    """A grant: the member may call from `number_id` and/or speak with `voice_id`."""

    id: uuid.UUID
    user_id: uuid.UUID
    number_id: uuid.UUID | None
    voice_id: uuid.UUID | None
    is_active: bool
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@example({"user_id": "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b", "number_id": "4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d",
          "voice_id": None})
class VoicePermissionCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A grant: the member may call from `number_id` and/or speak with `voice_id`."""

    user_id: Annotated[uuid.UUID, Meta(description="The member.")]
    number_id: Annotated[uuid.UUID | None, Meta(description="A number the member may call from.")] = None
    voice_id: Annotated[uuid.UUID | None, Meta(description="A voice the member may use.")] = None
    is_active: Annotated[bool, Meta(description="An inactive grant allows nothing.")] = True
    metadata: Annotated[FreeJson, Meta(description="Your own data (at most 16 KB).")] = {}

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})


@example({"user_id": "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b", "default_agent_id": 7,
          "default_number_id": "4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d", "preferences": {"speaking_rate": 1.05},
          "metadata": {}, "updated_at": "2025-03-01T09:00:00Z"})
class VoiceProfile(msgspec.Struct):
    """A user's own voice defaults."""

    user_id: uuid.UUID
    default_agent_id: int | None
    default_number_id: uuid.UUID | None
    preferences: dict[str, Any]
    metadata: dict[str, Any]
    updated_at: datetime | None


@example({"default_agent_id": 7, "default_number_id": "4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d",
          "preferences": {"speaking_rate": 1.05}})
class VoiceProfileUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The calling user's defaults; a field not sent keeps its value."""

    default_agent_id: Annotated[AgentRef | None, Meta(description="The agent this user's calls use by default.")] | UnsetType = UNSET
    default_number_id: Annotated[uuid.UUID | None, Meta(description="The number this user calls from by default.")] | UnsetType = UNSET
    preferences: Annotated[FreeJson, Meta(description="This user's own settings (at most 16 KB).")] | UnsetType = UNSET
    metadata: Annotated[FreeJson, Meta(description="Your own data (at most 16 KB).")] | UnsetType = UNSET

    def __post_init__(self) -> None:
        check_free_json({"preferences": self.preferences, "metadata": self.metadata})


class TenantCreated(msgspec.Struct):
    tenant_id: uuid.UUID
    name: str
    api_key: str
