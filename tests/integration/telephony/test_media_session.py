"""MediaSession on an in-memory ASGI socket: framing, real-time pacing with a lead, marks and clear.

The transport is a pair of queues standing in for uvicorn's ASGI receive/send, so timing is the session's own.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from uvicorn.protocols.utils import ClientDisconnected

from providers.telephony.base import MediaFormat, MediaStarted
from providers.telephony.twilio import TwilioCodec
from providers.telephony.vonage import VonageCodec
from voice_service.calls import session as session_module
from voice_service.calls.schemas import CallInfo
from voice_service.calls.session import MediaSession, MeteringHandler
from voice_service.simulator.harness import until

_decode = msgspec.json.decode


class Socket:
    def __init__(self) -> None:
        self.inbound: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[tuple[float, dict[str, Any]]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.inbound.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append((time.monotonic(), message))

    def text(self, payload: dict[str, Any]) -> None:
        self.inbound.put_nowait({"type": "websocket.receive", "text": msgspec.json.encode(payload).decode()})

    def frames(self) -> list[tuple[float, Any]]:
        out = []
        for at, message in self.sent:
            if message["type"] != "websocket.send":
                continue
            out.append((at, _decode(message["text"]) if "text" in message else message["bytes"]))
        return out


def _session(kind: str, socket: Socket, **kwargs: Any) -> MediaSession:
    info = CallInfo(
        tenant_id=uuid.uuid4(),
        call_id=uuid.uuid4(),
        call_created_at=datetime.now(UTC),
        agent_id=1,
        lead_id=None,
        direction="outbound",
        variables={"a": 1},
        voice_id=None,
        provider=kind,
        provider_call_id="CA1",
        from_e164="+1",
        to_e164="+2",
    )
    if kind == "twilio":
        codec: Any = TwilioCodec()
        started = codec.decode(
            msgspec.json.encode(
                {
                    "event": "start",
                    "start": {
                        "streamSid": "MZ1",
                        "callSid": "CA1",
                        "customParameters": {"call_id": "x", "token": "y"},
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    },
                }
            ).decode()
        )
    else:
        codec = VonageCodec()
        started = codec.decode('{"event":"websocket:connected","content-type":"audio/l16;rate=16000"}')
    assert isinstance(started, MediaStarted)
    return MediaSession(
        call=info,
        codec=codec,
        started=started,
        receive=socket.receive,
        send=socket.send,
        clean_close_codes=(1000,) if kind == "vonage" else (),
        **kwargs,
    )


async def test_playback_is_framed_and_paced_in_real_time_with_a_lead() -> None:
    socket = Socket()
    session = _session("twilio", socket)
    handler = MeteringHandler(session)
    run = asyncio.create_task(session.run(handler))
    try:
        started = time.monotonic()
        await session.send_audio(b"\x01" * 8000)  # one second
        await session.send_audio(b"\x02" * 100)  # a partial frame waits…
        await session.send_mark("end")  # …until a mark flushes it, padded with μ-law silence
        await until(lambda: any(f[1].get("event") == "mark" for f in socket.frames()))
    finally:
        socket.inbound.put_nowait({"type": "websocket.disconnect", "code": 1006})
        await run
    media = [(at, f) for at, f in socket.frames() if f["event"] == "media"]
    assert len(media) == 51 and all(f["streamSid"] == "MZ1" for _, f in media)
    payloads = [base64.b64decode(f["media"]["payload"]) for _, f in media]
    assert all(len(p) == 160 for p in payloads)
    assert payloads[-1] == b"\x02" * 100 + b"\xff" * 60
    # The provider holds at most the 100 ms lead: five frames go at once, then the sender tops the buffer up three
    # frames (60 ms) at a time when it has drained to 40 ms. Frame k plays at k·20 ms: it must arrive before that
    # (the provider never runs dry) and no earlier than k·20 ms − lead.
    offsets = [at - started for at, _ in media]
    assert offsets[4] < 0.015
    for k in range(5, 51):
        assert k * 0.02 - 0.1 - 0.002 <= offsets[k] <= k * 0.02 - 0.04 + 0.012, (k, offsets[k])
    bursts = sum(1 for a, b in itertools.pairwise(offsets[5:]) if b - a > 0.01)
    assert 14 <= bursts <= 16  # 46 frames in bursts of three: one wake-up per 60 ms, not one per frame
    assert socket.frames()[-1][1] == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "end"}}
    assert session.end_reason == "media_disconnected" and session.hung_up


async def test_marks_clear_and_inbound_events() -> None:
    socket = Socket()
    session = _session("twilio", socket)
    seen: list[tuple[str, str]] = []

    class Handler(MeteringHandler):
        def on_mark(self, name: str) -> None:
            seen.append(("mark", name))

        def on_dtmf(self, digit: str) -> None:
            seen.append(("dtmf", digit))

    handler = Handler(session)
    run = asyncio.create_task(session.run(handler))
    await session.send_audio(b"\x01" * 1600)
    await session.send_mark("a")
    await session.send_audio(b"\x01" * 8000)
    await session.send_mark("b")
    await asyncio.sleep(0.25)
    socket.text({"event": "mark", "streamSid": "MZ1", "mark": {"name": "a"}})
    await asyncio.sleep(0.02)
    assert session.played_marks == ["a"] and await session.wait_for_mark("a")
    waiter = asyncio.create_task(session.wait_for_mark("b"))
    sent_before = len(socket.frames())
    await session.clear()
    assert socket.frames()[-1][1] == {"event": "clear", "streamSid": "MZ1"}
    assert await waiter is False  # b never played
    await asyncio.sleep(0.1)
    assert len(socket.frames()) == sent_before + 1  # nothing after the clear
    # Twilio echoes pending marks when it clears: not reported as played.
    socket.text({"event": "mark", "streamSid": "MZ1", "mark": {"name": "b"}})
    socket.text({"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": "5"}})
    socket.text(
        {"event": "media", "streamSid": "MZ1", "media": {"payload": base64.b64encode(b"\xff" * 160).decode()}}
    )
    socket.text({"event": "stop", "streamSid": "MZ1"})
    await run
    assert seen == [("mark", "a"), ("dtmf", "5")] and session.played_marks == ["a"]
    assert handler.inbound_seconds == pytest.approx(0.02) and session.frames_in == 1
    assert (session.end_reason, session.hung_up) == ("media_stopped", False)


async def test_vonage_frames_and_clean_close() -> None:
    socket = Socket()
    session = _session("vonage", socket)
    assert session.format == MediaFormat(encoding="l16", sample_rate=16000)
    run = asyncio.create_task(session.run(MeteringHandler(session)))
    await session.send_audio(
        b"\x01\x00" * 1000
    )  # 62.5 ms at 16 kHz: three frames of 640 bytes and a remainder
    session.flush()
    await session.send_mark("m")
    await until(lambda: any(isinstance(f, dict) for _, f in socket.frames()))
    socket.inbound.put_nowait({"type": "websocket.receive", "bytes": b"\x00" * 640})
    socket.inbound.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await run
    frames = [f for _, f in socket.frames()]
    audio = [f for f in frames if isinstance(f, bytes)]
    assert [len(a) for a in audio] == [640] * 4 and audio[-1] == b"\x01\x00" * 40 + b"\x00" * 560
    assert frames[-1] == {"action": "notify", "payload": {"name": "m"}}
    assert session.inbound_seconds == pytest.approx(0.02)
    assert (session.end_reason, session.hung_up) == ("media_closed", False)


async def test_handler_failure_hangs_up() -> None:
    socket = Socket()
    session = _session("twilio", socket)

    class Broken(MeteringHandler):
        async def run(self) -> None:
            raise RuntimeError("engine bug")

    await session.run(Broken(session))
    assert (session.end_reason, session.hung_up) == ("handler_error", True)


class Recording(MeteringHandler):
    """Counts on_stop calls: the call's transcript and usage are written there."""

    stopped = 0

    async def on_stop(self) -> None:
        self.stopped += 1
        await super().on_stop()


class HangingUpSocket(Socket):
    """Sends fail like uvicorn's once the caller has gone (after `frames_before_drop` frames)."""

    def __init__(self, frames_before_drop: int) -> None:
        super().__init__()
        self.left = frames_before_drop

    async def send(self, message: dict[str, Any]) -> None:
        if self.left <= 0:
            raise ClientDisconnected()
        self.left -= 1
        await super().send(message)


@pytest.mark.parametrize(
    ("kind", "close_code", "outcome"),
    [
        ("twilio", 1006, ("media_disconnected", True)),
        ("vonage", 1000, ("media_closed", False)),  # Vonage closes with 1000 when the call ends
        ("twilio", None, ("media_disconnected", True)),  # the close never reported: ends after the grace
    ],
)
async def test_caller_hangs_up_mid_playback(
    kind: str, close_code: int | None, outcome: tuple[str, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "DISCONNECT_GRACE_SECONDS", 0.1)
    socket = HangingUpSocket(frames_before_drop=5)
    session = _session(kind, socket)
    handler = Recording(session)
    run = asyncio.create_task(session.run(handler))
    await session.send_audio(b"\x01" * session.bytes_per_second)  # one second of audio
    await until(lambda: socket.left == 0)
    await asyncio.sleep(0.05)  # the sender has hit the gone socket
    if close_code is not None:
        socket.inbound.put_nowait({"type": "websocket.disconnect", "code": close_code})
    await asyncio.wait_for(run, 2)  # no crash
    assert (session.end_reason, session.hung_up) == outcome
    assert handler.stopped == 1
    assert session.frames_out < 50  # playback stopped with the socket
    await session.clear()  # after the end: sends nothing, raises nothing
    assert len(socket.sent) == 5


async def test_barge_in_clear_on_a_gone_socket_ends_the_session() -> None:
    socket = HangingUpSocket(frames_before_drop=0)
    session = _session("twilio", socket)
    handler = Recording(session)
    run = asyncio.create_task(session.run(handler))
    await session.clear()  # the handler's clear() must not raise into the conversation engine
    socket.inbound.put_nowait({"type": "websocket.disconnect", "code": 1006})
    await asyncio.wait_for(run, 2)
    assert (session.end_reason, session.hung_up, handler.stopped) == ("media_disconnected", True, 1)


async def test_on_stop_runs_even_when_the_session_crashes() -> None:
    socket = Socket()
    session = _session("twilio", socket)

    class Broken(Recording):
        def on_dtmf(self, digit: str) -> None:
            raise RuntimeError("engine bug")

    handler = Broken(session)
    run = asyncio.create_task(session.run(handler))
    await session.send_audio(b"\x01" * 8000)
    socket.text({"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": "5"}})
    with pytest.raises(ExceptionGroup):
        await asyncio.wait_for(run, 2)
    assert handler.stopped == 1
    assert (session.end_reason, session.hung_up, session.ended) == ("internal_error", True, True)


async def test_detach_ends_the_session_without_hanging_up() -> None:
    socket = Socket()
    session = _session("twilio", socket)
    handler = Recording(session)
    run = asyncio.create_task(session.run(handler))
    await session.send_audio(b"\x01" * 8000)
    await until(lambda: len(socket.frames()) >= 3)
    session.detach("transferred")
    await asyncio.wait_for(run, 2)
    assert (session.end_reason, session.hung_up, handler.stopped) == ("transferred", False, 1)
    sent = len(socket.frames())
    await session.send_audio(b"\x01" * 8000)
    await asyncio.sleep(0.1)
    assert len(socket.frames()) == sent < 50
