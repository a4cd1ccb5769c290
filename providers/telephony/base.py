"""The provider-neutral telephony contract: media events, codecs, call statuses and the provider Protocol.

Each provider module (twilio, vonage, simulator) turns its wire formats into these types and back;
the service (webhook handlers, media transport, dispatcher) only ever sees these. Nothing here
touches the database or the web framework.

Frames: a codec's `decode` takes a WebSocket text frame as `str` and a binary frame as `bytes`; the
`encode_*` methods return `str` for a text frame and `bytes` for a binary frame, and the transport
sends each as that kind of frame.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import parse_qs, urlsplit

import msgspec

__all__ = [
    "STATUS_RANK",
    "TERMINAL_STATUSES",
    "CallStatus",
    "InboundCall",
    "MediaAudio",
    "MediaCleared",
    "MediaCodec",
    "MediaDtmf",
    "MediaEvent",
    "MediaFormat",
    "MediaIgnored",
    "MediaMark",
    "MediaStarted",
    "MediaStopped",
    "PlaceCallRequest",
    "PlaceCallResult",
    "ProtocolError",
    "ProviderError",
    "ProviderErrorCode",
    "StatusEvent",
    "TelephonyProvider",
    "WebhookRequest",
    "is_status_advance",
    "query_param",
]


class MediaFormat(msgspec.Struct, frozen=True):
    """Audio on the call's media socket, both directions."""

    encoding: Literal["mulaw", "l16"]  # l16 = signed 16-bit little-endian PCM
    sample_rate: int
    channels: int = 1


# --- inbound media events (decoded from the provider socket) ---


class MediaStarted(msgspec.Struct, frozen=True):
    call_id: str | None  # our call id, from the per-call parameters/headers we put in the answer
    token: str | None  # the one-time media token we put next to it
    stream_id: str | None
    provider_call_id: str | None
    format: MediaFormat
    custom: dict[str, str]  # every per-call parameter/header, call_id and token included


class MediaAudio(msgspec.Struct, frozen=True):
    payload: bytes  # raw audio in the call's wire format (μ-law or PCM16LE), no header


class MediaDtmf(msgspec.Struct, frozen=True):
    digit: str


class MediaMark(msgspec.Struct, frozen=True):
    name: str  # Twilio mark echo / Vonage notify echo: audio sent before it has played


class MediaCleared(msgspec.Struct, frozen=True):
    pass  # Vonage websocket:cleared


class MediaStopped(msgspec.Struct, frozen=True):
    pass


class MediaIgnored(msgspec.Struct, frozen=True):
    reason: str  # e.g. Twilio "connected", an event type we do not use


MediaEvent = MediaStarted | MediaAudio | MediaDtmf | MediaMark | MediaCleared | MediaStopped | MediaIgnored


class ProtocolError(Exception):
    """A provider sent something that does not follow its protocol (malformed frame or webhook)."""


_Frame = TypeVar("_Frame")
_ANY_JSON = msgspec.json.Decoder(dict[str, Any])


def decode_frame(
    decoder: msgspec.json.Decoder[_Frame], message: str | bytes, *, tag: str, known: Collection[str],
    malformed: str, malformed_kind: str, not_json: str, unknown: str,
) -> _Frame | MediaIgnored:
    """A media socket's JSON text frame, decoded by its wire format's tagged-union `decoder`. A frame of a type
    the format knows but with a wrong shape, or no JSON object at all, is a ProtocolError; a frame of a type it
    does not know is ignored (carriers add events). The messages: `malformed` (not an object with `tag`),
    `malformed_kind` and `unknown` (with `{kind!r}`), `not_json`."""
    try:
        return decoder.decode(message)
    except msgspec.ValidationError as exc:
        try:
            kind = _ANY_JSON.decode(message).get(tag)
        except msgspec.DecodeError:
            raise ProtocolError(f"{malformed}: {exc}") from exc
        if not isinstance(kind, str):
            raise ProtocolError(f"{malformed}: {exc}") from exc
        if kind in known:
            raise ProtocolError(f"{malformed_kind.format(kind=kind)}: {exc}") from exc
        return MediaIgnored(reason=unknown.format(kind=kind))
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"{not_json}: {exc}") from exc


class MediaCodec(Protocol):
    """One call's media-socket wire format; stateful (remembers the stream id / format after start)."""

    format: MediaFormat | None  # known after the start event

    def decode(self, message: str | bytes) -> MediaEvent:
        """Decode one frame (text as str, binary as bytes). Raises ProtocolError on malformed input."""
        ...

    def encode_audio(self, frame: bytes) -> str | bytes:
        """One 20 ms frame in the call's wire format, ready to send (str = text frame, bytes = binary)."""
        ...

    def encode_mark(self, name: str) -> str:
        """A marker the provider echoes (as MediaMark) once all audio sent before it has played."""
        ...

    def encode_clear(self) -> str:
        """Drop the audio queued at the provider (barge-in)."""
        ...


# --- call status ---


class CallStatus(StrEnum):
    """The seeds' call statuses; providers' statuses map onto these."""

    PENDING = "pending"
    RINGING = "ringing"
    ONGOING = "ongoing"
    ENDED = "ended"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    FAILED = "failed"


TERMINAL_STATUSES: frozenset[CallStatus] = frozenset(
    {CallStatus.ENDED, CallStatus.DECLINED, CallStatus.CANCELLED, CallStatus.FAILED}
)

# Webhooks arrive out of order and more than once: a status only ever moves to a higher rank.
# All terminal statuses share the top rank, so one terminal status never replaces another.
STATUS_RANK: Mapping[CallStatus, int] = {
    CallStatus.PENDING: 0,
    CallStatus.RINGING: 1,
    CallStatus.ONGOING: 2,
    CallStatus.ENDED: 3,
    CallStatus.DECLINED: 3,
    CallStatus.CANCELLED: 3,
    CallStatus.FAILED: 3,
}


def is_status_advance(current: CallStatus, new: CallStatus) -> bool:
    """True when `new` may replace `current` (strictly higher rank)."""
    return STATUS_RANK[new] > STATUS_RANK[current]


class StatusEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One provider status webhook, mapped onto our statuses."""

    provider: str
    provider_call_id: str
    status: CallStatus
    raw_status: str  # the provider's own status word ("no-answer", "timeout", "amd" for AMD-only results)
    sequence: int | None  # Twilio SequenceNumber; None where the provider has none (order by occurred_at)
    occurred_at: datetime | None
    duration_seconds: int | None
    answered_by: str | None  # AMD result: human, machine_start, machine, …
    end_reason: str | None  # busy, no_answer, rejected, … (goes to metadata.end_reason)
    price: Decimal | None
    price_currency: str | None
    is_final: bool  # status is terminal
    sip_response_code: int | None = None
    # Our call id from the status URL's ?call_id=…, only where the carrier's signature covers the URL (Twilio):
    # an unsigned query parameter never names the call.
    call_id: str | None = None
    # "transfer": the status of the leg the carrier dialled when the call was transferred (the status URL given
    # with the transfer says so). `call_id` then names the transferred call (Vonage: unsigned, so the service
    # checks the leg's signed conversation against the call's), and the fields below tie the leg to it.
    leg: str | None = None
    parent_provider_call_id: str | None = None  # Twilio ParentCallSid
    conversation_id: str | None = None  # Vonage conversation_uuid (every leg of a call shares it)
    to: str | None = None  # the number the leg is connected to (E.164)


# --- placing calls ---


class PlaceCallRequest(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    to: str  # E.164
    from_: str  # E.164
    answer_url: str  # the carrier's answer webhook (for carriers that fetch call control; Twilio and Vonage
    # get theirs inline with the request)
    status_url: str  # status/event webhook; add ?call_id=… to have it echoed in StatusEvent.call_id
    media_url: str  # wss://…, no query string
    token: str  # one-time media token, checked when the media socket starts
    machine_detection: bool = True
    timeout_seconds: int = 30  # ring time before giving up
    time_limit_seconds: int | None = None  # maximum call length once answered


class PlaceCallResult(msgspec.Struct, frozen=True):
    provider_call_id: str


ProviderErrorCode = Literal["invalid_number", "auth", "rate_limited", "unavailable", "rejected", "unknown"]


class ProviderError(Exception):
    """A provider REST call failed. `retryable` says whether trying again later may succeed."""

    def __init__(
        self, code: ProviderErrorCode, message: str, *, status: int | None = None, retryable: bool = False
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ProviderErrorCode = code
        self.message = message
        self.status = status
        self.retryable = retryable


# --- webhooks ---


class WebhookRequest(msgspec.Struct, frozen=True):
    """An incoming provider webhook as the provider sent it."""

    url: str  # the public URL the provider called, query string included (from PUBLIC_BASE_URL)
    method: str
    headers: Mapping[str, str]  # lower-case keys
    body: bytes  # raw body, exactly as received (signatures cover it)
    form: Mapping[str, str]  # parsed form body (POST) or query params (GET)


class InboundCall(msgspec.Struct, frozen=True, kw_only=True):
    """An inbound call's answer webhook, read from what the carrier signed."""

    to: str  # the number called, E.164 with its '+'
    from_: str | None  # the caller as the carrier gives it (E.164, or e.g. "anonymous"); None when absent
    provider_call_id: str


def query_param(url: str, name: str) -> str | None:
    """First value of a query parameter of `url`, or None."""
    values = parse_qs(urlsplit(url).query).get(name)
    return values[0] if values else None


@runtime_checkable
class TelephonyProvider(Protocol):
    name: str

    async def place_call(self, req: PlaceCallRequest) -> PlaceCallResult:
        """Start an outbound call. Raises ProviderError."""
        ...

    async def hangup(self, provider_call_id: str) -> None:
        """End a call. Idempotent: a call that has already ended is success. Raises ProviderError."""
        ...

    async def transfer(
        self, provider_call_id: str, to_e164: str, *, caller_id: str | None, status_url: str | None = None
    ) -> None:
        """Move a live call to `to_e164`, showing `caller_id` (one of our numbers) when given. The provider
        then ends our media leg (Twilio: `stop`, Vonage: close 1000); the call goes on, and its final status
        arrives once the transferred leg ends. With `status_url`, the dialled leg's own statuses (duration, price)
        are posted there, so that it can be billed. Raises ProviderError: a call that has already ended (or is not
        answered yet) is `rejected`, never success."""
        ...

    async def owns_number(self, e164: str) -> bool:
        """Whether the number is on the carrier account this service uses (a tenant registers only numbers the
        account holds: otherwise anyone could claim, and so route, a number someone else has). Exact E.164 match.
        Raises ProviderError when the carrier cannot tell (credentials missing or refused, carrier unreachable)."""
        ...

    def owns_webhook(self, req: WebhookRequest) -> bool:
        """Whether a webhook names this provider's account (carriers sharing one wire format and its routes pick
        the client that verifies it this way); True for a carrier that has the routes to itself."""
        ...

    def verify_webhook(self, req: WebhookRequest) -> bool:
        """Check the provider's signature; call before reading anything else from the request."""
        ...

    def webhook_jti(self, req: WebhookRequest) -> str | None:
        """A one-time id of this webhook delivery for replay protection (the caller records it and
        rejects a repeat), or None when the provider signs no such id. Call after verify_webhook."""
        ...

    def parse_status(self, req: WebhookRequest) -> StatusEvent | None:
        """Map a status webhook; None for events we ignore. Raises ProtocolError on malformed input."""
        ...

    def parse_inbound(self, req: WebhookRequest) -> InboundCall:
        """Read an answer webhook's called number, caller and call id from what the carrier signed, numbers
        normalised to E.164. Raises ProtocolError when the called number or the call id is missing."""
        ...

    def answer_stream(self, media_url: str, call_id: str, token: str) -> tuple[str, bytes]:
        """(content_type, body) answering a call by connecting it to our media WebSocket."""
        ...

    def answer_reject(self, message: str) -> tuple[str, bytes]:
        """(content_type, body) that speaks `message` politely and hangs up."""
        ...

    async def aclose(self) -> None:
        """Release HTTP clients; the provider is not used afterwards."""
        ...
