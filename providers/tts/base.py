"""Provider-neutral text-to-speech contract, plus the pieces every HTTP TTS adapter shares.

`synthesize` streams audio already in the call's wire format (μ-law or PCM16 at `fmt.sample_rate`),
so the media loop only frames and paces it. Adapters ask the provider for that format when it offers
it; otherwise `PcmConverter` turns the provider's PCM16 into it with one streaming resampler per
utterance (never a one-shot resample per chunk, which clicks at chunk edges) and G.711 encoding.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from providers.audio import StreamResampler, pcm16_to_ulaw

if TYPE_CHECKING:
    from providers.telephony.base import MediaFormat


class TtsError(Exception):
    """Synthesis failed; `retryable` says whether trying again may help (timeouts, 429, 5xx)."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class TtsProvider(Protocol):
    name: str
    model: str

    def synthesize(
        self, text: str, *, voice_id: str, fmt: MediaFormat, language: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Audio in `fmt`, streamed as it arrives (chunk sizes vary; PCM chunks are sample-aligned)."""
        ...

    async def aclose(self) -> None: ...


class PcmConverter:
    """Streams PCM16LE mono at `in_rate` into `fmt`: resampled if the rates differ, μ-law if asked.

    Chunk boundaries from HTTP may split a sample; the odd byte is carried to the next chunk.
    """

    def __init__(self, in_rate: int, fmt: MediaFormat) -> None:
        if fmt.channels != 1:
            raise TtsError(f"TTS produces mono audio, the call wants {fmt.channels} channels")
        self._resampler = StreamResampler(in_rate, fmt.sample_rate) if in_rate != fmt.sample_rate else None
        self._mulaw = fmt.encoding == "mulaw"
        self._carry = b""

    def push(self, chunk: bytes) -> bytes:
        data = self._carry + chunk
        cut = len(data) - len(data) % 2
        data, self._carry = data[:cut], data[cut:]
        return self._convert(data, last=False)

    def flush(self) -> bytes:
        self._carry = b""  # a dangling half sample at the very end is noise
        return self._convert(b"", last=True)

    def _convert(self, pcm: bytes, *, last: bool) -> bytes:
        if self._resampler is not None:
            pcm = self._resampler.process(pcm, last=last)
        if self._mulaw and pcm:
            return pcm16_to_ulaw(pcm)
        return pcm


class SampleAligner:
    """Holds back a trailing partial sample so that PCM16 chunks always hold whole samples."""

    def __init__(self, width: int) -> None:
        self._width = width
        self._carry = b""

    def push(self, chunk: bytes) -> bytes:
        if self._width == 1:
            return chunk
        data = self._carry + chunk
        cut = len(data) - len(data) % self._width
        self._carry = data[cut:]
        return data[:cut]

    def flush(self) -> bytes:
        self._carry = b""
        return b""


def output_stage(provider_rate: int, provider_pcm: bool, fmt: MediaFormat) -> PcmConverter | SampleAligner:
    """How provider audio becomes `fmt`: passed through (sample-aligned) when the provider produced
    `fmt` itself, else converted from its PCM16 at `provider_rate`."""
    if not provider_pcm or (fmt.encoding == "l16" and provider_rate == fmt.sample_rate):
        return SampleAligner(1 if not provider_pcm else 2)
    return PcmConverter(provider_rate, fmt)


def split_text(text: str, limit: int) -> list[str]:
    """Cut text longer than a provider's per-request limit at sentence ends, else at spaces."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind(". "), window.rfind("? "), window.rfind("! "))
        cut = cut + 1 if cut > 0 else window.rfind(" ")
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def primary_language(language: str | None) -> str | None:
    """ "en-US" → "en": the TTS APIs here take ISO 639-1 codes."""
    return language.split("-")[0].lower() if language else None


def http_error(provider: str, status: int, body: bytes) -> TtsError:
    detail = body[:300].decode("utf-8", "replace")
    retryable = status in (408, 409, 429) or status >= 500
    return TtsError(f"{provider} TTS HTTP {status}: {detail}", retryable=retryable, status=status)


async def stream_audio(
    http: httpx.AsyncClient,
    provider: str,
    url: str,
    *,
    headers: dict[str, str],
    json: dict[str, Any],
    params: dict[str, str | int] | None = None,
    http_timeout: httpx.Timeout,
) -> AsyncGenerator[bytes, None]:
    """POST and stream the audio body; HTTP and transport failures become `TtsError`.

    Iterate it inside `contextlib.aclosing(...)` so an abandoned synthesis releases the connection now.
    """
    try:
        async with http.stream(
            "POST", url, params=params, headers=headers, json=json, timeout=http_timeout
        ) as response:
            if response.status_code >= 400:
                raise http_error(provider, response.status_code, await response.aread())
            async for chunk in response.aiter_bytes():
                if chunk:
                    yield chunk
    except httpx.TimeoutException as exc:
        raise TtsError(f"{provider} TTS timed out: {exc!r}", retryable=True) from exc
    except httpx.HTTPError as exc:
        raise TtsError(f"{provider} TTS transport error: {exc!r}", retryable=True) from exc
