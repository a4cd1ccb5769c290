"""Twilio wire formats: Media Streams frames both ways, status callbacks, signatures, TwiML."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from twilio.request_validator import RequestValidator

from providers.telephony.base import (
    STATUS_RANK,
    CallStatus,
    MediaAudio,
    MediaDtmf,
    MediaFormat,
    MediaIgnored,
    MediaMark,
    MediaStarted,
    MediaStopped,
    ProtocolError,
    WebhookRequest,
    is_status_advance,
)
from providers.telephony.twilio import TwilioCodec, TwilioProvider, parse_shared_keys

STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA8d3b8f0e1f5d4c9e8b1a2f3e4d5c6b7a"
AUDIO = bytes(range(160))  # one 20 ms μ-law frame

CONNECTED = '{"event":"connected","protocol":"Call","version":"1.0.0"}'
START = (
    '{"event":"start","sequenceNumber":"1","streamSid":"' + STREAM + '","start":{"accountSid":"AC123",'
    '"streamSid":"' + STREAM + '","callSid":"' + CALL + '","tracks":["inbound"],'
    '"customParameters":{"call_id":"0193a0c4-7d1e-7000-8000-000000000001","token":"tok_abc"},'
    '"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}'
)
MEDIA = (
    '{"event":"media","sequenceNumber":"3","streamSid":"' + STREAM + '","media":{"track":"inbound",'
    '"chunk":"1","timestamp":"5","payload":"' + base64.b64encode(AUDIO).decode() + '"}}'
)
DTMF = (
    '{"event":"dtmf","sequenceNumber":"5","streamSid":"'
    + STREAM
    + '","dtmf":{"track":"inbound_track","digit":"1"}}'
)
MARK = '{"event":"mark","sequenceNumber":"4","streamSid":"' + STREAM + '","mark":{"name":"utt-17"}}'
STOP = (
    '{"event":"stop","sequenceNumber":"6","streamSid":"' + STREAM + '","stop":{"accountSid":"AC123",'
    '"callSid":"' + CALL + '"}}'
)


@pytest.fixture
def codec() -> TwilioCodec:
    return TwilioCodec()


@pytest.fixture
def provider() -> TwilioProvider:
    return TwilioProvider("AC123", "12345")


# --- Media Streams: inbound ---


def test_connected_is_ignored(codec):
    assert codec.decode(CONNECTED) == MediaIgnored(reason="connected")
    assert codec.format is None


def test_start_gives_call_parameters_stream_and_format(codec):
    event = codec.decode(START)
    assert event == MediaStarted(
        call_id="0193a0c4-7d1e-7000-8000-000000000001",
        token="tok_abc",
        stream_id=STREAM,
        provider_call_id=CALL,
        format=MediaFormat(encoding="mulaw", sample_rate=8000, channels=1),
        custom={"call_id": "0193a0c4-7d1e-7000-8000-000000000001", "token": "tok_abc"},
    )
    assert codec.format == MediaFormat(encoding="mulaw", sample_rate=8000)
    assert codec.stream_sid == STREAM


def test_media_payload_is_raw_ulaw(codec):
    assert codec.decode(MEDIA) == MediaAudio(payload=AUDIO)
    assert codec.decode(MEDIA.encode()) == MediaAudio(payload=AUDIO)  # bytes frames too


def test_dtmf_mark_stop(codec):
    assert codec.decode(DTMF) == MediaDtmf(digit="1")
    assert codec.decode(MARK) == MediaMark(name="utt-17")
    assert codec.decode(STOP) == MediaStopped()


def test_unknown_fields_and_unknown_events_are_tolerated(codec):
    extra = json.loads(MARK)
    extra["newField"] = {"x": 1}
    extra["mark"]["more"] = True
    assert codec.decode(json.dumps(extra)) == MediaMark(name="utt-17")
    assert codec.decode('{"event":"transcription","streamSid":"MZ1"}') == MediaIgnored(
        reason="unknown event 'transcription'"
    )


def test_fields_the_service_does_not_read_decode_whatever_their_type(codec):
    """sequenceNumber, chunk and timestamp are documented as strings: numbers (or anything else) must not cost the
    frame, since the service never reads them."""
    start = json.loads(START)
    start["sequenceNumber"] = 1
    start["start"]["tracks"] = "inbound"
    start["start"]["accountSid"] = None
    assert isinstance(codec.decode(json.dumps(start)), MediaStarted)
    media = json.loads(MEDIA)
    media["sequenceNumber"], media["media"]["chunk"], media["media"]["timestamp"] = 3, 1, 5
    media["media"]["track"] = 0
    assert codec.decode(json.dumps(media)) == MediaAudio(payload=AUDIO)
    for frame, expected in (
        (DTMF, MediaDtmf(digit="1")),
        (MARK, MediaMark(name="utt-17")),
        (STOP, MediaStopped()),
    ):
        numeric = json.loads(frame)
        numeric["sequenceNumber"] = int(numeric["sequenceNumber"])
        numeric["streamSid"] = None
        assert codec.decode(json.dumps(numeric)) == expected
    connected = json.loads(CONNECTED)
    connected["version"] = 1.0
    assert codec.decode(json.dumps(connected)) == MediaIgnored(reason="connected")


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        '{"no_event":1}',
        '{"event":"media","streamSid":"MZ1"}',  # known event, body missing
        '{"event":"media","media":{"payload":"***not base64***"}}',
        '{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1",'
        '"mediaFormat":{"encoding":"audio/x-l16","sampleRate":8000,"channels":1}}}',
    ],
)
def test_malformed_frames_raise_protocol_error(codec, frame):
    with pytest.raises(ProtocolError):
        codec.decode(frame)


# --- Media Streams: outbound (only media, mark and clear may be sent) ---


def test_outbound_frames_match_the_documented_json(codec):
    codec.decode(START)
    assert codec.encode_audio(AUDIO) == (
        '{"event":"media","streamSid":"'
        + STREAM
        + '","media":{"payload":"'
        + base64.b64encode(AUDIO).decode()
        + '"}}'
    )
    assert (
        codec.encode_mark("utt-17")
        == '{"event":"mark","streamSid":"' + STREAM + '","mark":{"name":"utt-17"}}'
    )
    assert codec.encode_clear() == '{"event":"clear","streamSid":"' + STREAM + '"}'
    assert isinstance(codec.encode_audio(AUDIO), str)  # Twilio frames are text frames


def test_nothing_can_be_sent_before_start(codec):
    with pytest.raises(ProtocolError):
        codec.encode_audio(AUDIO)
    with pytest.raises(ProtocolError):
        codec.encode_clear()


# --- signatures ---


def webhook(url: str, form: dict[str, str], signature: str | None, method: str = "POST") -> WebhookRequest:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    return WebhookRequest(url=url, method=method, headers=headers, body=b"", form=form)


def test_known_answer_signature(provider):
    form = {"CallSid": "CA1", "From": "+1555"}
    good = webhook("https://example.com/voice", form, "gVQFB32LVIBlKnVDsJUmY5defnk=")
    assert provider.verify_webhook(good)


def test_signature_rejections(provider):
    form = {"CallSid": "CA1", "From": "+1555"}
    sig = "gVQFB32LVIBlKnVDsJUmY5defnk="
    assert not provider.verify_webhook(webhook("https://example.com/voice", form, None))
    assert not provider.verify_webhook(webhook("https://example.com/voice", form, ""))
    assert not provider.verify_webhook(webhook("https://example.com/voice", {**form, "From": "+1556"}, sig))
    assert not provider.verify_webhook(webhook("https://example.com/voice?x=1", form, sig))
    assert not TwilioProvider("AC123", "other-token").verify_webhook(
        webhook("https://example.com/voice", form, sig)
    )


def _hmac_sha256(secret: str, url: str, form: dict[str, str]) -> str:
    """Twilio's signature (URL + each sorted param name and value), HMAC-SHA256, computed here by hand."""
    data = url + "".join(name + form[name] for name in sorted(form))
    return base64.b64encode(hmac.new(secret.encode(), data.encode(), hashlib.sha256).digest()).decode()


def test_webhook_signature_settings_hmac_sha256_with_a_shared_key():
    provider = TwilioProvider(
        "AC123", "12345", webhook_shared_keys={"KS_rotated": "old", "KS_current": "fresh"}
    )
    url, form = "https://example.com/voice", {"CallSid": "CA1", "From": "+1555"}

    def signed(signature: str, settings: str | None) -> WebhookRequest:
        req = webhook(url, form, signature)
        headers = dict(req.headers)
        if settings is not None:
            headers["x-twilio-webhooks-signature-settings"] = settings
        return WebhookRequest(url=url, method="POST", headers=headers, body=b"", form=form)

    sha256 = "key=KS_current,algorithm=HMAC_SHA256"
    assert provider.verify_webhook(signed(_hmac_sha256("fresh", url, form), sha256))
    assert provider.verify_webhook(
        signed(_hmac_sha256("old", url, form), "key=KS_rotated,algorithm=HMAC_SHA256")
    )
    # An account that signs with its auth token under SHA-256 rules (no key of ours named).
    assert provider.verify_webhook(signed(_hmac_sha256("12345", url, form), "algorithm=HMAC_SHA256"))
    # SHA-1 under signature settings, with the named key.
    sha1 = RequestValidator("fresh").compute_signature(url, form)
    assert provider.verify_webhook(signed(sha1, "key=KS_current,algorithm=HMAC_SHA1"))
    # Refused: another key's secret, a body changed after signing, an algorithm nobody supports, the settings
    # header taken away (the SHA-256 signature is not an auth-token SHA-1 one), a key we do not have.
    assert not provider.verify_webhook(signed(_hmac_sha256("old", url, form), sha256))
    tampered = signed(_hmac_sha256("fresh", url, form), sha256)
    assert not provider.verify_webhook(
        WebhookRequest(
            url=url, method="POST", headers=tampered.headers, body=b"", form={**form, "From": "+1"}
        )
    )
    assert not provider.verify_webhook(
        signed(_hmac_sha256("fresh", url, form), "key=KS_current,algorithm=HMAC_MD5")
    )
    assert not provider.verify_webhook(signed(_hmac_sha256("fresh", url, form), None))
    assert not TwilioProvider("AC123", "12345").verify_webhook(
        signed(_hmac_sha256("fresh", url, form), sha256)
    )


def test_shared_keys_setting_is_parsed_strictly():
    assert parse_shared_keys(None) == {} and parse_shared_keys(" ") == {}
    assert parse_shared_keys("KS1:one, KS2:two") == {"KS1": "one", "KS2": "two"}
    for bad in ("KS1", "KS1:", ":secret", "KS1:one,KS2"):
        with pytest.raises(ValueError, match="key_id:secret"):
            parse_shared_keys(bad)


def test_get_webhooks_are_signed_on_the_url_alone(provider):
    url = "https://example.com/voice?CallSid=CA1&From=%2B1555"
    sig = RequestValidator("12345").compute_signature(url, {})
    assert provider.verify_webhook(webhook(url, {"CallSid": "CA1", "From": "+1555"}, sig, method="GET"))


# --- status callbacks ---


def status_request(form: dict[str, str], url: str = "https://svc.example.com/v1/telephony/twilio/status"):
    return WebhookRequest(url=url, method="POST", headers={}, body=b"", form=form)


@pytest.mark.parametrize(
    ("raw", "status", "end_reason", "final"),
    [
        ("queued", CallStatus.PENDING, None, False),
        ("initiated", CallStatus.PENDING, None, False),
        ("ringing", CallStatus.RINGING, None, False),
        ("in-progress", CallStatus.ONGOING, None, False),
        ("answered", CallStatus.ONGOING, None, False),
        ("completed", CallStatus.ENDED, None, True),
        ("busy", CallStatus.DECLINED, "busy", True),
        ("no-answer", CallStatus.DECLINED, "no_answer", True),
        ("canceled", CallStatus.CANCELLED, "canceled", True),
        ("failed", CallStatus.FAILED, "failed", True),
    ],
)
def test_status_mapping(provider, raw, status, end_reason, final):
    event = provider.parse_status(status_request({"CallSid": CALL, "CallStatus": raw, "SequenceNumber": "2"}))
    assert event is not None
    assert (event.status, event.raw_status, event.end_reason, event.is_final) == (
        status,
        raw,
        end_reason,
        final,
    )
    assert event.provider == "twilio"
    assert event.provider_call_id == CALL
    assert event.sequence == 2


def test_final_status_fields(provider):
    form = {
        "AccountSid": "AC123",
        "CallSid": CALL,
        "CallStatus": "completed",
        "SequenceNumber": "3",
        "Timestamp": "Tue, 14 Jan 2025 10:15:30 +0000",
        "CallDuration": "47",
        "AnsweredBy": "human",
        "SipResponseCode": "200",
        "Direction": "outbound-api",
    }
    url = "https://svc.example.com/v1/telephony/twilio/status?call_id=0193a0c4-7d1e-7000-8000-000000000001"
    event = provider.parse_status(status_request(form, url))
    assert event is not None
    assert event.occurred_at == datetime(2025, 1, 14, 10, 15, 30, tzinfo=UTC)
    assert event.duration_seconds == 47
    assert event.answered_by == "human"
    assert event.sip_response_code == 200
    assert event.call_id == "0193a0c4-7d1e-7000-8000-000000000001"
    assert event.price is None


def test_async_amd_callback_carries_answered_by(provider):
    form = {
        "AccountSid": "AC123",
        "CallSid": CALL,
        "AnsweredBy": "machine_start",
        "MachineDetectionDuration": "2100",
    }
    event = provider.parse_status(status_request(form))
    assert event is not None
    assert event.status is CallStatus.ONGOING
    assert event.raw_status == "amd"
    assert event.answered_by == "machine_start"
    assert event.sequence is None
    assert not event.is_final


def test_status_without_status_or_amd_is_ignored_and_without_sid_is_malformed(provider):
    assert provider.parse_status(status_request({"CallSid": CALL})) is None
    assert provider.parse_status(status_request({"CallSid": CALL, "CallStatus": "some-new-status"})) is None
    with pytest.raises(ProtocolError):
        provider.parse_status(status_request({"CallStatus": "ringing"}))
    with pytest.raises(ProtocolError):
        provider.parse_status(
            status_request({"CallSid": CALL, "CallStatus": "ringing", "SequenceNumber": "x"})
        )


# --- TwiML ---


def test_answer_stream_twiml(provider):
    content_type, body = provider.answer_stream(
        "wss://svc.example.com/v1/telephony/twilio/media", "0193a0c4-7d1e-7000-8000-000000000001", "tok_abc"
    )
    assert content_type == "text/xml"
    assert body == (
        b'<Response><Connect><Stream url="wss://svc.example.com/v1/telephony/twilio/media">'
        b'<Parameter name="call_id" value="0193a0c4-7d1e-7000-8000-000000000001"/>'
        b'<Parameter name="token" value="tok_abc"/>'
        b"</Stream></Connect></Response>"
    )


def test_twiml_escapes_attribute_and_text_values(provider):
    _, body = provider.answer_stream("wss://h/media", 'a"b', "<&>")
    assert b"value='a\"b'" in body
    assert b'value="&lt;&amp;&gt;"' in body
    content_type, reject = provider.answer_reject("Sorry <we> can't take calls & bye")
    assert content_type == "text/xml"
    assert reject == b"<Response><Say>Sorry &lt;we&gt; can't take calls &amp; bye</Say><Hangup/></Response>"


# --- status ordering (shared by every provider; lives in base.py) ---


def test_status_only_moves_forward_and_terminal_statuses_never_replace_each_other():
    order = [CallStatus.PENDING, CallStatus.RINGING, CallStatus.ONGOING, CallStatus.ENDED]
    for earlier, later in zip(order, order[1:], strict=False):
        assert is_status_advance(earlier, later)
        assert not is_status_advance(later, earlier)
    assert is_status_advance(CallStatus.PENDING, CallStatus.FAILED)
    assert not is_status_advance(CallStatus.ONGOING, CallStatus.ONGOING)
    terminal = [CallStatus.ENDED, CallStatus.DECLINED, CallStatus.CANCELLED, CallStatus.FAILED]
    for a in terminal:
        for b in terminal:
            assert not is_status_advance(a, b)
    assert set(STATUS_RANK) == set(CallStatus)
    assert [s.value for s in CallStatus] == [
        "pending",
        "ringing",
        "ongoing",
        "ended",
        "declined",
        "cancelled",
        "failed",
    ]
