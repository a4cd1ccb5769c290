"""The listen feed (what a live listener gets of a call), its messages between instances (each under NOTIFY's
8000-byte limit) and the WebSocket frames a listener receives."""

from __future__ import annotations

import struct
import warnings

import msgspec

from voice_service.calls.listen import Audio, Event, ListenFeed, items_from_bus, items_to_bus, ws_frames
from voice_service.conversation.metering import TranscriptTurn

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

T0 = 100.0


class Clock:
    now = T0

    def __call__(self) -> float:
        return self.now


def _feed(encoding: str = "mulaw", rate: int = 8000) -> tuple[ListenFeed, Clock]:
    clock = Clock()
    return ListenFeed(t0=T0, encoding=encoding, sample_rate=rate, clock=clock), clock


def test_caller_audio_is_contiguous_and_agent_audio_sits_where_it_played() -> None:
    feed, clock = _feed()
    for _ in range(5):
        feed.caller(b"\x01" * 160)
    for k in range(3):  # one burst from 1.0 s
        feed.agent(b"\x02" * 160, T0 + 1.0 + k * 0.02)
    clock.now = T0 + 1.05
    feed.caller_text("I'd like", final=False)
    feed.agent(b"\x03" * 160, T0 + 2.0)  # a new reply later: a new stretch
    feed.clear(T0 + 2.01)
    feed.agent_text("Sure.")
    feed.transcript(TranscriptTurn(role="agent", text="Sure.", start_ms=2000, end_ms=2010, interrupted=True))
    items = feed.take()
    audio = [(i.channel, i.position, len(i.data)) for i in items if isinstance(i, Audio)]
    events = [i.data for i in items if isinstance(i, Event)]
    assert sorted(audio) == [(0, 0, 800), (1, 8000, 480), (1, 16000, 160)]
    assert events == [
        {"type": "caller_text", "text": "I'd like", "final": False, "at_ms": 1050},
        {"type": "agent_cleared", "at_ms": 2010},
        {"type": "agent_text", "text": "Sure.", "at_ms": 1050},
        {"type": "transcript", "role": "agent", "text": "Sure.", "start_ms": 2000, "end_ms": 2010,
         "interrupted": True},
    ]
    assert feed.take() == []
    feed.caller(b"\x01" * 160)
    assert [(i.channel, i.position) for i in feed.take()] == [(0, 800)]  # the caller's timeline goes on


def test_a_listener_that_falls_behind_loses_old_audio_not_the_call() -> None:
    feed, _ = _feed("l16", 16000)
    frame = b"\x00\x01" * 320
    for _ in range(50 * 25):  # 25 s never taken
        feed.caller(frame)
    feed.agent_text("still here")
    items = feed.take()
    held = sum(len(i.data) for i in items if isinstance(i, Audio))
    assert held <= 20 * 16000 * 2  # bounded (both channels' worth of 10 s)
    [stats] = [i.data for i in items if isinstance(i, Event) and i.data["type"] == "stats"]
    assert stats["dropped_ms"] + held * 1000 // 32000 == 25_000
    assert any(isinstance(i, Event) and i.data.get("text") == "still here" for i in items)


def test_bus_messages_fit_in_a_notify_and_round_trip() -> None:
    audio = bytes(range(256)) * 500  # 128 kB of L16: several messages
    long_text = "話" * 5000  # 3 bytes a character in UTF-8
    items = [
        Audio(0, 1000, audio),
        Event({"type": "agent_text", "text": long_text, "at_ms": 5}),
        Audio(1, 9000, b"\x10\x00" * 100),
    ]
    bodies = items_to_bus(items, width=2)
    for body in bodies:
        assert len(msgspec.json.encode({"stream": "x" * 32, "items": body})) < 8000
    back = [item for body in bodies for item in items_from_bus(msgspec.json.decode(msgspec.json.encode(body)))]
    caller = [i for i in back if isinstance(i, Audio) and i.channel == 0]
    assert b"".join(i.data for i in caller) == audio
    # Split audio keeps its timeline: each piece starts where the one before ended (2 bytes a sample).
    assert [i.position for i in caller] == [1000 + sum(len(c.data) for c in caller[:k]) // 2 for k in range(len(caller))]
    [text] = [i.data["text"] for i in back if isinstance(i, Event)]
    assert text.startswith("話" * 100) and len(text) <= 1001  # cut for the bus; the stored transcript has it all
    assert [(i.channel, i.position) for i in back if isinstance(i, Audio)][-1] == (1, 9000)


def test_websocket_frames_carry_pcm16_with_channel_and_position() -> None:
    ulaw = audioop.lin2ulaw(struct.pack("<4h", 0, 1000, -1000, 8000), 2)
    frames = ws_frames([Audio(1, 123456, ulaw), Event({"type": "agent_text", "text": "Hi", "at_ms": 3})], "mulaw")
    binary, text = frames
    assert isinstance(binary, bytes) and isinstance(text, str)
    channel, position = struct.unpack_from("<BI", binary)
    assert (channel, position) == (1, 123456)
    samples = struct.unpack("<4h", binary[5:])
    assert samples[0] == 0 and abs(samples[1] - 1000) < 40 and abs(samples[3] - 8000) < 300
    assert msgspec.json.decode(text) == {"type": "agent_text", "text": "Hi", "at_ms": 3}
    pcm = b"\x01\x02" * 10
    assert ws_frames([Audio(0, 0, pcm)], "l16")[0] == b"\x00" + b"\x00" * 4 + pcm
