"""One agent utterance (LiveKit's "speech handle"): what the agent says in one turn, how much of it the caller
has heard, and what is done to it from outside — `interrupt()`, `finish_after_sentence()` and `wait_for_playout()`.

An utterance is an LLM answer (`kind` "llm") or a fixed line ("say": the starter, a re-prompt, the fallback, a
goodbye, a line from the API); either may open with a fixed `preamble` (the recording notice before the starter).
The agent's generation (`generation.py`) fills it: each sentence is queued on the media session followed by a mark
named `t<turn>.<sentence>`; the carrier echoes a mark once the audio before it has played. So the sentences whose marks came back are what the caller heard — all that the history and the
transcript keep of an interrupted utterance. The controller (`engine.py`) owns the utterance's task and settles it
(history, transcript, latency) when it is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from providers.telephony.base import MediaFormat
from voice_service.calls.schemas import CallInfo
from voice_service.conversation.control import Observers
from voice_service.conversation.metering import TurnLatency

log = logging.getLogger(__name__)


class MediaPort(Protocol):
    """The part of `voice_service.calls.session.MediaSession` the engine drives."""

    call: CallInfo
    format: MediaFormat
    end_reason: str | None

    @property
    def ended(self) -> bool: ...

    @property
    def bytes_per_second(self) -> int: ...

    @property
    def queued_seconds(self) -> float: ...

    async def send_audio(self, audio: bytes) -> None: ...

    async def send_mark(self, name: str) -> None: ...

    async def clear(self) -> None: ...

    async def wait_for_mark(self, name: str) -> bool: ...

    # Optional (MediaSession has it): drop what is queued after mark `name`; the dropped marks, or None when the
    # mark has left for the carrier. A port without it makes `finish_after_sentence` wait for the whole utterance.
    # def cut_after(self, name: str) -> list[str] | None: ...

    async def hangup(self, reason: str) -> None: ...

    def detach(self, reason: str) -> None: ...


class Utterance:
    """One thing the agent says, from the event that triggered it to the last mark the caller heard."""

    def __init__(
        self,
        number: int,
        kind: str,
        *,
        text: str = "",
        preamble: str = "",
        trigger: str,
        trigger_at: float,
        media: MediaPort,
        clock: Callable[[], float],
        observers: Observers,
    ) -> None:
        self.number = number
        self.kind = kind  # "llm" | "say"
        self.text = text  # the fixed line of a "say" turn
        self.preamble = preamble  # a fixed line spoken first, whatever the kind
        self.trigger_at = trigger_at  # clock time of the event the turn answers
        self.latency = TurnLatency(turn=number, trigger=trigger)
        self.sentences: list[tuple[str, str]] = []  # (text, mark) queued on the media session
        self.pending_marks: set[str] = set()
        self.played: set[str] = set()
        self.generated = ""  # the LLM's full text (what the history gets unless interrupted)
        self.message: dict[str, Any] | None = None  # the history entry, once added
        self.end_action: tuple[str, Any] | None = None  # ("end_call", reason) | ("transfer", TransferTarget)
        self.first_audio_at: float | None = None
        self.last_played_at: float | None = None
        self.task: asyncio.Task[str] | None = None
        self.outcome: str | None = None
        self.interrupted = False
        self.settled = False
        # finish_after_sentence(): no new sentence starts; `cut_short` once anything the utterance would have said
        # is dropped (it is then recorded as interrupted, with what was heard).
        self.stop_after_sentence = False
        self.cut_short = False
        self.end_of_speech: float | None = None  # clock time the caller stopped speaking, for latencies
        self.media = media
        self.clock = clock
        self.observers = observers
        self._started: list[str] = []  # sentences whose audio has begun to be queued, in order
        self._announced = 0  # of those, how many the observers were told are playing

    @property
    def generating(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def busy(self) -> bool:
        return self.generating or bool(self.pending_marks)

    @property
    def audible(self) -> bool:
        """Some of its audio has been queued for the caller."""
        return bool(self._started)

    def heard_text(self) -> str:
        return " ".join(text for text, mark in self.sentences if mark in self.played)

    def spoken_text(self) -> str:
        return " ".join(text for text, _ in self.sentences)

    # --- filled by the generation ---

    def next_mark(self) -> str:
        return f"t{self.number}.{len(self.sentences)}"

    def sentence_started(self, text: str) -> None:
        """The first audio of the next sentence has been queued."""
        self._started.append(text)
        if self.observers:
            self._announce()

    def sentence_queued(self, text: str, mark: str) -> None:
        """All of a sentence's audio is queued; `mark` follows it."""
        self.sentences.append((text, mark))
        self.pending_marks.add(mark)

    # --- playout ---

    def mark_played(self, name: str, at: float) -> bool:
        """The carrier echoed mark `name`; False when it is not one of this utterance's pending marks."""
        if name not in self.pending_marks:
            return False
        self.pending_marks.discard(name)
        self.played.add(name)
        self.last_played_at = at
        if self.observers:
            self._announce()
        return True

    def _announce(self) -> None:
        # Sentence k starts playing once its audio is queued and sentence k-1's mark has come back.
        while self._announced < len(self._started):
            k = self._announced
            if k > 0 and self.sentences[k - 1][1] not in self.played:
                return
            self._announced += 1
            self.observers.agent_text(self._started[k])

    async def wait_for_playout(self, grace_seconds: float) -> None:
        """Until the last queued sentence has played (or it cannot any more, or it takes longer than the audio
        still queued plus `grace_seconds`); then no mark is pending."""
        if not self.sentences:
            return
        last = self.sentences[-1][1]
        timeout = self.media.queued_seconds + grace_seconds + 1.0
        try:
            async with asyncio.timeout(timeout):
                if await self.media.wait_for_mark(last):
                    self.played.add(last)
                    self.pending_marks.discard(last)
                    self.last_played_at = self.clock()
        except TimeoutError:
            log.info("playback did not confirm in time", extra={"mark": last})
        # Marks before the last one have played too (they are echoed in order).
        for _, mark in self.sentences:
            if last in self.played:
                self.played.add(mark)
        self.pending_marks.clear()
        if self.observers:
            self._announce()

    # --- stopping ---

    async def interrupt(self) -> None:
        """Stop now: no more generation, and the caller stops hearing it at once (the carrier's buffer is
        cleared). What was heard stays heard; marks not yet echoed never will be."""
        if self.task is not None:
            self.task.cancel()
        await self.media.clear()
        if self.observers:
            self.observers.agent_cleared(self.clock())

    def finish_after_sentence(self) -> None:
        """Stop after the sentence playing now: it plays to its end, nothing after it does. The first sentence
        whose mark is still queued on the media session is that sentence (one whose mark has left for the carrier
        has at most the lead, 100 ms, still to play, and the next one may have begun there: that one is then the
        sentence playing); what is queued after its mark is dropped without a clear and the generation stops.
        When no queued mark can be cut after (the sentence being sent is still being synthesized), the generation
        ends with that sentence."""
        if self.stop_after_sentence and self.cut_short:
            return
        self.stop_after_sentence = True
        self.end_action = None  # whoever asked takes over: no hang-up or transfer after this utterance
        cut = getattr(self.media, "cut_after", None)
        if cut is None:
            return
        for index, (_, mark) in enumerate(self.sentences):
            if mark not in self.pending_marks:
                continue
            dropped = cut(mark)
            if dropped is None:
                continue
            for _, later in self.sentences[index + 1 :]:
                self.pending_marks.discard(later)
            del self.sentences[index + 1 :]
            del self._started[index + 1 :]
            self._announced = min(self._announced, len(self._started))
            if self.generating:
                self.cut_short = True
                assert self.task is not None
                self.task.cancel()
            elif dropped:
                self.cut_short = True
            return

    async def cancel(self, wait_seconds: float) -> None:
        """Stop generating (the call is over); waits up to `wait_seconds` for the task to unwind."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task], timeout=wait_seconds)
