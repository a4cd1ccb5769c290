"""Vonage's media WebSocket wire format: text JSON events, binary frames of PCM16LE mono, 20 ms each.

In: `websocket:connected` (the content type, and the connect endpoint's headers flattened into the frame),
binary audio, `websocket:dtmf`, `websocket:notify` (the echo of a notify we sent, once the audio before it has
played), `websocket:cleared`. Out: binary audio frames of exactly 20 ms, `notify` and `clear` commands. Vonage has
no stop event: it closes the socket (1000) when the call ends.
"""

from __future__ import annotations

from typing import Any

import msgspec

from providers.audio import frame_bytes
from providers.telephony.base import (
    MediaAudio,
    MediaCleared,
    MediaDtmf,
    MediaEvent,
    MediaFormat,
    MediaIgnored,
    MediaMark,
    MediaStarted,
    ProtocolError,
    decode_frame,
)

__all__ = ["VONAGE_CONTENT_TYPE", "VonageCodec", "parse_content_type"]

# 16 kHz gives STT more to work with than 8 kHz; Vonage also offers 8000 and 24000.
VONAGE_CONTENT_TYPE = "audio/l16;rate=16000"


# --- media socket: inbound text events ---


class _Connected(msgspec.Struct, tag="websocket:connected", tag_field="event"):
    content_type: str = msgspec.field(name="content-type")


class _Dtmf(msgspec.Struct, tag="websocket:dtmf", tag_field="event"):
    digit: str


class _Cleared(msgspec.Struct, tag="websocket:cleared", tag_field="event"):
    pass


class _Notify(msgspec.Struct, tag="websocket:notify", tag_field="event"):
    payload: dict[str, Any] = {}


_Inbound = _Connected | _Dtmf | _Cleared | _Notify
_DECODER = msgspec.json.Decoder(_Inbound)
_DICT_DECODER = msgspec.json.Decoder(dict[str, Any])
_KNOWN_EVENTS = {"websocket:connected", "websocket:dtmf", "websocket:cleared", "websocket:notify"}


# --- media socket: outbound text commands ---


class _NotifyPayload(msgspec.Struct):
    name: str


class _NotifyCommand(msgspec.Struct, tag="notify", tag_field="action"):
    payload: _NotifyPayload


class _ClearCommand(msgspec.Struct, tag="clear", tag_field="action"):
    pass


_ENCODER = msgspec.json.Encoder()
_CLEAR = _ENCODER.encode(_ClearCommand()).decode()


def parse_content_type(content_type: str) -> MediaFormat:
    """`audio/l16;rate=16000` → MediaFormat(l16, 16000)."""
    mime, *params = (part.strip() for part in content_type.split(";"))
    if mime.lower() != "audio/l16":
        raise ProtocolError(f"unsupported Vonage media content-type {content_type!r}")
    rate = 16000
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "rate":
            try:
                rate = int(value)
            except ValueError as exc:
                raise ProtocolError(f"bad rate in Vonage content-type {content_type!r}") from exc
    return MediaFormat(encoding="l16", sample_rate=rate, channels=1)


class VonageCodec:
    """One Vonage media socket: text frames are JSON events, binary frames are PCM16LE audio."""

    def __init__(self) -> None:
        self.format: MediaFormat | None = None
        self._frame_bytes: int | None = None

    def decode(self, message: str | bytes) -> MediaEvent:
        if isinstance(message, bytes | bytearray | memoryview):
            return MediaAudio(payload=bytes(message))
        msg = decode_frame(_DECODER, message, tag="event", known=_KNOWN_EVENTS,
                           malformed="malformed Vonage media event", malformed_kind="malformed Vonage {kind!r} event",
                           not_json="Vonage media text frame is not JSON", unknown="unknown event {kind!r}")
        if isinstance(msg, MediaIgnored):
            return msg

        match msg:
            case _Connected(content_type=content_type):
                return self._started(message, content_type)
            case _Dtmf(digit=digit):
                return MediaDtmf(digit=digit)
            case _Cleared():
                return MediaCleared()
            case _Notify(payload=payload):
                name = payload.get("name")
                if not isinstance(name, str):
                    return MediaIgnored(reason="notify without a name")
                return MediaMark(name=name)
        raise AssertionError(f"unhandled Vonage event {msg!r}")

    def _started(self, message: str, content_type: str) -> MediaStarted:
        fmt = parse_content_type(content_type)
        self.format = fmt
        self._frame_bytes = frame_bytes(fmt.encoding, fmt.sample_rate, fmt.channels)
        # The connect endpoint's `headers` arrive flattened into this first frame.
        fields = _DICT_DECODER.decode(message)
        custom = {
            key: value
            for key, value in fields.items()
            if key not in ("event", "content-type") and isinstance(value, str)
        }
        return MediaStarted(
            call_id=custom.get("call_id"),
            token=custom.get("token"),
            stream_id=None,
            provider_call_id=None,
            format=fmt,
            custom=custom,
        )

    def encode_audio(self, frame: bytes) -> bytes:
        """Exactly one 20 ms binary frame; a short (last) frame is padded with PCM silence."""
        size = self._frame_bytes
        if size is None:
            raise ProtocolError("cannot send audio on a Vonage socket before websocket:connected")
        if len(frame) == size:
            return bytes(frame)
        if len(frame) > size:
            raise ValueError(f"Vonage frames are {size} bytes; got {len(frame)}")
        return bytes(frame) + bytes(size - len(frame))

    def encode_mark(self, name: str) -> str:
        # Vonage echoes the payload as websocket:notify once the audio sent before it has played.
        return _ENCODER.encode(_NotifyCommand(payload=_NotifyPayload(name=name))).decode()

    def encode_clear(self) -> str:
        return _CLEAR
