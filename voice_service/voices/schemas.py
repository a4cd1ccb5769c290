"""Voice catalog schemas: a TTS provider's voice the tenant's agents can speak with."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from voice_service.openapi import example
from voice_service.schemas import FreeJson, Language, Name, ShortText, Text, check_free_json

TtsProviderName = Literal["openai", "elevenlabs", "cartesia", "deepgram", "google"]
Url = Annotated[str, Meta(max_length=2000, pattern=r"^https?://")]


_VOICE = {"provider": "elevenlabs", "provider_voice_id": "21m00Tcm4TlvDq8ikWAM", "name": "Rachel",
          "description": "Warm, calm American English", "gender": "female", "accent": "american",
          "language": "en-US", "voice_sample_url": None, "metadata": {}}


@example({"id": "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", **_VOICE, "created_at": "2025-03-01T09:00:00Z",
          "updated_at": "2025-03-01T09:00:00Z"})
class Voice(msgspec.Struct):
    """A TTS voice of the tenant's catalog."""

    id: uuid.UUID
    name: str | None
    provider: Annotated[str, Meta(description="The TTS provider.")]
    provider_voice_id: Annotated[str, Meta(description="The voice's id at the provider.")]
    description: str | None
    gender: str | None
    accent: str | None
    language: str | None
    voice_sample_url: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@example(_VOICE)
class VoiceCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A TTS provider's voice: agents and calls may then speak with it."""

    provider: Annotated[TtsProviderName, Meta(description="The TTS provider.")]
    provider_voice_id: Annotated[str, Meta(min_length=1, max_length=200,
                                           description="The voice's id at the provider (its voice name for "
                                                       "Deepgram, OpenAI and Google).",
                                           examples=["21m00Tcm4TlvDq8ikWAM"])]
    name: Name | None = None
    description: Text | None = None
    gender: Literal["female", "male", "neutral"] | None = None
    accent: ShortText | None = None
    language: Language | None = None
    voice_sample_url: Url | None = None
    metadata: FreeJson = {}

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})


@example({"description": "Warm, calm; good for support calls"})
class VoiceUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The fields to change; a field not sent keeps its value."""

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
