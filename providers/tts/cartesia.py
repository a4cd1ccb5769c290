"""Cartesia text-to-speech over REST (`POST /tts/bytes`), streamed.

Headers `X-API-Key` and `Cartesia-Version`; body `{model_id, transcript, voice: {mode: "id", id},
output_format: {container: "raw", encoding: "pcm_mulaw" | "pcm_s16le", sample_rate}, language}`.
Cartesia encodes both μ-law and PCM16 at 8/16/22.05/24/44.1/48 kHz, so the call's format is always
requested directly (other rates: PCM16 24 kHz, converted). Field names follow Cartesia's API
reference; the default `Cartesia-Version` is configurable because Cartesia dates its API versions.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import httpx

from providers.tts.base import output_stage, primary_language, stream_audio

if TYPE_CHECKING:
    from providers.telephony.base import MediaFormat

DEFAULT_BASE_URL = "https://api.cartesia.ai"
DEFAULT_VERSION = "2025-04-16"

_RATES = frozenset({8000, 16000, 22050, 24000, 44100, 48000})


class CartesiaTts:
    name = "cartesia"

    def __init__(
        self,
        api_key: str,
        *,
        http_client: httpx.AsyncClient,
        base_url: str = DEFAULT_BASE_URL,
        model: str = "sonic-2",
        version: str = DEFAULT_VERSION,
        timeout: float = 10.0,
    ) -> None:
        self.model = model
        self._api_key = api_key
        self._http = http_client
        self._url = f"{base_url.rstrip('/')}/tts/bytes"
        self._version = version
        self._timeout = httpx.Timeout(timeout, connect=5.0)

    async def synthesize(
        self, text: str, *, voice_id: str, fmt: MediaFormat, language: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        if fmt.sample_rate in _RATES:
            encoding = "pcm_mulaw" if fmt.encoding == "mulaw" else "pcm_s16le"
            rate = fmt.sample_rate
        else:
            encoding, rate = "pcm_s16le", 24000
        stage = output_stage(rate, encoding == "pcm_s16le", fmt)
        body: dict[str, Any] = {
            "model_id": self.model,
            "transcript": text,
            "voice": {"mode": "id", "id": voice_id},
            "output_format": {"container": "raw", "encoding": encoding, "sample_rate": rate},
        }
        code = primary_language(language)
        if code:
            body["language"] = code
        audio = stream_audio(
            self._http,
            "cartesia",
            self._url,
            headers={"X-API-Key": self._api_key, "Cartesia-Version": self._version},
            json=body,
            http_timeout=self._timeout,
        )
        async with aclosing(audio) as chunks:
            async for chunk in chunks:
                out = stage.push(chunk)
                if out:
                    yield out
        tail = stage.flush()
        if tail:
            yield tail

    async def aclose(self) -> None:
        """The shared HTTP client belongs to the caller."""
