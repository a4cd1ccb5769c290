"""The web-call wire format: a browser (or any WebSocket client) talking to an agent, no carrier in between.

Binary frames carry audio both ways: PCM signed 16-bit little-endian, mono, 16 kHz (20 ms = 640 bytes; the
client may send any whole number of samples per frame). Text frames are JSON objects tagged by `type`:

client → service
  start  {"type": "start", "token": "…", "format": {"encoding": "pcm_s16le", "sample_rate": 16000,
          "channels": 1}}                          first message: the call's single-use token and the audio format
  mark   {"type": "mark", "name": "t1.0"}         echo of a mark, once the audio sent before it has played
  dtmf   {"type": "dtmf", "digit": "5"}           a keypad press (0-9, *, #, A-D)
  stop   {"type": "stop"}                         the caller hangs up
service → client
  started     {"type": "started", "call_id": "…", "format": {…}}
  mark        {"type": "mark", "name": "t1.0"}    echo it back once everything received before it has played
  clear       {"type": "clear"}                   barge-in: drop the agent audio not yet played, at once
  transcript  {"type": "transcript", "role": "caller" | "agent", "text": "…", "final": false}
              {"type": "transcript", "role": …, "text": …, "final": true, "start_ms": …, "end_ms": …,
               "interrupted": …}                 partial: the turn so far; final: the turn as stored with the call
  agent_text  {"type": "agent_text", "text": "…"} a sentence of the agent starts playing
  end         {"type": "end", "reason": "…"}      the call is over; the service closes the socket (1000)

This module is the format only (like twilio_media and vonage_media): the transport that owns the socket, the
token check and the pacing is the service's (voice_service/webcalls/socket.py). The marks are what tells the
conversation engine how much of an interrupted answer the caller heard, so a client must echo them.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from providers.audio import frame_bytes
from providers.telephony.base import (
    MediaAudio,
    MediaDtmf,
    MediaEvent,
    MediaFormat,
    MediaIgnored,
    MediaMark,
    MediaStarted,
    MediaStopped,
    ProtocolError,
    decode_frame,
)

__all__ = [
    "DTMF_DIGITS",
    "MAX_AUDIO_FRAME_BYTES",
    "WEB_ENCODING",
    "WEB_FORMAT",
    "WebCodec",
    "encode_agent_text",
    "encode_end",
    "encode_started",
    "encode_transcript",
]

WEB_ENCODING = "pcm_s16le"
WEB_FORMAT = MediaFormat(encoding="l16", sample_rate=16000, channels=1)
# Two seconds of audio: a client sends 20 ms frames; anything this large is not a microphone stream.
MAX_AUDIO_FRAME_BYTES = 2 * WEB_FORMAT.sample_rate * 2
DTMF_DIGITS = frozenset("0123456789*#ABCD")
_MARK_NAME_MAX = 100


# --- client → service ---


class _Format(msgspec.Struct, forbid_unknown_fields=True):
    encoding: str
    sample_rate: int
    channels: int = 1


class _Start(msgspec.Struct, tag="start", tag_field="type"):
    token: str
    format: _Format


class _Stop(msgspec.Struct, tag="stop", tag_field="type"):
    pass


class _Dtmf(msgspec.Struct, tag="dtmf", tag_field="type"):
    digit: str


class _Mark(msgspec.Struct, tag="mark", tag_field="type"):
    name: str


_Inbound = _Start | _Stop | _Dtmf | _Mark
_DECODER = msgspec.json.Decoder(_Inbound)
_KNOWN = {"start", "stop", "dtmf", "mark"}


# --- service → client ---


class _FormatOut(msgspec.Struct):
    encoding: str
    sample_rate: int
    channels: int


class _Started(msgspec.Struct, tag="started", tag_field="type"):
    call_id: str
    format: _FormatOut


class _MarkOut(msgspec.Struct, tag="mark", tag_field="type"):
    name: str


class _Clear(msgspec.Struct, tag="clear", tag_field="type"):
    pass


class _Transcript(msgspec.Struct, tag="transcript", tag_field="type", omit_defaults=True):
    role: Literal["caller", "agent"]
    text: str
    final: bool
    start_ms: int | None = None
    end_ms: int | None = None
    interrupted: bool | None = None


class _AgentText(msgspec.Struct, tag="agent_text", tag_field="type"):
    text: str


class _End(msgspec.Struct, tag="end", tag_field="type"):
    reason: str


_ENCODER = msgspec.json.Encoder()
_CLEAR = _ENCODER.encode(_Clear()).decode()
_FORMAT_OUT = _FormatOut(WEB_ENCODING, WEB_FORMAT.sample_rate, WEB_FORMAT.channels)


def _check_format(fmt: _Format) -> MediaFormat:
    if fmt.encoding != WEB_ENCODING:
        raise ProtocolError(f"format.encoding must be {WEB_ENCODING!r}, got {fmt.encoding!r}")
    if fmt.sample_rate != WEB_FORMAT.sample_rate:
        raise ProtocolError(f"format.sample_rate must be {WEB_FORMAT.sample_rate}, got {fmt.sample_rate}")
    if fmt.channels != 1:
        raise ProtocolError(f"format.channels must be 1, got {fmt.channels}")
    return WEB_FORMAT


class WebCodec:
    """One web call's socket: binary frames are PCM16LE 16 kHz audio, text frames JSON messages."""

    def __init__(self) -> None:
        self.format: MediaFormat | None = None
        self._frame_bytes = frame_bytes(WEB_FORMAT.encoding, WEB_FORMAT.sample_rate, WEB_FORMAT.channels)

    def decode(self, message: str | bytes) -> MediaEvent:
        if isinstance(message, bytes | bytearray | memoryview):
            size = len(message)
            if size % 2:
                raise ProtocolError(
                    f"audio frames are 16-bit samples: {size} bytes is not a whole number of them"
                )
            if size > MAX_AUDIO_FRAME_BYTES:
                raise ProtocolError(f"audio frame of {size} bytes; send 20 ms frames (640 bytes)")
            return MediaAudio(payload=bytes(message))
        msg = decode_frame(_DECODER, message, tag="type", known=_KNOWN, malformed="malformed message",
                           malformed_kind="malformed {kind!r} message",
                           not_json="a text frame must be a JSON object with a `type`",
                           unknown="unknown message type {kind!r}")
        if isinstance(msg, MediaIgnored):
            return msg

        match msg:
            case _Start(token=token, format=fmt):
                self.format = _check_format(fmt)
                return MediaStarted(
                    call_id=None,
                    token=token,
                    stream_id=None,
                    provider_call_id=None,
                    format=self.format,
                    custom={},
                )
            case _Mark(name=name):
                return MediaMark(name=name[:_MARK_NAME_MAX])
            case _Dtmf(digit=digit):
                if digit not in DTMF_DIGITS:
                    raise ProtocolError(f"dtmf digit must be one of 0-9, *, #, A-D; got {digit[:10]!r}")
                return MediaDtmf(digit=digit)
            case _Stop():
                return MediaStopped()
        raise AssertionError(f"unhandled web-call message {msg!r}")

    def encode_audio(self, frame: bytes) -> bytes:
        """One 20 ms binary frame; a short (last) frame is padded with silence."""
        size = self._frame_bytes
        if len(frame) == size:
            return bytes(frame)
        if len(frame) > size:
            raise ValueError(f"web-call frames are {size} bytes; got {len(frame)}")
        return bytes(frame) + bytes(size - len(frame))

    def encode_mark(self, name: str) -> str:
        return _ENCODER.encode(_MarkOut(name)).decode()

    def encode_clear(self) -> str:
        return _CLEAR


# --- the service's events (sent by the transport, next to the codec's audio, marks and clears) ---


def encode_started(call_id: str) -> str:
    return _ENCODER.encode(_Started(call_id, _FORMAT_OUT)).decode()


def encode_transcript(
    role: Literal["caller", "agent"],
    text: str,
    *,
    final: bool,
    start_ms: int | None = None,
    end_ms: int | None = None,
    interrupted: bool | None = None,
) -> str:
    return _ENCODER.encode(_Transcript(role, text, final, start_ms, end_ms, interrupted)).decode()


def encode_agent_text(text: str) -> str:
    return _ENCODER.encode(_AgentText(text)).decode()


def encode_end(reason: str) -> str:
    return _ENCODER.encode(_End(reason)).decode()
