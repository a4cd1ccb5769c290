"""MediaSession: one call's media socket, driven by a pluggable SessionHandler (the conversation engine).

The session owns the socket and the provider codec. Inbound frames are decoded and handed to the handler
(`on_audio`, `on_dtmf`, `on_mark`); the handler's `run()` runs for the whole call next to the receive loop and
the sender. Outbound audio (`send_audio`, any length, in the call's wire format) is cut into 20 ms frames and
sent by one sender task per call at real time plus a small lead: the provider holds at most `lead` (100 ms) of
unplayed audio, and `clear()` (barge-in) silences the agent at once. The sender tops the provider's buffer up in
bursts of `refill` (60 ms, three frames) when it has drained to `lead - refill` (40 ms) rather than waking for
every frame: a third of the wake-ups (timer, task switch) per call, which is most of the media path's own CPU
next to the socket writes, while the provider never runs dry. The first audio of a reply leaves at once.

Marks: `send_mark(name)` goes out after the audio queued before it; the provider echoes it once that audio
has played (Twilio mark, Vonage notify) and the session reports it (`on_mark`, `played_marks`). `clear()` drops
the unsent audio and marks, sends the provider's clear, and treats marks sent but not yet echoed as not
played: Twilio echoes every pending mark when it clears, and those echoes are swallowed.

The session ends when the provider stops the stream (clean: the provider's final status will end the call),
when the socket drops (the call is ended with end_reason `media_disconnected` and hung up), when
`hangup(reason)` is called (by the handler, the API or a shutdown drain), or when `detach(reason)` is called
(a transfer: the session ends, the provider's call lives on). A send that finds the socket gone (uvicorn's
ClientDisconnected, any OSError) ends the session like a drop, never with a crash; `handler.on_stop()` runs
however the session ends.

Taps (`add_tap`) see the call's audio as the caller and the carrier exchange it: every inbound frame as received
(`caller`), every outbound frame when it is handed to the carrier with the moment it starts playing at the caller
(`agent`, frame k of a burst plays at the burst's start + k·20 ms), and every barge-in clear (`clear`). The call's
recording (recordings.capture.CallCapture) and live listeners (calls.listen) are taps. Tap methods run inside the
media loops, once per 20 ms frame: they must only append to a buffer; one that raises is logged and removed.
Times are on the session's clock (`t0`: the session's start; the engine's transcript offsets count from the same
moment).

`cut_after(mark)` is the gentle stop: the audio queued up to a mark still plays, whatever was queued after it is
dropped before it reaches the carrier (no clear needed), and the marks dropped with it never count as played.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol, final

from providers.audio import FRAME_MS, frame_bytes, silence_byte
from providers.telephony.base import (
    MediaAudio,
    MediaCleared,
    MediaCodec,
    MediaDtmf,
    MediaFormat,
    MediaIgnored,
    MediaMark,
    MediaStarted,
    MediaStopped,
    ProtocolError,
)
from voice_service.calls.schemas import CallInfo
from voice_service.observability import call_id_var, tenant_id_var

log = logging.getLogger(__name__)

__all__ = ["MediaSession", "MediaTap", "MeteringHandler", "SessionHandler"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_LEAD_SECONDS = 0.1  # unplayed audio the provider holds at most
DEFAULT_REFILL_SECONDS = 0.06  # audio sent per wake-up of the sender (whole frames)
# After a send finds the socket gone, how long the receive loop has to report the close (and its code).
DISCONNECT_GRACE_SECONDS = 1.0
_FRAME_SECONDS = FRAME_MS / 1000
_MAX_LOGGED_PROTOCOL_ERRORS = 5


class SessionHandler(Protocol):
    """What drives a call. `on_*` are called from the receive loop: they must not block (queue the work)."""

    async def run(self) -> None:
        """Runs for the whole call, next to the receive loop (may return early). Cancelled when the call ends;
        an exception hangs the call up with end_reason `handler_error`."""
        ...

    def on_audio(self, payload: bytes) -> None:
        """One inbound frame (20 ms, the call's wire format: `session.format`)."""
        ...

    def on_dtmf(self, digit: str) -> None: ...

    def on_mark(self, name: str) -> None:
        """The audio sent before mark `name` has played (never called for marks dropped by `clear()`)."""
        ...

    async def on_stop(self) -> None:
        """The media has ended (after `run` was cancelled); flush what the call produced."""
        ...


class MediaTap(Protocol):
    """Sees a call's audio as it goes by (see the module docstring). Called inside the media loops: never block."""

    def caller(self, payload: bytes) -> None:
        """One inbound frame, as received (the call's wire format)."""
        ...

    def agent(self, frame: bytes, play_at: float) -> None:
        """One outbound 20 ms frame that starts playing at the caller at `play_at` (the session's clock)."""
        ...

    def clear(self, at: float) -> None:
        """Barge-in at `at`: agent audio that had not started playing by then never plays."""
        ...


class MeteringHandler:
    """The default handler: meters inbound audio seconds and logs DTMF digits; plays nothing."""

    def __init__(self, session: MediaSession) -> None:
        self.session = session
        self.inbound_bytes = 0
        self.dtmf: list[str] = []
        fmt = session.format
        self._bytes_per_second = frame_bytes(fmt.encoding, fmt.sample_rate, fmt.channels) * (1000 // FRAME_MS)

    @property
    def inbound_seconds(self) -> float:
        return self.inbound_bytes / self._bytes_per_second

    async def run(self) -> None:
        return None

    def on_audio(self, payload: bytes) -> None:
        self.inbound_bytes += len(payload)

    def on_dtmf(self, digit: str) -> None:
        self.dtmf.append(digit)
        log.info("dtmf", extra={"digit": digit})

    def on_mark(self, name: str) -> None:
        return None

    async def on_stop(self) -> None:
        log.info(
            "media ended",
            extra={"inbound_seconds": round(self.inbound_seconds, 3), "dtmf": "".join(self.dtmf)},
        )


@final
class _Mark:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class MediaSession:
    """One call's media socket. Create with the started event; `run()` until the call's media ends."""

    def __init__(
        self,
        *,
        call: CallInfo,
        codec: MediaCodec,
        started: MediaStarted,
        receive: Receive,
        send: Send,
        runtime: Any = None,
        lead_seconds: float = DEFAULT_LEAD_SECONDS,
        refill_seconds: float = DEFAULT_REFILL_SECONDS,
        clean_close_codes: tuple[int, ...] = (),
        loop_time: Callable[[], float] | None = None,
    ) -> None:
        self.call = call
        self.codec = codec
        self.format: MediaFormat = started.format
        self.stream_id = started.stream_id
        self.runtime = runtime
        self.lead_seconds = lead_seconds
        # Never more than the lead (the provider must not run dry between bursts), at least one frame.
        self.refill_seconds = min(max(refill_seconds, FRAME_MS / 1000), lead_seconds)
        self.played_marks: list[str] = []
        self.inbound_bytes = 0
        self.frames_in = 0
        self.frames_out = 0
        self.end_reason: str | None = None
        self.hung_up = False  # ended by us (drop, hangup, shutdown) rather than by the provider's stop
        self.handler: SessionHandler | None = None
        self._receive = receive
        self._send = send
        self._clean_close_codes = clean_close_codes
        self._frame_bytes = frame_bytes(self.format.encoding, self.format.sample_rate, self.format.channels)
        self._pad = bytes([silence_byte(self.format.encoding)])
        self._partial = bytearray()
        self._out: deque[bytes | _Mark] = deque()  # chunks of whole frames, and marks
        self._head_offset = 0  # bytes of the first chunk already sent
        self._wake = asyncio.Event()
        self._reset_clock = True
        self._pending_marks: list[str] = []  # sent, not yet echoed
        self._lost_marks: set[str] = (
            set()
        )  # marks a clear dropped (sent or not): never "played", echoes ignored
        self._mark_waiters: dict[str, asyncio.Future[bool]] = {}
        self._ended = asyncio.Event()
        self._finished = asyncio.Event()
        self._closed = False
        self._socket_lost = False  # a send failed: the socket is gone
        self._protocol_errors = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._time = loop_time or asyncio.get_running_loop().time
        self._taps: tuple[MediaTap, ...] = ()
        self.t0 = self._time()  # the session's start on its clock (recording and listener positions count from it)
        self.ended_at: float | None = None  # when the session ended, on the same clock

    # --- what the handler calls ---

    @property
    def bytes_per_second(self) -> int:
        return self._frame_bytes * (1000 // FRAME_MS)

    @property
    def inbound_seconds(self) -> float:
        return self.inbound_bytes / self.bytes_per_second

    @property
    def queued_seconds(self) -> float:
        """Audio accepted by send_audio and not yet sent to the provider."""
        queued = sum(len(item) for item in self._out if type(item) is bytes) - self._head_offset
        return (queued + len(self._partial)) / self.bytes_per_second

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def add_tap(self, tap: MediaTap) -> Callable[[], None]:
        """Let `tap` see the call's audio from now on; returns the function that removes it."""
        self._taps = (*self._taps, tap)
        return lambda: self.remove_tap(tap)

    def remove_tap(self, tap: MediaTap) -> None:
        self._taps = tuple(t for t in self._taps if t is not tap)

    def _tap_failed(self, tap: MediaTap) -> None:
        log.exception("media tap failed; removed", extra={"tap": type(tap).__name__})
        self.remove_tap(tap)

    async def send_audio(self, audio: bytes) -> None:
        """Queue audio (the call's wire format, any length); whole 20 ms frames go out paced in real time.
        A trailing partial frame waits for more audio, a mark or `flush()`."""
        if self._ended.is_set():
            return
        size = self._frame_bytes
        buf = self._partial
        if not buf and len(audio) % size == 0:
            if audio:
                self._out.append(bytes(audio))  # whole frames: queued as one chunk, sliced as it is sent
                self._wake.set()
            return
        buf += audio
        whole = len(buf) - len(buf) % size
        if whole:
            self._out.append(bytes(buf[:whole]))
            del buf[:whole]
            self._wake.set()

    def flush(self) -> None:
        """Send the held partial frame, padded with silence."""
        if self._partial:
            frame = bytes(self._partial) + self._pad * (self._frame_bytes - len(self._partial))
            self._partial.clear()
            self._out.append(frame)
            self._wake.set()

    async def send_mark(self, name: str) -> None:
        """A mark after the audio queued so far (the partial frame is flushed first). Names must be unique
        within the call (a name dropped by `clear()` is never reported as played)."""
        if self._ended.is_set():
            return
        self.flush()
        self._out.append(_Mark(name))
        self._wake.set()

    async def clear(self) -> None:
        """Barge-in: drop unsent audio and marks at once and tell the provider to drop what it holds."""
        self._partial.clear()
        dropped = [item.name for item in self._out if type(item) is _Mark]
        self._out.clear()
        self._head_offset = 0
        self._reset_clock = True
        self._lost_marks.update(self._pending_marks, dropped)
        for name in (*self._pending_marks, *dropped):
            self._resolve_mark(name, False)
        self._pending_marks.clear()
        if self._taps:
            at = self._time()
            for tap in self._taps:
                try:
                    tap.clear(at)
                except Exception:
                    self._tap_failed(tap)
        if not self._ended.is_set():
            await self._send_frame(self.codec.encode_clear())

    def cut_after(self, name: str) -> list[str] | None:
        """Drop everything queued after mark `name` (the audio before it still plays, no clear is sent); returns
        the marks dropped with it (they never count as played). None when `name` is not in the queue any more
        (sent to the carrier already, or unknown): nothing is dropped."""
        out = self._out
        index = next((i for i, item in enumerate(out) if type(item) is _Mark and item.name == name), None)
        if index is None:
            return None
        dropped: list[str] = []
        while len(out) > index + 1:
            item = out.pop()
            if type(item) is _Mark:
                dropped.append(item.name)
        self._partial.clear()
        dropped.reverse()
        self._lost_marks.update(dropped)
        for mark in dropped:
            self._resolve_mark(mark, False)
        return dropped

    async def wait_for_mark(self, name: str) -> bool:
        """True once mark `name` has played; False if it was cleared or the call ended first."""
        if name in self.played_marks:
            return True
        if self._ended.is_set() or name in self._lost_marks:
            return False
        fut = self._mark_waiters.get(name)
        if fut is None:
            fut = self._mark_waiters[name] = asyncio.get_running_loop().create_future()
        return await fut

    async def hangup(self, reason: str) -> None:
        """End the call now (the provider is told to hang up). Returns once the session has finished, unless
        called from inside the session's own tasks (then those are cancelled as the session ends)."""
        self._end(reason, hang_up=True)
        if asyncio.current_task() not in self._tasks:
            await self._finished.wait()

    def detach(self, reason: str) -> None:
        """End the session without hanging up the provider's call (after a transfer the call lives on
        elsewhere). The call's end comes from the provider's final status."""
        self._end(reason, hang_up=False)

    # --- the session's own loops ---

    def _end(self, reason: str, *, hang_up: bool) -> None:
        if self._ended.is_set():
            return
        self.ended_at = self._time()
        self.end_reason = reason
        self.hung_up = hang_up
        self._ended.set()
        self._wake.set()

    def _resolve_mark(self, name: str, played: bool) -> None:
        fut = self._mark_waiters.pop(name, None)
        if fut is not None and not fut.done():
            fut.set_result(played)

    async def _send_frame(self, frame: str | bytes) -> None:
        if self._closed:
            return
        try:
            if type(frame) is str:
                await self._send({"type": "websocket.send", "text": frame})
            else:
                await self._send({"type": "websocket.send", "bytes": frame})
        except OSError as exc:  # uvicorn's ClientDisconnected is an OSError
            if not self._socket_lost:
                log.info("media socket gone while sending", extra={"detail": repr(exc)[:300]})
            self._closed = True
            self._socket_lost = True
            self._wake.set()  # the sender notices and ends the session

    async def run(self, handler: SessionHandler) -> None:
        """Until the media ends: receive loop, sender and handler.run(); then handler.on_stop()."""
        self.handler = handler
        call_token = call_id_var.set(str(self.call.call_id))
        tenant_token = tenant_id_var.set(str(self.call.tenant_id))
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks = [
                    tg.create_task(self._receive_loop(handler), name="media-receive"),
                    tg.create_task(self._send_loop(), name="media-send"),
                    tg.create_task(self._run_handler(handler), name="media-handler"),
                ]
                await self._ended.wait()
                for task in self._tasks:
                    task.cancel()
        finally:
            # Whatever ended the session (a crash, a cancellation), the call's records are flushed.
            self._end("internal_error", hang_up=True)  # no-op when the session ended the normal way
            try:
                await handler.on_stop()
            except Exception:
                log.exception("session handler on_stop failed")
            for fut in self._mark_waiters.values():
                if not fut.done():
                    fut.set_result(False)
            self._mark_waiters.clear()
            call_id_var.reset(call_token)
            tenant_id_var.reset(tenant_token)

    def mark_finished(self) -> None:
        """Called by the transport once the call's end has been recorded (hangup() waiters wake up)."""
        self._finished.set()

    async def wait_finished(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bounded wait is the API
        """Until the call's end has been recorded (True), or `timeout` seconds (False)."""
        try:
            async with asyncio.timeout(timeout):
                await self._finished.wait()
        except TimeoutError:
            return False
        return True

    async def close_socket(self, code: int = 1000) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, RuntimeError):
            await self._send({"type": "websocket.close", "code": code})

    async def _run_handler(self, handler: SessionHandler) -> None:
        try:
            await handler.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("session handler failed")
            self._end("handler_error", hang_up=True)

    async def _receive_loop(self, handler: SessionHandler) -> None:
        receive = self._receive
        decode = self.codec.decode
        on_audio = handler.on_audio
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                data = text if text is not None else message.get("bytes")
                if data is None:
                    continue
                try:
                    event = decode(data)
                except ProtocolError as exc:
                    self._protocol_errors += 1
                    if self._protocol_errors <= _MAX_LOGGED_PROTOCOL_ERRORS:
                        log.warning("malformed media frame", extra={"detail": str(exc)[:300]})
                    continue
                if type(event) is MediaAudio:
                    payload = event.payload
                    self.frames_in += 1
                    self.inbound_bytes += len(payload)
                    on_audio(payload)
                    if self._taps:
                        for tap in self._taps:
                            try:
                                tap.caller(payload)
                            except Exception:
                                self._tap_failed(tap)
                elif type(event) is MediaMark:
                    self._on_mark(handler, event.name)
                elif type(event) is MediaDtmf:
                    handler.on_dtmf(event.digit)
                elif type(event) is MediaStopped:
                    self._closed = True  # the provider closes the socket after its stop
                    self._end("media_stopped", hang_up=False)
                    return
                elif type(event) in (MediaCleared, MediaIgnored, MediaStarted):
                    continue
            elif kind == "websocket.disconnect":
                self._closed = True
                code = message.get("code", 1005)
                if code in self._clean_close_codes:
                    self._end("media_closed", hang_up=False)
                else:
                    self._end("media_disconnected", hang_up=True)
                return

    def _on_mark(self, handler: SessionHandler, name: str) -> None:
        if name in self._lost_marks:
            return
        with contextlib.suppress(ValueError):
            self._pending_marks.remove(name)
        self.played_marks.append(name)
        self._resolve_mark(name, True)
        handler.on_mark(name)

    async def _socket_gone(self) -> None:
        # The receive loop normally sees the close right away and ends the session with the right reason
        # (Vonage closes with 1000 when the call ends); if it does not, the socket dropped.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DISCONNECT_GRACE_SECONDS):
                await self._ended.wait()
        self._end("media_disconnected", hang_up=True)

    async def _send_loop(self) -> None:
        # Frame k of a burst is due at start + k·20 ms − lead: the provider holds at most `lead` of unplayed
        # audio. The sender sleeps past a due time by `refill − 20 ms` and then sends every frame that is due,
        # so it wakes once per `refill` of audio. When the queue runs dry long enough for the provider to finish
        # playing, the clock restarts (the first frame of the next reply goes at once).
        out = self._out
        encode = self.codec.encode_audio
        now_fn = self._time
        lead = self.lead_seconds
        slack = self.refill_seconds - _FRAME_SECONDS
        size = self._frame_bytes
        start = 0.0
        sent = 0
        while not self._ended.is_set():
            if self._socket_lost:
                await self._socket_gone()
                return
            if not out:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = out[0]
            if type(item) is _Mark:
                out.popleft()
                self._pending_marks.append(item.name)
                await self._send_frame(self.codec.encode_mark(item.name))
                continue
            now = now_fn()
            if self._reset_clock or start + sent * _FRAME_SECONDS < now:
                self._reset_clock = False
                start, sent = now, 0
            delay = start + sent * _FRAME_SECONDS - lead - now
            if delay > 0:
                await asyncio.sleep(delay + slack)
                continue  # clear() may have emptied the queue meanwhile
            offset = self._head_offset
            end = offset + size
            if end >= len(item):
                out.popleft()
                self._head_offset = 0
            else:
                self._head_offset = end
            frame = item[offset:end]
            if self._taps:
                play_at = start + sent * _FRAME_SECONDS
                for tap in self._taps:
                    try:
                        tap.agent(frame, play_at)
                    except Exception:
                        self._tap_failed(tap)
            sent += 1
            self.frames_out += 1
            await self._send_frame(encode(frame))
