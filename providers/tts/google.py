"""Google Cloud Text-to-Speech over REST (`POST /v1/text:synthesize`) as a `TtsProvider`.

Auth is an API key in the `X-Goog-Api-Key` header. Body `{input: {text}, voice: {languageCode, name},
audioConfig: {audioEncoding: "MULAW" | "LINEAR16", sampleRateHertz}}`; Google encodes μ-law and PCM16
at any requested rate, so the call's wire format is always asked for directly. The answer is not
streamed: `{"audioContent": <base64>}` holds the whole utterance, and for MULAW and LINEAR16 it is a
WAV file whose RIFF header must come off (its length varies with the chunks Google writes, so the
chunks are walked to `data` rather than assuming 44 bytes). `languageCode` is required and must agree
with the voice: it is taken from the voice name (`en-US-Neural2-F` → `en-US`). Input is limited to
5,000 bytes per request, so longer text is split at sentence ends.

Google prices by voice tier (Standard, WaveNet, Neural2, Chirp 3 HD, Studio), which the voice name
carries; `model` is only the label usage is metered under, so build the adapter with the voice name
as its model (`voice_model`) for the price catalog's `*-Neural2-*`-style rows to apply.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from providers.audio import ulaw_to_pcm16
from providers.tts.base import PcmConverter, TtsError, http_error, split_text

if TYPE_CHECKING:
    from providers.telephony.base import MediaFormat

DEFAULT_BASE_URL = "https://texttospeech.googleapis.com"
DEFAULT_MODEL = "google-tts"  # a voice of unknown tier: see the module docstring
DEFAULT_LANGUAGE = "en-US"
MAX_INPUT_BYTES = 5000

_WAV_PCM = 1
_WAV_MULAW = 7


class _Response(msgspec.Struct):
    audio_content: bytes = msgspec.field(default=b"", name="audioContent")  # msgspec decodes the base64


class _ErrorDetail(msgspec.Struct):
    code: int = 0
    message: str = ""
    status: str = ""


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail


_response_decoder = msgspec.json.Decoder(_Response)
_error_decoder = msgspec.json.Decoder(_ErrorBody)


def voice_language(voice_name: str) -> str | None:
    """The BCP-47 code a Google voice name starts with (`cmn-CN-Wavenet-A` → `cmn-CN`), or None."""
    parts = voice_name.split("-")
    if len(parts) < 3 or not parts[0] or not parts[1]:
        return None
    return f"{parts[0]}-{parts[1]}"


def voice_model(voice_name: str) -> str:
    """The usage label for a voice: its own name when it is a Google voice name (the tier is in it)."""
    return voice_name if voice_language(voice_name) else DEFAULT_MODEL


class WavAudio(msgspec.Struct, frozen=True):
    """The samples of a WAV file and how they are encoded (format 1 = PCM, 7 = μ-law)."""

    format_code: int
    channels: int
    sample_rate: int
    bits: int
    data: bytes


def parse_wav(blob: bytes) -> WavAudio | None:
    """Walk a RIFF/WAVE file's chunks to `fmt ` and `data`; None when `blob` is not a WAV file.

    A `data` size larger than what is there (0xFFFFFFFF from streaming writers) means "to the end"."""
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(blob):
        chunk_id = blob[pos : pos + 4]
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt " and size >= 16:
            code, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", blob, body)
            fmt = (code, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise TtsError("google TTS returned a WAV file with no fmt chunk before its data")
            return WavAudio(*fmt, data=blob[body : body + size])
        pos = body + size + (size & 1)  # chunks are padded to an even length
    raise TtsError("google TTS returned a WAV file with no data chunk")


def to_call_format(audio: WavAudio, fmt: MediaFormat) -> bytes:
    """The WAV's samples in the call's format: as they are when Google produced the requested encoding
    and rate (it resamples on request), else decoded and converted with one resampler for the utterance."""
    if audio.channels != 1:
        raise TtsError(f"google TTS returned {audio.channels}-channel audio")
    if audio.format_code == _WAV_MULAW and audio.bits == 8:
        if fmt.encoding == "mulaw" and audio.sample_rate == fmt.sample_rate:
            return audio.data
        pcm = ulaw_to_pcm16(audio.data)
    elif audio.format_code == _WAV_PCM and audio.bits == 16:
        pcm = audio.data[: len(audio.data) - len(audio.data) % 2]
        if fmt.encoding == "l16" and audio.sample_rate == fmt.sample_rate:
            return pcm
    else:
        raise TtsError(f"google TTS returned WAV format {audio.format_code}/{audio.bits} bits")
    converter = PcmConverter(audio.sample_rate, fmt)
    return converter.push(pcm) + converter.flush()


class GoogleTts:
    name = "google"

    def __init__(
        self,
        api_key: str,
        *,
        http_client: httpx.AsyncClient,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        timeout: float = 10.0,
    ) -> None:
        self.model = model
        self._api_key = api_key
        self._http = http_client
        self._url = f"{base_url.rstrip('/')}/v1/text:synthesize"
        self._timeout = httpx.Timeout(timeout, connect=5.0)

    async def synthesize(
        self, text: str, *, voice_id: str, fmt: MediaFormat, language: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        if fmt.channels != 1:
            raise TtsError(f"TTS produces mono audio, the call wants {fmt.channels} channels")
        voice: dict[str, str] = {"languageCode": voice_language(voice_id) or language or DEFAULT_LANGUAGE}
        if voice_id:
            voice["name"] = voice_id
        audio_config = {
            "audioEncoding": "MULAW" if fmt.encoding == "mulaw" else "LINEAR16",
            "sampleRateHertz": fmt.sample_rate,
        }
        # The limit is in UTF-8 bytes: a character is at most 4 of them.
        limit = MAX_INPUT_BYTES if len(text.encode()) <= MAX_INPUT_BYTES else MAX_INPUT_BYTES // 4
        for piece in split_text(text, limit):
            body = {"input": {"text": piece}, "voice": voice, "audioConfig": audio_config}
            blob = await self._post(body)
            wav = parse_wav(blob)
            # Without a RIFF header the bytes are taken to be exactly what was asked for.
            audio = blob if wav is None else to_call_format(wav, fmt)
            if fmt.encoding == "l16":
                audio = audio[: len(audio) - len(audio) % 2]
            if audio:
                yield audio

    async def _post(self, body: dict[str, Any]) -> bytes:
        try:
            response = await self._http.post(
                self._url, headers={"X-Goog-Api-Key": self._api_key}, json=body, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            raise TtsError(f"google TTS timed out: {exc!r}", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise TtsError(f"google TTS transport error: {exc!r}", retryable=True) from exc
        if response.status_code >= 400:
            raise _error(response.status_code, response.content)
        try:
            audio = _response_decoder.decode(response.content).audio_content
        except msgspec.DecodeError as exc:
            raise TtsError(f"google TTS answered with an unreadable body: {exc}", retryable=True) from exc
        if not audio:
            raise TtsError("google TTS returned no audioContent")
        return audio

    async def aclose(self) -> None:
        """The shared HTTP client belongs to the caller."""


def _error(status: int, content: bytes) -> TtsError:
    """`{"error": {"code", "message", "status"}}` as a TtsError (retryable for 408/429/5xx)."""
    try:
        detail = _error_decoder.decode(content).error
    except msgspec.DecodeError:
        return http_error("google", status, content)
    return http_error("google", status, f"{detail.status or detail.code}: {detail.message}".encode())
