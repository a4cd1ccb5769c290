"""OpenAI text-to-speech (`audio.speech`, streamed) as a `TtsProvider`.

OpenAI offers no telephony format: `response_format="pcm"` is headerless PCM16LE mono at 24 kHz, which
`PcmConverter` resamples (one soxr stream per utterance) to the call's rate and encodes to μ-law when
the call is μ-law. OpenAI takes no language parameter (the voice follows the text); input is limited
to 4096 characters per request, so longer text is split at sentence ends.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import httpx
import openai
from openai import AsyncOpenAI, omit

from providers.tts.base import PcmConverter, TtsError, http_error, split_text

if TYPE_CHECKING:
    from providers.telephony.base import MediaFormat

OPENAI_PCM_RATE = 24000
MAX_CHARACTERS = 4096


class OpenAiTts:
    name = "openai"

    def __init__(
        self,
        api_key: str,
        *,
        http_client: httpx.AsyncClient,
        base_url: str | None = None,
        model: str = "gpt-4o-mini-tts",
        timeout: float = 10.0,
        instructions: str | None = None,
    ) -> None:
        self.model = model
        self._instructions = instructions
        # The SDK takes httpx's client and timeouts (its "legacy" types) at run time; its annotations name only
        # httpx2's.
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            http_client=http_client,  # type: ignore[arg-type]
            max_retries=0,
            timeout=httpx.Timeout(timeout, connect=5.0),  # type: ignore[arg-type]
        )

    async def synthesize(
        self, text: str, *, voice_id: str, fmt: MediaFormat, language: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        converter = PcmConverter(OPENAI_PCM_RATE, fmt)
        instructions = self._instructions or omit  # omitted: the request carries no `instructions` field
        for piece in split_text(text, MAX_CHARACTERS):
            try:
                async with self._client.audio.speech.with_streaming_response.create(
                    model=self.model,
                    voice=voice_id,
                    input=piece,
                    response_format="pcm",
                    instructions=instructions,
                ) as response:
                    async for chunk in response.iter_bytes():
                        out = converter.push(chunk)
                        if out:
                            yield out
            except openai.APIStatusError as exc:
                raise http_error("openai", exc.status_code, exc.response.content) from exc
            except (openai.APIConnectionError, httpx.TimeoutException) as exc:
                raise TtsError(
                    f"openai TTS timed out or lost the connection: {exc!r}", retryable=True
                ) from exc
            except httpx.HTTPError as exc:
                raise TtsError(f"openai TTS stream broke: {exc!r}", retryable=True) from exc
        tail = converter.flush()
        if tail:
            yield tail

    async def aclose(self) -> None:
        """The shared HTTP client belongs to the caller."""
