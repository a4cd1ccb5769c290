"""The STT leg (LiveKit's "audio recognition"): the caller's audio to the speech-to-text stream, its events back.

* `push_audio` (called by the media receive loop, must not block) appends a frame to a bounded buffer;
* `_forward_audio` sends what is buffered to the stream (the call's wire format, untouched), one send per wake-up;
* `_events` hands every STT event to the controller (`emit`, with the stream it came from and when it was read);
  when the stream drops it reconnects once, and the buffer carries the audio of the gap over to the new stream;
  a second drop, or a reconnect that fails, is reported as `SttFailed`;
* `_keepalive` keeps an idle stream open.

Each stream is one `SttLeg`: its audio timeline starts at `offset` seconds into the call (the caller audio before
its first send), which places a transcript's times on the call's clock. The legs' audio seconds are the STT usage.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

from providers.stt.base import SttClosed, SttError, SttEvent, SttStream
from providers.telephony.base import MediaFormat
from voice_service.conversation.records import CallRecords
from voice_service.conversation.services import CallSetup, EngineConfig

log = logging.getLogger(__name__)


class SttLeg:
    """One STT stream and where its audio timeline starts on the call's clock."""

    __slots__ = ("offset", "stream")

    def __init__(self, stream: SttStream) -> None:
        self.stream = stream
        self.offset: float | None = None  # call time (s) of the first audio sent on this stream


class SttHeard:
    """An STT event for the controller: what, on which leg, read when (session clock)."""

    __slots__ = ("at", "event", "leg")

    def __init__(self, event: SttEvent, leg: SttLeg, at: float) -> None:
        self.event = event
        self.leg = leg
        self.at = at


class SttFailed:
    """The STT is gone for good (dropped twice, or could not reconnect)."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


class Recognition:
    """The call's STT leg: created with the session (audio may arrive before the call's setup is ready),
    connected once the setup is known, its loops run as tasks of the session's task group."""

    def __init__(
        self,
        cfg: EngineConfig,
        fmt: MediaFormat,
        *,
        bytes_per_second: int,
        records: CallRecords,
        clock: Callable[[], float],
        emit: Callable[[Any], None],
    ) -> None:
        self.cfg = cfg
        self.records = records
        self.clock = clock
        self.emit = emit
        self.setup: CallSetup | None = None
        self.legs: list[SttLeg] = []
        self.leg: SttLeg | None = None  # the live stream; None while reconnecting (or before the first)
        self.stopping = False  # the call is ending: a closing stream is not a drop
        self._fmt = fmt
        self._bytes_per_second = bytes_per_second
        frames = int(cfg.audio_buffer_seconds * 50)
        self._audio: deque[bytes] = deque(maxlen=max(frames, 50))
        self._audio_wake = asyncio.Event()
        self._audio_in = 0  # caller audio bytes received: the call's audio timeline
        self._last_audio_sent = clock()

    @property
    def audio_seconds(self) -> float:
        """Audio sent to the STT over all the call's streams (what the provider bills)."""
        return sum(leg.stream.audio_seconds for leg in self.legs)

    def push_audio(self, payload: bytes) -> None:
        self._audio_in += len(payload)
        self._audio.append(payload)
        self._audio_wake.set()

    async def connect(self, setup: CallSetup, attempts: int) -> bool:
        """Open the first stream (`attempts` tries); False when the STT cannot be reached."""
        self.setup = setup
        self.leg = await self._open(attempts)
        return self.leg is not None

    def start(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[Any]]:
        """The leg's loops, in the session's task group; the session cancels them when the call ends."""
        return [
            tg.create_task(self._events(), name="conversation-stt"),
            tg.create_task(self._forward_audio(), name="conversation-audio"),
            tg.create_task(self._keepalive(), name="conversation-keepalive"),
        ]

    async def close(self) -> None:
        """Close every stream the call opened (each gets 2 s to flush)."""
        for leg in self.legs:
            try:
                async with asyncio.timeout(2.0):
                    await leg.stream.close()
            except (TimeoutError, OSError) as exc:
                log.warning("closing the STT stream failed", extra={"detail": repr(exc)})

    async def _open(self, attempts: int) -> SttLeg | None:
        setup = self.setup
        assert setup is not None
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
            leg = SttLeg(stream)
            self.legs.append(leg)
            return leg
        return None

    async def _events(self) -> None:
        stats = self.records.stats
        while True:
            leg = self.leg
            assert leg is not None
            error = "the STT stream ended"
            async with aclosing(leg.stream.events()) as events:
                async for event in events:
                    if type(event) is SttClosed:
                        error = event.error or "the provider closed the STT stream"
                        break
                    self.emit(SttHeard(event, leg, self.clock()))
            if self.stopping:
                return
            log.warning("STT stream dropped", extra={"detail": error})
            self.leg = None
            if stats["stt_reconnects"] >= 1:
                self.emit(SttFailed(error))
                return
            stats["stt_reconnects"] += 1
            leg = await self._open(attempts=1)
            if leg is None:
                self.emit(SttFailed(error))
                return
            self.leg = leg
            self._audio_wake.set()

    async def _forward_audio(self) -> None:
        audio = self._audio
        wake = self._audio_wake
        bps = self._bytes_per_second
        while True:
            await wake.wait()
            wake.clear()
            leg = self.leg
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
            leg = self.leg
            if leg is not None and self.clock() - self._last_audio_sent >= interval:
                await leg.stream.keep_alive()
                self._last_audio_sent = self.clock()
