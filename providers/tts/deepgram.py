"""Deepgram Aura text-to-speech over REST (`POST /v1/speak`), streamed.

Aura encodes μ-law (8/16 kHz) and linear16 (8–48 kHz) itself, so the call's format is requested
directly with `container=none` (the REST default container is WAV, whose 44-byte header would play as
a click). Any other rate is requested as linear16 24 kHz and converted. In Aura the voice is the
model (`aura-2-thalia-en`): `voice_id` selects it, `model` is the default when no voice is given.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING

import httpx

from providers.tts.base import output_stage, split_text, stream_audio

if TYPE_CHECKING:
    from providers.telephony.base import MediaFormat

DEFAULT_BASE_URL = "https://api.deepgram.com"
MAX_CHARACTERS = 2000  # Aura's per-request text limit

_MULAW_RATES = frozenset({8000, 16000})
_LINEAR16_RATES = frozenset({8000, 16000, 24000, 32000, 48000})


def http_base(base_url: str) -> str:
    """DEEPGRAM_BASE_URL may be given as wss:// (it also serves live STT); REST needs http(s)://."""
    if base_url.startswith("wss://"):
        return "https://" + base_url.removeprefix("wss://").rstrip("/")
    if base_url.startswith("ws://"):
        return "http://" + base_url.removeprefix("ws://").rstrip("/")
    return base_url.rstrip("/")


class DeepgramTts:
    name = "deepgram"

    def __init__(
        self,
        api_key: str,
        *,
        http_client: httpx.AsyncClient,
        base_url: str = DEFAULT_BASE_URL,
        model: str = "aura-2-thalia-en",
        timeout: float = 10.0,
    ) -> None:
        self.model = model
        self._api_key = api_key
        self._http = http_client
        self._url = f"{http_base(base_url)}/v1/speak"
        self._timeout = httpx.Timeout(timeout, connect=5.0)

    async def synthesize(
        self, text: str, *, voice_id: str, fmt: MediaFormat, language: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        if fmt.encoding == "mulaw" and fmt.sample_rate in _MULAW_RATES:
            encoding, rate = "mulaw", fmt.sample_rate
        elif fmt.encoding == "l16" and fmt.sample_rate in _LINEAR16_RATES:
            encoding, rate = "linear16", fmt.sample_rate
        else:
            encoding, rate = "linear16", 24000
        stage = output_stage(rate, encoding == "linear16", fmt)
        params: dict[str, str | int] = {
            "model": voice_id or self.model,
            "encoding": encoding,
            "sample_rate": rate,
            "container": "none",
        }
        headers = {"Authorization": f"Token {self._api_key}"}
        for piece in split_text(text, MAX_CHARACTERS):
            audio = stream_audio(
                self._http,
                "deepgram",
                self._url,
                headers=headers,
                json={"text": piece},
                params=params,
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
