"""Agent schemas: `Agent` out, `AgentCreate` in, `AgentUpdate` (PATCH, UNSET = not sent)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from voice_service.openapi import example
from voice_service.schemas import E164, FreeJson, Language, LongText, Name, check_free_json

Gender = Literal["female", "male", "neutral"]


def _doc(text: str, *examples: Any) -> Meta:
    return Meta(description=text, examples=list(examples)) if examples else Meta(description=text)


NAME = _doc("The agent's name (console, call logs); not spoken.", "Receptionist")
AGENT_INSTRUCTIONS = _doc("What the agent does and how: the task, facts it needs, the tone. Part of the LLM's "
                          "system prompt; `{{variable}}` placeholders are filled from the call's variables.",
                          "You book product demos for Acme. Ask for a convenient day and time.")
SYSTEM_INSTRUCTIONS = _doc("Rules placed before the agent instructions (compliance, what never to say).",
                           "Never ask for payment details.")
OUTBOUND_STARTER = _doc("The first sentence on an outbound call, spoken as soon as the callee answers; "
                        "`{{first_name}}` etc. are filled from the call's variables.", "Hi {{first_name}}, this is "
                        "Ava from Acme. Do you have a minute?")
INBOUND_STARTER = _doc("The greeting on an inbound call.", "Thanks for calling Acme, this is Ava. How can I help?")
VOICE_ID = _doc("The voice (`/v1/voices`) the agent speaks with; null: the service's default voice.")
GENDER = _doc("The agent persona's gender (used to pick a default voice).")
LANGUAGE = _doc("The conversation language (BCP-47): speech recognition and the default voice follow it.",
                "en-US")
ANALYSIS_SCHEMA = _doc("A JSON Schema of the fields the post-call analysis extracts into `lead_extraction`.",
                       {"type": "object", "properties": {"budget": {"type": "number"},
                                                          "demo_day": {"type": "string"}}})
CONFIG = _doc("Conversation behaviour; fields not sent take their defaults.")
METADATA = _doc("Your own data, returned as sent (at most 16 KB).", {"team": "sales"})


class TransferTarget(msgspec.Struct, forbid_unknown_fields=True):
    """A person or team the agent may transfer the call to."""

    name: Annotated[str, Meta(min_length=1, max_length=100, description="How the agent refers to it.",
                              examples=["Sales desk"])]
    phone: E164
    description: Annotated[str, Meta(max_length=500, description="When to transfer there (given to the LLM).",
                                     examples=["When the caller wants a quote."])] = ""


class AgentConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    """Conversation behaviour; every field has a default so older rows keep working."""

    goal: Annotated[str, Meta(max_length=2000, description="The call's objective, given to the LLM and the "
                                                             "analysis (success evaluation).")] = ""
    llm_model: Annotated[str, Meta(max_length=100, description="The conversation LLM; null: OPENAI_MODEL.",
                                   examples=["gpt-4o-mini"])] | None = None
    temperature: Annotated[float, Meta(ge=0, le=2, description="LLM sampling temperature.")] = 0.6
    max_response_tokens: Annotated[int, Meta(ge=16, le=4096, description="Longest agent turn, in tokens.")] = 300
    stt_model: Annotated[str, Meta(max_length=100, description="The speech-to-text model; null: the default for "
                                                              "the language.", examples=["nova-3"])] | None = None
    endpointing_ms: Annotated[int, Meta(ge=10, le=5000, description="Silence (ms) that ends the caller's turn.")] = 300
    # Caller speech while the agent talks interrupts it only past this many words (backchannels do not).
    interrupt_min_words: Annotated[int, Meta(ge=1, le=10, description="Words the caller must say while the agent "
                                                                   "talks to interrupt it.")] = 3
    silence_reprompt_seconds: Annotated[float, Meta(ge=1, le=120, description="Caller silence before the agent "
                                                                       "says `reprompt_text`.")] = 8.0
    silence_hangup_seconds: Annotated[float, Meta(ge=2, le=600, description="Caller silence before the agent says "
                                                                     "`goodbye_text` and hangs up.")] = 20.0
    reprompt_text: Annotated[str, Meta(max_length=500, description="Said after `silence_reprompt_seconds`.")] = (
        "Are you still there?"
    )
    goodbye_text: Annotated[str, Meta(max_length=500, description="Said before the agent hangs up.")] = (
        "Thanks for your time. Goodbye!"
    )
    fallback_text: Annotated[str, Meta(max_length=500, description="Said when the LLM or TTS fails mid-call.")] = (
        "Sorry, I'm having trouble right now. Could you say that again?"
    )
    max_call_seconds: Annotated[int, Meta(ge=10, le=7200, description="The call is ended after this long.")] = 900
    transfer_targets: Annotated[list[TransferTarget], Meta(max_length=20, description="Where the agent may "
                                                                                   "transfer the call.")] = []
    # Calls are recorded (two channels, stored after the call) unless this is false.
    recording_enabled: Annotated[bool, Meta(description="Record the call (two channels, stored after it).")] = True
    # Spoken at the start of a recorded call, for consent rules ("This call is recorded."); empty: none.
    recording_notice: Annotated[str, Meta(max_length=300, description="Spoken first on a recorded call "
                                                                      "(consent rules); empty: nothing.")] = ""


_AGENT_EXAMPLE: dict[str, Any] = {
    "name": "Receptionist",
    "agent_instructions": "You book product demos for Acme. Ask for a convenient day and time.",
    "system_instructions": "Never ask for payment details.",
    "outbound_starter_prompt": "Hi {{first_name}}, this is Ava from Acme. Do you have a minute?",
    "inbound_starter_prompt": "Thanks for calling Acme, this is Ava. How can I help?",
    "voice_id": "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
    "gender": "female",
    "language": "en-US",
    "analysis_schema": {"type": "object", "properties": {"demo_day": {"type": "string"}}},
    "config": {"goal": "book a demo", "max_call_seconds": 600, "recording_notice": "This call is recorded."},
    "metadata": {"team": "sales"},
}


@example({"id": 7, **_AGENT_EXAMPLE,
          "config": {**msgspec.to_builtins(AgentConfig()), **_AGENT_EXAMPLE["config"]},
          "created_at": "2025-03-01T09:12:44.512Z", "updated_at": "2025-03-02T16:40:03.100Z"})
class Agent(msgspec.Struct):
    """An AI voice agent: its prompts, voice, language and conversation behaviour."""

    id: Annotated[int, Meta(description="The agent id (an integer).")]
    name: Annotated[str, NAME]
    agent_instructions: Annotated[str | None, AGENT_INSTRUCTIONS]
    system_instructions: Annotated[str | None, SYSTEM_INSTRUCTIONS]
    outbound_starter_prompt: Annotated[str | None, OUTBOUND_STARTER]
    inbound_starter_prompt: Annotated[str | None, INBOUND_STARTER]
    voice_id: Annotated[uuid.UUID | None, VOICE_ID]
    gender: Annotated[str | None, GENDER]
    language: Annotated[str | None, LANGUAGE]
    analysis_schema: Annotated[dict[str, Any] | None, ANALYSIS_SCHEMA]
    config: Annotated[dict[str, Any], Meta(description="Conversation behaviour (AgentConfig), defaults filled in.")]
    metadata: Annotated[dict[str, Any], METADATA]
    created_at: datetime
    updated_at: datetime


@example(_AGENT_EXAMPLE)
class AgentCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new agent: only `name` is required."""

    name: Annotated[Name, NAME]
    agent_instructions: Annotated[LongText | None, AGENT_INSTRUCTIONS] = None
    system_instructions: Annotated[LongText | None, SYSTEM_INSTRUCTIONS] = None
    outbound_starter_prompt: Annotated[LongText | None, OUTBOUND_STARTER] = None
    inbound_starter_prompt: Annotated[LongText | None, INBOUND_STARTER] = None
    voice_id: Annotated[uuid.UUID | None, VOICE_ID] = None
    gender: Annotated[Gender | None, GENDER] = None
    language: Annotated[Language, LANGUAGE] = "en-US"
    analysis_schema: Annotated[dict[str, Any] | None, ANALYSIS_SCHEMA] = None
    config: Annotated[AgentConfig, CONFIG] = msgspec.field(default_factory=AgentConfig)
    metadata: Annotated[FreeJson, METADATA] = {}

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})


@example({"outbound_starter_prompt": "Hello {{first_name}}, Ava from Acme here.", "voice_id": None})
class AgentUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The fields to change; a field not sent keeps its value, `null` clears it. `config` is replaced whole (its
    fields not sent take their defaults)."""

    name: Annotated[Name, NAME] | UnsetType = UNSET
    agent_instructions: Annotated[LongText | None, AGENT_INSTRUCTIONS] | UnsetType = UNSET
    system_instructions: Annotated[LongText | None, SYSTEM_INSTRUCTIONS] | UnsetType = UNSET
    outbound_starter_prompt: Annotated[LongText | None, OUTBOUND_STARTER] | UnsetType = UNSET
    inbound_starter_prompt: Annotated[LongText | None, INBOUND_STARTER] | UnsetType = UNSET
    voice_id: Annotated[uuid.UUID | None, VOICE_ID] | UnsetType = UNSET
    gender: Annotated[Gender | None, GENDER] | UnsetType = UNSET
    language: Annotated[Language, LANGUAGE] | UnsetType = UNSET
    analysis_schema: Annotated[dict[str, Any] | None, ANALYSIS_SCHEMA] | UnsetType = UNSET
    config: Annotated[AgentConfig, CONFIG] | UnsetType = UNSET
    metadata: Annotated[FreeJson, METADATA] | UnsetType = UNSET

    def __post_init__(self) -> None:
        check_free_json({"metadata": self.metadata})
