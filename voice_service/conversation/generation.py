"""The agent's side of a turn (LiveKit's "generation"): fills one `Utterance` with speech on the media session.

A fixed line is split into sentences; an LLM answer streams, is cut into sentences as it arrives
(`sentences.SentenceSplitter`) and may call tools (`end_call`, `transfer_call`: they set the utterance's end
action; a tool result goes back to the LLM for another round). Each sentence is synthesized and queued on the
media session as soon as it is complete, so the first audio leaves before the LLM has finished, followed by its
mark. Generation and speech run side by side: a TTS failure stops the LLM stream, an LLM failure lets the
sentences already produced play. The outcome is "ok", "llm_failed" or "tts_failed"; cancelling the task (barge-in)
stops both at once.

LLM tokens and TTS characters are metered into the call's usage as they are spent; a stream cut short never
reports usage, so the LLM provider's own estimate is metered instead (marked estimated).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

from providers.llm.base import LlmError, TextDelta, ToolCallEvent, UsageEvent
from providers.tts.base import TtsError
from voice_service.conversation import tools as tool_defs
from voice_service.conversation.control import Observers
from voice_service.conversation.metering import record_llm_usage
from voice_service.conversation.records import CallRecords
from voice_service.conversation.sentences import SentenceSplitter, split_text
from voice_service.conversation.services import CallSetup, EngineConfig
from voice_service.conversation.speech import MediaPort, Utterance

log = logging.getLogger(__name__)

TRANSFER_TEXT = "Please hold while I transfer your call."


class LlmFailure(Exception):
    pass


class TtsFailure(Exception):
    pass


class Generation:
    """Speaks utterances for one call (one at a time: the controller starts the next when one is over)."""

    def __init__(
        self,
        setup: CallSetup,
        cfg: EngineConfig,
        media: MediaPort,
        records: CallRecords,
        *,
        clock: Callable[[], float],
        observers: Observers,
    ) -> None:
        self.setup = setup
        self.cfg = cfg
        self.media = media
        self.usage = records.usage
        self.clock = clock
        self.observers = observers
        self._fmt = media.format
        self._bytes_per_second = media.bytes_per_second

    async def run(self, turn: Utterance, history: list[dict[str, Any]]) -> str:
        """Speak `turn` (an LLM turn answers `history` as it is when generation starts); returns the outcome."""
        try:
            if turn.kind == "say":
                for sentence in [*split_text(turn.preamble), *split_text(turn.text)]:
                    if turn.stop_after_sentence and turn.sentences:
                        turn.cut_short = True
                        break
                    await self._speak_sentence(turn, sentence)
            else:
                await self._llm_turn(turn, history)
        except LlmFailure as exc:
            log.warning("LLM turn failed", extra={"detail": str(exc)[:300]})
            return "llm_failed"
        except TtsFailure as exc:
            log.warning("TTS failed", extra={"detail": str(exc)[:300]})
            return "tts_failed"
        return "ok"

    async def _llm_turn(self, turn: Utterance, history: list[dict[str, Any]]) -> None:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        failures: list[Exception] = []

        async def generate() -> None:
            try:
                await self._generate(turn, history, queue)
            except LlmFailure as exc:
                failures.append(exc)
            finally:
                queue.put_nowait(None)

        async def speak() -> None:
            try:
                while (sentence := await queue.get()) is not None:
                    if turn.stop_after_sentence and turn.sentences:
                        turn.cut_short = True  # the rest of the reply is not said (finish_after_sentence)
                        generator.cancel()
                        return
                    await self._speak_sentence(turn, sentence)
            except TtsFailure as exc:
                failures.append(exc)
                generator.cancel()

        for sentence in split_text(turn.preamble):  # spoken while the LLM works on the reply
            queue.put_nowait(sentence)
        async with asyncio.TaskGroup() as tg:
            generator = tg.create_task(generate())
            tg.create_task(speak())
        if failures:
            raise failures[0]

    async def _generate(
        self, turn: Utterance, history: list[dict[str, Any]], queue: asyncio.Queue[str | None]
    ) -> None:
        setup = self.setup
        config = setup.config
        llm = setup.llm
        messages = list(history)
        loop = asyncio.get_running_loop()
        for _ in range(self.cfg.max_tool_rounds):
            splitter = SentenceSplitter()
            text_parts: list[str] = []
            calls: list[ToolCallEvent] = []
            usage_seen = False
            sent_at = self.clock()
            stream = llm.stream_chat(
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
                        if type(event) is TextDelta:
                            if turn.latency.llm_first_token_ms is None:
                                turn.latency.llm_first_token_ms = (self.clock() - sent_at) * 1000
                            text_parts.append(event.text)
                            for sentence in splitter.push(event.text):
                                queue.put_nowait(sentence)
                        elif type(event) is ToolCallEvent:
                            if turn.latency.llm_first_token_ms is None:
                                turn.latency.llm_first_token_ms = (self.clock() - sent_at) * 1000
                            calls.append(event)
                        elif type(event) is UsageEvent:
                            # The last chunk before [DONE]: the reply's text is complete, speak its tail now.
                            rest = splitter.flush()
                            if rest:
                                queue.put_nowait(rest)
                            usage_seen = True
                            record_llm_usage(self.usage, llm.name, event)
            except LlmError as exc:
                raise LlmFailure(str(exc)) from exc
            except TimeoutError as exc:
                raise LlmFailure("the LLM did not answer in time") from exc
            finally:
                if not usage_seen:
                    # A cancelled or failed stream never reports usage: the provider estimates it, marked so.
                    produced = "".join(text_parts) + "".join(c.arguments for c in calls)
                    estimate = llm.estimate_usage(
                        messages, tools=setup.tools or None, completion=produced, model=setup.llm_model
                    )
                    self.usage.add_llm(
                        llm.name,
                        setup.llm_model,
                        estimate.prompt_tokens,
                        estimate.completion_tokens,
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
        raise LlmFailure("the LLM kept calling tools without answering")

    def _apply_tools(self, turn: Utterance, calls: list[ToolCallEvent]) -> list[tuple[ToolCallEvent, str]]:
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

    async def _speak_sentence(self, turn: Utterance, text: str) -> None:
        setup = self.setup
        tts = setup.tts
        media = self.media
        observers = self.observers
        mark = turn.next_mark()
        first_sentence = not turn.sentences
        loop = asyncio.get_running_loop()
        produced = 0
        sent_at = self.clock()
        cancelled = started = False
        stream = tts.synthesize(text, voice_id=setup.voice_id, fmt=self._fmt, language=setup.language)
        try:
            async with aclosing(stream) as chunks, asyncio.timeout(self.cfg.tts_first_byte_timeout) as timer:
                async for chunk in chunks:
                    timer.reschedule(loop.time() + self.cfg.tts_stall_timeout)
                    if not produced and first_sentence:
                        turn.latency.tts_first_byte_ms = (self.clock() - sent_at) * 1000
                    produced += len(chunk)
                    await media.send_audio(chunk)
                    if observers:
                        observers.agent_audio(chunk, self.clock())
                    if turn.first_audio_at is None:
                        now = self.clock()
                        turn.first_audio_at = now
                        turn.latency.response_ms = (now - turn.trigger_at) * 1000
                        if turn.end_of_speech is not None:
                            turn.latency.first_audio_ms = (now - turn.end_of_speech) * 1000
                    if not started:
                        started = True
                        turn.sentence_started(text)
        except asyncio.CancelledError:
            cancelled = True
            raise
        except TtsError as exc:
            raise TtsFailure(str(exc)) from exc
        except TimeoutError as exc:
            raise TtsFailure("the TTS did not answer in time") from exc
        finally:
            # Providers bill the characters of a request that produced audio (or was cut off by us).
            if produced or cancelled:
                self.usage.add_tts(
                    tts.name, tts.model, len(text), round(produced / self._bytes_per_second, 3)
                )
        if not produced:
            raise TtsFailure("the TTS returned no audio")
        turn.sentence_queued(text, mark)
        await media.send_mark(mark)
