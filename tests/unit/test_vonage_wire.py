"""Vonage wire formats: WebSocket media both ways, event webhooks, signed-webhook JWTs, NCCO."""

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal

import jwt
import pytest

from providers.telephony.base import (
    CallStatus,
    MediaAudio,
    MediaCleared,
    MediaDtmf,
    MediaFormat,
    MediaIgnored,
    MediaMark,
    MediaStarted,
    ProtocolError,
    WebhookRequest,
)
from providers.telephony.vonage import VonageCodec, VonageProvider

SECRET = "vonage-signature-secret-0123456789abcdef"  # ≥ 32 bytes: pyjwt warns on shorter HMAC keys
APP_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
NOW = 1_736_850_000.0
CALL_UUID = "63f61863-4a51-4f6b-86e1-46edebcf9356"

CONNECTED = (
    '{"event":"websocket:connected","content-type":"audio/l16;rate=16000",'
    '"call_id":"0193a0c4-7d1e-7000-8000-000000000001","token":"tok_abc"}'
)


@pytest.fixture
def codec() -> VonageCodec:
    return VonageCodec()


@pytest.fixture
async def provider():
    p = VonageProvider(APP_ID, "unused-private-key", SECRET, clock=lambda: NOW)
    yield p
    await p.aclose()


# --- media socket: inbound ---


def test_connected_gives_format_and_flattened_headers(codec):
    assert codec.decode(CONNECTED) == MediaStarted(
        call_id="0193a0c4-7d1e-7000-8000-000000000001",
        token="tok_abc",
        stream_id=None,
        provider_call_id=None,
        format=MediaFormat(encoding="l16", sample_rate=16000, channels=1),
        custom={"call_id": "0193a0c4-7d1e-7000-8000-000000000001", "token": "tok_abc"},
    )
    assert codec.format == MediaFormat(encoding="l16", sample_rate=16000)


def test_connected_at_8khz(codec):
    event = codec.decode('{"event":"websocket:connected","content-type":"audio/l16;rate=8000"}')
    assert isinstance(event, MediaStarted)
    assert event.format.sample_rate == 8000
    assert (event.call_id, event.token, event.custom) == (None, None, {})


def test_binary_frames_are_pcm_audio(codec):
    frame = bytes(range(256)) + bytes(range(64))  # 320 bytes: 20 ms at 8 kHz
    assert codec.decode(frame) == MediaAudio(payload=frame)


def test_text_events(codec):
    assert codec.decode('{"event":"websocket:dtmf","digit":"5","duration":260}') == MediaDtmf(digit="5")
    assert codec.decode('{"event":"websocket:cleared"}') == MediaCleared()
    assert codec.decode('{"event":"websocket:notify","payload":{"name":"utt-17"}}') == MediaMark(
        name="utt-17"
    )
    assert codec.decode('{"event":"websocket:notify","payload":{"other":1}}') == MediaIgnored(
        reason="notify without a name"
    )
    assert codec.decode('{"event":"websocket:media:update","x":1}') == MediaIgnored(
        reason="unknown event 'websocket:media:update'"
    )


@pytest.mark.parametrize(
    "frame",
    [
        "{",
        '{"no_event":true}',
        '{"event":"websocket:dtmf"}',
        '{"event":"websocket:connected","content-type":"audio/pcmu;rate=8000"}',
        '{"event":"websocket:connected","content-type":"audio/l16;rate=fast"}',
    ],
)
def test_malformed_events_raise_protocol_error(codec, frame):
    with pytest.raises(ProtocolError):
        codec.decode(frame)


# --- media socket: outbound ---


def test_outbound_audio_is_exactly_one_frame(codec):
    with pytest.raises(ProtocolError):
        codec.encode_audio(bytes(640))  # format unknown before websocket:connected
    codec.decode(CONNECTED)
    frame = b"\x01\x02" * 320
    assert codec.encode_audio(frame) == frame
    assert codec.encode_audio(b"\x01\x02" * 100) == b"\x01\x02" * 100 + bytes(440)  # last frame padded
    with pytest.raises(ValueError):
        codec.encode_audio(bytes(642))


def test_outbound_8khz_frames_are_320_bytes(codec):
    codec.decode('{"event":"websocket:connected","content-type":"audio/l16;rate=8000"}')
    assert len(codec.encode_audio(b"\x05" * 10)) == 320


def test_outbound_commands(codec):
    assert codec.encode_clear() == '{"action":"clear"}'
    assert codec.encode_mark("utt-17") == '{"action":"notify","payload":{"name":"utt-17"}}'


# --- signed webhooks ---


def signed(body: bytes, secret: str = SECRET, **overrides) -> WebhookRequest:
    claims = {
        "iat": int(NOW),
        "jti": "7a1d4f0e-4c8e-4b5f-9a3e-1f2b3c4d5e6f",
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": "abcd1234",
        "application_id": APP_ID,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    token = jwt.encode(claims, secret, algorithm="HS256")
    return WebhookRequest(
        url="https://svc.example.com/v1/telephony/vonage/events",
        method="POST",
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        body=body,
        form={},
    )


BODY = json.dumps({"status": "ringing", "uuid": CALL_UUID, "timestamp": "2025-01-14T10:15:30.000Z"}).encode()


def test_valid_signed_webhook(provider):
    req = signed(BODY)
    assert provider.verify_webhook(req)
    assert provider.webhook_jti(req) == "7a1d4f0e-4c8e-4b5f-9a3e-1f2b3c4d5e6f"


def test_iat_within_skew_both_ways(provider):
    assert provider.verify_webhook(signed(BODY, iat=int(NOW) - 299))
    assert provider.verify_webhook(signed(BODY, iat=int(NOW) + 299))


@pytest.mark.parametrize(
    "case",
    [
        "forged",
        "missing",
        "not_bearer",
        "garbage",
        "stale",
        "future",
        "wrong_hash",
        "no_hash",
        "no_iat",
        "other_app",
    ],
)
def test_rejected_webhooks(provider, case):
    req = {
        "forged": lambda: signed(BODY, secret="another-secret-of-sufficient-length-xyz"),
        "missing": lambda: WebhookRequest(url="https://x/e", method="POST", headers={}, body=BODY, form={}),
        "not_bearer": lambda: WebhookRequest(
            url="https://x/e",
            method="POST",
            headers={"authorization": "Basic YWJjOmRlZg=="},
            body=BODY,
            form={},
        ),
        "garbage": lambda: WebhookRequest(
            url="https://x/e",
            method="POST",
            headers={"authorization": "Bearer not.a.jwt"},
            body=BODY,
            form={},
        ),
        "stale": lambda: signed(BODY, iat=int(NOW) - 301),
        "future": lambda: signed(BODY, iat=int(NOW) + 301),
        "wrong_hash": lambda: signed(BODY, payload_hash=hashlib.sha256(b"{}").hexdigest()),
        "no_hash": lambda: signed(BODY, payload_hash=None),
        "no_iat": lambda: signed(BODY, iat=None),
        "other_app": lambda: signed(BODY, application_id="ffffffff-bbbb-cccc-dddd-0123456789ab"),
    }[case]()
    assert not provider.verify_webhook(req)


def test_tampered_body_is_rejected(provider):
    req = signed(BODY)
    tampered = WebhookRequest(
        url=req.url,
        method=req.method,
        headers=req.headers,
        body=BODY.replace(b"ringing", b"answered"),
        form={},
    )
    assert not provider.verify_webhook(tampered)


def test_empty_body_needs_no_payload_hash(provider):
    assert provider.verify_webhook(signed(b"", payload_hash=None))


def test_alg_none_token_is_rejected(provider):
    token = jwt.encode({"iat": int(NOW), "jti": "x"}, key=None, algorithm="none")
    req = WebhookRequest(
        url="https://x/e", method="POST", headers={"authorization": f"Bearer {token}"}, body=b"", form={}
    )
    assert not provider.verify_webhook(req)


# --- event webhooks ---


def event(
    provider: VonageProvider, payload: dict, url: str = "https://svc.example.com/v1/telephony/vonage/events"
):
    return provider.parse_status(
        WebhookRequest(url=url, method="POST", headers={}, body=json.dumps(payload).encode(), form={})
    )


@pytest.mark.parametrize(
    ("raw", "status", "end_reason", "final"),
    [
        ("started", CallStatus.PENDING, None, False),
        ("ringing", CallStatus.RINGING, None, False),
        ("answered", CallStatus.ONGOING, None, False),
        ("completed", CallStatus.ENDED, None, True),
        ("busy", CallStatus.DECLINED, "busy", True),
        ("timeout", CallStatus.DECLINED, "no_answer", True),
        ("unanswered", CallStatus.DECLINED, "no_answer", True),
        ("rejected", CallStatus.DECLINED, "rejected", True),
        ("cancelled", CallStatus.CANCELLED, "cancelled", True),
        ("failed", CallStatus.FAILED, "failed", True),
    ],
)
def test_status_mapping(provider, raw, status, end_reason, final):
    ev = event(
        provider,
        {
            "status": raw,
            "uuid": CALL_UUID,
            "conversation_uuid": "CON-1",
            "direction": "outbound",
            "timestamp": "2025-01-14T10:15:30.123Z",
        },
    )
    assert ev is not None
    assert (ev.status, ev.raw_status, ev.end_reason, ev.is_final) == (status, raw, end_reason, final)
    assert ev.provider == "vonage"
    assert ev.provider_call_id == CALL_UUID
    assert ev.sequence is None
    assert ev.occurred_at == datetime(2025, 1, 14, 10, 15, 30, 123000, tzinfo=UTC)


def test_completed_carries_duration_and_price(provider):
    ev = event(
        provider,
        {
            "status": "completed",
            "uuid": CALL_UUID,
            "conversation_uuid": "CON-1",
            "direction": "outbound",
            "timestamp": "2025-01-14T10:16:17.000Z",
            "duration": "47",
            "rate": "0.01400000",
            "price": "0.01096667",
            "start_time": "2025-01-14T10:15:30.000Z",
            "end_time": "2025-01-14T10:16:17.000Z",
            "network": "23410",
        },
        url="https://svc.example.com/v1/telephony/vonage/events?call_id=0193a0c4-7d1e-7000-8000-000000000001",
    )
    assert ev is not None
    assert ev.duration_seconds == 47
    assert ev.price == Decimal("0.01096667")
    assert ev.price_currency == "EUR"
    # The token signs the body, not the URL: the ?call_id= names nothing; the call is found by the body's uuid.
    assert ev.call_id is None and ev.provider_call_id == CALL_UUID


@pytest.mark.parametrize("result", ["human", "machine"])
def test_amd_result_keeps_the_call_ongoing(provider, result):
    ev = event(
        provider,
        {
            "status": result,
            "call_uuid": CALL_UUID,
            "conversation_uuid": "CON-1",
            "timestamp": "2025-01-14T10:15:35Z",
        },
    )
    assert ev is not None
    assert (ev.status, ev.answered_by, ev.is_final, ev.provider_call_id) == (
        CallStatus.ONGOING,
        result,
        False,
        CALL_UUID,
    )


def test_ignored_and_malformed_events(provider):
    assert event(provider, {"status": "disconnected", "uuid": CALL_UUID}) is None
    assert event(provider, {"dtmf": {"digits": "1"}, "uuid": CALL_UUID}) is None  # input event, no status
    with pytest.raises(ProtocolError):
        event(provider, {"status": "ringing"})
    with pytest.raises(ProtocolError):
        event(provider, {"status": "completed", "uuid": CALL_UUID, "duration": "forty"})
    with pytest.raises(ProtocolError):
        provider.parse_status(
            WebhookRequest(url="https://x/e", method="POST", headers={}, body=b"[1,", form={})
        )


# --- NCCO ---


def test_answer_stream_ncco(provider):
    content_type, body = provider.answer_stream(
        "wss://svc.example.com/v1/telephony/vonage/media", "0193a0c4-7d1e-7000-8000-000000000001", "tok_abc"
    )
    assert content_type == "application/json"
    assert json.loads(body) == [
        {
            "action": "connect",
            "endpoint": [
                {
                    "type": "websocket",
                    "uri": "wss://svc.example.com/v1/telephony/vonage/media",
                    "content-type": "audio/l16;rate=16000",
                    "headers": {"call_id": "0193a0c4-7d1e-7000-8000-000000000001", "token": "tok_abc"},
                }
            ],
        }
    ]


def test_answer_reject_is_a_single_talk_action(provider):
    content_type, body = provider.answer_reject("Sorry, nobody can take your call.")
    assert content_type == "application/json"
    assert body == b'[{"action":"talk","text":"Sorry, nobody can take your call."}]'


# --- answer webhooks ---


def answer(method: str, *, body: bytes = b"", query: dict[str, str] | None = None) -> WebhookRequest:
    url = "https://svc.example.com/v1/telephony/vonage/answer"
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return WebhookRequest(url=url, method=method, headers={}, body=body, form=dict(query or {}))


def test_post_answers_are_read_from_the_signed_body_only(provider):
    body = json.dumps({"to": "442079460000", "from": "14155550100", "uuid": CALL_UUID}).encode()
    # The query string is outside the token's payload_hash: a `to` there changes nothing.
    call = provider.parse_inbound(answer("POST", body=body, query={"to": "442079469999", "uuid": "forged"}))
    assert (call.to, call.from_, call.provider_call_id) == ("+442079460000", "+14155550100", CALL_UUID)
    no_to = json.dumps({"from": "14155550100", "uuid": CALL_UUID}).encode()
    with pytest.raises(ProtocolError, match="called number"):
        provider.parse_inbound(answer("POST", body=no_to, query={"to": "442079469999"}))
    for bad in (b"", b"[1]", b"{"):
        with pytest.raises(ProtocolError, match="JSON object"):
            provider.parse_inbound(answer("POST", body=bad, query={"to": "442079460000", "uuid": CALL_UUID}))


def test_get_answers_come_in_the_query_and_numbers_get_their_plus(provider):
    call = provider.parse_inbound(
        answer("GET", query={"to": "442079460000", "from": "Unknown", "uuid": CALL_UUID})
    )
    assert (call.to, call.from_, call.provider_call_id) == ("+442079460000", "Unknown", CALL_UUID)
    call = provider.parse_inbound(answer("GET", query={"to": "+442079460000", "uuid": CALL_UUID}))
    assert (call.to, call.from_) == ("+442079460000", None)
    with pytest.raises(ProtocolError, match="call id"):
        provider.parse_inbound(answer("GET", query={"to": "442079460000"}))


def test_event_fields_the_service_does_not_read_never_make_it_unreadable(provider):
    ev = event(
        provider,
        {
            "status": "completed",
            "uuid": CALL_UUID,
            "duration": "12",
            "rate": "not a number",
            "start_time": 1736850000,
            "conversation_uuid": {"unexpected": True},
            "direction": 7,
            "sub_state": ["x"],
        },
    )
    assert ev is not None and ev.status is CallStatus.ENDED and ev.duration_seconds == 12
    dtmf = '{"event":"websocket:dtmf","digit":"5","duration":"250ms"}'
    assert VonageCodec().decode(dtmf) == MediaDtmf(digit="5")
