"""The records one call's conversation leaves: transcript entries, per-turn latencies, the usage meter, the
conversation's counters, and the call metadata built from them when the call ends.

Transcript offsets are milliseconds from `t0` (the start of the call's media) on the session's clock. A caller turn
is placed where the caller spoke on the STT stream's audio timeline; an agent turn from its first audio to the
last sentence the caller heard. Entries are appended as turns end (a backchannel before the agent turn it fell
inside): `transcripts()` orders them by start for storage. Every entry is also told to the call's observers.

An agent turn the caller cut off is stored with `text` = what the caller heard (what the LLM history keeps and the
call's observers are told); the whole line the agent was saying goes to `metadata.cut_off_lines` ({start_ms, text}
per such turn, matched by its start). The API shows the line as the turn's `text` and the heard part as `heard`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from analysis.usage import UsageMeter
from voice_service import perf
from voice_service.calls.schemas import CallInfo
from voice_service.conversation.control import Observers
from voice_service.conversation.metering import (
    LATENCY_FIELDS,
    TranscriptTurn,
    TurnLatency,
    latency_summary,
    transcripts_builtins,
)
from voice_service.conversation.services import CallSetup

if TYPE_CHECKING:
    from voice_service.conversation.recognition import SttLeg
    from voice_service.conversation.speech import Utterance


class CallRecords:
    """What the call has produced so far; the STT leg, the agent's turns and the controller write here."""

    def __init__(
        self, call: CallInfo, *, t0: float, clock: Callable[[], float], observers: Observers
    ) -> None:
        self.call = call
        self.t0 = t0
        self.clock = clock
        self.observers = observers
        self.usage = UsageMeter()
        self.transcript: list[TranscriptTurn] = []
        self._full_text: dict[int, str] = {}  # id(entry) → the whole line of an agent turn cut off
        self.latencies: list[TurnLatency] = []
        self.endpointing_seconds = (
            0.0  # the STT's endpointing silence (the call's setup), inside a final's end
        )
        self.stats: dict[str, Any] = {
            "barge_ins": 0,
            "backchannels": 0,
            "stt_reconnects": 0,
            "llm_failures": 0,
            "tts_failures": 0,
            "reprompts": 0,
            "barge_in_ms": [],
        }

    def ms(self, at: float) -> int:
        return max(0, int(round((at - self.t0) * 1000)))

    def _add(self, entry: TranscriptTurn) -> None:
        self.transcript.append(entry)
        if self.observers:
            self.observers.transcript(entry)

    def caller(self, text: str, start: float | None, end: float | None, leg: SttLeg | None) -> None:
        """A caller turn; `start`/`end` are on `leg`'s audio timeline (end = end of the final segment, which
        includes the endpointing silence)."""
        offset = leg.offset if leg is not None else None
        trail = self.endpointing_seconds
        now_ms = self.ms(self.clock())
        start_ms = int((offset + start) * 1000) if offset is not None and start is not None else now_ms
        end_ms = int((offset + end - trail) * 1000) if offset is not None and end is not None else now_ms
        self._add(TranscriptTurn(role="caller", text=text, start_ms=start_ms, end_ms=max(end_ms, start_ms)))

    def keypad(self, text: str, at: float) -> None:
        self._add(TranscriptTurn(role="caller", text=text, start_ms=self.ms(at), end_ms=self.ms(at)))

    def agent(self, turn: Utterance, *, text: str, interrupted: bool, at: float) -> None:
        """An agent turn is over at `at`: its transcript entry (if any audio was queued) and its latencies."""
        if turn.sentences:
            start = turn.first_audio_at if turn.first_audio_at is not None else at
            end = at if interrupted or turn.last_played_at is None else turn.last_played_at
            entry = TranscriptTurn(
                role="agent",
                text=text,
                start_ms=self.ms(start),
                end_ms=max(self.ms(end), self.ms(start)),
                interrupted=interrupted,
            )
            if interrupted:
                line = turn.text if turn.kind == "say" else turn.generated or turn.spoken_text()
                if line and line != text:
                    self._full_text[id(entry)] = line
            self._add(entry)
        if turn.first_audio_at is not None or turn.latency.llm_first_token_ms is not None:
            self.latencies.append(turn.latency)
            latency = turn.latency
            perf.observe_turn(latency.trigger, ((name, getattr(latency, name)) for name in LATENCY_FIELDS))

    def transcripts(self) -> list[dict[str, Any]]:
        """`voice_call_logs.transcripts`: chronological (turns are recorded when they end)."""
        return transcripts_builtins(sorted(self.transcript, key=lambda t: t.start_ms))

    def cut_off_lines(self) -> list[dict[str, Any]]:
        """`metadata.cut_off_lines`: the whole line of each agent turn the caller cut off, by the turn's start."""
        return [
            {"start_ms": entry.start_ms, "text": self._full_text[id(entry)]}
            for entry in sorted(self.transcript, key=lambda t: t.start_ms)
            if id(entry) in self._full_text
        ]

    def metadata(
        self, setup: CallSetup | None, *, end_reason: str | None, ended_at: float, stt_seconds: float
    ) -> dict[str, Any]:
        """The call's metadata: usage (STT and telephony metered now), latencies and the conversation summary."""
        call = self.call
        if setup is not None and stt_seconds:
            self.usage.add_stt(setup.stt.name, setup.stt.model, round(stt_seconds, 3))
        if call.provider:
            self.usage.set_telephony(
                call.provider,
                round(ended_at - self.t0, 3),
                direction=call.direction,
                country=setup.country if setup is not None else None,
            )
        conversation: dict[str, Any] = {
            "end_reason": end_reason,
            "agent_turns": sum(1 for t in self.transcript if t.role == "agent"),
            "caller_turns": sum(1 for t in self.transcript if t.role == "caller"),
            **self.stats,
        }
        if setup is not None:
            conversation.update(
                llm_model=setup.llm_model,
                stt={"provider": setup.stt.name, "model": setup.stt.model},
                tts={"provider": setup.tts.name, "model": setup.tts.model, "voice": setup.voice_id},
                language=setup.language,
            )
        records: dict[str, Any] = {
            "usage": self.usage.to_builtins(),
            "latency": latency_summary(self.latencies),
            "conversation": conversation,
        }
        cut_off = self.cut_off_lines()
        if cut_off:
            records["cut_off_lines"] = cut_off
        if end_reason == "transferred":
            # The call itself ends later, with the carrier's status (which carries no reason): say why here.
            records["end_reason"] = "transferred"
        return records
