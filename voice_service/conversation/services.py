"""What a CallSession needs from the process: provider clients, the call's setup from the database, the records
writer and call transfer.

Provider clients are built once per process from settings and kept on the Runtime (`stt_clients`: one Deepgram
client per STT model; `conversation_llm`: one OpenAI client; `tts_clients`: one TTS client per provider/model), all
sharing the Runtime's httpx client and closed with it. The transcript is written through the calls repository,
the one writer of the call log.

Speech and LLM providers that are not configured (no API key, and the provider's public URL) are named once at
start-up (`warn_unconfigured`) and again on each call that needs them: its setup fails with
`ProvidersNotConfigured`, and `metadata.end_reason_detail` says which settings are missing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import msgspec
import phonenumbers

from providers.llm.base import LlmProvider
from providers.llm.openai import OpenAiLlm
from providers.stt.base import SttProvider
from providers.stt.deepgram import DeepgramStt
from providers.telephony.base import ProviderError
from providers.tts.base import TtsProvider
from providers.tts.google import voice_model
from providers.tts.registry import TTS_PROVIDERS, build_tts_provider
from voice_service.agents.schemas import AgentConfig
from voice_service.calls import repository as calls_repo
from voice_service.calls.schemas import CallInfo
from voice_service.carriers.clients import get_provider
from voice_service.carriers.urls import status_url
from voice_service.conversation import prompts, tools
from voice_service.conversation import repository as repo
from voice_service.db import tenant_tx
from voice_service.runtime import Runtime
from voice_service.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_LANGUAGE = "en-US"
# The setting holding each TTS provider's API key (providers/tts/registry.py refuses to build one without it).
TTS_KEY_SETTINGS = {
    "deepgram": "deepgram_api_key",
    "openai": "openai_api_key",
    "elevenlabs": "elevenlabs_api_key",
    "cartesia": "cartesia_api_key",
    "google": "google_tts_api_key",
}
_DEFAULTS = Settings()


class ProvidersNotConfigured(Exception):
    """The call's conversation needs providers whose settings are missing: {setting name: what needs it}."""

    def __init__(self, missing: Mapping[str, list[str]]) -> None:
        self.missing = dict(missing)
        super().__init__(f"not configured: {describe_missing(self.missing)}")


def missing_settings(settings: Settings, *, tts: bool = True) -> dict[str, list[str]]:
    """The settings (environment variable names) a conversation needs and does not have, each with what needs it.
    A provider pointed at another server (its *_BASE_URL changed: a self-hosted, compatible one) may go without
    a key; the public services never do. With `tts`, the default TTS provider's key is checked too."""
    missing: dict[str, list[str]] = {}
    if not settings.deepgram_api_key and settings.deepgram_base_url == _DEFAULTS.deepgram_base_url:
        missing.setdefault("DEEPGRAM_API_KEY", []).append("speech-to-text")
    if not settings.openai_api_key and settings.openai_base_url == _DEFAULTS.openai_base_url:
        missing.setdefault("OPENAI_API_KEY", []).append("LLM")
    key = TTS_KEY_SETTINGS.get(settings.default_tts_provider)
    if tts and key is not None and not getattr(settings, key):
        missing.setdefault(key.upper(), []).append("text-to-speech")
    return missing


def describe_missing(missing: Mapping[str, list[str]]) -> str:
    return ", ".join(f"{name} ({' and '.join(uses)})" for name, uses in missing.items())


def warn_unconfigured(settings: Settings) -> bool:
    """Log once (at start-up) which provider settings are missing; True when something is."""
    missing = missing_settings(settings)
    if missing:
        log.warning(
            "speech and LLM providers are not configured: set %s (or point DEEPGRAM_BASE_URL / OPENAI_BASE_URL "
            "at compatible servers). Until then calls connect, the agent cannot speak, and each call ends with "
            "end_reason setup_failed.",
            " and ".join(missing),
            extra={"missing_settings": sorted(missing)},
        )
    return bool(missing)

_Client = TypeVar("_Client")


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Process-level timing knobs of the engine (per-agent behaviour lives in AgentConfig)."""

    llm_first_token_timeout: float = 8.0
    llm_stall_timeout: float = 8.0
    tts_first_byte_timeout: float = 6.0
    tts_stall_timeout: float = 6.0
    stt_connect_timeout: float = 6.0
    max_consecutive_failures: int = 2
    keepalive_seconds: float = 4.0
    dtmf_commit_seconds: float = 1.5
    utterance_end_ms: int = 1000
    transfer_stop_timeout: float = 10.0
    playback_grace_seconds: float = 2.0
    audio_buffer_seconds: float = 10.0
    max_tool_rounds: int = 3
    save_timeout: float = 10.0


@dataclass
class CallSetup:
    """Everything one call's conversation is built from, resolved once at the start."""

    config: AgentConfig
    system_prompt: str
    starter: str
    language: str
    variables: dict[str, str]
    stt: SttProvider
    llm: LlmProvider
    llm_model: str
    tts: TtsProvider
    voice_id: str
    tools: list[dict[str, Any]] = field(default_factory=list)
    country: str | None = None
    recording_notice: str = ""  # said before the starter when the call is recorded (config.recording_notice)


class EngineServices(Protocol):
    config: EngineConfig

    async def setup(self, call: CallInfo) -> CallSetup: ...

    async def save(
        self, call: CallInfo, transcripts: list[dict[str, Any]], metadata: Mapping[str, Any]
    ) -> None: ...

    async def transfer(self, call: CallInfo, to_e164: str) -> None: ...


def remote_number(call: CallInfo) -> str | None:
    """The other party: the callee of an outbound call, the caller of an inbound one."""
    return call.from_e164 if call.direction == "inbound" else call.to_e164


def own_number(call: CallInfo) -> str | None:
    return call.to_e164 if call.direction == "inbound" else call.from_e164


def country_of(e164: str | None) -> str | None:
    if not e164 or not e164.startswith("+"):
        return None
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or None
    except phonenumbers.NumberParseException:
        return None


def agent_config(raw: Mapping[str, Any] | None) -> AgentConfig:
    try:
        return msgspec.convert(dict(raw or {}), AgentConfig)
    except msgspec.ValidationError as exc:
        # Written through the API (validated), so this is a row edited by hand: run with the defaults.
        log.warning("invalid agent config, using defaults", extra={"detail": str(exc)[:300]})
        return AgentConfig()


class RuntimeServices:
    """EngineServices over the process Runtime (database pool, settings, shared HTTP client)."""

    def __init__(self, runtime: Runtime, config: EngineConfig | None = None) -> None:
        self.runtime = runtime
        self.config = config or EngineConfig()

    # --- provider clients, one per process ---

    def _closed_with_runtime(self, client: _Client) -> _Client:
        close = getattr(client, "aclose", None)
        if close is not None:
            self.runtime.exit_stack.push_async_callback(close)
        return client

    def stt(self, model: str | None) -> SttProvider:
        s = self.runtime.settings
        model = model or "nova-3"
        clients = self.runtime.stt_clients
        client = clients.get(model)
        if client is None:
            client = clients[model] = self._closed_with_runtime(
                DeepgramStt(s.deepgram_api_key or "", base_url=s.deepgram_base_url, model=model)
            )
        return client

    def llm(self) -> LlmProvider:
        s = self.runtime.settings
        client = self.runtime.conversation_llm
        if client is None:
            client = self.runtime.conversation_llm = self._closed_with_runtime(
                OpenAiLlm(
                    s.openai_api_key or "",
                    base_url=s.openai_base_url,
                    model=s.openai_model,
                    http_client=self.runtime.http,
                )
            )
        return client

    def tts(self, provider: str, model: str | None) -> TtsProvider:
        s = self.runtime.settings
        clients = self.runtime.tts_clients
        key = (provider, model or "")
        client = clients.get(key)
        if client is None:
            client = clients[key] = self._closed_with_runtime(
                build_tts_provider(
                    provider,
                    http_client=self.runtime.http,
                    model=model,
                    deepgram_api_key=s.deepgram_api_key,
                    deepgram_base_url=s.deepgram_http_url,
                    openai_api_key=s.openai_api_key,
                    openai_base_url=s.openai_base_url,
                    elevenlabs_api_key=s.elevenlabs_api_key,
                    elevenlabs_base_url=s.elevenlabs_base_url,
                    cartesia_api_key=s.cartesia_api_key,
                    cartesia_base_url=s.cartesia_base_url,
                    google_tts_api_key=s.google_tts_api_key,
                    google_tts_base_url=s.google_tts_base_url,
                )
            )
        return client

    # --- per call ---

    async def setup(self, call: CallInfo) -> CallSetup:
        agent: dict[str, Any] = {}
        voice: dict[str, Any] | None = None
        lead: dict[str, Any] | None = None
        async with tenant_tx(self.runtime.pool, call.tenant_id) as conn:
            if call.agent_id is not None:
                row = await repo.get_agent(conn, call.tenant_id, call.agent_id)
                agent = dict(row) if row is not None else {}
            voice_id = call.voice_id or agent.get("voice_id")
            if voice_id is not None:
                row = await repo.get_voice(conn, call.tenant_id, voice_id)
                voice = dict(row) if row is not None else None
            if call.lead_id is not None:
                row = await repo.get_lead(conn, call.tenant_id, call.lead_id)
                lead = dict(row) if row is not None else None
        try:
            return self.build_setup(call, agent, voice, lead)
        except ProvidersNotConfigured as exc:
            # The call will end `setup_failed`: say which settings are missing on the call itself.
            async with tenant_tx(self.runtime.pool, call.tenant_id) as conn:
                await calls_repo.patch_metadata(
                    conn, call.tenant_id, call.call_id, call.call_created_at, {"end_reason_detail": str(exc)}
                )
            raise

    def build_setup(
        self,
        call: CallInfo,
        agent: Mapping[str, Any],
        voice: Mapping[str, Any] | None,
        lead: Mapping[str, Any] | None,
    ) -> CallSetup:
        settings = self.runtime.settings
        missing = missing_settings(settings, tts=False)
        config = agent_config(agent.get("config"))
        variables = prompts.call_variables(lead, call.variables)
        language = agent.get("language") or DEFAULT_LANGUAGE
        tts: TtsProvider | None = None
        voice_name = settings.default_tts_voice
        if voice is not None and voice.get("provider") in TTS_PROVIDERS:
            tts_provider, voice_name = voice["provider"], voice["provider_voice_id"]
            tts_model = (voice.get("metadata") or {}).get("model")
            if tts_provider == "google" and not tts_model:
                tts_model = voice_model(voice_name)  # the voice name carries Google's priced tier
            try:
                tts = self.tts(tts_provider, tts_model)
            except ValueError as exc:  # the provider's credentials are not configured on this deployment
                log.warning(
                    "voice provider not configured, using the default voice", extra={"detail": str(exc)}
                )
        elif voice is not None:
            log.warning(
                "voice provider not supported, using the default voice",
                extra={"provider": voice.get("provider")},
            )
        if tts is None:
            voice_name = settings.default_tts_voice
            try:
                tts = self.tts(settings.default_tts_provider, None)
            except ValueError:
                key = TTS_KEY_SETTINGS.get(settings.default_tts_provider)
                if key is None:
                    raise
                missing.setdefault(key.upper(), []).append("text-to-speech")
        if missing or tts is None:
            raise ProvidersNotConfigured(missing)
        return CallSetup(
            config=config,
            system_prompt=prompts.system_prompt(agent, config, direction=call.direction, variables=variables),
            starter=prompts.starter_text(agent, call.direction, variables),
            language=language,
            variables=variables,
            stt=self.stt(config.stt_model),
            llm=self.llm(),
            llm_model=config.llm_model or settings.openai_model,
            tts=tts,
            voice_id=voice_name,
            # A call without a carrier (a web call) has no phone leg to transfer.
            tools=tools.tool_schemas(config.transfer_targets if call.direction != "web" else []),
            country=country_of(remote_number(call)),
            recording_notice=config.recording_notice.strip() if config.recording_enabled else "",
        )

    async def save(
        self, call: CallInfo, transcripts: list[dict[str, Any]], metadata: Mapping[str, Any]
    ) -> None:
        async with tenant_tx(self.runtime.pool, call.tenant_id) as conn:
            await calls_repo.save_conversation(
                conn, call.tenant_id, call.call_id, call.call_created_at, transcripts, metadata
            )

    async def transfer(self, call: CallInfo, to_e164: str) -> None:
        """Ask the carrier to move the call to `to_e164`. The dialled leg's statuses come to the call's status
        webhook marked `leg=transfer` (billing bills that leg from them); the call records where it went."""
        if not call.provider or not call.provider_call_id:
            raise ProviderError("rejected", "the call has no provider call id to transfer")
        provider = await get_provider(self.runtime, call.provider)
        async with tenant_tx(self.runtime.pool, call.tenant_id) as conn:
            await calls_repo.patch_metadata(
                conn, call.tenant_id, call.call_id, call.call_created_at, {"transfer_to": to_e164}
            )
        leg_status_url = f"{status_url(self.runtime.settings, call.provider, call.call_id)}&leg=transfer"
        await provider.transfer(
            call.provider_call_id, to_e164, caller_id=own_number(call), status_url=leg_status_url
        )
