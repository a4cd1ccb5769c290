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


_VOICE: dict[str, Any] = {"provider": "elevenlabs", "provider_voice_id": "21m00Tcm4TlvDq8ikWAM", "name": "Rachel",
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
    name: Annotated[Name | None, Meta(description="A name for people.")] = None
    description: Annotated[Text | None, Meta(description="What it sounds like.")] = None
    gender: Annotated[Literal["female", "male", "neutral"] | None, Meta(description="The voice's gender.")] = None
    accent: Annotated[ShortText | None, Meta(description="e.g. american, british.")] = None
    language: Annotated[Language | None, Meta(description="BCP-47, e.g. en-US.")] = None
    voice_sample_url: Annotated[Url | None, Meta(description="A sample to listen to.")] = None
    metadata: Annotated[FreeJson, Meta(description="Your own data (at most 16 KB).")] = {}

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})


@example({"description": "Warm, calm; good for support calls"})
class VoiceUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The fields to change; a field not sent keeps its value."""

    provider: Annotated[TtsProviderName, Meta(description="The TTS provider.")] | UnsetType = UNSET
    provider_voice_id: Annotated[str, Meta(min_length=1, max_length=200,
                                           description="The voice's id at the provider.")] | UnsetType = UNSET
    name: Annotated[Name | None, Meta(description="A name for people.")] | UnsetType = UNSET
    description: Annotated[Text | None, Meta(description="What it sounds like.")] | UnsetType = UNSET
    gender: Annotated[Literal["female", "male", "neutral"] | None, Meta(description="The voice's gender.")] | UnsetType = UNSET
    accent: Annotated[ShortText | None, Meta(description="e.g. american, british.")] | UnsetType = UNSET
    language: Annotated[Language | None, Meta(description="BCP-47, e.g. en-US.")] | UnsetType = UNSET
    voice_sample_url: Annotated[Url | None, Meta(description="A sample to listen to.")] | UnsetType = UNSET
    metadata: Annotated[FreeJson, Meta(description="Your own data (at most 16 KB).")] | UnsetType = UNSET

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})
