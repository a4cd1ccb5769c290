"""What a web call tells its browser besides the audio: the conversation's events, as JSON text frames.

`WebCallHandler` is the SessionHandler of a web call's media session. It wraps the handler the process builds for
every media session (the conversation engine's CallSession), unchanged, and adds two things around it: it watches
the call through the engine's observer seam (`CallSession.observe`) and turns what it sees into the protocol's
events (`WebEvents`: live transcript of both sides, the agent's sentence as it starts playing, each finished turn),
sent in order by one pump task; and it hands the caller's frames to the recording capture, if the call is recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from providers.telephony.web_media import encode_agent_text, encode_transcript
from voice_service.calls.session import SessionHandler
from voice_service.conversation.control import CallObserver
from voice_service.conversation.metering import TranscriptTurn
from voice_service.recordings.capture import CallCapture

log = logging.getLogger(__name__)

__all__ = ["MAX_AUDIO_AHEAD", "Outbox", "WebCallHandler", "WebEvents"]

# How far ahead of real time a client's audio may run (network bursts after a stall) before it is dropped.
MAX_AUDIO_AHEAD = 2.0


class Outbox:
    """The call's JSON events, queued by observers (which must not block) and sent in order by `pump`."""

    def __init__(self, send_text: Callable[[str], Awaitable[None]]) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._send_text = send_text
        self.sent = 0

    def put(self, text: str) -> None:
        self._queue.put_nowait(text)

    async def pump(self) -> None:
        """Runs for the whole call (cancelled when it ends)."""
        while True:
            text = await self._queue.get()
            await self._send_text(text)
            self.sent += 1

    async def flush(self) -> None:
        """Send what is still queued (the turns settled as the call ended)."""
        while not self._queue.empty():
            await self._send_text(self._queue.get_nowait())
            self.sent += 1


class WebEvents(CallObserver):
    """Turns the engine's observations into protocol events (see providers/telephony/web_media.py).

    A partial transcript is the whole turn so far (the caller's settled segments and the STT's current guess; the
    agent's sentences that have started playing), so a client can simply replace the line it shows; a final one is
    the turn as stored with the call, and starts the next turn afresh."""

    def __init__(self, put: Callable[[str], None]) -> None:
        self._put = put
        self._caller_settled: list[str] = []
        self._agent_playing: list[str] = []

    def caller_text(self, text: str, *, final: bool) -> None:
        if final:
            self._caller_settled.append(text)
            words = self._caller_settled
        else:
            words = [*self._caller_settled, text]
        self._put(encode_transcript("caller", " ".join(words), final=False))

    def agent_text(self, text: str) -> None:
        self._agent_playing.append(text)
        self._put(encode_agent_text(text))
        self._put(encode_transcript("agent", " ".join(self._agent_playing), final=False))

    def transcript(self, entry: TranscriptTurn) -> None:
        role: Literal["caller", "agent"] = "caller" if entry.role == "caller" else "agent"
        (self._caller_settled if role == "caller" else self._agent_playing).clear()
        self._put(
            encode_transcript(
                role,
                entry.text,
                final=True,
                start_ms=entry.start_ms,
                end_ms=entry.end_ms,
                interrupted=entry.interrupted,
            )
        )


class WebCallHandler:
    """The web call's SessionHandler: the process's handler for the conversation, plus events and capture.

    A carrier delivers audio in real time; a web client could send it faster, and every second of it would be
    recognised and billed. So caller audio that runs more than MAX_AUDIO_AHEAD seconds ahead of the wall clock
    (counted from the start of the media) is dropped before the engine sees it, and counted (`dropped_seconds`)."""

    def __init__(
        self,
        inner: SessionHandler,
        outbox: Outbox,
        capture: CallCapture | None,
        *,
        bytes_per_second: int,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.inner = inner
        self.outbox = outbox
        self.capture = capture
        self._bytes_per_second = bytes_per_second
        self._clock = clock or asyncio.get_running_loop().time
        self._t0 = self._clock()
        self._audio_bytes = 0  # taken (bytes: no rounding drift over a long call)
        self._dropped_bytes = 0
        # The conversation engine's observer seam (a metering handler has none: then only audio flows).
        observe = getattr(inner, "observe", None)
        self._stop_watching = observe(WebEvents(outbox.put)) if observe is not None else None

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.outbox.pump(), name="web-call-events")
            await self.inner.run()

    @property
    def dropped_seconds(self) -> float:
        return self._dropped_bytes / self._bytes_per_second

    def on_audio(self, payload: bytes) -> None:
        size = len(payload)
        if self._audio_bytes + size > (self._clock() - self._t0 + MAX_AUDIO_AHEAD) * self._bytes_per_second:
            if not self._dropped_bytes:
                log.warning("web call client sends audio faster than real time: dropping the excess")
            self._dropped_bytes += size
            return
        self._audio_bytes += size
        self.inner.on_audio(payload)
        if self.capture is not None:
            self.capture.caller(payload)

    def on_dtmf(self, digit: str) -> None:
        self.inner.on_dtmf(digit)

    def on_mark(self, name: str) -> None:
        self.inner.on_mark(name)

    async def on_stop(self) -> None:
        try:
            await self.inner.on_stop()  # settles the last turns: their final transcripts are queued by now
        finally:
            if self._stop_watching is not None:
                self._stop_watching()
