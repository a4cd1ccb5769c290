"""Local TTS servers speaking the Deepgram Aura, ElevenLabs, Cartesia and Google REST protocols.

One ASGI app serves all four paths:

* Deepgram  `POST /v1/speak?model=&encoding=&sample_rate=&container=`  `Authorization: Token <key>`,
  body `{"text"}`. As the real API, the default container is WAV: a request that forgets
  `container=none` gets a 44-byte RIFF header in front of the audio.
* ElevenLabs `POST /v1/text-to-speech/{voice_id}/stream?output_format=`  `xi-api-key`,
  body `{"text", "model_id"}`; formats `ulaw_8000`, `alaw_8000`, `pcm_<rate>`.
* Cartesia  `POST /tts/bytes`  `X-API-Key` + `Cartesia-Version`, body `{model_id, transcript,
  voice: {mode: "id", id}, output_format: {container: "raw", encoding, sample_rate}, language?}`.
* Google    `POST /v1/text:synthesize`  `X-Goog-Api-Key`, body `{input: {text}, voice: {languageCode,
  name?}, audioConfig: {audioEncoding, sampleRateHertz}}`; answers (not streamed) `{"audioContent":
  <base64>}`, which for LINEAR16/MULAW/ALAW is a WAV file, RIFF header included, as the real API does.

Each answers with real audio in the requested encoding and rate: a tone whose length is
`seconds_per_char` × characters, streamed in `chunk_ms` pieces after `first_byte_delay`. `faults` (a
queue of `Fault`, one per request, any provider) injects HTTP errors, hangs and cut streams. Every
request is recorded in `requests` (`extra["audio_bytes"]` = bytes the fake meant to send).
"""

from __future__ import annotations

import base64
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.server import (
    DisconnectWatch,
    Fault,
    Receive,
    RecordedRequest,
    Scope,
    Send,
    audioop,
    end_stream,
    pcm16_tone,
    record_request,
    send_chunk,
    send_json,
    start_stream,
)

_DEEPGRAM_RATES = {
    "mulaw": {8000, 16000},
    "alaw": {8000, 16000},
    "linear16": {8000, 16000, 24000, 32000, 48000},
}
_ELEVENLABS_PCM_RATES = {8000, 16000, 22050, 24000, 44100, 48000}
_CARTESIA_RATES = {8000, 16000, 22050, 24000, 44100, 48000}
_CARTESIA_ENCODINGS = {"pcm_mulaw", "pcm_alaw", "pcm_s16le", "pcm_f32le"}
_GOOGLE_ENCODINGS = {"LINEAR16": "pcm16", "MULAW": "mulaw", "ALAW": "alaw"}


def encode(pcm: bytes, encoding: str) -> bytes:
    """PCM16LE → the named encoding (mulaw, alaw, pcm16 or f32le)."""
    if encoding == "mulaw":
        return audioop.lin2ulaw(pcm, 2)
    if encoding == "alaw":
        return audioop.lin2alaw(pcm, 2)
    if encoding == "f32le":
        n = len(pcm) // 2
        return struct.pack(f"<{n}f", *(s / 32768 for s in struct.unpack(f"<{n}h", pcm)))
    return pcm


def bytes_per_second(encoding: str, rate: int) -> int:
    return rate * {"mulaw": 1, "alaw": 1, "pcm16": 2, "f32le": 4}[encoding]


def wav_header(encoding: str, rate: int, data_len: int) -> bytes:
    fmt_code, width = {"pcm16": (1, 2), "alaw": (6, 1), "mulaw": (7, 1), "f32le": (3, 4)}[encoding]
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_len)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, fmt_code, 1, rate, rate * width, width, width * 8)
        + b"data"
        + struct.pack("<I", data_len)
    )


def _google_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


@dataclass
class FakeTts:
    api_key: str = "test-key"  # the same key is accepted by all three providers
    seconds_per_char: float = 0.06
    chunk_ms: int = 100
    first_byte_delay: float = 0.0
    inter_chunk_delay: float = 0.0
    faults: Iterable[Fault] = ()
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.faults = deque(self.faults)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = await record_request(scope, receive)
        self.requests.append(request)
        path = request.path
        if request.method == "POST" and path == "/v1/speak":
            await self._deepgram(request, receive, send)
        elif request.method == "POST" and path.startswith("/v1/text-to-speech/") and path.endswith("/stream"):
            await self._elevenlabs(request, receive, send)
        elif request.method == "POST" and path == "/tts/bytes":
            await self._cartesia(request, receive, send)
        elif request.method == "POST" and path == "/v1/text:synthesize":
            await self._google(request, receive, send)
        else:
            await send_json(send, 404, {"error": f"no fake TTS at {request.method} {path}"})

    # -- providers ------------------------------------------------------------------------------------

    async def _deepgram(self, request: RecordedRequest, receive: Receive, send: Send) -> None:
        if request.headers.get("authorization") != f"Token {self.api_key}":
            await send_json(send, 401, {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."})
            return
        q = request.query
        encoding = q.get("encoding", "linear16")
        rate = int(q.get("sample_rate", "24000")) if q.get("sample_rate", "24000").isdigit() else 0
        container = q.get("container", "wav")
        text = request.json.get("text") if isinstance(request.json, dict) else None
        if encoding not in _DEEPGRAM_RATES or rate not in _DEEPGRAM_RATES[encoding]:
            await send_json(
                send, 400, {"err_code": "Bad Request", "err_msg": f"unsupported {encoding}/{rate}"}
            )
            return
        if container not in ("none", "wav") or not q.get("model"):
            await send_json(
                send, 400, {"err_code": "Bad Request", "err_msg": "bad container or missing model"}
            )
            return
        if not isinstance(text, str) or not text or len(text) > 2000:
            await send_json(
                send, 400, {"err_code": "Bad Request", "err_msg": "text must be 1-2000 characters"}
            )
            return
        name = "pcm16" if encoding == "linear16" else encoding
        await self._audio(
            request,
            receive,
            send,
            text,
            name,
            rate,
            wav=container == "wav",
            headers=[("dg-model-name", q["model"]), ("dg-char-count", str(len(text)))],
            error_body={"err_code": "INTERNAL_SERVER_ERROR", "err_msg": "Fault injected."},
        )

    async def _elevenlabs(self, request: RecordedRequest, receive: Receive, send: Send) -> None:
        if request.headers.get("xi-api-key") != self.api_key:
            await send_json(
                send, 401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
            )
            return
        voice_id = request.path.removeprefix("/v1/text-to-speech/").removesuffix("/stream")
        output_format = request.query.get("output_format", "mp3_44100_128")
        body = request.json if isinstance(request.json, dict) else {}
        text = body.get("text")
        codec, _, rate_text = output_format.partition("_")
        rate = int(rate_text) if rate_text.isdigit() else 0
        valid = (codec in ("ulaw", "alaw") and rate == 8000) or (
            codec == "pcm" and rate in _ELEVENLABS_PCM_RATES
        )
        if not valid:
            message = f"this fake does not produce output_format={output_format}"
            await send_json(send, 422, {"detail": {"status": "invalid_output_format", "message": message}})
            return
        if not voice_id or not isinstance(text, str) or not text:
            await send_json(
                send, 422, {"detail": {"status": "invalid_request", "message": "text is required"}}
            )
            return
        request.extra["voice_id"] = voice_id
        name = {"ulaw": "mulaw", "alaw": "alaw", "pcm": "pcm16"}[codec]
        await self._audio(
            request,
            receive,
            send,
            text,
            name,
            rate,
            error_body={"detail": {"status": "server_error", "message": "Fault injected."}},
        )

    async def _cartesia(self, request: RecordedRequest, receive: Receive, send: Send) -> None:
        if request.headers.get("x-api-key") != self.api_key:
            await send_json(send, 401, {"error": "Invalid API key"})
            return
        if not request.headers.get("cartesia-version"):
            await send_json(send, 400, {"error": "Cartesia-Version header is required"})
            return
        body = request.json if isinstance(request.json, dict) else {}
        voice = body.get("voice") or {}
        output = body.get("output_format") or {}
        problem = None
        if not body.get("model_id") or not isinstance(body.get("transcript"), str) or not body["transcript"]:
            problem = "model_id and transcript are required"
        elif voice.get("mode") != "id" or not voice.get("id"):
            problem = 'voice must be {"mode": "id", "id": ...}'
        elif output.get("container") != "raw":
            problem = "this fake only produces container=raw"
        elif (
            output.get("encoding") not in _CARTESIA_ENCODINGS
            or output.get("sample_rate") not in _CARTESIA_RATES
        ):
            problem = f"unsupported output_format {output}"
        if problem:
            await send_json(send, 400, {"error": problem})
            return
        name = {"pcm_mulaw": "mulaw", "pcm_alaw": "alaw", "pcm_s16le": "pcm16", "pcm_f32le": "f32le"}[
            output["encoding"]
        ]
        await self._audio(
            request,
            receive,
            send,
            body["transcript"],
            name,
            output["sample_rate"],
            error_body={"error": "Fault injected."},
        )

    async def _google(self, request: RecordedRequest, receive: Receive, send: Send) -> None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if key != self.api_key:
            # As Google: no key is 403 PERMISSION_DENIED, a wrong key 400 INVALID_ARGUMENT.
            status, reason = (403, "PERMISSION_DENIED") if not key else (400, "INVALID_ARGUMENT")
            await send_json(send, status, _google_error(status, reason, "API key not valid."))
            return
        body = request.json if isinstance(request.json, dict) else {}
        text = (body.get("input") or {}).get("text")
        voice = body.get("voice") or {}
        config = body.get("audioConfig") or {}
        encoding = config.get("audioEncoding")
        rate = config.get("sampleRateHertz", 24000)
        name = voice.get("name") or ""
        problem = None
        if not isinstance(text, str) or not text or len(text.encode()) > 5000:
            problem = "input.text must be 1-5000 bytes"
        elif not voice.get("languageCode"):
            problem = "voice.languageCode is required"
        elif name and not name.startswith(voice["languageCode"] + "-"):
            problem = f"Requested language code '{voice['languageCode']}' doesn't match the voice '{name}'."
        elif encoding not in _GOOGLE_ENCODINGS or not isinstance(rate, int) or not 8000 <= rate <= 48000:
            problem = f"this fake does not produce {encoding} at {rate} Hz"
        if problem:
            await send_json(send, 400, _google_error(400, "INVALID_ARGUMENT", problem))
            return
        assert isinstance(self.faults, deque)
        fault = self.faults.popleft() if self.faults else None
        if fault is not None and fault.kind == "status":
            reason = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}.get(fault.status, "INTERNAL")
            await send_json(send, fault.status, _google_error(fault.status, reason, "Fault injected."))
            return
        codec = _GOOGLE_ENCODINGS[encoding]
        audio = encode(pcm16_tone(len(text) * self.seconds_per_char, rate=rate, freq=330.0), codec)
        request.extra.update(audio_bytes=len(audio), encoding=codec, sample_rate=rate)
        payload = b'{"audioContent": "%s"}' % base64.b64encode(wav_header(codec, rate, len(audio)) + audio)
        async with DisconnectWatch(receive) as watch:
            if fault is not None and fault.kind == "hang" and fault.after_chunks == 0:
                await watch.until_disconnect()
                request.disconnected = True
                return
            await watch.sleep(self.first_byte_delay)
            if watch.disconnected:
                request.disconnected = True
                return
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if fault is not None:  # hang or cut after part of the body
                await send_chunk(send, payload[: len(payload) // 2])
                if fault.kind == "hang":
                    await watch.until_disconnect()
                    request.disconnected = True
                return
            await send({"type": "http.response.body", "body": payload})

    # -- audio ----------------------------------------------------------------------------------------

    async def _audio(
        self,
        request: RecordedRequest,
        receive: Receive,
        send: Send,
        text: str,
        encoding: str,
        rate: int,
        *,
        error_body: Any,
        wav: bool = False,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        assert isinstance(self.faults, deque)
        fault = self.faults.popleft() if self.faults else None
        if fault is not None and fault.kind == "status":
            await send_json(send, fault.status, error_body)
            return
        audio = encode(pcm16_tone(len(text) * self.seconds_per_char, rate=rate, freq=330.0), encoding)
        if wav:
            audio = wav_header(encoding, rate, len(audio)) + audio
        request.extra.update(audio_bytes=len(audio), encoding=encoding, sample_rate=rate)
        size = max(1, bytes_per_second(encoding, rate) * self.chunk_ms // 1000)
        async with DisconnectWatch(receive) as watch:
            if fault is not None and fault.kind == "hang" and fault.after_chunks == 0:
                await watch.until_disconnect()
                request.disconnected = True
                return
            await watch.sleep(self.first_byte_delay)
            await start_stream(send, 200, "application/octet-stream", headers or [])
            for n, start in enumerate(range(0, len(audio), size)):
                if fault is not None and n >= fault.after_chunks:
                    if fault.kind == "hang":
                        await watch.until_disconnect()
                        request.disconnected = True
                    return  # "cut": the body never completes
                if n:
                    await watch.sleep(self.inter_chunk_delay)
                if watch.disconnected:
                    request.disconnected = True
                    return
                await send_chunk(send, audio[start : start + size])
            await end_stream(send)
