"""CallSession: one call's real-time conversation (caller audio → STT → LLM → TTS → caller), driven by its
MediaSession as the session's handler.

Shape (one asyncio task group per call):

* the media receive loop calls `on_audio` / `on_mark` / `on_dtmf` (non-blocking: audio goes to a buffer, the
  rest to the controller's queue);
* `_forward_audio` sends buffered caller audio to the STT stream (untouched wire format);
* `_stt_loop` reads STT events into the queue, and reconnects a dropped stream once;
* `_keepalive` keeps an idle STT stream open;
* `_controller` is the only place conversation state changes: it applies turn-taking decisions
  (`turns.CallerTurns`), timers (silence re-prompt and hang-up, keypad input, maximum call length) and the
  outcome of agent turns;
* one agent-turn task at a time (`_run_turn`): the LLM stream is cut into sentences
  (`sentences.SentenceSplitter`), and each sentence is synthesized and queued on the media session as soon as it
  is complete (the first audio leaves before the LLM has finished), followed by a mark. Barge-in cancels this
  task, clears the provider's buffer, and keeps in the history only the sentences whose marks came back.

The session ends through `MediaSession.hangup(reason)` (end_call, silence, failures, maximum length), or
from the carrier's side (caller hung up, transfer completed). Either way `on_stop` then writes the records
(transcript, latency, usage) before the media layer records the end of the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import aclosing
from typing import Any, Protocol

from analysis.usage import UsageMeter
from providers.llm.base import LlmDone, LlmError, TextDelta, ToolCallEvent, UsageEvent
from providers.llm.openai import estimate_prompt_tokens, estimate_tokens
from providers.stt.base import SpeechStarted, SttClosed, SttError, SttEvent, SttStream, Transcript
from providers.telephony.base import MediaFormat, ProviderError
from providers.tts.base import TtsError
from voice_service.calls.schemas import CallInfo
from voice_service.conversation import tools as tool_defs
from voice_service.conversation.metering import (
    TranscriptTurn,
    TurnLatency,
    latency_summary,
    record_llm_usage,
    transcripts_builtins,
)
from voice_service.conversation.sentences import SentenceSplitter, split_text
from voice_service.conversation.services import CallSetup, EngineServices
from voice_service.conversation.turns import Backchannel, BargeIn, CallerTurns, EndOfTurn

log = logging.getLogger(__name__)

STT_FAILURE_TEXT = "I'm sorry, I can't hear you properly right now. Please call back later. Goodbye."
TRANSFER_TEXT = "Please hold while I transfer your call."
TRANSFER_FAILED_TEXT = "I'm sorry, I couldn't transfer your call right now."


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

    async def hangup(self, reason: str) -> None: ...

    def detach(self, reason: str) -> None: ...


# --- controller events ---


class _Stt:
    __slots__ = ("at", "event", "leg")

    def __init__(self, event: SttEvent, leg: _SttLeg, at: float) -> None:
        self.event = event
        self.leg = leg
        self.at = at


class _SttFailed:
    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


class _Dtmf:
    __slots__ = ("at", "digit")

    def __init__(self, digit: str, at: float) -> None:
        self.digit = digit
        self.at = at


class _Mark:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _TurnDone:
    __slots__ = ("outcome", "turn")

    def __init__(self, turn: _AgentTurn, outcome: str) -> None:
        self.turn = turn
        self.outcome = outcome


class _LlmFailure(Exception):
    pass


class _TtsFailure(Exception):
    pass


class _SttLeg:
    """One STT stream and where its audio timeline starts on the call's clock."""

    __slots__ = ("offset", "stream")

    def __init__(self, stream: SttStream) -> None:
        self.stream = stream
        self.offset: float | None = None  # call time (s) of the first audio sent on this stream


class _AgentTurn:
    """One thing the agent says: an LLM answer, or a fixed line (starter, re-prompt, fallback, goodbye)."""

    def __init__(self, number: int, kind: str, *, text: str = "", trigger: str, trigger_at: float) -> None:
        self.number = number
        self.kind = kind  # "llm" | "say"
        self.text = text  # the fixed line of a "say" turn
        self.trigger_at = trigger_at  # monotonic time of the event the turn answers
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
        self.end_of_speech: float | None = None  # call time (s) the caller stopped speaking, for latencies

    @property
    def generating(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def busy(self) -> bool:
        return self.generating or bool(self.pending_marks)

    def heard_text(self) -> str:
        return " ".join(text for text, mark in self.sentences if mark in self.played)

    def spoken_text(self) -> str:
        return " ".join(text for text, _ in self.sentences)


class CallSession:
    """The SessionHandler that runs one call's conversation (see the module docstring)."""

    def __init__(
        self, media: MediaPort, services: EngineServices, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.media = media
        self.call = media.call
        self.services = services
        self.cfg = services.config
        self.clock = clock
        self.t0 = clock()
        self.setup: CallSetup | None = None
        self.usage = UsageMeter()
        self.history: list[dict[str, Any]] = []
        self.transcript: list[TranscriptTurn] = []
        self.latencies: list[TurnLatency] = []
        self.end_reason: str | None = None
        self.stats: dict[str, Any] = {
            "barge_ins": 0,
            "backchannels": 0,
            "stt_reconnects": 0,
            "llm_failures": 0,
            "tts_failures": 0,
            "reprompts": 0,
            "barge_in_ms": [],
        }
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        fmt = media.format
        self._bytes_per_second = media.bytes_per_second
        frames = int(self.cfg.audio_buffer_seconds * 50)
        self._audio: deque[bytes] = deque(maxlen=max(frames, 50))
        self._audio_wake = asyncio.Event()
        self._last_audio_sent = clock()
        self._audio_in = 0  # caller audio bytes received: the call's audio timeline
        self._fmt = fmt
        self._legs: list[_SttLeg] = []
        self._leg: _SttLeg | None = None
        self._caller: CallerTurns | None = None
        self._turn: _AgentTurn | None = None
        self._turn_numbers = itertools.count(1)
        self._tg: asyncio.TaskGroup | None = None
        self._llm_failures = 0
        self._tts_failures = 0
        self._idle_since: float | None = None
        self._reprompted = False
        self._dtmf: list[str] = []
        self._dtmf_deadline: float | None = None
        self._caller_activity_at: float | None = None
        self._stopping = False
        self._finished = False
        self._pending_caller_text = (
            ""  # a caller turn whose answer was interrupted before any of it was heard
        )

    # --- SessionHandler: called by the media receive loop (must not block) ---

    def on_audio(self, payload: bytes) -> None:
        self._audio_in += len(payload)
        self._audio.append(payload)
        self._audio_wake.set()

    def on_dtmf(self, digit: str) -> None:
        self._events.put_nowait(_Dtmf(digit, self.clock()))

    def on_mark(self, name: str) -> None:
        self._events.put_nowait(_Mark(name))

    async def run(self) -> None:
        try:
            self.setup = await self.services.setup(self.call)
        except Exception:
            log.exception("conversation setup failed", extra={"call": str(self.call.call_id)})
            self.end_reason = "setup_failed"
            await self.media.hangup("setup_failed")
            return
        setup = self.setup
        self._caller = CallerTurns(setup.config.interrupt_min_words)
        self.history = [{"role": "system", "content": setup.system_prompt}]
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            helpers: list[asyncio.Task[Any]] = []
            try:
                if setup.starter:
                    self._start_turn("say", text=setup.starter, trigger="starter")
                else:
                    self._start_turn("llm", trigger="starter")
                leg = await self._open_stt(attempts=2)
                if leg is None:
                    self.stats["stt_failures"] = 1
                    await self._finish("stt_failed", say=STT_FAILURE_TEXT, interrupt=True)
                    return
                self._leg = leg
                helpers = [
                    tg.create_task(self._stt_loop(), name="conversation-stt"),
                    tg.create_task(self._forward_audio(), name="conversation-audio"),
                    tg.create_task(self._keepalive(), name="conversation-keepalive"),
                ]
                await self._controller()
            finally:
                for task in helpers:
                    task.cancel()
                if self._turn is not None and self._turn.task is not None:
                    self._turn.task.cancel()

    async def on_stop(self) -> None:
        """The call's media has ended: settle what is in flight, close STT, write the records."""
        self._stopping = True
        if self._finished:
            return
        self._finished = True
        ended_at = self.clock()
        if self._turn is not None:
            turn = self._turn
            if turn.task is not None and not turn.task.done():
                turn.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([turn.task], timeout=2.0)
            self._settle_turn(turn, interrupted=bool(turn.pending_marks) or turn.generating, at=ended_at)
        if self._caller is not None and self._caller.text:
            caller = self._caller
            self._record_caller(caller.text, caller.start, caller.end, self._leg)
        for leg in self._legs:
            try:
                async with asyncio.timeout(2.0):
                    await leg.stream.close()
            except (TimeoutError, OSError) as exc:
                log.warning("closing the STT stream failed", extra={"detail": repr(exc)})
        try:
            async with asyncio.timeout(self.cfg.save_timeout):
                # Chronological: turns are recorded when they end (a backchannel before the agent turn around it).
                transcript = sorted(self.transcript, key=lambda t: t.start_ms)
                await self.services.save(
                    self.call, transcripts_builtins(transcript), self._metadata(ended_at)
                )
        except Exception:
            log.exception("writing the conversation records failed", extra={"call": str(self.call.call_id)})

    # --- records ---

    def _metadata(self, ended_at: float) -> dict[str, Any]:
        setup = self.setup
        if setup is not None:
            stt_seconds = sum(leg.stream.audio_seconds for leg in self._legs)
            if stt_seconds:
                self.usage.add_stt(setup.stt.name, setup.stt.model, round(stt_seconds, 3))
        if self.call.provider:
            self.usage.set_telephony(
                self.call.provider,
                round(ended_at - self.t0, 3),
                direction=self.call.direction,
                country=setup.country if setup is not None else None,
            )
        conversation: dict[str, Any] = {
            "end_reason": self.end_reason or self.media.end_reason,
            "agent_turns": sum(1 for t in self.transcript if t.role == "agent"),
            "caller_turns": sum(1 for t in self.transcript if t.role == "caller"),
            **{k: v for k, v in self.stats.items()},
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
        if conversation["end_reason"] == "transferred":
            # The call itself ends later, with the carrier's status (which carries no reason): say why here.
            records["end_reason"] = "transferred"
        return records

    def _ms(self, at: float) -> int:
        return max(0, int(round((at - self.t0) * 1000)))

    def _record_caller(self, text: str, start: float | None, end: float | None, leg: _SttLeg | None) -> None:
        """A caller turn; `start`/`end` are on `leg`'s audio timeline (end = end of the final segment, which
        includes the endpointing silence)."""
        offset = leg.offset if leg is not None and leg.offset is not None else None
        now_ms = self._ms(self.clock())
        trail = self.setup.config.endpointing_ms / 1000 if self.setup is not None else 0.0
        start_ms = int((offset + start) * 1000) if offset is not None and start is not None else now_ms
        end_ms = int((offset + end - trail) * 1000) if offset is not None and end is not None else now_ms
        self.transcript.append(
            TranscriptTurn(role="caller", text=text, start_ms=start_ms, end_ms=max(end_ms, start_ms))
        )

    def _settle_turn(self, turn: _AgentTurn, *, interrupted: bool, at: float) -> None:
        """An agent turn is over (played out, interrupted, or the call ended): history, transcript, latency."""
        if turn.settled:
            return
        turn.settled = True
        turn.interrupted = interrupted
        heard = turn.heard_text() if interrupted else turn.spoken_text() or turn.generated
        if turn.message is not None:
            if heard:
                turn.message["content"] = heard
            else:
                self.history.remove(turn.message)
        elif heard:
            turn.message = {"role": "assistant", "content": heard}
            self.history.append(turn.message)
        if turn.sentences:
            start = turn.first_audio_at if turn.first_audio_at is not None else at
            end = at if interrupted or turn.last_played_at is None else turn.last_played_at
            text = heard if interrupted else turn.spoken_text()
            self.transcript.append(
                TranscriptTurn(
                    role="agent",
                    text=text,
                    start_ms=self._ms(start),
                    end_ms=max(self._ms(end), self._ms(start)),
                    interrupted=interrupted,
                )
            )
        if turn.first_audio_at is not None or turn.latency.llm_first_token_ms is not None:
            self.latencies.append(turn.latency)
        if self._turn is turn:
            self._turn = None

    # --- STT ---

    async def _open_stt(self, attempts: int) -> _SttLeg | None:
        assert self.setup is not None
        setup = self.setup
        for attempt in range(attempts):
            try:
                async with asyncio.timeout(self.cfg.stt_connect_timeout):
                    stream = await setup.stt.connect(
                        self._fmt,
                        setup.language,
                        endpointing_ms=setup.config.endpointing_ms,
                        utterance_end_ms=self.cfg.utterance_end_ms,
                    )
            except (SttError, TimeoutError) as exc:
                log.warning("STT connect failed", extra={"attempt": attempt + 1, "detail": str(exc)[:300]})
                continue
            leg = _SttLeg(stream)
            self._legs.append(leg)
            return leg
        return None

    async def _stt_loop(self) -> None:
        while True:
            leg = self._leg
            assert leg is not None
            error = "the STT stream ended"
            async with aclosing(leg.stream.events()) as events:
                async for event in events:
                    if type(event) is SttClosed:
                        error = event.error or "the provider closed the STT stream"
                        break
                    self._events.put_nowait(_Stt(event, leg, self.clock()))
            if self._stopping:
                return
            log.warning("STT stream dropped", extra={"detail": error})
            self._leg = None
            if self.stats["stt_reconnects"] >= 1:
                self._events.put_nowait(_SttFailed(error))
                return
            self.stats["stt_reconnects"] += 1
            leg = await self._open_stt(attempts=1)
            if leg is None:
                self._events.put_nowait(_SttFailed(error))
                return
            self._leg = leg
            self._audio_wake.set()

    async def _forward_audio(self) -> None:
        audio = self._audio
        wake = self._audio_wake
        bps = self._bytes_per_second
        while True:
            await wake.wait()
            wake.clear()
            leg = self._leg
            if leg is None or not audio:
                continue  # reconnecting: the buffer keeps the latest audio for the new stream
            chunk = audio.popleft() if len(audio) == 1 else b"".join(audio)
            audio.clear()
            if leg.offset is None:
                leg.offset = (self._audio_in - len(chunk)) / bps
            self._last_audio_sent = self.clock()
            await leg.stream.send_audio(chunk)

    async def _keepalive(self) -> None:
        interval = self.cfg.keepalive_seconds
        while True:
            await asyncio.sleep(interval / 2)
            leg = self._leg
            if leg is not None and self.clock() - self._last_audio_sent >= interval:
                await leg.stream.keep_alive()
                self._last_audio_sent = self.clock()

    # --- the controller ---

    async def _controller(self) -> None:
        events = self._events
        while not self._finished and not self.media.ended:
            deadline = self._next_deadline()
            try:
                if deadline is None:
                    event = await events.get()
                else:
                    async with asyncio.timeout_at(_loop_time_at(deadline, self.clock)):
                        event = await events.get()
            except TimeoutError:
                if await self._on_timer():
                    return
                continue
            if await self._handle(event):
                return

    def _agent_busy(self) -> bool:
        return self._turn is not None and self._turn.busy

    def _next_deadline(self) -> float | None:
        assert self.setup is not None
        config = self.setup.config
        deadlines = [self.t0 + config.max_call_seconds]
        if self._dtmf_deadline is not None:
            deadlines.append(self._dtmf_deadline)
        if self._idle_since is not None and not self._agent_busy():
            if not self._reprompted:
                deadlines.append(self._idle_since + config.silence_reprompt_seconds)
            deadlines.append(self._idle_since + config.silence_hangup_seconds)
        if self._caller_activity_at is not None:
            deadlines.append(self._caller_activity_at + 10.0)
        return min(deadlines)

    async def _on_timer(self) -> bool:
        """A deadline passed; True when the call is ending."""
        assert self.setup is not None and self._caller is not None
        config = self.setup.config
        now = self.clock()
        if now >= self.t0 + config.max_call_seconds:
            await self._finish("max_duration", say=config.goodbye_text, interrupt=True)
            return True
        if self._dtmf_deadline is not None and now >= self._dtmf_deadline:
            await self._commit_dtmf(now)
            return False
        if self._caller_activity_at is not None and now >= self._caller_activity_at + 10.0:
            # Speech started but no transcript ever closed it (noise): the caller is not talking any more.
            self._caller_activity_at = None
            self._caller.speaking = False
            self._caller_went_quiet(now)
            return False
        if self._idle_since is not None and not self._agent_busy():
            if now >= self._idle_since + config.silence_hangup_seconds:
                await self._finish("silence_timeout", say=config.goodbye_text)
                return True
            if not self._reprompted and now >= self._idle_since + config.silence_reprompt_seconds:
                self._reprompted = True
                self.stats["reprompts"] += 1
                self._start_turn("say", text=config.reprompt_text, trigger="reprompt")
        return False

    async def _handle(self, event: Any) -> bool:
        """Apply one event; True when the call is ending."""
        kind = type(event)
        if kind is _Stt:
            return await self._on_stt(event)
        if kind is _Mark:
            self._on_mark_played(event.name)
            return False
        if kind is _TurnDone:
            return await self._on_turn_done(event.turn, event.outcome)
        if kind is _Dtmf:
            await self._on_dtmf(event)
            return False
        if kind is _SttFailed:
            self.stats["stt_failures"] = 1
            await self._finish("stt_failed", say=STT_FAILURE_TEXT, interrupt=True)
            return True
        return False

    async def _on_stt(self, item: _Stt) -> bool:
        assert self._caller is not None
        event = item.event
        kind = type(event)
        if kind is SpeechStarted or (kind is Transcript and event.text.strip()):
            self._caller_activity_at = item.at
            self._idle_since = None
            self._reprompted = False
        decision = self._caller.on_event(event, agent_busy=self._agent_busy())
        if not self._caller.speaking:
            self._caller_activity_at = None
            if decision is None:
                self._caller_went_quiet(item.at)
        if decision is None:
            return False
        if type(decision) is BargeIn:
            await self._barge_in(item.at)
            return False
        if type(decision) is Backchannel:
            self.stats["backchannels"] += 1
            self._record_caller(decision.text, decision.start, decision.end, item.leg)
            return False
        assert type(decision) is EndOfTurn
        self._caller_activity_at = None
        self._record_caller(decision.text, decision.start, decision.end, item.leg)
        end_of_speech = None
        if item.leg.offset is not None and decision.end is not None:
            assert self.setup is not None
            end_of_speech = self.t0 + item.leg.offset + decision.end - self.setup.config.endpointing_ms / 1000
        await self._user_says(
            decision.text, trigger=decision.trigger, at=item.at, end_of_speech=end_of_speech
        )
        return False

    async def _user_says(self, text: str, *, trigger: str, at: float, end_of_speech: float | None) -> None:
        if self._turn is not None:
            if self._turn.busy:
                await self._barge_in(at)
            else:  # played out; its completion is still in the queue
                self._settle_turn(self._turn, interrupted=False, at=self._turn.last_played_at or at)
        last = self.history[-1] if self.history else None
        if last is not None and last["role"] == "user":
            # The previous caller turn got no answer the caller heard: it continues.
            last["content"] = f"{last['content']} {text}"
        else:
            self.history.append({"role": "user", "content": text})
        self._idle_since = None
        self._reprompted = False
        turn = self._start_turn("llm", trigger=trigger, trigger_at=at)
        if end_of_speech is not None:
            turn.end_of_speech = end_of_speech
            turn.latency.stt_final_ms = max(0.0, (at - end_of_speech) * 1000)

    async def _barge_in(self, at: float) -> None:
        turn = self._turn
        if turn is None:
            return
        self.stats["barge_ins"] += 1
        if turn.task is not None:
            turn.task.cancel()
        await self.media.clear()
        self.stats["barge_in_ms"].append(round((self.clock() - at) * 1000, 2))
        self._settle_turn(turn, interrupted=True, at=self.clock())

    def _on_mark_played(self, name: str) -> None:
        turn = self._turn
        if turn is None or name not in turn.pending_marks:
            return
        turn.pending_marks.discard(name)
        turn.played.add(name)
        turn.last_played_at = self.clock()
        if not turn.busy and turn.outcome is not None and turn.end_action is None:
            self._settle_turn(turn, interrupted=False, at=turn.last_played_at)
            self._went_idle()

    def _went_idle(self) -> None:
        if self._idle_since is None and (self._caller is None or not self._caller.speaking):
            self._idle_since = self.clock()

    def _caller_went_quiet(self, now: float) -> None:
        if self._turn is None and self._idle_since is None:
            self._idle_since = now

    async def _on_dtmf(self, event: _Dtmf) -> None:
        if self._agent_busy():
            await self._barge_in(event.at)
        self._idle_since = None
        self._reprompted = False
        self._dtmf.append(event.digit)
        if event.digit == "#":
            await self._commit_dtmf(event.at)
        else:
            self._dtmf_deadline = event.at + self.cfg.dtmf_commit_seconds

    async def _commit_dtmf(self, at: float) -> None:
        digits, self._dtmf, self._dtmf_deadline = self._dtmf, [], None
        if not digits:
            return
        text = "[keypad] " + " ".join(digits)
        self.transcript.append(
            TranscriptTurn(role="caller", text=text, start_ms=self._ms(at), end_ms=self._ms(at))
        )
        await self._user_says(text, trigger="dtmf", at=at, end_of_speech=None)

    async def _on_turn_done(self, turn: _AgentTurn, outcome: str) -> bool:
        assert self.setup is not None
        config = self.setup.config
        turn.outcome = outcome
        if turn is not self._turn or turn.settled:
            return False
        if outcome == "ok":
            if turn.kind == "llm":
                self._llm_failures = 0
            if turn.sentences:
                self._tts_failures = 0
            if turn.kind == "llm" and turn.generated and turn.message is None:
                turn.message = {"role": "assistant", "content": turn.generated}
                self.history.append(turn.message)
            if turn.end_action is not None:
                return await self._do_end_action(turn)
            if not turn.busy:
                self._settle_turn(turn, interrupted=False, at=self.clock())
                self._went_idle()
            return False
        # A failed turn: what was queued still plays; then the fallback line, or the end.
        if outcome == "llm_failed":
            self._llm_failures += 1
            self.stats["llm_failures"] += 1
            failures = self._llm_failures
        else:
            self._tts_failures += 1
            self.stats["tts_failures"] += 1
            failures = self._tts_failures
        self._settle_turn(turn, interrupted=bool(turn.pending_marks), at=self.clock())
        if failures >= self.cfg.max_consecutive_failures:
            # TTS that keeps failing cannot say goodbye; a failing LLM still can.
            goodbye = config.goodbye_text if outcome == "llm_failed" else None
            await self._finish(outcome, say=goodbye)
            return True
        self._start_turn("say", text=config.fallback_text, trigger="fallback")
        return False

    async def _do_end_action(self, turn: _AgentTurn) -> bool:
        assert turn.end_action is not None
        action, arg = turn.end_action
        await self._wait_played(turn)
        self._settle_turn(turn, interrupted=False, at=turn.last_played_at or self.clock())
        if action == "end_call":
            await self._finish("agent_ended")
            return True
        target = arg
        # Recorded before the request: a carrier that moves the call ends our media leg at once, possibly before
        # its REST answer is in, and that cancels this task (on_stop then writes these records).
        self.end_reason = "transferred"
        self.stats["transferred_to"] = target.name
        try:
            await self.services.transfer(self.call, target.phone)
        except ProviderError as exc:
            log.warning("transfer failed", extra={"code": exc.code, "detail": str(exc)[:300]})
            self.end_reason = None
            del self.stats["transferred_to"]
            self.stats["transfer_failed"] = exc.code
            self._start_turn("say", text=TRANSFER_FAILED_TEXT, trigger="transfer_failed")
            return False
        # The carrier now ends our media leg (Twilio: stop; Vonage: close), which cancels this task. If it does
        # not, end the session without hanging up: that would drop the transferred caller.
        await asyncio.sleep(self.cfg.transfer_stop_timeout)
        if not self.media.ended:
            self.media.detach("transferred")
        return True

    async def _wait_played(self, turn: _AgentTurn) -> None:
        if not turn.sentences:
            return
        last = turn.sentences[-1][1]
        timeout = self.media.queued_seconds + self.cfg.playback_grace_seconds + 1.0
        try:
            async with asyncio.timeout(timeout):
                if await self.media.wait_for_mark(last):
                    turn.played.add(last)
                    turn.pending_marks.discard(last)
                    turn.last_played_at = self.clock()
        except TimeoutError:
            log.info("playback did not confirm in time", extra={"mark": last})
        # Marks before the last one have played too (they are echoed in order).
        for _, mark in turn.sentences:
            if last in turn.played:
                turn.played.add(mark)
        turn.pending_marks.clear()

    async def _finish(self, reason: str, *, say: str | None = None, interrupt: bool = False) -> None:
        """End the call: optionally stop the agent, say a last line and let it play, then hang up."""
        self.end_reason = reason
        turn = self._turn
        if turn is not None:
            if interrupt and turn.busy:
                if turn.task is not None:
                    turn.task.cancel()
                await self.media.clear()
                self._settle_turn(turn, interrupted=True, at=self.clock())
            elif turn.task is not None and not turn.task.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await turn.task
        if say:
            last = _AgentTurn(
                next(self._turn_numbers), "say", text=say, trigger="goodbye", trigger_at=self.clock()
            )
            self._turn = last
            outcome = await self._run_turn(last)
            last.outcome = outcome
            await self._wait_played(last)
            self._settle_turn(last, interrupted=False, at=last.last_played_at or self.clock())
        elif self._turn is not None:
            await self._wait_played(self._turn)
            self._settle_turn(self._turn, interrupted=False, at=self._turn.last_played_at or self.clock())
        await self.media.hangup(reason)

    # --- agent turns ---

    def _start_turn(
        self, kind: str, *, text: str = "", trigger: str, trigger_at: float | None = None
    ) -> _AgentTurn:
        assert self._tg is not None
        turn = _AgentTurn(
            next(self._turn_numbers), kind, text=text, trigger=trigger, trigger_at=trigger_at or self.clock()
        )
        self._turn = turn
        turn.task = self._tg.create_task(self._run_turn(turn), name=f"conversation-turn-{turn.number}")
        turn.task.add_done_callback(functools.partial(self._turn_finished, turn))
        return turn

    def _turn_finished(self, turn: _AgentTurn, task: asyncio.Task[str]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._events.put_nowait(_TurnDone(turn, task.result()))

    async def _run_turn(self, turn: _AgentTurn) -> str:
        try:
            if turn.kind == "say":
                for sentence in split_text(turn.text):
                    await self._speak_sentence(turn, sentence)
            else:
                await self._llm_turn(turn)
        except _LlmFailure as exc:
            log.warning("LLM turn failed", extra={"detail": str(exc)[:300]})
            return "llm_failed"
        except _TtsFailure as exc:
            log.warning("TTS failed", extra={"detail": str(exc)[:300]})
            return "tts_failed"
        return "ok"

    async def _llm_turn(self, turn: _AgentTurn) -> None:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        failures: list[Exception] = []

        async def generate() -> None:
            try:
                await self._generate(turn, queue)
            except _LlmFailure as exc:
                failures.append(exc)
            finally:
                queue.put_nowait(None)

        async def speak() -> None:
            try:
                while (sentence := await queue.get()) is not None:
                    await self._speak_sentence(turn, sentence)
            except _TtsFailure as exc:
                failures.append(exc)
                generator.cancel()

        async with asyncio.TaskGroup() as tg:
            generator = tg.create_task(generate())
            tg.create_task(speak())
        if failures:
            raise failures[0]

    async def _generate(self, turn: _AgentTurn, queue: asyncio.Queue[str | None]) -> None:
        assert self.setup is not None
        setup = self.setup
        config = setup.config
        messages = list(self.history)
        loop = asyncio.get_running_loop()
        for _ in range(self.cfg.max_tool_rounds):
            splitter = SentenceSplitter()
            text_parts: list[str] = []
            calls: list[ToolCallEvent] = []
            usage_seen = False
            sent_at = self.clock()
            stream = setup.llm.stream_chat(
                messages,
                tools=setup.tools or None,
                model=setup.llm_model,
                temperature=config.temperature,
                max_tokens=config.max_response_tokens,
            )
            try:
                async with (
                    aclosing(stream) as events,
                    asyncio.timeout(self.cfg.llm_first_token_timeout) as timer,
                ):
                    async for event in events:
                        timer.reschedule(loop.time() + self.cfg.llm_stall_timeout)
                        kind = type(event)
                        if turn.latency.llm_first_token_ms is None and kind in (TextDelta, ToolCallEvent):
                            turn.latency.llm_first_token_ms = (self.clock() - sent_at) * 1000
                        if kind is TextDelta:
                            text_parts.append(event.text)
                            for sentence in splitter.push(event.text):
                                queue.put_nowait(sentence)
                        elif kind is ToolCallEvent:
                            calls.append(event)
                        elif kind is UsageEvent:
                            # The last chunk before [DONE]: the reply's text is complete, speak its tail now.
                            rest = splitter.flush()
                            if rest:
                                queue.put_nowait(rest)
                            usage_seen = True
                            record_llm_usage(self.usage, setup.llm.name, event)
                        elif kind is LlmDone:
                            pass
            except LlmError as exc:
                raise _LlmFailure(str(exc)) from exc
            except TimeoutError as exc:
                raise _LlmFailure("the LLM did not answer in time") from exc
            finally:
                if not usage_seen:
                    # A cancelled or failed stream never reports usage: count it ourselves, marked estimated.
                    produced = "".join(text_parts) + "".join(c.arguments for c in calls)
                    self.usage.add_llm(
                        setup.llm.name,
                        setup.llm_model,
                        estimate_prompt_tokens(messages, setup.tools or None),
                        estimate_tokens(produced),
                        estimated=True,
                    )
            rest = splitter.flush()
            if rest:
                queue.put_nowait(rest)
            text = "".join(text_parts).strip()
            if text:
                turn.generated = f"{turn.generated} {text}".strip()
            if not calls:
                return
            results = self._apply_tools(turn, calls)
            if turn.end_action is not None:
                if not text:
                    action = turn.end_action[0]
                    line = config.goodbye_text if action == tool_defs.END_CALL else TRANSFER_TEXT
                    queue.put_nowait(line)
                    turn.generated = line
                return
            messages.append(
                {
                    "role": "assistant",
                    "content": text or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in calls
                    ],
                }
            )
            messages.extend({"role": "tool", "tool_call_id": c.id, "content": r} for c, r in results)
        raise _LlmFailure("the LLM kept calling tools without answering")

    def _apply_tools(self, turn: _AgentTurn, calls: list[ToolCallEvent]) -> list[tuple[ToolCallEvent, str]]:
        assert self.setup is not None
        targets = self.setup.config.transfer_targets
        results: list[tuple[ToolCallEvent, str]] = []
        for call in calls:
            args = tool_defs.parse_arguments(call.arguments)
            if call.name == tool_defs.END_CALL:
                turn.end_action = ("end_call", str(args.get("reason") or ""))
                results.append((call, "The call will end after your goodbye."))
            elif call.name == tool_defs.TRANSFER_CALL:
                target = tool_defs.find_target(targets, args.get("target"))
                if target is None:
                    names = ", ".join(t.name for t in targets) or "none"
                    results.append((call, f"Unknown transfer target. Valid targets: {names}."))
                elif turn.end_action is None:
                    turn.end_action = ("transfer", target)
                    results.append((call, f"Transferring to {target.name}."))
            else:
                results.append((call, f"There is no tool named {call.name!r}."))
        return results

    async def _speak_sentence(self, turn: _AgentTurn, text: str) -> None:
        assert self.setup is not None
        setup = self.setup
        tts = setup.tts
        media = self.media
        mark = f"t{turn.number}.{len(turn.sentences)}"
        first_sentence = not turn.sentences
        loop = asyncio.get_running_loop()
        produced = 0
        sent_at = self.clock()
        cancelled = False
        stream = tts.synthesize(text, voice_id=setup.voice_id, fmt=self._fmt, language=setup.language)
        try:
            async with aclosing(stream) as chunks, asyncio.timeout(self.cfg.tts_first_byte_timeout) as timer:
                async for chunk in chunks:
                    timer.reschedule(loop.time() + self.cfg.tts_stall_timeout)
                    if not produced:
                        now = self.clock()
                        if first_sentence:
                            turn.latency.tts_first_byte_ms = (now - sent_at) * 1000
                    produced += len(chunk)
                    await media.send_audio(chunk)
                    if turn.first_audio_at is None:
                        now = self.clock()
                        turn.first_audio_at = now
                        turn.latency.response_ms = (now - turn.trigger_at) * 1000
                        if turn.end_of_speech is not None:
                            turn.latency.first_audio_ms = (now - turn.end_of_speech) * 1000
        except asyncio.CancelledError:
            cancelled = True
            raise
        except TtsError as exc:
            raise _TtsFailure(str(exc)) from exc
        except TimeoutError as exc:
            raise _TtsFailure("the TTS did not answer in time") from exc
        finally:
            # Providers bill the characters of a request that produced audio (or was cut off by us).
            if produced or cancelled:
                self.usage.add_tts(
                    tts.name, tts.model, len(text), round(produced / self._bytes_per_second, 3)
                )
        if not produced:
            raise _TtsFailure("the TTS returned no audio")
        turn.sentences.append((text, mark))
        turn.pending_marks.add(mark)
        await media.send_mark(mark)


def _loop_time_at(deadline: float, clock: Callable[[], float]) -> float:
    """A deadline on `clock` as event-loop time (the same clock unless a test substitutes one)."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - clock())
