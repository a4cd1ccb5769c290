"""JSONWire: a minimal telephony carrier that exists only in the tests, to prove that a carrier is one module plus
one registry call (`registry.register(CARRIER)`), with no edit anywhere else.

Its whole protocol (its fake carrier is tests/fakes/jsonwire_server.py):

- REST, `Authorization: Bearer <JSONWIRE_API_KEY>`: `POST {JSONWIRE_BASE_URL}/calls` with
  {to, from, params: {call_id, token}, status_url, media_url} → 201 {"id"}; `POST /calls/{id}/hangup` → 204
  (404 once the call has ended); `GET /numbers/{E.164}` → 200 when the account holds the number, 404 when not.
  It cannot transfer calls.
- Webhooks to the service, JSON, signed: `X-JSONWire-Signature` = hex HMAC-SHA256 with JSONWIRE_SECRET over
  "{METHOD} {url}\n" + body (the URL with its query string is signed, so its ?call_id= can be trusted).
  `POST …/jsonwire/incoming` {"id", "to", "from"} (E.164) → {"action": "stream", "url", "params"} or
  {"action": "say", "text"}; `POST …/jsonwire/progress` {"id", "state": ringing | answered | ended | busy |
  failed, "seconds"}.
- Media, WebSocket `…/jsonwire/stream`, JSON text frames. In: {"type": "hello", "params", "rate"}, {"type":
  "audio", "pcm"} (base64 PCM16LE mono, 20 ms), {"type": "played", "name"}, {"type": "bye"}. Out: {"type":
  "audio", "pcm"}, {"type": "mark", "name"} (echoed as "played" once the audio before it has played),
  {"type": "flush"} (drop queued audio).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
import msgspec

from providers.telephony.base import (
    TERMINAL_STATUSES,
    CallStatus,
    InboundCall,
    MediaAudio,
    MediaEvent,
    MediaFormat,
    MediaIgnored,
    MediaMark,
    MediaStarted,
    MediaStopped,
    PlaceCallRequest,
    PlaceCallResult,
    ProtocolError,
    ProviderError,
    StatusEvent,
    WebhookRequest,
    decode_frame,
    query_param,
)
from providers.telephony.carrier import Carrier, CarrierConfig, CarrierRoutes, MediaRoute, WebhookRoute

__all__ = ["CARRIER", "SIGNATURE_HEADER", "sign"]

SIGNATURE_HEADER = "X-JSONWire-Signature"


def sign(secret: str, method: str, url: str, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{method.upper()} {url}\n".encode() + body, hashlib.sha256).hexdigest()


# --- media ---


class _Hello(msgspec.Struct, tag="hello", tag_field="type"):
    params: dict[str, str]
    rate: int = 8000


class _Audio(msgspec.Struct, tag="audio", tag_field="type"):
    pcm: bytes


class _Played(msgspec.Struct, tag="played", tag_field="type"):
    name: str


class _Bye(msgspec.Struct, tag="bye", tag_field="type"):
    pass


class _Mark(msgspec.Struct, tag="mark", tag_field="type"):
    name: str


class _Flush(msgspec.Struct, tag="flush", tag_field="type"):
    pass


_DECODER = msgspec.json.Decoder(_Hello | _Audio | _Played | _Bye)
_ENCODER = msgspec.json.Encoder()


class JsonWireCodec:
    def __init__(self) -> None:
        self.format: MediaFormat | None = None

    def decode(self, message: str | bytes) -> MediaEvent:
        frame = decode_frame(_DECODER, message, tag="type", known=("hello", "audio", "played", "bye"),
                             malformed="malformed JSONWire frame", malformed_kind="malformed JSONWire {kind!r} frame",
                             not_json="JSONWire frame is not JSON", unknown="unknown frame {kind!r}")
        if isinstance(frame, MediaIgnored):
            return frame
        match frame:
            case _Audio(pcm=pcm):
                return MediaAudio(payload=pcm)
            case _Hello(params=params, rate=rate):
                self.format = MediaFormat(encoding="l16", sample_rate=rate)
                return MediaStarted(
                    call_id=params.get("call_id"),
                    token=params.get("token"),
                    stream_id=None,
                    provider_call_id=None,
                    format=self.format,
                    custom=dict(params),
                )
            case _Played(name=name):
                return MediaMark(name=name)
            case _Bye():
                return MediaStopped()
        raise AssertionError(f"unhandled JSONWire frame {frame!r}")

    def encode_audio(self, frame: bytes) -> str:
        return _ENCODER.encode(_Audio(pcm=frame)).decode()

    def encode_mark(self, name: str) -> str:
        return _ENCODER.encode(_Mark(name=name)).decode()

    def encode_clear(self) -> str:
        return _ENCODER.encode(_Flush()).decode()


# --- webhooks and REST ---

_STATES: dict[str, tuple[CallStatus, str | None]] = {
    "ringing": (CallStatus.RINGING, None),
    "answered": (CallStatus.ONGOING, None),
    "ended": (CallStatus.ENDED, None),
    "busy": (CallStatus.DECLINED, "busy"),
    "failed": (CallStatus.FAILED, "failed"),
}


class _Progress(msgspec.Struct):
    id: str
    state: str
    seconds: int | None = None


class _Incoming(msgspec.Struct):
    id: str
    to: str
    from_: str | None = msgspec.field(name="from", default=None)


class JsonWireProvider:
    name = "jsonwire"

    def __init__(self, base_url: str, api_key: str, secret: str) -> None:
        self._base = base_url.rstrip("/")
        self._secret = secret
        self._http = httpx.AsyncClient(timeout=10.0, headers={"Authorization": f"Bearer {api_key}"})

    async def place_call(self, req: PlaceCallRequest) -> PlaceCallResult:
        body = {
            "to": req.to,
            "from": req.from_,
            "params": {"call_id": req.call_id, "token": req.token},
            "status_url": req.status_url,
            "media_url": req.media_url,
        }
        try:
            response = await self._http.post(f"{self._base}/calls", json=body)
        except httpx.TransportError as exc:
            raise ProviderError("unavailable", repr(exc), retryable=True) from exc
        if response.status_code != 201:
            raise ProviderError("rejected", response.text, status=response.status_code)
        return PlaceCallResult(provider_call_id=response.json()["id"])

    async def hangup(self, provider_call_id: str) -> None:
        response = await self._http.post(f"{self._base}/calls/{provider_call_id}/hangup")
        if response.status_code not in (204, 404):
            raise ProviderError("unavailable", response.text, status=response.status_code, retryable=True)

    async def transfer(
        self, provider_call_id: str, to_e164: str, *, caller_id: str | None, status_url: str | None = None
    ) -> None:
        raise ProviderError("rejected", "JSONWire cannot transfer calls")

    async def owns_number(self, e164: str) -> bool:
        try:
            response = await self._http.get(f"{self._base}/numbers/{e164}")
        except httpx.TransportError as exc:
            raise ProviderError("unavailable", repr(exc), retryable=True) from exc
        if response.status_code not in (200, 404):
            raise ProviderError("unavailable", response.text, status=response.status_code, retryable=True)
        return response.status_code == 200

    def owns_webhook(self, req: WebhookRequest) -> bool:
        return True

    def verify_webhook(self, req: WebhookRequest) -> bool:
        claimed = req.headers.get(SIGNATURE_HEADER.lower(), "")
        return hmac.compare_digest(claimed, sign(self._secret, req.method, req.url, req.body))

    def webhook_jti(self, req: WebhookRequest) -> str | None:
        return None

    def parse_status(self, req: WebhookRequest) -> StatusEvent | None:
        try:
            progress = msgspec.json.decode(req.body, type=_Progress)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed JSONWire progress: {exc}") from exc
        if progress.state not in _STATES:
            return None
        status, end_reason = _STATES[progress.state]
        return StatusEvent(
            provider=self.name,
            provider_call_id=progress.id,
            status=status,
            raw_status=progress.state,
            sequence=None,
            occurred_at=None,
            duration_seconds=progress.seconds,
            answered_by=None,
            end_reason=end_reason,
            price=None,
            price_currency=None,
            is_final=status in TERMINAL_STATUSES,
            call_id=query_param(req.url, "call_id"),  # the signature covers the URL
        )

    def parse_inbound(self, req: WebhookRequest) -> InboundCall:
        try:
            incoming = msgspec.json.decode(req.body, type=_Incoming)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"inbound call webhook without the called number or call id: {exc}") from exc
        return InboundCall(to=incoming.to, from_=incoming.from_, provider_call_id=incoming.id)

    def answer_stream(self, media_url: str, call_id: str, token: str) -> tuple[str, bytes]:
        answer: dict[str, Any] = {
            "action": "stream",
            "url": media_url,
            "params": {"call_id": call_id, "token": token},
        }
        return "application/json", _ENCODER.encode(answer)

    def answer_reject(self, message: str) -> tuple[str, bytes]:
        return "application/json", _ENCODER.encode({"action": "say", "text": message})

    async def aclose(self) -> None:
        await self._http.aclose()


def _build(config: CarrierConfig) -> JsonWireProvider:
    return JsonWireProvider(
        base_url=config["jsonwire_base_url"] or "",
        api_key=config["jsonwire_api_key"] or "",
        secret=config["jsonwire_secret"] or "",
    )


CARRIER = Carrier(
    name="jsonwire",
    title="JSONWire",
    routes=CarrierRoutes(
        segment="jsonwire",
        webhooks=(
            WebhookRoute(
                kind="answer", path="incoming", operation_id="jsonwireIncoming", summary="JSONWire call"
            ),
            WebhookRoute(
                kind="status", path="progress", operation_id="jsonwireProgress", summary="JSONWire state"
            ),
        ),
        media=MediaRoute(codec=JsonWireCodec, path="stream"),
    ),
    build=_build,
    settings=("jsonwire_base_url", "jsonwire_api_key", "jsonwire_secret"),
    required=("jsonwire_base_url", "jsonwire_api_key", "jsonwire_secret"),
)
