"""TTS adapters against the local TTS and OpenAI fakes, over real HTTP: format, length, errors."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest

from providers.telephony.base import MediaFormat
from providers.tts.base import TtsError, TtsProvider
from providers.tts.cartesia import CartesiaTts
from providers.tts.deepgram import DeepgramTts
from providers.tts.elevenlabs import ElevenLabsTts
from providers.tts.openai import OpenAiTts
from providers.tts.registry import TTS_PROVIDERS, build_tts_provider
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Fault, LocalServer, PathRouter, audioop
from tests.fakes.tts import FakeTts

MULAW_8K = MediaFormat(encoding="mulaw", sample_rate=8000)
L16_16K = MediaFormat(encoding="l16", sample_rate=16000)
TEXT = "Your table for two is booked for eight tonight."  # 47 characters → 2.82 s at 0.06 s/char
SECONDS = len(TEXT) * 0.06
VOICES = {"openai": "alloy", "google": "en-US-Neural2-F"}  # providers that check the voice's form


@contextlib.asynccontextmanager
async def servers(tts: FakeTts | None = None, oai: FakeOpenAI | None = None) -> AsyncIterator[dict[str, str]]:
    app = PathRouter({"/v1/audio": oai or FakeOpenAI(), "/": tts or FakeTts()})
    async with LocalServer(app) as srv:
        yield {"http": srv.http_url}


async def synthesize(
    provider: TtsProvider, fmt: MediaFormat, voice: str = "voice-1", **kw: str
) -> list[bytes]:
    async with asyncio.timeout(10):
        return [chunk async for chunk in provider.synthesize(TEXT, voice_id=voice, fmt=fmt, **kw)]


def as_pcm(audio: bytes, fmt: MediaFormat) -> bytes:
    return audioop.ulaw2lin(audio, 2) if fmt.encoding == "mulaw" else audio


def assert_clean_tone(pcm: bytes, fmt: MediaFormat, freq: float, amplitude: int = 8000) -> None:
    """The tone survived intact: right loudness, and once the best-fitting sine is removed only
    quantization noise is left (μ-law steps are 256 at this level). Resampling each chunk on its own
    leaves errors of ~50 at chunk edges, a dropped odd byte ~30000."""
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    x = x[len(x) // 8 : len(x) - len(x) // 8]
    t = np.arange(len(x)) / fmt.sample_rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    fitted = basis @ coef
    assert np.sqrt(np.mean(fitted**2)) == pytest.approx(amplitude / math.sqrt(2), rel=0.05)
    assert np.max(np.abs(x - fitted)) < (180 if fmt.encoding == "mulaw" else 20)


@pytest.mark.parametrize(("fmt", "encoding"), [(MULAW_8K, "mulaw"), (L16_16K, "linear16")])
async def test_deepgram_aura_streams_the_call_format_without_a_container(
    fmt: MediaFormat, encoding: str
) -> None:
    fake = FakeTts(chunk_ms=40)
    async with servers(tts=fake) as urls, httpx.AsyncClient() as http:
        tts = DeepgramTts("test-key", http_client=http, base_url=urls["http"])
        chunks = await synthesize(tts, fmt, voice="aura-2-andromeda-en")

    request = fake.requests[0]
    assert request.query == {
        "model": "aura-2-andromeda-en",
        "encoding": encoding,
        "sample_rate": str(fmt.sample_rate),
        "container": "none",
    }
    assert request.json == {"text": TEXT}
    audio = b"".join(chunks)
    width = 1 if fmt.encoding == "mulaw" else 2
    assert len(audio) == round(SECONDS * fmt.sample_rate) * width == request.extra["audio_bytes"]
    assert len(chunks) > 1 and all(len(c) % width == 0 for c in chunks)
    assert_clean_tone(as_pcm(audio, fmt), fmt, 330.0)


async def test_elevenlabs_asks_for_ulaw_8000_with_key_model_and_language() -> None:
    fake = FakeTts()
    async with servers(tts=fake) as urls, httpx.AsyncClient() as http:
        tts = ElevenLabsTts("test-key", http_client=http, base_url=urls["http"])
        audio = b"".join(await synthesize(tts, MULAW_8K, voice="JBFqnCBsd6RMkjVDRZzb", language="en-US"))

    request = fake.requests[0]
    assert request.path == "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb/stream"
    assert request.query == {"output_format": "ulaw_8000"}
    assert request.headers["xi-api-key"] == "test-key"
    assert request.json == {"text": TEXT, "model_id": "eleven_flash_v2_5", "language_code": "en"}
    assert len(audio) == round(SECONDS * 8000)
    assert_clean_tone(audioop.ulaw2lin(audio, 2), MULAW_8K, 330.0)


async def test_elevenlabs_pcm_call_gets_pcm_at_the_call_rate() -> None:
    fake = FakeTts()
    async with servers(tts=fake) as urls, httpx.AsyncClient() as http:
        tts = ElevenLabsTts(
            "test-key", http_client=http, base_url=urls["http"], model="eleven_multilingual_v2"
        )
        audio = b"".join(await synthesize(tts, L16_16K, language="fr"))
    assert fake.requests[0].query == {"output_format": "pcm_16000"}
    assert "language_code" not in fake.requests[0].json
    assert len(audio) == round(SECONDS * 16000) * 2


@pytest.mark.parametrize(("fmt", "encoding"), [(MULAW_8K, "pcm_mulaw"), (L16_16K, "pcm_s16le")])
async def test_cartesia_bytes_request_carries_voice_output_format_and_version(
    fmt: MediaFormat, encoding: str
) -> None:
    fake = FakeTts()
    async with servers(tts=fake) as urls, httpx.AsyncClient() as http:
        tts = CartesiaTts("test-key", http_client=http, base_url=urls["http"])
        audio = b"".join(await synthesize(tts, fmt, voice="a0e99841-438c", language="en-GB"))

    request = fake.requests[0]
    assert request.headers["x-api-key"] == "test-key"
    assert request.headers["cartesia-version"] == "2025-04-16"
    assert request.json == {
        "model_id": "sonic-2",
        "transcript": TEXT,
        "voice": {"mode": "id", "id": "a0e99841-438c"},
        "output_format": {"container": "raw", "encoding": encoding, "sample_rate": fmt.sample_rate},
        "language": "en",
    }
    width = 1 if fmt.encoding == "mulaw" else 2
    assert len(audio) == round(SECONDS * fmt.sample_rate) * width
    assert_clean_tone(as_pcm(audio, fmt), fmt, 330.0)


@pytest.mark.parametrize("fmt", [MULAW_8K, L16_16K])
async def test_openai_pcm_24k_is_resampled_in_a_stream_to_the_call_format(fmt: MediaFormat) -> None:
    oai = FakeOpenAI(speech_chunk_bytes=4801)  # odd chunks split samples
    async with servers(oai=oai) as urls, httpx.AsyncClient() as http:
        tts = OpenAiTts("test-key", http_client=http, base_url=f"{urls['http']}/v1")
        chunks = await synthesize(tts, fmt, voice="alloy")

    sent = oai.requests[0].json
    assert sent == {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": TEXT, "response_format": "pcm"}
    width = 1 if fmt.encoding == "mulaw" else 2
    assert all(len(c) % width == 0 for c in chunks)
    audio = b"".join(chunks)
    expected_samples = round(len(TEXT) * 0.06 * 24000) * fmt.sample_rate / 24000
    assert len(audio) / width == pytest.approx(expected_samples, abs=2)
    assert_clean_tone(as_pcm(audio, fmt), fmt, 220.0)


@pytest.mark.parametrize(
    ("fault", "status", "retryable"),
    [(Fault.http(500), 500, True), (Fault.http(429), 429, True), (Fault.http(400), 400, False)],
)
async def test_http_errors_become_tts_errors(fault: Fault, status: int, retryable: bool) -> None:
    async with servers(tts=FakeTts(faults=[fault])) as urls, httpx.AsyncClient() as http:
        tts = DeepgramTts("test-key", http_client=http, base_url=urls["http"])
        with pytest.raises(TtsError) as info:
            await synthesize(tts, MULAW_8K)
    assert info.value.status == status and info.value.retryable is retryable


async def test_rejected_key_is_not_retryable() -> None:
    async with servers() as urls, httpx.AsyncClient() as http:
        tts = CartesiaTts("wrong", http_client=http, base_url=urls["http"])
        with pytest.raises(TtsError) as info:
            await synthesize(tts, MULAW_8K)
    assert info.value.status == 401 and not info.value.retryable


@pytest.mark.parametrize("fault", [Fault.hang(0), Fault.hang(2), Fault.cut(2)])
async def test_hangs_and_cut_streams_raise_retryable_errors(fault: Fault) -> None:
    async with servers(tts=FakeTts(faults=[fault])) as urls, httpx.AsyncClient() as http:
        tts = ElevenLabsTts("test-key", http_client=http, base_url=urls["http"], timeout=0.3)
        with pytest.raises(TtsError) as info:
            await synthesize(tts, MULAW_8K)
    assert info.value.retryable


async def test_openai_speech_errors_become_tts_errors() -> None:
    async with servers(oai=FakeOpenAI(speech_faults=[Fault.http(503)])) as urls, httpx.AsyncClient() as http:
        tts = OpenAiTts("test-key", http_client=http, base_url=f"{urls['http']}/v1")
        with pytest.raises(TtsError) as info:
            await synthesize(tts, MULAW_8K)
    assert info.value.status == 503 and info.value.retryable


async def test_abandoning_a_synthesis_releases_the_stream_at_once() -> None:
    fake = FakeTts(inter_chunk_delay=0.05)
    async with servers(tts=fake) as urls, httpx.AsyncClient() as http:
        tts = DeepgramTts("test-key", http_client=http, base_url=urls["http"])
        stream = tts.synthesize(TEXT, voice_id="aura-2-thalia-en", fmt=MULAW_8K)
        first = await anext(stream)
        await stream.aclose()  # barge-in
        await asyncio.sleep(0.2)
    assert len(first) == 800  # one 100 ms chunk of μ-law 8 kHz
    assert fake.requests[0].disconnected


async def test_registry_builds_each_provider_against_its_base_url() -> None:
    fake = FakeTts()
    async with servers(tts=fake) as urls, httpx.AsyncClient() as http:
        keys = {
            "deepgram_api_key": "test-key",
            "openai_api_key": "test-key",
            "elevenlabs_api_key": "test-key",
            "cartesia_api_key": "test-key",
            "deepgram_base_url": urls["http"],
            "openai_base_url": f"{urls['http']}/v1",
            "elevenlabs_base_url": urls["http"],
            "cartesia_base_url": urls["http"],
            "google_tts_api_key": "test-key",
            "google_tts_base_url": urls["http"],
        }
        for name in TTS_PROVIDERS:
            provider = build_tts_provider(name, http_client=http, **keys)
            assert provider.name == name
            audio = b"".join(await synthesize(provider, MULAW_8K, voice=VOICES.get(name, "v1")))
            assert len(audio) == pytest.approx(SECONDS * 8000, abs=2)
            await provider.aclose()
        custom = build_tts_provider("cartesia", http_client=http, model="sonic-turbo", **keys)
        assert custom.model == "sonic-turbo"

    with pytest.raises(ValueError, match="unknown TTS provider"):
        build_tts_provider("polly", http_client=http)
    with pytest.raises(ValueError, match="ELEVENLABS_API_KEY"):
        build_tts_provider("elevenlabs", http_client=http)
