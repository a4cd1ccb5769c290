"""Voice catalog schemas: a TTS provider's voice the tenant's agents can speak with."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from voice_service.schemas import FreeJson, Language, Name, ShortText, Text, check_free_json

TtsProviderName = Literal["openai", "elevenlabs", "cartesia", "deepgram", "google"]
Url = Annotated[str, Meta(max_length=2000, pattern=r"^https?://")]


class Voice(msgspec.Struct):
    id: uuid.UUID
    name: str | None
    provider: str
    provider_voice_id: str
    description: str | None
    gender: str | None
    accent: str | None
    language: str | None
    voice_sample_url: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class VoiceCreate(msgspec.Struct, forbid_unknown_fields=True):
    provider: TtsProviderName
    provider_voice_id: Annotated[str, Meta(min_length=1, max_length=200)]
    name: Name | None = None
    description: Text | None = None
    gender: Literal["female", "male", "neutral"] | None = None
    accent: ShortText | None = None
    language: Language | None = None
    voice_sample_url: Url | None = None
    metadata: FreeJson = {}

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})


class VoiceUpdate(msgspec.Struct, forbid_unknown_fields=True):
    provider: TtsProviderName | UnsetType = UNSET
    provider_voice_id: Annotated[str, Meta(min_length=1, max_length=200)] | UnsetType = UNSET
    name: Name | None | UnsetType = UNSET
    description: Text | None | UnsetType = UNSET
    gender: Literal["female", "male", "neutral"] | None | UnsetType = UNSET
    accent: ShortText | None | UnsetType = UNSET
    language: Language | None | UnsetType = UNSET
    voice_sample_url: Url | None | UnsetType = UNSET
    metadata: FreeJson | UnsetType = UNSET

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})
