"""Turn-taking: what the caller's speech means for the conversation, decided from STT events alone.

`CallerTurns` accumulates one caller utterance (final segments concatenated, the latest interim on top) and
answers, per STT event, given whether the agent is busy (speaking, or preparing an answer):

* `BargeIn` — the caller talks over the agent with at least `interrupt_min_words` words (interim or final):
  stop the agent now.
* `EndOfTurn` — `speech_final` (or UtteranceEnd when `speech_final` never came) closed an utterance with
  text while the agent is idle: answer it.
* `Backchannel` — the utterance closed while the agent is still speaking and stayed under the threshold
  ("yeah", "mm-hm"): the agent keeps talking, nothing is answered.

SpeechStarted alone never interrupts: voice activity without words is as likely a cough or a backchannel.
"""

from __future__ import annotations

from msgspec import Struct

from providers.stt.base import SpeechStarted, SttEvent, Transcript, UtteranceEnd


class BargeIn(Struct, frozen=True):
    words: int


class EndOfTurn(Struct, frozen=True):
    text: str
    trigger: str  # speech_final | utterance_end
    start: float | None  # audio time (s) of the utterance's first segment
    end: float | None  # audio time (s) of the end of the last segment


class Backchannel(Struct, frozen=True):
    text: str
    start: float | None
    end: float | None


Decision = BargeIn | EndOfTurn | Backchannel


def _count_words(text: str) -> int:
    return len(text.split())


class CallerTurns:
    def __init__(self, interrupt_min_words: int) -> None:
        self.interrupt_min_words = max(1, interrupt_min_words)
        self.finals: list[str] = []
        self.interim = ""
        self.speaking = False  # between SpeechStarted (or the first words) and the end of the utterance
        self.start: float | None = None
        self.end: float | None = None
        self.interrupted = False  # this utterance has already stopped the agent

    @property
    def words(self) -> int:
        return sum(_count_words(t) for t in self.finals) + _count_words(self.interim)

    @property
    def text(self) -> str:
        parts = [*self.finals, self.interim] if self.interim else self.finals
        return " ".join(p.strip() for p in parts if p.strip())

    def reset(self) -> None:
        self.finals.clear()
        self.interim = ""
        self.speaking = False
        self.start = self.end = None
        self.interrupted = False

    def on_event(self, event: SttEvent, *, agent_busy: bool) -> Decision | None:
        if isinstance(event, SpeechStarted):
            self.speaking = True
            if self.start is None:
                self.start = (
                    event.timestamp
                )  # where speech began (a segment's `start` is where its audio began)
            return None
        if isinstance(event, Transcript):
            return self._on_transcript(event, agent_busy=agent_busy)
        if isinstance(event, UtteranceEnd):
            if self.finals or self.interim:
                return self._close("utterance_end", agent_busy=agent_busy)
            self.speaking = False
        return None

    def _on_transcript(self, t: Transcript, *, agent_busy: bool) -> Decision | None:
        text = t.text.strip()
        if text:
            self.speaking = True
            if self.start is None:
                self.start = t.start
        if t.is_final:
            if text:
                self.finals.append(text)
                self.end = t.start + t.duration
            self.interim = ""
        else:
            self.interim = text
        if agent_busy and not self.interrupted and self.words >= self.interrupt_min_words:
            self.interrupted = True
            return BargeIn(words=self.words)
        if t.speech_final:
            if not self.finals:
                self.speaking = False
                return None  # an empty final: noise that ended without words
            return self._close("speech_final", agent_busy=agent_busy)
        return None

    def _close(self, trigger: str, *, agent_busy: bool) -> Decision:
        text, start, end = self.text, self.start, self.end
        interrupted = self.interrupted
        self.reset()
        if agent_busy and not interrupted:
            return Backchannel(text=text, start=start, end=end)
        return EndOfTurn(text=text, trigger=trigger, start=start, end=end)
