"""CallSession: the session controller of one call's real-time conversation (caller audio → STT → LLM → TTS →
caller), driven by its MediaSession as the session's handler.

The voice loop is in four parts, as LiveKit Agents splits its own (the agent session coordinating recognition,
generation and speech handles):

* `recognition.Recognition` — the STT leg: caller audio forwarded to the STT stream (reconnected once if it
  drops, kept alive when idle), its events into this controller's queue;
* `speech.Utterance` — one thing the agent says, with `interrupt()` and `wait_for_playout()`;
* `generation.Generation` — fills an utterance: LLM stream → sentences → TTS → media session, tool calls;
* `records.CallRecords` — transcript entries, latencies, usage and counters, and the metadata written at the end.

This module is the controller, the only place the conversation's state changes (one task group per call).
`_controller` takes events one at a time from one queue — STT events, marks played, keypad digits, finished agent
turns, commands from outside (`command()`, see `control.py`) — and applies turn-taking (`turns.CallerTurns`),
timers (silence re-prompt and hang-up, keypad input, maximum call length) and the outcome of agent turns. One
utterance at a time: barge-in interrupts it; the history keeps only the sentences whose marks came back.

The session ends through `MediaSession.hangup(reason)` (end_call, silence, failures, maximum length, an `EndCall`
command), or from the carrier's side (caller hung up, transfer completed). Either way `on_stop` then writes the
records (transcript, latency, usage) before the media layer records the end of the call.
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
from typing import Any

from msgspec import Struct

from providers.stt.base import SpeechStarted, Transcript
from providers.telephony.base import ProviderError
from voice_service.agents.schemas import TransferTarget
from voice_service.conversation.control import CallObserver, Command, EndCall, Observers, Say, Transfer
from voice_service.conversation.generation import TRANSFER_TEXT, Generation
from voice_service.conversation.recognition import Recognition, SttFailed, SttHeard
from voice_service.conversation.records import CallRecords
from voice_service.conversation.services import CallSetup, EngineServices
from voice_service.conversation.speech import MediaPort, Utterance
from voice_service.conversation.turns import Backchannel, BargeIn, CallerTurns, EndOfTurn

log = logging.getLogger(__name__)

__all__ = ["STT_FAILURE_TEXT", "TRANSFER_FAILED_TEXT", "TRANSFER_TEXT", "CallSession", "MediaPort"]

STT_FAILURE_TEXT = "I'm sorry, I can't hear you properly right now. Please call back later. Goodbye."
TRANSFER_FAILED_TEXT = "I'm sorry, I couldn't transfer your call right now."
# Speech started but no transcript closed it (noise): after this long the caller is taken to be quiet.
CALLER_NOISE_SECONDS = 10.0


# --- controller events (STT events come as recognition.SttHeard / SttFailed, commands as control.Command) ---


class _Dtmf(Struct):
    digit: str
    at: float


class _Mark(Struct):
    name: str


class _TurnDone(Struct):
    turn: Utterance
    outcome: str


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
        self.observers = Observers()
        self.records = CallRecords(self.call, t0=self.t0, clock=clock, observers=self.observers)
        self.history: list[dict[str, Any]] = []
        self.end_reason: str | None = None
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._recognition = Recognition(
            self.cfg,
            media.format,
            bytes_per_second=media.bytes_per_second,
            records=self.records,
            clock=clock,
            emit=self._events.put_nowait,
        )
        self._generation: Generation | None = None
        self._caller: CallerTurns | None = None
        self._turn: Utterance | None = None
        self._turn_numbers = itertools.count(1)
        self._tg: asyncio.TaskGroup | None = None
        self._llm_failures = 0
        self._tts_failures = 0
        self._idle_since: float | None = None
        self._reprompted = False
        self._dtmf: list[str] = []
        self._dtmf_deadline: float | None = None
        self._caller_activity_at: float | None = None
        self._says: deque[str] = deque()  # lines from `Say(interrupt=False)`, spoken when the agent is free
        self._ending = False  # the controller has stopped taking events (the call is being ended)
        self._finished = False

    # --- the seams for live control and observers (control.py) ---

    @property
    def accepting_commands(self) -> bool:
        return not self._ending and not self._finished and not self.media.ended

    def command(self, command: Command) -> bool:
        """Queue a command for the controller; False when the call is already ending (nothing will happen)."""
        if not self.accepting_commands:
            return False
        self._events.put_nowait(command)
        return True

    def observe(self, observer: CallObserver) -> Callable[[], None]:
        """Watch the call's audio and text from now on; returns the function that stops watching."""
        return self.observers.add(observer)

    # --- SessionHandler: called by the media receive loop (must not block) ---

    def on_audio(self, payload: bytes) -> None:
        self._recognition.push_audio(payload)
        if self.observers:
            self.observers.caller_audio(payload)

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
        self.records.endpointing_seconds = setup.config.endpointing_ms / 1000
        self.history = [{"role": "system", "content": setup.system_prompt}]
        self._generation = Generation(
            setup, self.cfg, self.media, self.records, clock=self.clock, observers=self.observers
        )
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            helpers: list[asyncio.Task[Any]] = []
            try:
                # The recording notice opens the first utterance: said before the starter, recorded with it.
                notice = setup.recording_notice
                if setup.starter:
                    self._start_turn("say", text=setup.starter, preamble=notice, trigger="starter")
                else:
                    self._start_turn("llm", preamble=notice, trigger="starter")
                if not await self._recognition.connect(setup, attempts=2):
                    self.records.stats["stt_failures"] = 1
                    await self._finish("stt_failed", say=STT_FAILURE_TEXT, interrupt=True)
                    return
                helpers = self._recognition.start(tg)
                await self._controller()
            finally:
                for task in helpers:
                    task.cancel()
                if self._turn is not None and self._turn.task is not None:
                    self._turn.task.cancel()

    async def on_stop(self) -> None:
        """The call's media has ended: settle what is in flight, close STT, write the records."""
        self._recognition.stopping = True
        if self._finished:
            return
        self._finished = True
        ended_at = self.clock()
        if self._turn is not None:
            turn = self._turn
            await turn.cancel(wait_seconds=2.0)
            self._settle_turn(turn, interrupted=bool(turn.pending_marks) or turn.generating, at=ended_at)
        if self._caller is not None and self._caller.text:
            caller = self._caller
            self.records.caller(caller.text, caller.start, caller.end, self._recognition.leg)
        await self._recognition.close()
        try:
            async with asyncio.timeout(self.cfg.save_timeout):
                metadata = self.records.metadata(
                    self.setup,
                    end_reason=self.end_reason or self.media.end_reason,
                    ended_at=ended_at,
                    stt_seconds=self._recognition.audio_seconds,
                )
                await self.services.save(self.call, self.records.transcripts(), metadata)
        except Exception:
            log.exception("writing the conversation records failed", extra={"call": str(self.call.call_id)})

    # --- records of turns ---

    def _settle_turn(self, turn: Utterance, *, interrupted: bool, at: float) -> None:
        """An agent turn is over (played out, interrupted, or the call ended): history, transcript, latency."""
        if turn.settled:
            return
        turn.settled = True
        interrupted = interrupted or turn.cut_short
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
        self.records.agent(
            turn, text=heard if interrupted else turn.spoken_text(), interrupted=interrupted, at=at
        )
        if self._turn is turn:
            self._turn = None

    # --- the controller ---

    async def _controller(self) -> None:
        try:
            await self._control_loop()
        finally:
            self._ending = True

    async def _control_loop(self) -> None:
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
            else:
                if await self._handle(event):
                    return
            if self._says and self._free_to_speak():
                self._speak(self._says.popleft(), trigger="api")

    def _agent_busy(self) -> bool:
        return self._turn is not None and self._turn.busy

    def _free_to_speak(self) -> bool:
        """Nothing playing or being generated, and no hang-up or transfer waiting on the last turn."""
        turn = self._turn
        return turn is None or (not turn.busy and turn.end_action is None)

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
            deadlines.append(self._caller_activity_at + CALLER_NOISE_SECONDS)
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
        if self._caller_activity_at is not None and now >= self._caller_activity_at + CALLER_NOISE_SECONDS:
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
                self.records.stats["reprompts"] += 1
                self._start_turn("say", text=config.reprompt_text, trigger="reprompt")
        return False

    async def _handle(self, event: Any) -> bool:
        """Apply one event; True when the call is ending."""
        kind = type(event)
        if kind is SttHeard:
            return await self._on_stt(event)
        if kind is _Mark:
            self._on_mark_played(event.name)
            return False
        if kind is _TurnDone:
            return await self._on_turn_done(event.turn, event.outcome)
        if kind is _Dtmf:
            await self._on_dtmf(event)
            return False
        if kind is SttFailed:
            self.records.stats["stt_failures"] = 1
            await self._finish("stt_failed", say=STT_FAILURE_TEXT, interrupt=True)
            return True
        if kind in (EndCall, Say, Transfer):
            return await self._on_command(event)
        return False

    async def _on_stt(self, item: SttHeard) -> bool:
        assert self._caller is not None
        event = item.event
        if type(event) is Transcript:
            words = event.text.strip()
            if words and self.observers:
                self.observers.caller_text(words, final=event.is_final)
            active = bool(words)
        else:
            active = type(event) is SpeechStarted
        if active:
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
            self.records.stats["backchannels"] += 1
            self.records.caller(decision.text, decision.start, decision.end, item.leg)
            return False
        assert type(decision) is EndOfTurn
        self._caller_activity_at = None
        self.records.caller(decision.text, decision.start, decision.end, item.leg)
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
        stats = self.records.stats
        stats["barge_ins"] += 1
        await turn.interrupt()
        stats["barge_in_ms"].append(round((self.clock() - at) * 1000, 2))
        self._settle_turn(turn, interrupted=True, at=self.clock())

    def _on_mark_played(self, name: str) -> None:
        turn = self._turn
        if turn is None or not turn.mark_played(name, self.clock()):
            return
        if not turn.busy and turn.outcome is not None and turn.end_action is None:
            self._settle_turn(turn, interrupted=False, at=turn.last_played_at or self.clock())
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
        self.records.keypad(text, at)
        await self._user_says(text, trigger="dtmf", at=at, end_of_speech=None)

    async def _on_command(self, command: Command) -> bool:
        """Apply a command from outside the call (see `control.py`); True when the call is ending."""
        if type(command) is EndCall:
            await self._finish(command.reason, interrupt=True)
            return True
        if type(command) is Say:
            turn = self._turn
            # Queued when the agent is saying something (or must finish first): it then finishes the sentence it
            # is saying and the controller loop speaks the line once it is free. A turn still thinking, with
            # nothing said yet, has nothing audible to wait for.
            waits = turn is None or turn.audible or turn.end_action is not None
            if not command.interrupt and (self._says or not self._free_to_speak()) and waits:
                self._says.append(command.text)
                if turn is not None and turn.busy and turn.end_action is None:
                    turn.finish_after_sentence()
                return False
            await self._stop_speaking()
            self._speak(command.text, trigger="api")
            return False
        assert type(command) is Transfer
        await self._stop_speaking()
        turn = self._speak(TRANSFER_TEXT, trigger="transfer")
        turn.end_action = ("transfer", TransferTarget(name=command.to, phone=command.to))
        return False

    async def _stop_speaking(self) -> None:
        """The agent stops now for a command: what was heard stays in the history (not a caller's barge-in)."""
        turn = self._turn
        if turn is not None and turn.busy:
            await turn.interrupt()
            self._settle_turn(turn, interrupted=True, at=self.clock())

    def _speak(self, text: str, *, trigger: str) -> Utterance:
        """Start a fixed line now (the current turn, if any, has played out)."""
        if self._turn is not None:  # played out; its completion is still in the queue
            self._settle_turn(self._turn, interrupted=False, at=self._turn.last_played_at or self.clock())
        self._idle_since = None
        self._reprompted = False
        return self._start_turn("say", text=text, trigger=trigger)

    async def _on_turn_done(self, turn: Utterance, outcome: str) -> bool:
        assert self.setup is not None
        config = self.setup.config
        turn.outcome = outcome
        if turn is not self._turn or turn.settled:
            return False
        stats = self.records.stats
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
            stats["llm_failures"] += 1
            failures = self._llm_failures
        else:
            self._tts_failures += 1
            stats["tts_failures"] += 1
            failures = self._tts_failures
        self._settle_turn(turn, interrupted=bool(turn.pending_marks), at=self.clock())
        if failures >= self.cfg.max_consecutive_failures:
            # TTS that keeps failing cannot say goodbye; a failing LLM still can.
            goodbye = config.goodbye_text if outcome == "llm_failed" else None
            await self._finish(outcome, say=goodbye)
            return True
        self._start_turn("say", text=config.fallback_text, trigger="fallback")
        return False

    async def _do_end_action(self, turn: Utterance) -> bool:
        assert turn.end_action is not None
        action, arg = turn.end_action
        await turn.wait_for_playout(self.cfg.playback_grace_seconds)
        self._settle_turn(turn, interrupted=False, at=turn.last_played_at or self.clock())
        if action == "end_call":
            await self._finish("agent_ended")
            return True
        target = arg
        stats = self.records.stats
        # Recorded before the request: a carrier that moves the call ends our media leg at once, possibly before
        # its REST answer is in, and that cancels this task (on_stop then writes these records).
        self.end_reason = "transferred"
        stats["transferred_to"] = target.name
        try:
            await self.services.transfer(self.call, target.phone)
        except ProviderError as exc:
            log.warning("transfer failed", extra={"code": exc.code, "detail": str(exc)[:300]})
            self.end_reason = None
            del stats["transferred_to"]
            stats["transfer_failed"] = exc.code
            self._start_turn("say", text=TRANSFER_FAILED_TEXT, trigger="transfer_failed")
            return False
        # The carrier now ends our media leg (Twilio: stop; Vonage: close), which cancels this task. If it does
        # not, end the session without hanging up: that would drop the transferred caller.
        await asyncio.sleep(self.cfg.transfer_stop_timeout)
        if not self.media.ended:
            self.media.detach("transferred")
        return True

    async def _finish(self, reason: str, *, say: str | None = None, interrupt: bool = False) -> None:
        """End the call: optionally stop the agent, say a last line and let it play, then hang up."""
        self._ending = True
        self.end_reason = reason
        grace = self.cfg.playback_grace_seconds
        turn = self._turn
        if turn is not None:
            if interrupt and turn.busy:
                await turn.interrupt()
                self._settle_turn(turn, interrupted=True, at=self.clock())
            elif turn.task is not None and not turn.task.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await turn.task
        if say:
            last = self._new_turn("say", text=say, trigger="goodbye", trigger_at=self.clock())
            self._turn = last
            assert self._generation is not None
            last.outcome = await self._generation.run(last, self.history)
            await last.wait_for_playout(grace)
            self._settle_turn(last, interrupted=False, at=last.last_played_at or self.clock())
        elif self._turn is not None:
            await self._turn.wait_for_playout(grace)
            self._settle_turn(self._turn, interrupted=False, at=self._turn.last_played_at or self.clock())
        await self.media.hangup(reason)

    # --- agent turns ---

    def _new_turn(
        self, kind: str, *, text: str = "", preamble: str = "", trigger: str, trigger_at: float
    ) -> Utterance:
        return Utterance(
            next(self._turn_numbers),
            kind,
            text=text,
            preamble=preamble,
            trigger=trigger,
            trigger_at=trigger_at,
            media=self.media,
            clock=self.clock,
            observers=self.observers,
        )

    def _start_turn(
        self, kind: str, *, text: str = "", preamble: str = "", trigger: str, trigger_at: float | None = None
    ) -> Utterance:
        assert self._tg is not None and self._generation is not None
        turn = self._new_turn(
            kind, text=text, preamble=preamble, trigger=trigger, trigger_at=trigger_at or self.clock()
        )
        self._turn = turn
        turn.task = self._tg.create_task(
            self._generation.run(turn, self.history), name=f"conversation-turn-{turn.number}"
        )
        turn.task.add_done_callback(functools.partial(self._turn_finished, turn))
        return turn

    def _turn_finished(self, turn: Utterance, task: asyncio.Task[str]) -> None:
        if task.cancelled():
            if turn.cut_short:  # stopped after a sentence (finish_after_sentence): what was kept still plays
                self._events.put_nowait(_TurnDone(turn, "ok"))
        elif task.exception() is None:
            self._events.put_nowait(_TurnDone(turn, task.result()))


def _loop_time_at(deadline: float, clock: Callable[[], float]) -> float:
    """A deadline on `clock` as event-loop time (the same clock unless a test substitutes one)."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - clock())
