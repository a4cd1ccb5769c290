"""Deepgram streaming speech-to-text (`/v1/listen` over WebSocket) as an `SttProvider`.

The call's wire audio goes to Deepgram untouched: `encoding` (mulaw | linear16) and `sample_rate` come
straight from the call's `MediaFormat`.

Why `websockets` and not `deepgram-sdk` 7.x here: the SDK's async `listen.v1.connect` is built on
`websockets.legacy` (deprecated since websockets 14, warns on import and will be removed) and parses
every message through pydantic models, silently dropping the ones it does not know. It takes a custom
URL, but not this message loop. We speak the same protocol against the same URL and headers
(`Authorization: Token <key>`, identical query parameters), with msgspec decoding.

Languages: an agent carries a BCP-47 tag (de-DE, en-US, es-MX), but each Deepgram model accepts its own set of
codes in `language` (nova-3: de, de-CH, fr, fr-CA, es, es-419, en-US, en-GB, ...; no de-DE, fr-FR or es-ES) and
refuses the stream for any other. `deepgram_language` maps a tag to the code the model takes (`MODEL_LANGUAGES`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidHandshake, InvalidStatus

from providers.stt.base import SpeechStarted, SttClosed, SttError, SttEvent, Transcript, UtteranceEnd

if TYPE_CHECKING:
    from providers.telephony.base import MediaFormat

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "wss://api.deepgram.com"
DEFAULT_MODEL = "nova-3"

# The `language` codes each model accepts, from Deepgram's Models & Languages Overview
# (https://developers.deepgram.com/docs/models-languages-overview) and the changelog entries that added them to
# nova-3 (https://developers.deepgram.com/changelog: 2025-08-15 de nl sv da; 2025-09-02 es es-419 fr fr-CA pt pt-BR
# pt-PT; 2025-09-16 it tr no id; 2025-11-04 bg cs fi hi hu ja ko pl ru uk vi; 2025-11-24 ca et nl-BE de-CH el lv lt
# ms ro sk; 2026-01-21 be bn bs hr kn mk mr sr sl ta tl te; 2026-03-17 zh-HK th; 2026-03-31 zh zh-CN zh-Hans zh-TW
# zh-Hant; 2026-08-04 gu gu-IN) and to nova-2 (2024-05-14: 36 languages; 2024-09-12: zh-HK).


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NOVA_3 = _codes(
    "multi en en-US en-AU en-GB en-IN en-NZ de de-CH nl nl-BE sv sv-SE da da-DK es es-419 fr fr-CA pt pt-BR "
    "pt-PT it tr no id bg cs fi hi hu ja ko ko-KR pl ru uk vi ca et el lv lt ms ro sk be bn bs hr kn mk mr sr "
    "sl ta tl te zh zh-CN zh-Hans zh-TW zh-Hant zh-HK th th-TH gu gu-IN"
)
_NOVA_2 = _codes(
    "multi en en-US en-AU en-GB en-IN en-NZ bg ca zh zh-CN zh-Hans zh-TW zh-Hant zh-HK cs da da-DK nl nl-BE et "
    "fi fr fr-CA de de-CH el hi hu id it ja ko ko-KR lv lt ms no pl pt pt-BR pt-PT ro ru sk es es-419 sv sv-SE "
    "th th-TH tr uk vi"
)
_ENGLISH = frozenset({"en", "en-US"})  # nova-2's use-case variants (phonecall, meeting, ...) are English only
MODEL_LANGUAGES: dict[str, frozenset[str]] = {
    "nova-3": _NOVA_3,
    "nova-3-general": _NOVA_3,
    "nova-2": _NOVA_2,
    "nova-2-general": _NOVA_2,
    **{
        f"nova-2-{variant}": _ENGLISH
        for variant in (
            "phonecall", "meeting", "finance", "conversationalai", "voicemail", "video", "medical", "drivethru",
            "automotive", "atc",
        )
    },
}
# Tags whose language subtag Deepgram spells otherwise (Norwegian Bokmål/Nynorsk, Filipino, old ISO codes).
_LANGUAGE_ALIASES = {"nb": "no", "nn": "no", "fil": "tl", "in": "id", "iw": "he"}
# Spanish of the Americas (and the US) is Deepgram's Latin American Spanish, es-419.
_LATAM = _codes("419 AR BO CL CO CR CU DO EC GT HN MX NI PA PE PR PY SV US UY VE")


class UnsupportedLanguage(ValueError):
    """The Deepgram model has no code for this language."""


def deepgram_language(model: str, tag: str) -> str:
    """The code `model` accepts for the BCP-47 `tag`: the tag itself when the model takes it, else its language
    with region (es-MX → es-419), with script (zh-Hant-TW → zh-TW) or alone (de-DE → de). A model missing from
    `MODEL_LANGUAGES` (self-hosted, newer) gets the tag unchanged; raises UnsupportedLanguage when a known model
    takes none of them."""
    accepted = MODEL_LANGUAGES.get(model)
    if accepted is None:
        return tag
    parts = tag.split("-")
    language = _LANGUAGE_ALIASES.get(parts[0].lower(), parts[0].lower())
    script = next((p.title() for p in parts[1:] if len(p) == 4 and p.isalpha()), None)
    region = next((p.upper() for p in parts[1:] if len(p) == 2 or (len(p) == 3 and p.isdigit())), None)
    candidates = [tag]
    if region is not None:
        candidates.append(f"{language}-{region}")
        if language == "es" and region in _LATAM:
            candidates.append("es-419")
        if language == "zh" and script is None:
            candidates.append("zh-Hant" if region in ("TW", "HK", "MO") else "zh-Hans")
    if script is not None:
        candidates.append(f"{language}-{script}")
        if language == "zh":
            candidates.append("zh-TW" if script == "Hant" else "zh-CN")
    candidates.append(language)
    for code in candidates:
        if code in accepted:
            return code
    raise UnsupportedLanguage(
        f"Deepgram {model} cannot transcribe {tag!r}; it accepts {', '.join(sorted(accepted - {'multi'}))}"
    )

_ENCODINGS = {"mulaw": "mulaw", "l16": "linear16"}
_BYTES_PER_SAMPLE = {"mulaw": 1, "l16": 2}

_KEEP_ALIVE = '{"type":"KeepAlive"}'
_FINALIZE = '{"type":"Finalize"}'
_CLOSE_STREAM = '{"type":"CloseStream"}'


class _Alternative(msgspec.Struct):
    transcript: str = ""
    confidence: float | None = None
    words: list[msgspec.Raw] = []


class _Channel(msgspec.Struct):
    alternatives: list[_Alternative] = []


class _Results(msgspec.Struct, tag_field="type", tag="Results"):
    start: float = 0.0
    duration: float = 0.0
    is_final: bool = False
    speech_final: bool = False
    from_finalize: bool = False
    channel: _Channel = msgspec.field(default_factory=_Channel)


class _SpeechStarted(msgspec.Struct, tag_field="type", tag="SpeechStarted"):
    timestamp: float = 0.0


class _UtteranceEnd(msgspec.Struct, tag_field="type", tag="UtteranceEnd"):
    last_word_end: float | None = None


class _Metadata(msgspec.Struct, tag_field="type", tag="Metadata"):
    request_id: str | None = None
    duration: float | None = None


class _Error(msgspec.Struct, tag_field="type", tag="Error"):
    variant: str | None = None
    description: str | None = None


_decoder = msgspec.json.Decoder(_Results | _SpeechStarted | _UtteranceEnd | _Metadata | _Error)


def websocket_base(base_url: str) -> str:
    """DEEPGRAM_BASE_URL may be given as https:// (it also serves Aura REST); the stream needs ws(s)://."""
    if base_url.startswith("https://"):
        return "wss://" + base_url.removeprefix("https://").rstrip("/")
    if base_url.startswith("http://"):
        return "ws://" + base_url.removeprefix("http://").rstrip("/")
    return base_url.rstrip("/")


class DeepgramStt:
    """Opens one Deepgram live-transcription stream per call leg."""

    name = "deepgram"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        smart_format: bool = True,
        interim_results: bool = True,
        open_timeout: float = 5.0,
        close_timeout: float = 2.0,
    ) -> None:
        self.model = model
        self._api_key = api_key
        self._base_url = websocket_base(base_url)
        self._smart_format = smart_format
        self._interim_results = interim_results
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout

    def listen_url(
        self, fmt: MediaFormat, language: str, *, endpointing_ms: int = 300, utterance_end_ms: int = 1000
    ) -> str:
        try:
            encoding = _ENCODINGS[fmt.encoding]
        except KeyError:
            raise SttError(f"deepgram: unsupported encoding {fmt.encoding!r}") from None
        try:
            code = deepgram_language(self.model, language)
        except UnsupportedLanguage as exc:
            raise SttError(f"deepgram: {exc}") from None
        params = {
            "model": self.model,
            "language": code,
            "encoding": encoding,
            "sample_rate": fmt.sample_rate,
            "channels": fmt.channels,
            "interim_results": _flag(self._interim_results),
            "endpointing": endpointing_ms if endpointing_ms > 0 else "false",
            "utterance_end_ms": utterance_end_ms,
            "vad_events": "true",
            "smart_format": _flag(self._smart_format),
        }
        return f"{self._base_url}/v1/listen?{urlencode(params)}"

    async def connect(
        self, fmt: MediaFormat, language: str, *, endpointing_ms: int = 300, utterance_end_ms: int = 1000
    ) -> DeepgramSttStream:
        url = self.listen_url(fmt, language, endpointing_ms=endpointing_ms, utterance_end_ms=utterance_end_ms)
        try:
            ws = await connect(
                url,
                additional_headers={"Authorization": f"Token {self._api_key}"},
                open_timeout=self._open_timeout,
                close_timeout=self._close_timeout,
                # Telephony audio does not compress; permessage-deflate would only cost CPU per frame.
                compression=None,
                max_size=2**22,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode("utf-8", "replace")[:200] if exc.response.body else ""
            raise SttError(
                f"deepgram rejected the stream: HTTP {status} {body}".rstrip(), status=status
            ) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise SttError(f"deepgram: cannot open the stream: {exc!r}") from exc
        return DeepgramSttStream(ws, fmt, close_timeout=self._close_timeout)


class DeepgramSttStream:
    """One open `/v1/listen` socket. `events()` has a single consumer and ends with one `SttClosed`."""

    def __init__(self, ws: ClientConnection, fmt: MediaFormat, *, close_timeout: float = 2.0) -> None:
        self.audio_seconds = 0.0
        self.request_id: str | None = ws.response.headers.get("dg-request-id") if ws.response else None
        self._ws = ws
        self._bytes_per_second = fmt.sample_rate * fmt.channels * _BYTES_PER_SAMPLE[fmt.encoding]
        self._close_timeout = close_timeout
        self._close_requested = False
        self._consumed = False

    async def send_audio(self, chunk: bytes) -> None:
        # Deepgram reads an empty binary frame as "close the stream": never send one.
        if not chunk or self._close_requested:
            return
        try:
            await self._ws.send(chunk)
        except ConnectionClosed:
            return  # the media loop keeps going; events() reports the closure as SttClosed
        self.audio_seconds += len(chunk) / self._bytes_per_second

    async def keep_alive(self) -> None:
        await self._send_control(_KEEP_ALIVE)

    async def finalize(self) -> None:
        await self._send_control(_FINALIZE)

    async def close(self) -> None:
        if self._close_requested:
            return
        self._close_requested = True
        try:
            await self._ws.send(_CLOSE_STREAM)
        except ConnectionClosed:
            return
        try:
            async with asyncio.timeout(self._close_timeout):
                await self._ws.wait_closed()
        except TimeoutError:
            logger.warning("deepgram did not close the stream %.1fs after CloseStream", self._close_timeout)
            await self._ws.close()

    async def events(self) -> AsyncGenerator[SttEvent, None]:
        if self._consumed:
            raise RuntimeError("DeepgramSttStream.events() supports a single consumer")
        self._consumed = True
        try:
            async for message in self._ws:
                if isinstance(message, bytes):
                    continue
                event = self._parse(message)
                if event is not None:
                    yield event
        except ConnectionClosedError as exc:
            yield SttClosed(error=_describe_close(exc))
            return
        yield SttClosed(error=None)

    async def _send_control(self, message: str) -> None:
        if self._close_requested:
            return
        try:
            await self._ws.send(message)  # control messages must be text frames
        except ConnectionClosed:
            return

    def _parse(self, raw: str) -> SttEvent | None:
        try:
            message = _decoder.decode(raw)
        except msgspec.ValidationError:
            logger.debug("deepgram: ignoring unknown message %.200s", raw)
            return None
        except msgspec.DecodeError:
            logger.warning("deepgram: undecodable message %.200s", raw)
            return None
        if isinstance(message, _Results):
            alternative = message.channel.alternatives[0] if message.channel.alternatives else _Alternative()
            if not message.is_final and not alternative.transcript:
                return None  # empty interims carry nothing; empty finals may still end the turn
            return Transcript(
                text=alternative.transcript,
                is_final=message.is_final,
                speech_final=message.speech_final,
                start=message.start,
                duration=message.duration,
                confidence=alternative.confidence,
                words=len(alternative.words),
            )
        if isinstance(message, _SpeechStarted):
            return SpeechStarted(timestamp=message.timestamp)
        if isinstance(message, _UtteranceEnd):
            last = message.last_word_end
            return UtteranceEnd(last_word_end=last if last is not None and last >= 0 else None)
        if isinstance(message, _Metadata):
            self.request_id = message.request_id or self.request_id
            return None
        logger.warning("deepgram error message: %s %s", message.variant, message.description)
        return None


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _describe_close(exc: ConnectionClosedError) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "connection lost without a close frame (1006)"
    return f"closed with {frame.code} {frame.reason}".rstrip()
