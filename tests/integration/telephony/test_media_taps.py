"""MediaSession's taps and gentle stop, on the in-memory socket of test_media_session: what a recording or a
listener sees of a call (caller frames as received, agent frames with the moment they start playing, clears), and
`cut_after` (what is queued after a mark never reaches the carrier, and no clear is sent)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from tests.support.media import Socket, session_on
from voice_service.calls.session import MeteringHandler
from voice_service.simulator.harness import until


class Tap:
    def __init__(self) -> None:
        self.caller_frames: list[bytes] = []
        self.agent_frames: list[tuple[bytes, float]] = []
        self.clears: list[float] = []

    def caller(self, payload: bytes) -> None:
        self.caller_frames.append(payload)

    def agent(self, frame: bytes, play_at: float) -> None:
        self.agent_frames.append((frame, play_at))

    def clear(self, at: float) -> None:
        self.clears.append(at)


class Broken(Tap):
    calls = 0

    def caller(self, payload: bytes) -> None:
        self.calls += 1
        raise RuntimeError("a tap with a bug")


def _media(socket: Socket) -> list[dict[str, Any]]:
    return [f for _, f in socket.frames() if isinstance(f, dict) and f.get("event") == "media"]


async def test_taps_see_both_directions_with_play_times() -> None:
    socket = Socket()
    session = session_on("twilio", socket)
    tap, broken = Tap(), Broken()
    remove = session.add_tap(tap)
    session.add_tap(broken)
    run = asyncio.create_task(session.run(MeteringHandler(session)))
    try:
        await session.send_audio(bytes(range(160)) * 25)  # half a second: 25 frames
        for k in range(3):
            socket.text({"event": "media", "streamSid": "MZ1",
                         "media": {"payload": base64.b64encode(bytes([k]) * 160).decode()}})
        await until(lambda: len(tap.agent_frames) == 25 and len(tap.caller_frames) == 3)
        # The frames handed to the carrier are the frames the tap saw, in order, each 20 ms after the one before
        # (one burst from the first frame's send): the moment each starts playing at the caller.
        sent = [base64.b64decode(f["media"]["payload"]) for f in _media(socket)]
        assert [frame for frame, _ in tap.agent_frames] == sent
        start = tap.agent_frames[0][1]
        assert start == pytest.approx(session.t0, abs=0.05)
        assert [round(at - start, 6) for _, at in tap.agent_frames] == [round(k * 0.02, 6) for k in range(25)]
        assert tap.caller_frames == [bytes([k]) * 160 for k in range(3)]
        # The tap that raised was removed on its first frame; the session and the other tap went on.
        assert broken.calls == 1
        await session.clear()
        assert len(tap.clears) == 1 and tap.clears[0] >= start
        remove()
        socket.text(
            {"event": "media", "streamSid": "MZ1", "media": {"payload": base64.b64encode(b"\x07" * 160).decode()}}
        )
        await until(lambda: session.frames_in == 4)
        assert len(tap.caller_frames) == 3
    finally:
        socket.text({"event": "stop", "streamSid": "MZ1"})
        await run
    assert session.end_reason == "media_stopped"
    assert session.ended_at is not None and session.ended_at >= session.t0


async def test_cut_after_keeps_what_is_before_a_mark_and_drops_the_rest_without_a_clear() -> None:
    socket = Socket()
    session = session_on("twilio", socket)
    run = asyncio.create_task(session.run(MeteringHandler(session)))
    try:
        await session.send_audio(b"\x01" * 1600)  # 200 ms
        await session.send_mark("s0")
        await session.send_audio(b"\x02" * 1600)
        await session.send_mark("s1")
        await session.send_audio(b"\x03" * 1600)
        await session.send_mark("s2")
        await session.send_audio(b"\x04" * 100)  # a partial frame of the next sentence
        waiter = asyncio.create_task(session.wait_for_mark("s2"))
        assert session.cut_after("s0") == ["s1", "s2"]
        assert await waiter is False  # a dropped mark never plays
        assert session.cut_after("nope") is None
        await until(lambda: any(f.get("event") == "mark" for _, f in socket.frames() if isinstance(f, dict)))
        await asyncio.sleep(0.1)
        # The first sentence left whole; nothing of the rest did; no clear.
        payloads = b"".join(base64.b64decode(f["media"]["payload"]) for f in _media(socket))
        assert payloads == b"\x01" * 1600
        events = [f["event"] for _, f in socket.frames() if isinstance(f, dict)]
        assert events.count("mark") == 1 and "clear" not in events
        assert session.cut_after("s0") is None  # sent already: nothing left to cut after it
        # What is queued next goes out as usual.
        await session.send_audio(b"\x05" * 160)
        await until(lambda: len(_media(socket)) == 11)
    finally:
        socket.text({"event": "stop", "streamSid": "MZ1"})
        await run
