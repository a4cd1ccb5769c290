"""Agent schemas: `Agent` out, `AgentCreate` in, `AgentUpdate` (PATCH, UNSET = not sent)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from voice_service.schemas import E164, FreeJson, Language, LongText, Name, check_free_json

Gender = Literal["female", "male", "neutral"]


class TransferTarget(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=100)]
    phone: E164
    description: Annotated[str, Meta(max_length=500)] = ""


class AgentConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    """Conversation behaviour; every field has a default so older rows keep working."""

    goal: Annotated[str, Meta(max_length=2000)] = ""
    llm_model: Annotated[str, Meta(max_length=100)] | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] = 0.6
    max_response_tokens: Annotated[int, Meta(ge=16, le=4096)] = 300
    stt_model: Annotated[str, Meta(max_length=100)] | None = None
    endpointing_ms: Annotated[int, Meta(ge=10, le=5000)] = 300
    # Caller speech while the agent talks interrupts it only past this many words (backchannels do not).
    interrupt_min_words: Annotated[int, Meta(ge=1, le=10)] = 3
    silence_reprompt_seconds: Annotated[float, Meta(ge=1, le=120)] = 8.0
    silence_hangup_seconds: Annotated[float, Meta(ge=2, le=600)] = 20.0
    reprompt_text: Annotated[str, Meta(max_length=500)] = "Are you still there?"
    goodbye_text: Annotated[str, Meta(max_length=500)] = "Thanks for your time. Goodbye!"
    fallback_text: Annotated[str, Meta(max_length=500)] = "Sorry, I'm having trouble right now. Could you say that again?"
    max_call_seconds: Annotated[int, Meta(ge=10, le=7200)] = 900
    transfer_targets: Annotated[list[TransferTarget], Meta(max_length=20)] = []
    # Calls are recorded (two channels, stored after the call) unless this is false.
    recording_enabled: bool = True
    # Spoken at the start of a recorded call, for consent rules ("This call is recorded."); empty: none.
    recording_notice: Annotated[str, Meta(max_length=300)] = ""


class Agent(msgspec.Struct):
    id: int
    name: str
    agent_instructions: str | None
    system_instructions: str | None
    outbound_starter_prompt: str | None
    inbound_starter_prompt: str | None
    voice_id: uuid.UUID | None
    gender: str | None
    language: str | None
    analysis_schema: dict[str, Any] | None
    config: dict[str, Any]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class AgentCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    agent_instructions: LongText | None = None
    system_instructions: LongText | None = None
    outbound_starter_prompt: LongText | None = None
    inbound_starter_prompt: LongText | None = None
    voice_id: uuid.UUID | None = None
    gender: Gender | None = None
    language: Language = "en-US"
    analysis_schema: dict[str, Any] | None = None
    config: AgentConfig = msgspec.field(default_factory=AgentConfig)
    metadata: FreeJson = {}

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})


class AgentUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    agent_instructions: LongText | None | UnsetType = UNSET
    system_instructions: LongText | None | UnsetType = UNSET
    outbound_starter_prompt: LongText | None | UnsetType = UNSET
    inbound_starter_prompt: LongText | None | UnsetType = UNSET
    voice_id: uuid.UUID | None | UnsetType = UNSET
    gender: Gender | None | UnsetType = UNSET
    language: Language | UnsetType = UNSET
    analysis_schema: dict[str, Any] | None | UnsetType = UNSET
    config: AgentConfig | UnsetType = UNSET
    metadata: FreeJson | UnsetType = UNSET

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})
