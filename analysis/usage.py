"""The per-call usage meter: what a call consumed, per component, before any price is applied.

The conversation engine fills one :class:`UsageMeter` live (cheap in-place adds; a meter holds a handful of
entries) and stores it in ``voice_call_logs.metadata.usage``; the post-call pipeline prices it with
:func:`analysis.pricing.price_usage`. Every field has a default so rows written by older code still decode.
"""

from __future__ import annotations

from typing import Any

import msgspec


class TelephonyUsage(msgspec.Struct, frozen=True):
    provider: str
    seconds: float = 0
    direction: str = "outbound"  # outbound | inbound
    country: str | None = None  # ISO 3166 alpha-2 of the remote party, when known


class SttUsage(msgspec.Struct, frozen=True):
    provider: str
    model: str
    seconds: float = 0  # audio seconds sent to the recogniser


class LlmUsage(msgspec.Struct, frozen=True):
    provider: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # True when a cancelled stream gave no usage and we counted the tokens ourselves. Estimated and reported
    # counts are kept in separate entries so a bill can say which part is an estimate.
    estimated: bool = False
    # The part of prompt_tokens the provider served from its prompt cache and bills at a discount (OpenAI:
    # usage.prompt_tokens_details.cached_tokens). A voice agent resends its system prompt and the growing history
    # every turn, so after the first turns most of the prompt is cached.
    cached_prompt_tokens: int = 0


class TtsUsage(msgspec.Struct, frozen=True):
    provider: str
    model: str
    characters: int = 0
    # Seconds of synthesized audio: only needed for models billed by audio length (OpenAI gpt-4o-mini-tts is
    # billed by audio output tokens, which OpenAI converts to an estimated price per minute).
    audio_seconds: float = 0


class UsageMeter(msgspec.Struct, omit_defaults=True):
    """Mutable accumulator (the entries themselves are frozen and replaced on add)."""

    telephony: TelephonyUsage | None = None
    # The legs the carrier dialled when the call was transferred (calls of their own on the carrier's bill, from
    # the carrier's final status of each): outbound to the transfer target's country.
    transfer_legs: list[TelephonyUsage] = []
    stt: list[SttUsage] = []
    llm: list[LlmUsage] = []
    tts: list[TtsUsage] = []

    def set_telephony(
        self, provider: str, seconds: float, *, direction: str = "outbound", country: str | None = None
    ) -> None:
        """The call leg's billable duration (set once the provider reports the final duration)."""
        self.telephony = TelephonyUsage(
            provider=provider, seconds=seconds, direction=direction, country=country
        )

    def add_transfer_leg(self, provider: str, seconds: float, *, country: str | None = None) -> None:
        self.transfer_legs.append(
            TelephonyUsage(provider=provider, seconds=seconds, direction="outbound", country=country)
        )

    def add_stt(self, provider: str, model: str, seconds: float) -> None:
        for i, u in enumerate(self.stt):
            if u.provider == provider and u.model == model:
                self.stt[i] = SttUsage(provider, model, u.seconds + seconds)
                return
        self.stt.append(SttUsage(provider, model, seconds))

    def add_llm(
        self,
        provider: str,
        model: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        *,
        estimated: bool = False,
        cached_prompt_tokens: int = 0,
    ) -> None:
        """`prompt_tokens` counts every prompt token; `cached_prompt_tokens` says how many of them were cached."""
        for i, u in enumerate(self.llm):
            if u.provider == provider and u.model == model and u.estimated == estimated:
                self.llm[i] = LlmUsage(
                    provider,
                    model,
                    u.prompt_tokens + prompt_tokens,
                    u.completion_tokens + completion_tokens,
                    estimated,
                    u.cached_prompt_tokens + cached_prompt_tokens,
                )
                return
        self.llm.append(
            LlmUsage(provider, model, prompt_tokens, completion_tokens, estimated, cached_prompt_tokens)
        )

    def add_tts(self, provider: str, model: str, characters: int, audio_seconds: float = 0) -> None:
        for i, u in enumerate(self.tts):
            if u.provider == provider and u.model == model:
                self.tts[i] = TtsUsage(
                    provider, model, u.characters + characters, u.audio_seconds + audio_seconds
                )
                return
        self.tts.append(TtsUsage(provider, model, characters, audio_seconds))

    def merge(self, other: UsageMeter) -> None:
        """Add another meter's usage (e.g. the analysis LLM call onto the call's meter)."""
        if other.telephony is not None:
            if self.telephony is None:
                self.telephony = other.telephony
            else:
                self.telephony = msgspec.structs.replace(
                    self.telephony, seconds=self.telephony.seconds + other.telephony.seconds
                )
        self.transfer_legs.extend(other.transfer_legs)
        for s in other.stt:
            self.add_stt(s.provider, s.model, s.seconds)
        for u in other.llm:
            self.add_llm(
                u.provider,
                u.model,
                u.prompt_tokens,
                u.completion_tokens,
                estimated=u.estimated,
                cached_prompt_tokens=u.cached_prompt_tokens,
            )
        for t in other.tts:
            self.add_tts(t.provider, t.model, t.characters, t.audio_seconds)

    def is_empty(self) -> bool:
        return self.telephony is None and not self.transfer_legs and not self.stt and not self.llm and not self.tts

    def to_builtins(self) -> dict[str, Any]:
        """JSON-ready dict for ``metadata.usage``."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    @classmethod
    def from_builtins(cls, data: Any) -> UsageMeter:
        """Decode ``metadata.usage`` as read from jsonb (``None`` → empty meter); unknown keys are ignored."""
        if data is None:
            return cls()
        return msgspec.convert(data, cls)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(UsageMeter)


def encode_meter(meter: UsageMeter) -> bytes:
    return _ENCODER.encode(meter)


def decode_meter(raw: bytes | str) -> UsageMeter:
    return _DECODER.decode(raw)
