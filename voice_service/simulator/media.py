"""The provider's side of a media WebSocket: streams the caller's audio, plays back what the service sends.

Message sequences follow PROTOCOLS.md exactly. Twilio: `connected`, `start` (customParameters from the TwiML
<Parameter>s), `media` frames (base64 μ-law, 160 bytes per 20 ms), `dtmf`, mark echoes, `stop`. Vonage: the
`websocket:connected` text frame with the NCCO headers flattened in, binary PCM16 frames, `websocket:dtmf`,
`websocket:notify` echoes, `websocket:cleared`, and a normal close when the call ends.

Playback is emulated at real time: each 20 ms frame the service sends takes 20 ms to "play"; a mark (Vonage:
notify) is echoed once the audio queued before it has played; `clear` drops the unplayed audio and (Twilio)
echoes every pending mark at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

log = logging.getLogger(__name__)

__all__ = ["MediaRecord", "MediaScript", "run_media_leg"]

FRAME_SECONDS = 0.02
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


@dataclass
class MediaRecord:
    """What happened on one media socket, from the provider's side."""

    url: str = ""
    connected: bool = False
    frames_sent: int = 0  # caller audio frames sent to the service
    send_times: list[float] = field(default_factory=list)  # when (time.monotonic) each caller frame was sent
    received_audio: bytearray = field(default_factory=bytearray)  # audio the service played to the caller
    frame_times: list[float] = field(default_factory=list)  # arrival time (time.monotonic) of each frame
    marks_received: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears: int = 0
    clear_times: list[float] = field(default_factory=list)  # arrival time (time.monotonic) of each clear
    dtmf_sent: list[str] = field(default_factory=list)
    other_messages: list[str] = field(default_factory=list)  # anything the protocol does not allow
    close_code: int | None = None
    ended_by: Literal["caller", "service", "drop", "hangup", "error"] | None = None
    error: str | None = None
    handshake_status: int | None = None

    @property
    def received_seconds(self) -> float:
        """Seconds of audio the service sent (μ-law: 8000 bytes a second; PCM16 16 kHz: 32000)."""
        return self.frames_received * FRAME_SECONDS

    @property
    def frames_received(self) -> int:
        return len(self.frame_times)


@dataclass
class MediaScript:
    """What the caller does on the socket."""

    audio: bytes  # caller audio in the wire format (μ-law 8 kHz for Twilio, PCM16 at the socket's rate for Vonage)
    frame_bytes: int
    speed: float = 1.0  # 1.0 = real time; 2.0 streams twice as fast (load tests)
    dtmf: tuple[tuple[float, str], ...] = ()  # (seconds into the stream, digit)
    hangup_after: float | None = (
        0.5  # seconds after the audio ends; None: stay until the service ends the call
    )
    drop_after: float | None = None  # abort the TCP connection (no close frame) after this many seconds
    max_seconds: float = 120.0  # safety limit


class _Player:
    """Real-time playback of the service's audio; echoes marks once the audio before them has played."""

    def __init__(self, echo: Callable[[str], Awaitable[None]]) -> None:
        self._echo = echo
        self.play_end = 0.0
        self.pending: deque[tuple[float, str]] = deque()
        self._wake = asyncio.Event()

    def audio(self, seconds: float) -> None:
        now = time.monotonic()
        self.play_end = max(self.play_end, now) + seconds

    def mark(self, name: str) -> None:
        self.pending.append((max(self.play_end, time.monotonic()), name))
        self._wake.set()

    def clear(self) -> list[str]:
        self.play_end = time.monotonic()
        names = [name for _, name in self.pending]
        self.pending.clear()
        return names

    async def run(self) -> None:
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, name = self.pending[0]
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(min(delay, 0.05))  # re-check: a clear may have emptied the queue
                continue
            self.pending.popleft()
            await self._echo(name)


class _Leg:
    def __init__(
        self,
        kind: Literal["twilio", "vonage"],
        ws: ClientConnection,
        script: MediaScript,
        record: MediaRecord,
        *,
        stream_sid: str,
        call_sid: str,
        account_sid: str,
    ) -> None:
        self.kind = kind
        self.ws = ws
        self.script = script
        self.record = record
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.seq = 0
        self.player = _Player(self._echo)

    def _next_seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    async def _send_json(self, payload: dict[str, Any]) -> None:
        await self.ws.send(_encoder.encode(payload).decode())

    async def _echo(self, name: str) -> None:
        if self.kind == "twilio":
            await self._send_json(
                {
                    "event": "mark",
                    "sequenceNumber": self._next_seq(),
                    "streamSid": self.stream_sid,
                    "mark": {"name": name},
                }
            )
        else:
            await self._send_json({"event": "websocket:notify", "payload": {"name": name}})
        self.record.marks_echoed.append(name)

    async def start(self, custom: dict[str, str], content_type: str) -> None:
        if self.kind == "twilio":
            await self._send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            await self._send_json(
                {
                    "event": "start",
                    "sequenceNumber": self._next_seq(),
                    "streamSid": self.stream_sid,
                    "start": {
                        "accountSid": self.account_sid,
                        "streamSid": self.stream_sid,
                        "callSid": self.call_sid,
                        "tracks": ["inbound"],
                        "customParameters": custom,
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    },
                }
            )
        else:
            await self._send_json({"event": "websocket:connected", "content-type": content_type, **custom})

    async def talk(self) -> None:
        """Stream the caller's audio on schedule (and DTMF), then wait `hangup_after`."""
        script = self.script
        size = script.frame_bytes
        interval = FRAME_SECONDS / script.speed
        dtmf = sorted(script.dtmf)
        start = time.monotonic()
        audio = script.audio
        frames = len(audio) // size
        for k in range(frames):
            due = start + k * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            while dtmf and dtmf[0][0] <= k * FRAME_SECONDS:
                await self._dtmf(dtmf.pop(0)[1])
            await self._audio(audio[k * size : (k + 1) * size], k)
        for _, digit in dtmf:
            await self._dtmf(digit)
        if script.hangup_after is None:
            await asyncio.sleep(script.max_seconds)
        else:
            await asyncio.sleep(script.hangup_after)

    async def _audio(self, frame: bytes, k: int) -> None:
        if self.kind == "twilio":
            self.seq += 1
            await self.ws.send(
                f'{{"event":"media","sequenceNumber":"{self.seq}","streamSid":"{self.stream_sid}",'
                f'"media":{{"track":"inbound","chunk":"{k + 1}","timestamp":"{k * 20}",'
                f'"payload":"{base64.b64encode(frame).decode()}"}}}}'
            )
        else:
            await self.ws.send(frame)
        self.record.frames_sent += 1
        self.record.send_times.append(time.monotonic())

    async def _dtmf(self, digit: str) -> None:
        if self.kind == "twilio":
            await self._send_json(
                {
                    "event": "dtmf",
                    "sequenceNumber": self._next_seq(),
                    "streamSid": self.stream_sid,
                    "dtmf": {"track": "inbound_track", "digit": digit},
                }
            )
        else:
            await self._send_json({"event": "websocket:dtmf", "digit": digit, "duration": 250})
        self.record.dtmf_sent.append(digit)

    async def stop(self) -> None:
        if self.kind == "twilio":
            await self._send_json(
                {
                    "event": "stop",
                    "sequenceNumber": self._next_seq(),
                    "streamSid": self.stream_sid,
                    "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                }
            )
        await self.ws.close(1000)

    async def receive(self) -> None:
        """Record what the service sends until it closes the socket."""
        record = self.record
        async for message in self.ws:
            if isinstance(message, bytes):
                if self.kind == "vonage":
                    self._played(message)
                else:
                    record.other_messages.append(f"binary frame of {len(message)} bytes")
                continue
            try:
                data = _decoder.decode(message)
            except msgspec.DecodeError:
                record.other_messages.append(message[:200])
                continue
            if self.kind == "twilio":
                self._twilio_command(data, message)
            else:
                await self._vonage_command(data, message)

    def _played(self, frame: bytes) -> None:
        self.record.frame_times.append(time.monotonic())
        self.record.received_audio += frame
        self.player.audio(FRAME_SECONDS)

    def _twilio_command(self, data: Any, raw: str) -> None:
        event = data.get("event") if isinstance(data, dict) else None
        if data.get("streamSid") != self.stream_sid:
            self.record.other_messages.append(raw[:200])
            return
        if event == "media":
            self._played(base64.b64decode(data["media"]["payload"]))
        elif event == "mark":
            name = data["mark"]["name"]
            self.record.marks_received.append(name)
            self.player.mark(name)
        elif event == "clear":
            self.record.clears += 1
            self.record.clear_times.append(time.monotonic())
            for name in self.player.clear():  # Twilio echoes every pending mark when it clears
                self.player.pending.append((0.0, name))
        else:
            self.record.other_messages.append(raw[:200])  # Twilio would fail the stream (error 31924)

    async def _vonage_command(self, data: Any, raw: str) -> None:
        action = data.get("action") if isinstance(data, dict) else None
        if action == "notify":
            payload = data.get("payload") or {}
            name = str(payload.get("name", ""))
            self.record.marks_received.append(name)
            self.player.mark(name)
        elif action == "clear":
            self.record.clears += 1
            self.record.clear_times.append(time.monotonic())
            self.player.clear()
            await self._send_json({"event": "websocket:cleared"})
        else:
            self.record.other_messages.append(raw[:200])


async def run_media_leg(
    kind: Literal["twilio", "vonage"],
    url: str,
    script: MediaScript,
    record: MediaRecord,
    *,
    custom: dict[str, str],
    content_type: str = "audio/x-mulaw",
    call_sid: str,
    account_sid: str = "",
    headers: dict[str, str] | None = None,
    hangup: asyncio.Event | None = None,
) -> None:
    """Open the media socket and play the caller until someone ends the call. Never raises for socket trouble:
    the record says what happened (ended_by, close_code, error)."""
    record.url = url
    stream_sid = "MZ" + uuid.uuid4().hex
    hangup = hangup or asyncio.Event()
    try:
        ws = await connect(
            url,
            additional_headers=headers or {},
            max_size=1 << 20,
            ping_interval=None,
            compression=None,
            open_timeout=10,
        )
    except InvalidStatus as exc:
        record.handshake_status = exc.response.status_code
        record.ended_by, record.error = "error", f"handshake refused: {exc.response.status_code}"
        return
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        record.ended_by, record.error = "error", f"cannot connect: {exc!r}"
        return
    record.connected = True
    leg = _Leg(kind, ws, script, record, stream_sid=stream_sid, call_sid=call_sid, account_sid=account_sid)
    try:
        await leg.start(custom, content_type)
        async with asyncio.TaskGroup() as tg:
            talk = tg.create_task(_quiet(leg.talk()))  # the socket may close while the caller talks
            receive = tg.create_task(_quiet(leg.receive()))
            player = tg.create_task(_quiet(leg.player.run()))
            hung_up = tg.create_task(hangup.wait())
            waits: set[asyncio.Task[Any]] = {talk, receive, hung_up}
            if script.drop_after is not None:
                waits.add(tg.create_task(asyncio.sleep(script.drop_after), name="drop"))
            done, _ = await asyncio.wait(
                waits, timeout=script.max_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if receive in done:
                record.ended_by = "service"
            elif hung_up in done:
                record.ended_by = "hangup"
                with contextlib.suppress(ConnectionClosed):
                    await leg.stop()
            elif talk in done or not done:
                record.ended_by = "caller"
                with contextlib.suppress(ConnectionClosed):
                    await leg.stop()
            else:
                record.ended_by = "drop"
                ws.transport.abort()
            for task in (talk, player, hung_up, *waits):
                task.cancel()
            if record.ended_by != "drop":
                # Let the close handshake finish (the service may still be sending).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(receive), 5)
            receive.cancel()
    except ConnectionClosed as exc:
        record.ended_by = record.ended_by or "service"
        record.error = record.error or f"connection closed: {exc!r}"
    finally:
        await ws.close()
        record.close_code = ws.close_code if ws.close_code is not None else record.close_code


async def _quiet(coro: Awaitable[None]) -> None:
    """Run a socket loop; a closed socket ends it normally."""
    with contextlib.suppress(ConnectionClosed):
        await coro
