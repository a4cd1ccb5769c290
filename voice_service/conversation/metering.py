"""Per-call records the engine keeps: transcript turns, per-turn latencies and their p50/p90 summary, and the
LLM usage each turn reports.

Latencies of one agent turn (milliseconds, `None` when a stage did not happen):

* `stt_final_ms`: end of the caller's speech → the final transcript that ended the turn. The end of speech
  is the end of the audio the final covers, minus the endpointing silence that had to pass first; audio
  time maps to wall time because the carrier streams the caller's audio in real time.
* `llm_first_token_ms`: LLM request sent → first token (or tool call).
* `tts_first_byte_ms`: first sentence sent to TTS → its first audio bytes.
* `response_ms`: end of turn as the service saw it (the `speech_final` / UtteranceEnd / keypad event) →
  first agent audio frame handed to the media sender: what the service, LLM and TTS add together.
* `first_audio_ms`: end of the caller's speech → first agent audio frame (stt_final_ms + response_ms).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from analysis.usage import UsageMeter
from providers.llm.base import UsageEvent

LATENCY_FIELDS = ("stt_final_ms", "llm_first_token_ms", "tts_first_byte_ms", "response_ms", "first_audio_ms")


class TranscriptTurn(msgspec.Struct, omit_defaults=False):
    """One entry of voice_call_logs.transcripts (milliseconds from the start of the call's media)."""

    role: str  # "agent" | "caller"
    text: str
    start_ms: int
    end_ms: int
    interrupted: bool = False


class TurnLatency(msgspec.Struct, omit_defaults=True):
    turn: int
    trigger: str  # speech_final | utterance_end | dtmf | starter | reprompt
    stt_final_ms: float | None = None
    llm_first_token_ms: float | None = None
    tts_first_byte_ms: float | None = None
    response_ms: float | None = None
    first_audio_ms: float | None = None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of a small sample; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


ANSWER_TRIGGERS = frozenset({"speech_final", "utterance_end", "dtmf"})


def latency_summary(turns: Iterable[TurnLatency]) -> dict[str, Any]:
    """`metadata.latency`: every agent turn's figures and, per figure, p50/p90 over the turns that answered
    the caller (the starter line, re-prompts and fallbacks are listed but not summarised)."""
    items = list(turns)
    answers = [t for t in items if t.trigger in ANSWER_TRIGGERS]
    summary: dict[str, Any] = {}
    for name in LATENCY_FIELDS:
        values = [v for t in answers if (v := getattr(t, name)) is not None]
        if values:
            summary[name] = {
                "p50": round(percentile(values, 50) or 0.0, 1),
                "p90": round(percentile(values, 90) or 0.0, 1),
                "count": len(values),
            }
    return {
        "turns": [msgspec.to_builtins(_rounded(t)) for t in items],
        "summary": summary,
    }


def _rounded(turn: TurnLatency) -> TurnLatency:
    values = {name: round(v, 1) for name in LATENCY_FIELDS if (v := getattr(turn, name)) is not None}
    return msgspec.structs.replace(turn, **values)


def transcripts_builtins(turns: Iterable[TranscriptTurn]) -> list[dict[str, Any]]:
    return [msgspec.to_builtins(t) for t in turns]


def record_llm_usage(meter: UsageMeter, provider: str, event: UsageEvent) -> None:
    """Add one turn's reported LLM usage to the call's meter, the cached part of the prompt apart (billed at the
    provider's cached-input price)."""
    meter.add_llm(
        provider,
        event.model,
        event.prompt_tokens,
        event.completion_tokens,
        cached_prompt_tokens=event.cached_prompt_tokens,
    )
