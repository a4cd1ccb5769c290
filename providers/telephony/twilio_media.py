"""Twilio Media Streams wire format: JSON text frames both ways, audio μ-law 8 kHz base64 in the JSON.

In: `connected`, `start` (streamSid, callSid, the <Parameter>s of the <Stream> as customParameters, the media
format), `media`, `dtmf`, `mark` (the echo of a mark we sent, once the audio before it has played), `stop`. Out:
only `media`, `mark` and `clear` may be sent (anything else is error 31924), each with the stream's streamSid.
"""

from __future__ import annotations

import msgspec

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

__all__ = ["TWILIO_FORMAT", "TwilioCodec"]

TWILIO_FORMAT = MediaFormat(encoding="mulaw", sample_rate=8000, channels=1)


# --- Media Streams: inbound frames ---
# Only the fields the service reads are declared: msgspec skips the rest, so a field Twilio documents as a string
# but sends as a number (sequenceNumber, chunk, timestamp), or one it adds, never costs a frame.


class _MediaFormatBody(msgspec.Struct):
    encoding: str
    sampleRate: int
    channels: int = 1


class _StartBody(msgspec.Struct):
    streamSid: str
    callSid: str
    customParameters: dict[str, str] = {}
    mediaFormat: _MediaFormatBody | None = None


class _MediaBody(msgspec.Struct):
    payload: bytes  # msgspec decodes base64 in C: faster than str + binascii.a2b_base64


class _DtmfBody(msgspec.Struct):
    digit: str


class _MarkBody(msgspec.Struct):
    name: str


class _Connected(msgspec.Struct, tag="connected", tag_field="event"):
    pass


class _Start(msgspec.Struct, tag="start", tag_field="event"):
    start: _StartBody


class _Media(msgspec.Struct, tag="media", tag_field="event"):
    media: _MediaBody


class _Dtmf(msgspec.Struct, tag="dtmf", tag_field="event"):
    dtmf: _DtmfBody


class _Mark(msgspec.Struct, tag="mark", tag_field="event"):
    mark: _MarkBody


class _Stop(msgspec.Struct, tag="stop", tag_field="event"):
    pass


_Inbound = _Connected | _Start | _Media | _Dtmf | _Mark | _Stop
_DECODER = msgspec.json.Decoder(_Inbound)
_KNOWN_EVENTS = frozenset({"connected", "start", "media", "dtmf", "mark", "stop"})


# --- Media Streams: outbound frames ---


class _OutMediaBody(msgspec.Struct):
    payload: bytes  # encoded as base64 by msgspec


class _OutMedia(msgspec.Struct, tag="media", tag_field="event"):
    streamSid: str
    media: _OutMediaBody


class _OutMark(msgspec.Struct, tag="mark", tag_field="event"):
    streamSid: str
    mark: _MarkBody


class _OutClear(msgspec.Struct, tag="clear", tag_field="event"):
    streamSid: str


_ENCODER = msgspec.json.Encoder()

_MULAW = "audio/x-mulaw"  # the only encoding Media Streams uses


class TwilioCodec:
    """One Media Streams socket. Remembers the streamSid from `start`: every frame we send carries it."""

    def __init__(self) -> None:
        self.format: MediaFormat | None = None
        self.stream_sid: str | None = None

    def decode(self, message: str | bytes) -> MediaEvent:
        msg = decode_frame(_DECODER, message, tag="event", known=_KNOWN_EVENTS,
                           malformed="malformed Twilio media frame", malformed_kind="malformed Twilio {kind!r} frame",
                           not_json="Twilio media frame is not JSON", unknown="unknown event {kind!r}")
        if isinstance(msg, MediaIgnored):
            return msg

        match msg:
            case _Media(media=media):
                return MediaAudio(payload=media.payload)
            case _Start(start=start):
                return self._started(start)
            case _Mark(mark=mark):
                return MediaMark(name=mark.name)
            case _Dtmf(dtmf=dtmf):
                return MediaDtmf(digit=dtmf.digit)
            case _Stop():
                return MediaStopped()
            case _Connected():
                return MediaIgnored(reason="connected")
        raise AssertionError(f"unhandled Twilio frame {msg!r}")

    def _started(self, start: _StartBody) -> MediaStarted:
        fmt = TWILIO_FORMAT
        if start.mediaFormat is not None:
            if start.mediaFormat.encoding != _MULAW:
                raise ProtocolError(f"unsupported Twilio media encoding {start.mediaFormat.encoding!r}")
            fmt = MediaFormat(
                encoding="mulaw",
                sample_rate=start.mediaFormat.sampleRate,
                channels=start.mediaFormat.channels,
            )
        self.format = fmt
        self.stream_sid = start.streamSid
        custom = start.customParameters
        return MediaStarted(
            call_id=custom.get("call_id"),
            token=custom.get("token"),
            stream_id=start.streamSid,
            provider_call_id=start.callSid,
            format=fmt,
            custom=dict(custom),
        )

    def _sid(self) -> str:
        if self.stream_sid is None:
            raise ProtocolError("cannot send to a Twilio media stream before its start event")
        return self.stream_sid

    def encode_audio(self, frame: bytes) -> str:
        return _ENCODER.encode(_OutMedia(streamSid=self._sid(), media=_OutMediaBody(payload=frame))).decode()

    def encode_mark(self, name: str) -> str:
        return _ENCODER.encode(_OutMark(streamSid=self._sid(), mark=_MarkBody(name=name))).decode()

    def encode_clear(self) -> str:
        return _ENCODER.encode(_OutClear(streamSid=self._sid())).decode()
