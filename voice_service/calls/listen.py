"""Listening in on a live call: the feed that collects what a listener gets, and the frames it is sent as.

A `ListenFeed` sits on the instance that holds the call's media. It is a media tap (calls/session.py: caller
frames as received, agent frames when they start playing, clears) and a call observer (conversation/control.py:
the caller's words as the STT hears them, each agent sentence as it starts playing, finished transcript entries).
It only appends to buffers: `take()` hands over what has collected since the last take, as items

    Audio(channel, position, data)   wire-format audio (μ-law or L16) starting at sample `position` of the call
    Event(data)                      a JSON-able dict (the text frames below)

Positions count samples at the call's rate from the start of the media (the transcript's origin), so a player
can place both channels on one timeline. Consecutive frames of a channel are merged into one item. A consumer
that stops taking cannot make the feed grow without bound: past MAX_BUFFERED_SECONDS of audio the oldest audio is
dropped (and counted in the next `stats` event).

The listener's WebSocket frames (GET /v1/calls/{id}/listen; `ws_frames` builds them):

* binary: byte 0 the channel (0 caller, 1 agent), bytes 1-4 the position (uint32 little-endian, samples at
  `sample_rate` from the media's start), then 16-bit little-endian PCM, mono, at `sample_rate`;
* text, JSON with a `type`:
  `start` {call_id, status, sample_rate, encoding: "pcm_s16le", channels: ["caller", "agent"]} first;
  `caller_text` {text, final, at_ms} (interim guesses, then the settled segment);
  `agent_text` {text, at_ms} (a sentence of the agent starts playing to the caller);
  `agent_cleared` {at_ms} (barge-in: agent audio after this moment never played);
  `transcript` {role, text, start_ms, end_ms, interrupted} (a finished turn, as stored with the call);
  `stats` {dropped_ms} (audio dropped because the listener fell behind);
  `end` {status, end_reason} last, then the socket closes (1000).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import msgspec

from providers.audio import ulaw_to_pcm16

__all__ = ["Audio", "Event", "Item", "ListenFeed", "items_from_bus", "items_to_bus", "ws_frames"]

MAX_BUFFERED_SECONDS = 10.0
NOTIFY_BUDGET = 7000  # encoded bytes per bus message (NOTIFY takes at most 7999)
NOTIFY_AUDIO_BYTES = 3600  # raw audio per entry: 4800 bytes of base64
NOTIFY_TEXT_CHARS = 1000  # a longer text in an event is cut (the stored transcript keeps all of it)
_POSITION = struct.Struct("<BI")


@dataclass(slots=True)
class Audio:
    channel: int  # 0 caller, 1 agent
    position: int  # samples from the media's start
    data: bytes  # wire format


@dataclass(slots=True)
class Event:
    data: dict[str, Any]


Item = Audio | Event


class ListenFeed:
    """Collects one listener's view of a call (see the module docstring). Every method is called from the call's
    media loops or its engine: none blocks."""

    def __init__(self, *, t0: float, encoding: str, sample_rate: int, clock: Callable[[], float]) -> None:
        self.t0 = t0
        self.encoding = encoding
        self.sample_rate = sample_rate
        self._clock = clock
        self._width = 1 if encoding == "mulaw" else 2
        self._slack = sample_rate // 500  # 2 ms: the sender's clock rounding between frames of one burst
        self._items: list[Item] = []
        self._caller = bytearray()
        self._caller_at = 0  # position of _caller's first sample
        self._caller_next = 0  # samples of caller audio received so far
        self._agent = bytearray()
        self._agent_at = 0
        self._agent_next = -1
        self._buffered = 0  # audio bytes held
        self._dropped = 0  # audio bytes dropped since the last stats event
        self._max_buffered = int(MAX_BUFFERED_SECONDS * sample_rate * self._width * 2)  # both channels

    def _ms(self, at: float) -> int:
        return max(0, int(round((at - self.t0) * 1000)))

    # --- media tap ---

    def caller(self, payload: bytes) -> None:
        if not self._caller:
            self._caller_at = self._caller_next
        self._caller += payload
        self._caller_next += len(payload) // self._width
        self._buffered += len(payload)
        if self._buffered > self._max_buffered:
            self._drop_oldest()

    def agent(self, frame: bytes, play_at: float) -> None:
        pos = max(0, int((play_at - self.t0) * self.sample_rate + 0.5))
        if not self._agent or abs(pos - self._agent_next) > self._slack:
            self._flush_agent()
            self._agent_at = pos
        self._agent += frame
        self._agent_next = pos + len(frame) // self._width
        self._buffered += len(frame)

    def clear(self, at: float) -> None:
        self._flush_agent()
        self._items.append(Event({"type": "agent_cleared", "at_ms": self._ms(at)}))

    # --- call observer (conversation.control.CallObserver) ---

    def caller_audio(self, payload: bytes) -> None:
        return None  # the tap's `caller` has it, at the media layer

    def agent_audio(self, payload: bytes, at: float) -> None:
        return None  # the tap's `agent` has it when it plays, not when it is synthesized

    def agent_cleared(self, at: float) -> None:
        return None  # the tap's `clear` has it

    def caller_text(self, text: str, *, final: bool) -> None:
        self._items.append(
            Event({"type": "caller_text", "text": text, "final": final, "at_ms": self._ms(self._clock())})
        )

    def agent_text(self, text: str) -> None:
        self._items.append(Event({"type": "agent_text", "text": text, "at_ms": self._ms(self._clock())}))

    def transcript(self, entry: Any) -> None:
        self._items.append(
            Event(
                {
                    "type": "transcript",
                    "role": entry.role,
                    "text": entry.text,
                    "start_ms": entry.start_ms,
                    "end_ms": entry.end_ms,
                    "interrupted": entry.interrupted,
                }
            )
        )

    # --- the consumer ---

    def take(self) -> list[Item]:
        """Everything collected since the last take, in order."""
        if self._caller:
            self._items.append(Audio(0, self._caller_at, bytes(self._caller)))
            self._caller = bytearray()
        self._flush_agent()
        if self._dropped:
            ms = self._dropped * 1000 // (self.sample_rate * self._width)
            self._items.append(Event({"type": "stats", "dropped_ms": ms}))
            self._dropped = 0
        items, self._items = self._items, []
        self._buffered = 0
        return items

    def _flush_agent(self) -> None:
        if self._agent:
            self._items.append(Audio(1, self._agent_at, bytes(self._agent)))
            self._agent = bytearray()
            self._agent_next = -1

    def _drop_oldest(self) -> None:
        # The listener is not taking: drop the audio held so far (events are small and kept).
        for item in self._items:
            if type(item) is Audio:
                self._dropped += len(item.data)
        self._items = [item for item in self._items if type(item) is not Audio]
        self._dropped += len(self._caller) + len(self._agent)
        self._caller, self._agent = bytearray(), bytearray()
        self._agent_next = -1
        self._buffered = 0


# --- between instances (calls/bus.py: JSON messages under NOTIFY's 8000-byte limit) ---


def items_to_bus(items: list[Item], width: int) -> list[list[Any]]:
    """Items as bus message bodies, each small enough for one NOTIFY: a list of ["a", channel, position, base64]
    and ["e", event] entries (`width`: bytes per sample of the call's wire format)."""
    messages: list[list[Any]] = []
    current: list[Any] = []
    size = 0

    def push(entry: list[Any], cost: int) -> None:
        nonlocal current, size
        if current and size + cost > NOTIFY_BUDGET:
            messages.append(current)
            current, size = [], 0
        current.append(entry)
        size += cost

    for item in items:
        if type(item) is Audio:
            data, pos, step = item.data, item.position, NOTIFY_AUDIO_BYTES
            for start in range(0, len(data), step):
                chunk = data[start : start + step]
                encoded = base64.b64encode(chunk).decode()
                push(["a", item.channel, pos, encoded], len(encoded) + 20)
                pos += len(chunk) // width
        else:
            event = cast(Event, item).data
            text = event.get("text")
            if isinstance(text, str) and len(text) > NOTIFY_TEXT_CHARS:
                event = {**event, "text": text[:NOTIFY_TEXT_CHARS] + "…"}
            push(["e", event], len(msgspec.json.encode(event)) + 10)
    if current:
        messages.append(current)
    return messages


def items_from_bus(entries: list[Any]) -> list[Item]:
    out: list[Item] = []
    for entry in entries:
        if entry[0] == "a":
            out.append(Audio(int(entry[1]), int(entry[2]), base64.b64decode(entry[3])))
        elif entry[0] == "e" and isinstance(entry[1], dict):
            out.append(Event(entry[1]))
    return out


# --- to the listener's WebSocket ---


def ws_frames(items: list[Item], encoding: str) -> list[str | bytes]:
    """The WebSocket frames of `items` (see the module docstring): audio as 16-bit PCM, events as JSON text."""
    frames: list[str | bytes] = []
    for item in items:
        if type(item) is Audio:
            pcm = ulaw_to_pcm16(item.data) if encoding == "mulaw" else item.data
            frames.append(_POSITION.pack(item.channel, item.position & 0xFFFFFFFF) + pcm)
        else:
            frames.append(msgspec.json.encode(item.data).decode())
    return frames
