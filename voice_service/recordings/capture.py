"""CallCapture: what the live media path does for a recording — append raw frames to a local spool, nothing more.

One capture per recorded call, fed by the media session (see "Wiring" below). Every call is cheap: caller frames
are appended to one bytearray, agent frames to another (consecutive frames of one reply extend the same spool
record, so a record header is written per utterance, not per frame), a clear is a 9-byte record. No decoding,
no encoding, no per-frame objects. About every 256 KB (8 s of a Twilio call, 4 s of a Vonage one) the buffers
are handed to a thread that appends them to the spool file, so the event loop never waits on the disk; while
one write is in flight, frames keep accumulating in fresh buffers. The encode job runs after the call
(jobs.py) on whichever instance picks it up, from the spool uploaded to the recordings storage (service.py).

Time: `t0` is the media session's start on the event loop's clock (the conversation engine's transcript
offsets count from the same moment). Caller audio is placed by sample count from t0, as the engine places
caller turns; agent audio at the time it starts playing at the caller; a clear cuts whatever was still to play.

Wiring (done with the restructured media session; the session must pass `capture` in):

    # receive loop, for every inbound MediaAudio:
    capture.caller(payload)
    # send loop, for every 20 ms frame, before it is sent (frame k of a burst plays at start + k·20 ms):
    capture.agent(frame, start + sent * 0.02)
    # clear() (barge-in), when the provider is told to drop what it holds:
    capture.clear(loop.time())
    # after the call's end is recorded (media_ended): close the spool, upload it, enqueue the encode job
    await recordings.service.finish_capture(runtime, call_ref, capture, ended_at=loop.time())
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from voice_service.recordings.spool import AGENT, CALLER, HEADER, MAGIC, POSITION, encoding_code

log = logging.getLogger(__name__)

__all__ = ["FLUSH_BYTES", "CallCapture", "CaptureResult"]

FLUSH_BYTES = 256 * 1024
# A disk that has not taken the last write by the time this much is buffered is not keeping up: stop recording
# this call rather than grow without bound (the call itself goes on).
MAX_BUFFERED_BYTES = 16 * 1024 * 1024
_LENGTH = struct.Struct("<I")
_LENGTH_AT = AGENT.size - _LENGTH.size  # where an agent record's byte count sits in its header


@dataclass(frozen=True, slots=True)
class CaptureResult:
    path: Path
    size: int  # spool bytes
    duration_seconds: float  # from the media's start to its end
    caller_seconds: float
    agent_seconds: float  # agent audio sent (before clears)
    error: str | None = None  # set when the capture stopped early (what is in the spool is still good)


class CallCapture:
    """Appends one call's caller frames, agent frames (with play times) and clears to a spool file."""

    __slots__ = (
        "_agent",
        "_agent_bytes",
        "_caller",
        "_caller_bytes",
        "_closed",
        "_error",
        "_handle",
        "_loop",
        "_next",
        "_open",
        "_pending",
        "_rate",
        "_slack",
        "_stopped",
        "_t0",
        "_width",
        "path",
    )

    def __init__(self, path: Path, handle: BinaryIO, *, encoding: str, sample_rate: int, t0: float) -> None:
        """Use `CallCapture.open` (it creates the file off the event loop)."""
        self.path = path
        self._handle = handle
        self._rate = sample_rate
        self._slack = sample_rate // 500
        self._width = 1 if encoding == "mulaw" else 2
        self._t0 = t0
        self._loop = asyncio.get_running_loop()
        self._caller = bytearray()
        self._agent = bytearray()
        self._open = -1  # offset in _agent of the agent record still being extended, or -1
        self._next = 0  # the sample position that would continue that record
        self._pending: asyncio.Future[None] | None = None
        self._stopped = False  # no more frames are taken (closed, discarded, or a write failed)
        self._closed = False
        self._error: str | None = None
        self._caller_bytes = 0
        self._agent_bytes = 0

    @classmethod
    async def open(cls, path: Path, *, encoding: str, sample_rate: int, t0: float) -> CallCapture:
        """A new spool at `path` for audio in `encoding` ("mulaw" | "l16") at `sample_rate`; `t0` is the
        media's start on the event loop's clock."""
        header = HEADER.pack(MAGIC, encoding_code(encoding), sample_rate)

        def create() -> BinaryIO:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("wb")
            handle.write(header)
            return handle

        handle = await asyncio.to_thread(create)
        return cls(path, handle, encoding=encoding, sample_rate=sample_rate, t0=t0)

    # --- the live path (called from the media session's loops; never blocks) ---

    def caller(self, payload: bytes) -> None:
        """One inbound frame, as received."""
        if self._stopped:
            return
        self._caller += payload
        self._caller_bytes += len(payload)
        if len(self._caller) + len(self._agent) >= FLUSH_BYTES:
            self._flush()

    def agent(self, frame: bytes, play_at: float) -> None:
        """One outbound frame that starts playing at the caller at `play_at` (event-loop time)."""
        if self._stopped:
            return
        pos = int((play_at - self._t0) * self._rate + 0.5)
        # Frames of one burst are contiguous; a frame within 2 ms of where the last one ended continues it (the
        # clock's rounding; a gap or overlap that small would only be a click).
        if self._open >= 0 and -self._slack <= pos - self._next <= self._slack:
            self._agent += frame
        else:
            self._end_record()
            self._open = len(self._agent)
            self._agent += AGENT.pack(b"A", pos if pos > 0 else 0, 0)
            self._agent += frame
            self._next = pos if pos > 0 else 0
        self._next += len(frame) // self._width
        self._agent_bytes += len(frame)
        if len(self._caller) + len(self._agent) >= FLUSH_BYTES:
            self._flush()

    def clear(self, at: float) -> None:
        """Barge-in at `at` (event-loop time): agent audio that had not started playing by then never plays."""
        if self._stopped:
            return
        self._end_record()
        self._agent += POSITION.pack(b"X", max(0, int((at - self._t0) * self._rate + 0.5)))

    # --- end of the call ---

    async def close(self, ended_at: float) -> CaptureResult:
        """Write what is buffered and the end record, and close the file (idempotent)."""
        if not self._closed:
            self._closed = self._stopped = True
            await self._settle()
            end = max(0, int((ended_at - self._t0) * self._rate + 0.5))
            chunks = self._take()
            chunks.append(POSITION.pack(b"E", end))
            if self._error is None:  # after a failed write the spool ends where the disk stopped taking it
                try:
                    await asyncio.to_thread(self._write, chunks)
                except OSError as exc:
                    self._fail(f"writing the spool failed: {exc}")
            await asyncio.to_thread(self._handle.close)
        try:
            size = (await asyncio.to_thread(self.path.stat)).st_size
        except FileNotFoundError:
            size = 0
        rate_bytes = self._rate * self._width
        return CaptureResult(
            path=self.path,
            size=size,
            duration_seconds=round(max(0.0, ended_at - self._t0), 3),
            caller_seconds=round(self._caller_bytes / rate_bytes, 3),
            agent_seconds=round(self._agent_bytes / rate_bytes, 3),
            error=self._error,
        )

    async def discard(self) -> None:
        """Stop and delete the spool (recording turned off, or the call never had media worth keeping)."""
        if not self._closed:
            self._closed = self._stopped = True
            await self._settle()
            self._caller, self._agent = bytearray(), bytearray()
            await asyncio.to_thread(self._handle.close)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self.path.unlink)

    @property
    def error(self) -> str | None:
        return self._error

    # --- internals ---

    def _end_record(self) -> None:
        if self._open >= 0:
            _LENGTH.pack_into(self._agent, self._open + _LENGTH_AT, len(self._agent) - self._open - AGENT.size)
            self._open = -1

    def _take(self) -> list[bytes | bytearray]:
        self._end_record()
        chunks: list[bytes | bytearray] = []
        if self._caller:
            chunks += (CALLER.pack(b"C", len(self._caller)), self._caller)
        if self._agent:
            chunks.append(self._agent)
        self._caller, self._agent = bytearray(), bytearray()
        return chunks

    def _write(self, chunks: list[bytes | bytearray]) -> None:
        # Runs in a worker thread: the buffers were handed over, the loop no longer touches them.
        handle = self._handle
        for chunk in chunks:
            handle.write(chunk)
        handle.flush()

    def _flush(self) -> None:
        pending = self._pending
        if pending is not None:
            if not pending.done():
                if len(self._caller) + len(self._agent) > MAX_BUFFERED_BYTES:
                    self._fail("the spool's disk did not keep up; recording stopped")
                return
            self._pending = None
            exc = pending.exception()
            if exc is not None:
                self._fail(f"writing the spool failed: {exc}")
                return
        self._pending = self._loop.run_in_executor(None, self._write, self._take())

    async def _settle(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await pending
            except OSError as exc:
                self._fail(f"writing the spool failed: {exc}")

    def _fail(self, reason: str) -> None:
        if self._error is None:
            self._error = reason
            log.warning("call recording stopped", extra={"detail": reason, "spool": os.fspath(self.path)})
        self._stopped = True
        self._open = -1
        self._caller, self._agent = bytearray(), bytearray()
