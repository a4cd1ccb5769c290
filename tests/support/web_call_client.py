"""A web-call client in Python that behaves as the console's page does (static/webcall.js): it streams a
microphone (a WAV's samples, in real time, 20 ms frames), plays the agent's audio (frames back to back from their
arrival, on the loop's clock), echoes each mark once the audio before it has played, and drops what is still
queued when the service sends `clear`. Everything it received is kept for the test to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

RATE = 16000
FRAME_BYTES = RATE * 2 // 50  # 20 ms of PCM16 mono
START_FORMAT = {"encoding": "pcm_s16le", "sample_rate": RATE, "channels": 1}


def read_wav(path: str) -> bytes:
    with wave.open(path, "rb") as wav:
        assert wav.getframerate() == RATE and wav.getsampwidth() == 2 and wav.getnchannels() == 1
        return wav.readframes(wav.getnframes())


@dataclass
class WebCallClient:
    ws: ClientConnection
    events: list[dict[str, Any]] = field(default_factory=list)
    audio_bytes: int = 0  # agent audio received
    clears: int = 0
    marks_echoed: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    _play_until: float = 0.0
    _marks: list[tuple[float, str]] = field(default_factory=list)
    _done: asyncio.Event = field(default_factory=asyncio.Event)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def transcripts(self, role: str, *, final: bool) -> list[str]:
        return [e["text"] for e in self.of_type("transcript") if e["role"] == role and e["final"] is final]

    @property
    def ended(self) -> bool:
        return self._done.is_set()

    async def start(self, token: str) -> dict[str, Any]:
        await self.ws.send(json.dumps({"type": "start", "token": token, "format": START_FORMAT}))
        first = json.loads(await self.ws.recv())
        self.events.append(first)
        return first  # type: ignore[no-any-return]

    async def receive(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for message in self.ws:
                now = loop.time()
                if isinstance(message, bytes):
                    self.audio_bytes += len(message)
                    self._play_until = max(now, self._play_until) + len(message) / (RATE * 2)
                    continue
                event = json.loads(message)
                self.events.append(event)
                if event["type"] == "mark":
                    self._marks.append((max(now, self._play_until), event["name"]))
                elif event["type"] == "clear":
                    self.clears += 1
                    self._play_until = now
                    self._marks.clear()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason or ""
            self._done.set()

    async def echo_marks(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._done.is_set():
            now = loop.time()
            due = [m for m in self._marks if m[0] <= now]
            for item in due:
                self._marks.remove(item)
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.send(json.dumps({"type": "mark", "name": item[1]}))
                self.marks_echoed.append(item[1])
            await asyncio.sleep(0.01)

    async def speak(self, pcm: bytes) -> None:
        """Stream `pcm` in 20 ms frames at real time (then silence) until the call ends."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        k = 0
        silence = bytes(FRAME_BYTES)
        while not self._done.is_set():
            frame = pcm[k * FRAME_BYTES : (k + 1) * FRAME_BYTES] or silence
            try:
                await self.ws.send(frame.ljust(FRAME_BYTES, b"\0"))
            except ConnectionClosed:
                return
            k += 1
            delay = start + k * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def wait_ended(self, within: float = 40.0) -> None:
        async with asyncio.timeout(within):
            await self._done.wait()


@asynccontextmanager
async def web_call(url: str, *, origin: str | None = None) -> AsyncIterator[WebCallClient]:
    headers = {"Origin": origin} if origin else None
    async with connect(url, additional_headers=headers, max_size=2**20) as ws:
        yield WebCallClient(ws)


async def talk(
    url: str, token: str, pcm: bytes, *, origin: str | None = None, within: float = 40.0
) -> WebCallClient:
    """A whole call: start, speak `pcm` (then silence), play and echo, until the service ends the call."""
    async with web_call(url, origin=origin) as client:
        started = await client.start(token)
        assert started["type"] == "started", started
        async with asyncio.TaskGroup() as tg:
            tg.create_task(client.receive())
            tg.create_task(client.echo_marks())
            tg.create_task(client.speak(pcm))
            await client.wait_ended(within)
    return client
