"""ElevenLabs streaming text-to-speech (`POST /v1/text-to-speech/{voice_id}/stream`).

The output format is a query parameter: `ulaw_8000` for Twilio-style calls, `pcm_<rate>` (PCM16LE
mono) for linear calls at 8/16/22.05/24/44.1/48 kHz. μ-law at another rate is produced from
`pcm_<rate>`. Auth is the `xi-api-key` header; the body is `{text, model_id}` plus `language_code`
(ISO 639-1) for the models that accept it (per ElevenLabs' docs only the v2.5 Flash/Turbo models
enforce a language; not verified against the live API).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import httpx

from providers.tts.base import output_stage, primary_language, stream_audio

if TYPE_CHECKING:
    from providers.telephony.base import MediaFormat

DEFAULT_BASE_URL = "https://api.elevenlabs.io"

_PCM_RATES = frozenset({8000, 16000, 22050, 24000, 44100, 48000})
_LANGUAGE_MODELS = ("eleven_flash_v2_5", "eleven_turbo_v2_5")


class ElevenLabsTts:
    name = "elevenlabs"

    def __init__(
        self,
        api_key: str,
        *,
        http_client: httpx.AsyncClient,
        base_url: str = DEFAULT_BASE_URL,
        model: str = "eleven_flash_v2_5",
        timeout: float = 10.0,
    ) -> None:
        self.model = model
        self._api_key = api_key
        self._http = http_client
        self._base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(timeout, connect=5.0)

    async def synthesize(
        self, text: str, *, voice_id: str, fmt: MediaFormat, language: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        if fmt.encoding == "mulaw" and fmt.sample_rate == 8000:
            output_format, rate, pcm = "ulaw_8000", 8000, False
        elif fmt.sample_rate in _PCM_RATES:
            output_format, rate, pcm = f"pcm_{fmt.sample_rate}", fmt.sample_rate, True
        else:
            output_format, rate, pcm = "pcm_24000", 24000, True
        stage = output_stage(rate, pcm, fmt)
        body: dict[str, Any] = {"text": text, "model_id": self.model}
        code = primary_language(language)
        if code and self.model in _LANGUAGE_MODELS:
            body["language_code"] = code
        audio = stream_audio(
            self._http,
            "elevenlabs",
            f"{self._base_url}/v1/text-to-speech/{voice_id}/stream",
            headers={"xi-api-key": self._api_key},
            json=body,
            params={"output_format": output_format},
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
