"""Google Cloud Text-to-Speech adapter on Google's REST wire format (respx at the transport): the request,
the WAV header stripped from `audioContent`, error mapping, and how its usage is priced."""

from __future__ import annotations

import asyncio
import base64
import struct
from decimal import Decimal
from pathlib import Path

import httpx
import msgspec
import pytest
import respx

from analysis import catalog_default
from analysis.pricing import price_usage
from analysis.usage import UsageMeter
from providers.audio import pcm16_to_ulaw, ulaw_to_pcm16
from providers.telephony.base import MediaFormat
from providers.tts.base import TtsError
from providers.tts.google import DEFAULT_MODEL, GoogleTts, parse_wav, voice_language, voice_model
from providers.tts.registry import TTS_PROVIDERS, build_tts_provider
from tests.fakes.server import pcm16_tone
from voice_service.settings import load_settings

BASE = "https://texttospeech.googleapis.com"
URL = f"{BASE}/v1/text:synthesize"
MULAW_8K = MediaFormat(encoding="mulaw", sample_rate=8000)
L16_16K = MediaFormat(encoding="l16", sample_rate=16000)
TEXT = "Your table for two is booked for eight tonight."

SQL_FILE = Path(__file__).resolve().parents[2] / "sql" / "0034_google_tts_pricing.sql"


def wav(samples: bytes, *, code: int, rate: int, bits: int, extra_chunks: bytes = b"") -> bytes:
    """A WAV file as Google sends it; `extra_chunks` (e.g. LIST) sit between fmt and data, so the header
    is not the textbook 44 bytes."""
    width = bits // 8
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, code, 1, rate, rate * width, width, bits)
    data = struct.pack("<4sI", b"data", len(samples)) + samples
    body = b"WAVE" + fmt + extra_chunks + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def list_chunk(payload: bytes) -> bytes:
    """An odd-sized chunk: RIFF pads it to an even length, which the parser must skip too."""
    return struct.pack("<4sI", b"LIST", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")


def audio_response(blob: bytes) -> httpx.Response:
    return httpx.Response(200, json={"audioContent": base64.b64encode(blob).decode(), "timepoints": []})


def google_error(status: int, reason: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": status, "message": message, "status": reason}})


async def synthesize(tts: GoogleTts, fmt: MediaFormat, voice: str = "en-US-Neural2-F", **kw: str) -> bytes:
    async with asyncio.timeout(5):
        return b"".join([c async for c in tts.synthesize(TEXT, voice_id=voice, fmt=fmt, **kw)])


@respx.mock
async def test_twilio_call_asks_for_mulaw_8k_and_gets_the_samples_without_the_wav_header() -> None:
    ulaw = pcm16_to_ulaw(pcm16_tone(0.5, rate=8000, freq=330.0))
    blob = wav(ulaw, code=7, rate=8000, bits=8, extra_chunks=list_chunk(b"INFOISFTLavf"))
    route = respx.post(URL).mock(return_value=audio_response(blob))
    async with httpx.AsyncClient() as http:
        audio = await synthesize(GoogleTts("g-key", http_client=http), MULAW_8K, language="fr-FR")

    assert audio == ulaw and len(blob) - len(audio) > 44  # the whole header went, no more
    request = route.calls.last.request
    assert request.headers["x-goog-api-key"] == "g-key"
    assert "key" not in request.url.params  # the key stays out of URLs (and access logs)
    assert msgspec.json.decode(request.content) == {
        "input": {"text": TEXT},
        "voice": {"languageCode": "en-US", "name": "en-US-Neural2-F"},  # from the voice, not the agent
        "audioConfig": {"audioEncoding": "MULAW", "sampleRateHertz": 8000},
    }


@respx.mock
async def test_vonage_call_asks_for_linear16_at_the_call_rate() -> None:
    pcm = pcm16_tone(0.5, rate=16000, freq=330.0)
    blob = wav(pcm, code=1, rate=16000, bits=16, extra_chunks=list_chunk(b"odd"))
    route = respx.post(f"http://127.0.0.1:9/proxy{URL.removeprefix(BASE)}").mock(
        return_value=audio_response(blob)
    )
    async with httpx.AsyncClient() as http:
        tts = GoogleTts("g-key", http_client=http, base_url="http://127.0.0.1:9/proxy/")
        audio = await synthesize(tts, L16_16K, voice="cmn-CN-Wavenet-A")

    assert audio == pcm
    sent = msgspec.json.decode(route.calls.last.request.content)
    assert sent["voice"] == {"languageCode": "cmn-CN", "name": "cmn-CN-Wavenet-A"}
    assert sent["audioConfig"] == {"audioEncoding": "LINEAR16", "sampleRateHertz": 16000}


@respx.mock
async def test_a_rate_google_did_not_honour_is_converted_to_the_call_format() -> None:
    pcm_24k = pcm16_tone(0.6, rate=24000, freq=330.0)
    respx.post(URL).mock(return_value=audio_response(wav(pcm_24k, code=1, rate=24000, bits=16)))
    async with httpx.AsyncClient() as http:
        audio = await synthesize(GoogleTts("g-key", http_client=http), MULAW_8K)
    assert len(audio) == pytest.approx(0.6 * 8000, abs=2)  # μ-law at 8 kHz: one byte a sample
    decoded = ulaw_to_pcm16(audio)
    samples = struct.unpack(f"<{len(decoded) // 2}h", decoded)[800:-800]
    assert 6000 < max(samples) < 9000  # the tone's amplitude (8000) survived resampling and μ-law


@respx.mock
async def test_no_voice_name_uses_the_agent_language() -> None:
    route = respx.post(URL).mock(return_value=audio_response(wav(b"\xff" * 80, code=7, rate=8000, bits=8)))
    async with httpx.AsyncClient() as http:
        await synthesize(GoogleTts("g-key", http_client=http), MULAW_8K, voice="", language="de-DE")
        await synthesize(GoogleTts("g-key", http_client=http), MULAW_8K, voice="")
    voices = [msgspec.json.decode(c.request.content)["voice"] for c in route.calls]
    assert voices == [{"languageCode": "de-DE"}, {"languageCode": "en-US"}]


@respx.mock
async def test_text_over_5000_bytes_is_split_into_requests_at_sentence_ends() -> None:
    sentence = "Ça coûte deux cents euros. "  # multi-byte characters count double against the limit
    text = sentence * 180
    assert len(text) < 5000 < len(text.encode())  # under the limit in characters, over it in bytes
    route = respx.post(URL).mock(return_value=audio_response(wav(b"\x7f" * 8, code=7, rate=8000, bits=8)))
    async with httpx.AsyncClient() as http:
        tts = GoogleTts("g-key", http_client=http)
        chunks = [c async for c in tts.synthesize(text, voice_id="fr-FR-Neural2-A", fmt=MULAW_8K)]

    pieces = [msgspec.json.decode(c.request.content)["input"]["text"] for c in route.calls]
    assert len(pieces) > 1 and all(len(p.encode()) <= 5000 for p in pieces)
    assert all(p.endswith("euros.") for p in pieces)
    assert " ".join(pieces) == text.strip()
    assert chunks == [b"\x7f" * 8] * len(pieces)


@pytest.mark.parametrize(
    ("response", "status", "retryable", "detail"),
    [
        (google_error(400, "INVALID_ARGUMENT", "API key not valid."), 400, False, "INVALID_ARGUMENT"),
        (google_error(403, "PERMISSION_DENIED", "API not enabled"), 403, False, "API not enabled"),
        (google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"), 429, True, "RESOURCE_EXHAUSTED"),
        (google_error(503, "UNAVAILABLE", "The service is unavailable."), 503, True, "UNAVAILABLE"),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), 502, True, "Bad Gateway"),
    ],
)
@respx.mock
async def test_error_answers_become_tts_errors(
    response: httpx.Response, status: int, retryable: bool, detail: str
) -> None:
    respx.post(URL).mock(return_value=response)
    async with httpx.AsyncClient() as http:
        with pytest.raises(TtsError) as info:
            await synthesize(GoogleTts("g-key", http_client=http), MULAW_8K)
    assert (info.value.status, info.value.retryable) == (status, retryable)
    assert detail in str(info.value) and str(info.value).startswith("google TTS HTTP")


@pytest.mark.parametrize(
    ("outcome", "retryable"),
    [
        (httpx.ReadTimeout("slow"), True),
        (httpx.ConnectError("refused"), True),
        (httpx.Response(200, json={"timepoints": []}), False),  # no audio at all
        (httpx.Response(200, text='{"audioContent": "not base64!"}'), True),
        (
            httpx.Response(
                200, json={"audioContent": base64.b64encode(b"RIFF\x04\x00\x00\x00WAVE").decode()}
            ),
            False,
        ),
    ],
)
@respx.mock
async def test_transport_failures_and_unusable_answers_raise_tts_errors(
    outcome: Exception | httpx.Response, retryable: bool
) -> None:
    route = respx.post(URL)
    if isinstance(outcome, Exception):
        route.mock(side_effect=outcome)
    else:
        route.mock(return_value=outcome)
    async with httpx.AsyncClient() as http:
        with pytest.raises(TtsError) as info:
            await synthesize(GoogleTts("g-key", http_client=http), MULAW_8K)
    assert info.value.retryable is retryable


def test_wav_parsing_and_voice_names() -> None:
    assert parse_wav(b"\xff\xfe raw mulaw") is None
    parsed = parse_wav(wav(b"\x01\x02\x03\x04", code=1, rate=24000, bits=16, extra_chunks=list_chunk(b"x")))
    assert parsed is not None and (parsed.format_code, parsed.sample_rate, parsed.data) == (
        1,
        24000,
        b"\x01\x02\x03\x04",
    )
    # A streaming writer's "unknown length" data size means "to the end of the file".
    streamed = wav(b"", code=7, rate=8000, bits=8)[:-4] + struct.pack("<I", 0xFFFFFFFF) + b"\xff" * 10
    assert parse_wav(streamed) is not None and parse_wav(streamed).data == b"\xff" * 10  # type: ignore[union-attr]
    assert voice_language("en-US-Chirp3-HD-Charon") == "en-US" and voice_language("alloy") is None
    assert voice_model("en-GB-Wavenet-B") == "en-GB-Wavenet-B" and voice_model("") == DEFAULT_MODEL


@respx.mock
async def test_registry_and_settings_build_the_google_adapter() -> None:
    settings = load_settings(env={"GOOGLE_TTS_API_KEY": "env-key"})
    assert settings.google_tts_base_url == BASE and "google" in TTS_PROVIDERS
    route = respx.post(URL).mock(return_value=audio_response(wav(b"\xff" * 160, code=7, rate=8000, bits=8)))
    async with httpx.AsyncClient() as http:
        tts = build_tts_provider(
            "google",
            http_client=http,
            model=voice_model("en-US-Neural2-F"),
            google_tts_api_key=settings.google_tts_api_key,
            google_tts_base_url=settings.google_tts_base_url,
        )
        assert (tts.name, tts.model) == ("google", "en-US-Neural2-F")
        assert await synthesize(tts, MULAW_8K) == b"\xff" * 160  # type: ignore[arg-type]
        await tts.aclose()
        assert build_tts_provider("google", http_client=http, google_tts_api_key="k").model == DEFAULT_MODEL
        with pytest.raises(ValueError, match="GOOGLE_TTS_API_KEY"):
            build_tts_provider("google", http_client=http)
    assert route.calls.last.request.headers["x-goog-api-key"] == "env-key"


@pytest.mark.parametrize(
    ("model", "cost"),
    [
        ("en-US-Standard-C", "0.004000"),
        ("en-US-Wavenet-D", "0.004000"),
        ("en-US-Neural2-F", "0.016000"),
        ("en-US-Chirp3-HD-Charon", "0.030000"),
        ("en-US-Studio-O", "0.160000"),
        (DEFAULT_MODEL, "0.016000"),  # tier unknown: priced as Neural2
    ],
)
def test_google_characters_are_priced_by_the_voice_tier(model: str, cost: str) -> None:
    meter = UsageMeter()
    meter.add_tts("google", model, 600)
    meter.add_tts("google", model, 400)  # two sentences: metered as one line per provider/model
    breakdown = price_usage(
        meter, catalog_default.GOOGLE_TTS_PRICES, at=catalog_default.EFFECTIVE_FROM, tenant_id=None
    )
    [item] = breakdown.items
    assert item.quantity == Decimal(1000) and str(item.cost) == cost and item.warning is None


def test_google_pricing_migration_is_generated_from_the_python_catalog() -> None:
    assert SQL_FILE.read_text() == catalog_default.render_google_tts_sql(), (
        "regenerate: .venv/bin/python -m analysis.catalog_default 0034 > sql/0034_google_tts_pricing.sql"
    )
    ids = {r.id for r in catalog_default.DEFAULT_PRICES}
    assert all(r.id not in ids and "http" in r.description for r in catalog_default.GOOGLE_TTS_PRICES)
