"""A Deepgram-style live transcription server (`/v1/listen` WebSocket) driven by the audio it receives.

It follows the real protocol closely enough for adapters, call sessions and benchmarks:

* the handshake checks `Authorization: Token <key>` (401 otherwise), `encoding` / `sample_rate`
  (400 otherwise) and, for nova-3, that `language` is one of the codes the model accepts (400 "No such
  model/language/tier combination found." otherwise, as Deepgram answers `language=de-DE`);
* binary frames are decoded (mulaw, alaw, linear16) and run through a simple energy VAD in 20 ms steps,
  so the caller audio a test or the telephony simulator streams really drives the transcripts;
* on speech: `SpeechStarted` (with `vad_events=true`), interim `Results` while it continues (with
  `interim_results=true`); after `endpointing` ms of silence a final `Results` (`is_final` and
  `speech_final` true) whose transcript is the next line of the script; `UtteranceEnd` once
  `utterance_end_ms` of silence follow the last word;
* `KeepAlive`, `Finalize` (flushes a final with `from_finalize`), `CloseStream` (flush, `Metadata` with
  the audio duration, close 1000); no audio or text for `idle_timeout` seconds closes with 1011 (NET0001);
* fault injection: `withhold_speech_final`, `drop_after_audio_s`, `drop_on_utterance`, with `drop_mode`
  "abort" (TCP closed without a close frame, the client sees 1006) or "error" (close 1011).

All timing is on the audio timeline (so tests can stream faster than real time), plus an optional fixed
`processing_delay` before each message is sent. Each connection is recorded as a `DeepgramSession`.

Usage::

    fake = FakeDeepgram(script=["I'd like to book a table.", "Tomorrow at eight."])
    async with LocalServer(fake) as srv:
        stt = DeepgramStt("test-key", base_url=srv.ws_url)
        ...
        session = await fake.wait_for_session()
        assert session.controls == ["CloseStream"]
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from tests.fakes.server import Receive, Scope, Send, audioop, headers_dict, query_params, reject

_encoder = msgspec.json.Encoder()
_DECODERS = {"mulaw": audioop.ulaw2lin, "alaw": audioop.alaw2lin}
_MODEL_UUID = "1dbdfb4d-85b2-4659-9831-16b3c76229aa"
_WORD = re.compile(r"[^\w']+")


@dataclass
class DeepgramSession:
    """What one connection received and sent."""

    query: dict[str, str]
    headers: dict[str, str]
    request_id: str
    encoding: str = ""
    sample_rate: int = 0
    channels: int = 1
    audio: bytearray = field(default_factory=bytearray)
    controls: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None  # what the server closed with (1006 = dropped without a close frame)
    client_disconnected: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def audio_seconds(self) -> float:
        width = 2 if self.encoding == "linear16" else 1
        return len(self.audio) / (width * self.sample_rate * self.channels) if self.sample_rate else 0.0

    def sent_of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == kind]

    @property
    def finals(self) -> list[dict[str, Any]]:
        return [m for m in self.sent_of("Results") if m["is_final"]]


class _Drop(Exception):
    pass


_CLOSE = object()
_ABORT = object()


class FakeDeepgram:
    """ASGI app. Constructor options set the behaviour for every connection; `sessions` records them."""

    def __init__(
        self,
        script: Sequence[str] | Callable[[int], str] = (),
        *,
        api_key: str = "test-key",
        vad_threshold: float = 400.0,
        interim_every_ms: int = 300,
        withhold_speech_final: bool = False,
        processing_delay: float = 0.0,
        idle_timeout: float = 10.0,
        drop_after_audio_s: float | None = None,
        drop_on_utterance: int | None = None,
        drop_mode: Literal["abort", "error"] = "abort",
        drop_once: bool = True,
        confidence: float = 0.97,
    ) -> None:
        """`script`: transcript lines handed out in order across all connections (or a function of the
        0-based utterance number); once exhausted, finals carry an empty transcript.
        `vad_threshold`: RMS of 16-bit PCM above which a 20 ms frame is speech (silence in μ-law, 0xFF,
        is 0). `drop_on_utterance`: 1-based, counted across connections; the socket drops when that
        utterance starts. `drop_after_audio_s`: the socket drops once that much audio has arrived on it."""
        self.script = script
        self.api_key = api_key
        self.vad_threshold = vad_threshold
        self.interim_every_ms = interim_every_ms
        self.withhold_speech_final = withhold_speech_final
        self.processing_delay = processing_delay
        self.idle_timeout = idle_timeout
        self.drop_after_audio_s = drop_after_audio_s
        self.drop_on_utterance = drop_on_utterance
        self.drop_mode = drop_mode
        self.drop_once = drop_once
        self.drops = 0
        self.confidence = confidence
        self.sessions: list[DeepgramSession] = []
        self.utterances = 0  # across all connections
        self._changed = asyncio.Condition()

    def fault_armed(self) -> bool:
        """Count a drop; with `drop_once` only the first one fires (so a reconnect gets a clean stream)."""
        if self.drop_once and self.drops:
            return False
        self.drops += 1
        return True

    def next_line(self) -> str:
        index = self.utterances
        self.utterances += 1
        if callable(self.script):
            return self.script(index)
        return self.script[index] if index < len(self.script) else ""

    async def wait_for_session(self, index: int = 0) -> DeepgramSession:
        """The index-th connection (0-based), once it has ended; gives up after 10 s."""
        async with asyncio.timeout(10.0):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.sessions) > index)
            session = self.sessions[index]
            await session.done.wait()
        return session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or scope.get("path") != "/v1/listen":
            await reject(scope, receive, send, 404, {"err_code": "NOT_FOUND", "err_msg": "no such endpoint"})
            return
        auth = headers_dict(scope).get("authorization", "")
        if auth != f"Token {self.api_key}":
            await reject(
                scope, receive, send, 401, {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."}
            )
            return
        query = query_params(scope)
        problem = _check_query(query)
        if problem:
            await reject(scope, receive, send, 400, {"err_code": "Bad Request", "err_msg": problem})
            return
        session = DeepgramSession(query=query, headers=headers_dict(scope), request_id=str(uuid.uuid4()))
        session.encoding = query["encoding"]
        session.sample_rate = int(query["sample_rate"])
        session.channels = int(query.get("channels", "1"))
        async with self._changed:
            self.sessions.append(session)
            self._changed.notify_all()
        try:
            if (await receive())["type"] != "websocket.connect":
                return
            await send(
                {"type": "websocket.accept", "headers": [(b"dg-request-id", session.request_id.encode())]}
            )
            await _Connection(self, session, receive, send).run()
        finally:
            session.done.set()
            async with self._changed:
                self._changed.notify_all()


# What Deepgram's nova-3 accepts in `language` (its Models & Languages Overview and changelog): base codes and a
# few regional ones; de-DE, fr-FR, es-ES and the like are refused.
NOVA_3_LANGUAGES = frozenset(
    str.split(
        "multi en en-US en-AU en-GB en-IN en-NZ de de-CH nl nl-BE sv sv-SE da da-DK es es-419 fr fr-CA pt "
        "pt-BR pt-PT it tr no id bg cs fi hi hu ja ko ko-KR pl ru uk vi ca et el lv lt ms ro sk be bn bs hr kn mk mr "
        "sr sl ta tl te zh zh-CN zh-Hans zh-TW zh-Hant zh-HK th th-TH gu gu-IN"
    )
)


def _check_query(query: dict[str, str]) -> str | None:
    if query.get("model", "nova-3") == "nova-3" and query.get("language", "en") not in NOVA_3_LANGUAGES:
        return "No such model/language/tier combination found."
    encoding = query.get("encoding")
    if encoding not in ("linear16", "mulaw", "alaw"):
        return f"unsupported or missing encoding {encoding!r} (this fake accepts raw audio only)"
    rate = query.get("sample_rate", "")
    if not rate.isdigit() or not 8000 <= int(rate) <= 48000:
        return f"sample_rate must be given with encoding, got {rate!r}"
    if not query.get("channels", "1").isdigit():
        return "channels must be an integer"
    value = query.get("endpointing")
    if value is not None and value not in ("true", "false") and not value.isdigit():
        return "endpointing must be an integer or a boolean"
    value = query.get("utterance_end_ms")
    if value is not None and not value.isdigit():
        return "utterance_end_ms must be an integer"  # Deepgram recommends >= 1000; not enforced here
    return None


class _Connection:
    """One socket: a receiver that runs the VAD on the audio timeline and a sender that applies the delay."""

    def __init__(self, fake: FakeDeepgram, session: DeepgramSession, receive: Receive, send: Send) -> None:
        self.fake = fake
        self.session = session
        self._receive = receive
        self._send = send
        q = session.query
        self.rate = session.sample_rate
        self.channels = session.channels
        self.width = 2 if session.encoding == "linear16" else 1
        self.interim = q.get("interim_results") == "true"
        self.vad_events = q.get("vad_events") == "true"
        self.smart_format = q.get("smart_format") == "true"
        endpointing = q.get("endpointing", "10")  # Deepgram's default endpointing is 10 ms
        self.endpointing_s = (
            None if endpointing == "false" else (0.01 if endpointing == "true" else int(endpointing) / 1000)
        )
        ue = q.get("utterance_end_ms")
        self.utterance_end_s = int(ue) / 1000 if ue else None
        self.frame_samples = self.rate // 50  # 20 ms VAD frames
        self.frame_bytes = self.frame_samples * 2
        self.frame_seconds = self.frame_samples / self.rate
        self.pcm = bytearray()  # decoded mono PCM16 not yet run through the VAD
        self.raw_tail = b""  # a partial sample left over from the last binary frame
        self.t = 0.0  # audio seconds processed by the VAD
        self.cursor = 0.0  # end of the last final segment
        self.in_speech = False
        self.speech_start = 0.0
        self.last_voice_end = 0.0
        self.last_interim = 0.0
        self.interims_sent = 0
        self.line = ""
        self.awaiting_utterance_end = False
        self.utterance_has_words = False
        self.outbox: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.heard_at = self.loop.time()  # when the last message arrived (the idle timeout counts from it)

    async def run(self) -> None:
        sender = asyncio.create_task(self._sender())
        try:
            outcome = await self._receiver()
            if outcome == "abort":
                self.outbox.put_nowait((self.loop.time() + self.fake.processing_delay, _ABORT))
            if outcome != "disconnect":
                await sender  # what was queued before goes out, then the close frame (or the drop)
        finally:
            if not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
        if outcome == "abort":
            # returning without websocket.close makes uvicorn drop the TCP connection: the client sees 1006
            self.session.close_code = 1006

    # -- receiving ------------------------------------------------------------------------------------

    async def _receiver(self) -> str:
        # The idle timeout is one timer per connection that re-arms itself from the last message's time, not an
        # `asyncio.timeout` entered and left around every 20 ms frame (a third of this fake's CPU under load).
        task = asyncio.current_task()
        assert task is not None
        idle = self.fake.idle_timeout
        self.heard_at = self.loop.time()
        timed_out = False

        def watchdog() -> None:
            nonlocal timer, timed_out
            due = self.heard_at + idle
            if self.loop.time() >= due:
                timed_out = True
                task.cancel()
            else:
                timer = self.loop.call_at(due, watchdog)

        timer = self.loop.call_at(self.heard_at + idle, watchdog)
        try:
            return await self._receive_until_done(task, lambda: timed_out)
        finally:
            timer.cancel()

    async def _receive_until_done(self, task: asyncio.Task[Any], timed_out: Callable[[], bool]) -> str:
        session = self.session
        while True:
            try:
                message = await self._receive()
            except asyncio.CancelledError:
                if not timed_out():
                    raise
                task.uncancel()
                self._enqueue_close(1011, "NET0001: no audio or text received within the timeout window")
                return "closed"
            self.heard_at = self.loop.time()
            if message["type"] == "websocket.disconnect":
                session.client_disconnected = True
                return "disconnect"
            data = message.get("bytes")
            try:
                if data is not None:
                    if not data:
                        # legacy protocol: an empty binary frame means CloseStream
                        session.controls.append("CloseStream")
                        self._close_stream()
                        return "closed"
                    session.audio += data
                    self._on_audio(data)
                    continue
                kind = _control_type(message.get("text") or "")
                session.controls.append(kind)
                if kind == "Finalize":
                    self._flush(from_finalize=True)
                elif kind == "CloseStream":
                    self._close_stream()
                    return "closed"
            except _Drop:
                if self.fake.drop_mode == "error":
                    self._enqueue_close(1011, "fault injected")
                    return "closed"
                return "abort"

    def _on_audio(self, data: bytes) -> None:
        if (
            len(data) == self.frame_samples
            and self.width == 1
            and self.channels == 1
            and not self.raw_tail
            and not self.pcm
            and self.fake.drop_after_audio_s is None
        ):
            # The telephony case: one 20 ms μ-law/A-law frame in, one VAD frame, no buffering.
            start = self.t
            self.t += self.frame_seconds
            self._on_frame(_DECODERS[self.session.encoding](data, 2), start, self.t)
            return
        data = self.raw_tail + data
        if self.width == 2:
            usable = len(data) - len(data) % (2 * self.channels)
            data, self.raw_tail = data[:usable], data[usable:]
            pcm = data
        else:
            usable = len(data) - len(data) % self.channels
            data, self.raw_tail = data[:usable], data[usable:]
            pcm = _DECODERS[self.session.encoding](data, 2)
        if self.channels > 1:
            pcm = audioop.tomono(pcm, 2, 1, 0) if self.channels == 2 else pcm[:: self.channels * 2]
        self.pcm += pcm
        while len(self.pcm) >= self.frame_bytes:
            frame = bytes(self.pcm[: self.frame_bytes])
            del self.pcm[: self.frame_bytes]
            start = self.t
            self.t += self.frame_seconds
            self._on_frame(frame, start, self.t)
            drop_after = self.fake.drop_after_audio_s
            if drop_after is not None and self.t >= drop_after and self.fake.fault_armed():
                raise _Drop

    def _on_frame(self, frame: bytes, start: float, end: float) -> None:
        voiced = audioop.rms(frame, 2) >= self.fake.vad_threshold
        if voiced:
            if not self.in_speech:
                self._start_utterance(start)
            self.last_voice_end = end
            if self.interim and end - self.last_interim >= self.fake.interim_every_ms / 1000:
                self.last_interim = end
                self.interims_sent += 1
                words = self.line.split()
                shown = min(len(words), self.interims_sent)
                self._emit(self._results(" ".join(words[:shown]), end, is_final=False, speech_final=False))
            return
        silence = end - self.last_voice_end
        if self.in_speech:
            endpoint = self.endpointing_s if self.endpointing_s is not None else 0.3
            if silence >= endpoint:
                speech_final = self.endpointing_s is not None and not self.fake.withhold_speech_final
                self._finish_utterance(end, speech_final=speech_final, from_finalize=False)
        if (
            self.awaiting_utterance_end
            and self.utterance_end_s is not None
            and silence >= self.utterance_end_s
        ):
            self.awaiting_utterance_end = False
            self._emit(
                {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(self.last_voice_end, 3)}
            )

    def _start_utterance(self, start: float) -> None:
        self.in_speech = True
        self.awaiting_utterance_end = False
        self.speech_start = start
        self.last_interim = start
        self.interims_sent = 0
        if self.fake.drop_on_utterance == self.fake.utterances + 1 and self.fake.fault_armed():
            raise _Drop  # the line is not consumed: the reconnected stream hears this utterance again
        self.line = self.fake.next_line()
        if self.vad_events:
            self._emit({"type": "SpeechStarted", "channel": [0], "timestamp": round(start, 3)})

    def _finish_utterance(self, end: float, *, speech_final: bool, from_finalize: bool) -> None:
        message = self._results(
            self.line, end, is_final=True, speech_final=speech_final, from_finalize=from_finalize
        )
        self._emit(message)
        self.cursor = end
        self.in_speech = False
        self.line = ""
        if self.interim and self.utterance_end_s is not None:
            self.awaiting_utterance_end = True

    def _flush(self, *, from_finalize: bool) -> None:
        if self.in_speech:
            self._finish_utterance(self.t, speech_final=False, from_finalize=from_finalize)
        elif from_finalize:
            self._emit(self._results("", self.t, is_final=True, speech_final=False, from_finalize=True))
            self.cursor = self.t

    def _close_stream(self) -> None:
        self._flush(from_finalize=False)
        session = self.session
        self._emit(
            {
                "type": "Metadata",
                "transaction_key": "deprecated",
                "request_id": session.request_id,
                "sha256": hashlib.sha256(bytes(session.audio)).hexdigest(),
                "created": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                "duration": round(session.audio_seconds, 3),
                "channels": self.channels,
                "models": [_MODEL_UUID],
                "model_info": {
                    _MODEL_UUID: {"name": "general-nova-3", "version": "2025-01-01", "arch": "nova-3"}
                },
            }
        )
        self._enqueue_close(1000, "")

    def _results(
        self, text: str, end: float, *, is_final: bool, speech_final: bool, from_finalize: bool = False
    ) -> dict[str, Any]:
        words = text.split()
        span_start = self.speech_start
        span_end = max(self.last_voice_end, span_start + 0.01)
        step = (span_end - span_start) / len(words) if words else 0.0
        word_items = [
            {
                "word": _WORD.sub("", w).lower() or w.lower(),
                "start": round(span_start + i * step, 3),
                "end": round(span_start + (i + 1) * step, 3),
                "confidence": self.fake.confidence,
                **({"punctuated_word": w} if self.smart_format else {}),
            }
            for i, w in enumerate(words)
        ]
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(end - self.cursor, 3),
            "start": round(self.cursor, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": text,
                        "confidence": self.fake.confidence if text else 0.0,
                        "words": word_items,
                    }
                ]
            },
            "metadata": {
                "request_id": self.session.request_id,
                "model_info": {"name": "general-nova-3", "version": "2025-01-01", "arch": "nova-3"},
                "model_uuid": _MODEL_UUID,
            },
        }

    # -- sending --------------------------------------------------------------------------------------

    def _emit(self, message: dict[str, Any]) -> None:
        self.outbox.put_nowait((self.loop.time() + self.fake.processing_delay, message))

    def _enqueue_close(self, code: int, reason: str) -> None:
        self.outbox.put_nowait((self.loop.time() + self.fake.processing_delay, (_CLOSE, code, reason)))

    async def _sender(self) -> None:
        while True:
            due, item = await self.outbox.get()
            delay = due - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if item is _ABORT:
                return
            try:
                if isinstance(item, tuple) and item[0] is _CLOSE:
                    _, code, reason = item
                    self.session.close_code = code
                    await self._send({"type": "websocket.close", "code": code, "reason": reason})
                    return
                self.session.sent.append(item)
                await self._send({"type": "websocket.send", "text": _encoder.encode(item).decode()})
            except OSError:  # uvicorn's ClientDisconnected: the client is gone
                self.session.client_disconnected = True
                return


def _control_type(text: str) -> str:
    try:
        message = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return "<invalid json>"
    kind = message.get("type") if isinstance(message, dict) else None
    return kind if isinstance(kind, str) else "<no type>"
