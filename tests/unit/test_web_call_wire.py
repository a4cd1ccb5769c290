"""The web-call wire format (providers/telephony/web_media.py), the origin check and the end reasons: what a
client's messages become, what the service sends, and which pages may open a socket."""

from __future__ import annotations

import json

import pytest

from providers.telephony.base import (
    MediaAudio,
    MediaDtmf,
    MediaIgnored,
    MediaMark,
    MediaStarted,
    MediaStopped,
    ProtocolError,
)
from providers.telephony.web_media import (
    WEB_FORMAT,
    WebCodec,
    encode_agent_text,
    encode_end,
    encode_started,
    encode_transcript,
)
from voice_service.webcalls.origins import normalize_origin, origin_allowed, parse_origins
from voice_service.webcalls.service import end_reason_of

FORMAT = {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1}


def test_client_messages_decode_to_media_events() -> None:
    codec = WebCodec()
    started = codec.decode(json.dumps({"type": "start", "token": "tok", "format": FORMAT}))
    assert isinstance(started, MediaStarted)
    assert started.token == "tok" and started.format == WEB_FORMAT and codec.format == WEB_FORMAT
    assert codec.decode(bytes(640)) == MediaAudio(payload=bytes(640))
    assert codec.decode('{"type": "mark", "name": "t1.0"}') == MediaMark(name="t1.0")
    assert codec.decode('{"type": "dtmf", "digit": "#"}') == MediaDtmf(digit="#")
    assert codec.decode('{"type": "stop"}') == MediaStopped()
    assert isinstance(codec.decode('{"type": "ping"}'), MediaIgnored)  # a newer client's message: ignored


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (
            {"type": "start", "token": "t", "format": {**FORMAT, "sample_rate": 8000}},
            "sample_rate must be 16000",
        ),
        (
            {"type": "start", "token": "t", "format": {**FORMAT, "encoding": "mulaw"}},
            "encoding must be 'pcm_s16le'",
        ),
        ({"type": "start", "token": "t", "format": {**FORMAT, "channels": 2}}, "channels must be 1"),
        ({"type": "start", "format": FORMAT}, "malformed 'start' message"),
        ({"type": "dtmf", "digit": "x"}, "dtmf digit must be one of"),
        ({"type": "mark"}, "malformed 'mark' message"),
    ],
)
def test_malformed_messages_say_what_is_wrong(message: dict[str, object], words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        WebCodec().decode(json.dumps(message))


def test_audio_frames_must_be_whole_samples_and_not_huge() -> None:
    codec = WebCodec()
    with pytest.raises(ProtocolError, match="16-bit samples"):
        codec.decode(bytes(641))
    with pytest.raises(ProtocolError, match="send 20 ms frames"):
        codec.decode(bytes(64_002))
    with pytest.raises(ProtocolError, match="JSON object"):
        codec.decode("not json")


def test_service_messages() -> None:
    codec = WebCodec()
    assert codec.encode_audio(bytes(640)) == bytes(640)
    assert codec.encode_audio(b"\x01\x02") == b"\x01\x02" + bytes(
        638
    )  # a short last frame, padded with silence
    assert json.loads(codec.encode_mark("t2.1")) == {"type": "mark", "name": "t2.1"}
    assert json.loads(codec.encode_clear()) == {"type": "clear"}
    assert json.loads(encode_started("c1")) == {"type": "started", "call_id": "c1", "format": FORMAT}
    assert json.loads(encode_transcript("caller", "Hi", final=False)) == {
        "type": "transcript",
        "role": "caller",
        "text": "Hi",
        "final": False,
    }
    assert json.loads(
        encode_transcript("agent", "Hello.", final=True, start_ms=0, end_ms=900, interrupted=False)
    ) == {
        "type": "transcript",
        "role": "agent",
        "text": "Hello.",
        "final": True,
        "start_ms": 0,
        "end_ms": 900,
        "interrupted": False,
    }
    assert json.loads(encode_agent_text("Hello.")) == {"type": "agent_text", "text": "Hello."}
    assert json.loads(encode_end("agent_ended")) == {"type": "end", "reason": "agent_ended"}


def test_origins_are_compared_as_browsers_send_them() -> None:
    assert normalize_origin("HTTPS://Shop.Example.com:443/") == "https://shop.example.com"
    assert normalize_origin("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert normalize_origin("null") == ""
    assert parse_origins(" https://a.example , *, nonsense ,http://b.example:8080") == {
        "https://a.example",
        "*",
        "http://b.example:8080",
    }


@pytest.mark.parametrize(
    ("origin", "configured", "per_call", "allowed"),
    [
        (None, "", [], True),  # not a browser: the token alone decides
        ("https://voice.example.com", "", [], True),  # PUBLIC_BASE_URL's origin
        ("http://console.local:8000", "", [], True),  # the host the request was sent to
        ("https://evil.example", "", [], False),
        ("https://partner.example", "https://partner.example", [], True),
        ("https://shop.example", "", ["https://shop.example"], True),
        ("https://shop.example", "", ["https://other.example"], False),
        ("https://anything.example", "*", [], True),
        ("null", "", [], False),
        ("null", "*", [], True),
    ],
)
def test_which_pages_may_open_a_socket(
    origin: str | None, configured: str, per_call: list[str], allowed: bool
) -> None:
    assert (
        origin_allowed(
            origin,
            host_header="console.local:8000",
            public_base_url="https://voice.example.com",
            configured=parse_origins(configured),
            per_call=per_call,
        )
        is allowed
    )


def test_end_reasons_name_who_ended_the_call() -> None:
    assert end_reason_of("media_stopped") == "caller_hung_up"  # the client's `stop`
    assert end_reason_of("media_closed") == "caller_hung_up"  # the tab closed (1001) or a clean close
    assert end_reason_of("media_disconnected") == "media_disconnected"
    assert end_reason_of("agent_ended") == "agent_ended"
    assert end_reason_of(None) == "internal_error"
