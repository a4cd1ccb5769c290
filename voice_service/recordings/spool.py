"""The raw spool of one call: its binary layout, and the reader that turns it into two aligned tracks.

A spool is what the live path writes (capture.py) and the encoder reads (encoder.py); it travels between them
through the recordings storage, so the instance that encodes need not be the one that carried the call.
Little-endian throughout; audio stays in the call's wire format (μ-law or L16), exactly as it was sent.

    header  "VSRSPL01" | encoding u8 (0 μ-law, 1 L16) | 3 pad | sample_rate u32
    C | nbytes u32 | audio          caller audio, continuing the caller's stream (it has no gaps: carriers
                                    stream the caller in real time, silence included)
    A | pos i64 | nbytes u32 | audio  agent audio that starts playing at sample `pos` of the call
    X | pos i64                     barge-in clear at `pos`: agent audio written before this record that would
                                    have played at or after `pos` never played
    E | pos i64                     the call's media ended at `pos` (the last record of a complete spool)

Positions are samples at the wire rate from the start of the call's media: the same origin as the transcript's
`start_ms`/`end_ms` (the conversation engine counts from the media session's start, and caller turns on the
caller's audio timeline, which starts with its first frame). A spool cut short by a crash is read up to its
last whole record.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field

__all__ = [
    "AGENT",
    "CALLER",
    "HEADER",
    "MAGIC",
    "POSITION",
    "AgentSpan",
    "SpoolError",
    "SpoolIndex",
    "encoding_code",
    "read_index",
]

MAGIC = b"VSRSPL01"
HEADER = struct.Struct("<8sBxxxI")
CALLER = struct.Struct("<cI")
AGENT = struct.Struct("<cqI")
POSITION = struct.Struct("<cq")  # X (clear) and E (end)

_ENCODINGS = {"mulaw": 0, "l16": 1}
_NAMES = {v: k for k, v in _ENCODINGS.items()}


class SpoolError(ValueError):
    """Not a spool, or one this code cannot read."""


def encoding_code(encoding: str) -> int:
    try:
        return _ENCODINGS[encoding]
    except KeyError:
        raise SpoolError(f"cannot record the {encoding!r} encoding") from None


@dataclass(slots=True)
class AgentSpan:
    """Agent audio that played: samples [start, stop) of the call, read from `offset` in the spool."""

    start: int
    stop: int
    offset: int


@dataclass(slots=True)
class SpoolIndex:
    encoding: str
    sample_rate: int
    caller: list[tuple[int, int]] = field(default_factory=list)  # (offset, nbytes), in stream order
    caller_samples: int = 0
    agent: list[AgentSpan] = field(default_factory=list)  # what played, in write order (later wins)
    clears: list[int] = field(default_factory=list)
    end: int | None = None  # None: the spool has no end record (cut short)

    @property
    def width(self) -> int:
        return 1 if self.encoding == "mulaw" else 2

    @property
    def total_samples(self) -> int:
        """The recording's length: to the media's end, or to the last audio when the end is unknown."""
        if self.end is not None:
            return max(self.end, self.caller_samples)
        last_agent = max((span.stop for span in self.agent), default=0)
        return max(self.caller_samples, last_agent)


def read_index(data: bytes | memoryview | mmap.mmap) -> SpoolIndex:
    """Where everything is in a spool (`data`: its bytes, e.g. an mmap), with barge-in clears and the end
    already applied to the agent's audio."""
    view = memoryview(data)
    if len(view) < HEADER.size:
        raise SpoolError("the spool is shorter than its header")
    magic, code, rate = HEADER.unpack_from(view, 0)
    if magic != MAGIC or code not in _NAMES or not 4000 <= rate <= 48000:
        raise SpoolError("not a recording spool (bad header)")
    index = SpoolIndex(encoding=_NAMES[code], sample_rate=rate)
    width = index.width
    # (kind, position or start, samples, offset) in write order; clears apply to what was written before them.
    agent: list[tuple[int, int, int]] = []
    order: list[tuple[str, int]] = []  # ("A", i) or ("X", pos)
    at, size = HEADER.size, len(view)
    while at < size:
        kind = bytes(view[at : at + 1])
        if kind == b"C":
            if at + CALLER.size > size:
                break
            _, nbytes = CALLER.unpack_from(view, at)
            start = at + CALLER.size
            if start + nbytes > size:
                break
            index.caller.append((start, nbytes))
            index.caller_samples += nbytes // width
            at = start + nbytes
        elif kind == b"A":
            if at + AGENT.size > size:
                break
            _, pos, nbytes = AGENT.unpack_from(view, at)
            start = at + AGENT.size
            if start + nbytes > size:
                break
            order.append(("A", len(agent)))
            agent.append((max(pos, 0), nbytes // width, start))
            at = start + nbytes
        elif kind in (b"X", b"E"):
            if at + POSITION.size > size:
                break
            _, pos = POSITION.unpack_from(view, at)
            if kind == b"X":
                order.append(("X", max(pos, 0)))
                index.clears.append(max(pos, 0))
            else:
                index.end = max(pos, 0)
            at += POSITION.size
        else:
            raise SpoolError(f"unknown spool record {kind!r} at byte {at}")
    # Walk backwards: each agent chunk is cut at the earliest clear written after it, and at the media's end.
    cut = index.end if index.end is not None else None
    spans: list[AgentSpan] = []
    for tag, value in reversed(order):
        if tag == "X":
            cut = value if cut is None else min(cut, value)
            continue
        pos, samples, offset = agent[value]
        stop = pos + samples if cut is None else min(pos + samples, max(pos, cut))
        if stop > pos:
            spans.append(AgentSpan(pos, stop, offset))
    spans.reverse()
    index.agent = spans
    return index
