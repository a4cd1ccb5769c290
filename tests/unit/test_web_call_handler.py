"""The web call's session handler around the engine's: the engine's observations become protocol events, and a
client that sends audio faster than real time is not listened to (nor billed) past a short burst."""

from __future__ import annotations

import json
from typing import Any

from voice_service.conversation.control import CallObserver
from voice_service.conversation.metering import TranscriptTurn
from voice_service.webcalls.events import MAX_AUDIO_AHEAD, Outbox, WebCallHandler, WebEvents

BYTES_PER_SECOND = 32000
FRAME = bytes(640)  # 20 ms


class Engine:
    """Stands in for the CallSession: records what reaches it, and keeps its observers."""

    def __init__(self) -> None:
        self.audio = 0
        self.observers: list[CallObserver] = []

    def observe(self, observer: CallObserver) -> Any:
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)

    async def run(self) -> None:
        return None

    def on_audio(self, payload: bytes) -> None:
        self.audio += len(payload)

    def on_dtmf(self, digit: str) -> None:
        return None

    def on_mark(self, name: str) -> None:
        return None

    async def on_stop(self) -> None:
        return None


async def _no_send(text: str) -> None:
    return None


async def test_audio_ahead_of_real_time_is_dropped() -> None:
    now = [100.0]
    engine = Engine()
    handler = WebCallHandler(
        engine, Outbox(_no_send), None, bytes_per_second=BYTES_PER_SECOND, clock=lambda: now[0]
    )
    for _ in range(500):  # 10 s of audio at once
        handler.on_audio(FRAME)
    assert engine.audio / BYTES_PER_SECOND == MAX_AUDIO_AHEAD
    assert handler.dropped_seconds == 10 - MAX_AUDIO_AHEAD
    now[0] += 5.0  # five seconds later, five more seconds of audio are welcome
    for _ in range(250):
        handler.on_audio(FRAME)
    assert engine.audio / BYTES_PER_SECOND == MAX_AUDIO_AHEAD + 5
    # A real-time client never loses a frame.
    steady = Engine()
    handler = WebCallHandler(
        steady, Outbox(_no_send), None, bytes_per_second=BYTES_PER_SECOND, clock=lambda: now[0]
    )
    for _ in range(1000):
        now[0] += 0.02
        handler.on_audio(FRAME)
    assert steady.audio == 1000 * len(FRAME) and handler.dropped_seconds == 0


async def test_the_engines_observations_become_protocol_events() -> None:
    sent: list[dict[str, Any]] = []
    events = WebEvents(lambda text: sent.append(json.loads(text)))
    events.caller_text("I'd", final=False)
    events.caller_text("I'd like", final=True)
    events.caller_text("a table", final=False)
    events.transcript(TranscriptTurn(role="caller", text="I'd like a table.", start_ms=100, end_ms=900))
    events.agent_text("Sure.")
    events.agent_text("For when?")
    events.transcript(
        TranscriptTurn(role="agent", text="Sure.", start_ms=1000, end_ms=1400, interrupted=True)
    )
    events.caller_text("Tonight", final=False)
    assert sent == [
        {"type": "transcript", "role": "caller", "text": "I'd", "final": False},
        {"type": "transcript", "role": "caller", "text": "I'd like", "final": False},
        {"type": "transcript", "role": "caller", "text": "I'd like a table", "final": False},
        {
            "type": "transcript",
            "role": "caller",
            "text": "I'd like a table.",
            "final": True,
            "start_ms": 100,
            "end_ms": 900,
            "interrupted": False,
        },
        {"type": "agent_text", "text": "Sure."},
        {"type": "transcript", "role": "agent", "text": "Sure.", "final": False},
        {"type": "agent_text", "text": "For when?"},
        {"type": "transcript", "role": "agent", "text": "Sure. For when?", "final": False},
        {
            "type": "transcript",
            "role": "agent",
            "text": "Sure.",
            "final": True,
            "start_ms": 1000,
            "end_ms": 1400,
            "interrupted": True,
        },
        {
            "type": "transcript",
            "role": "caller",
            "text": "Tonight",
            "final": False,
        },  # a new turn starts afresh
    ]


async def test_the_handler_watches_the_engine_only_while_the_call_lasts() -> None:
    engine = Engine()
    queued: list[str] = []

    async def send(text: str) -> None:
        queued.append(text)

    outbox = Outbox(send)
    handler = WebCallHandler(engine, outbox, None, bytes_per_second=BYTES_PER_SECOND)
    assert len(engine.observers) == 1
    engine.observers[0].agent_text("Hello.")
    await handler.on_stop()
    assert engine.observers == []
    await outbox.flush()
    assert [json.loads(t)["type"] for t in queued] == ["agent_text", "transcript"]
