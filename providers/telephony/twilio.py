"""Twilio: status callbacks, inbound calls, signature checks, the REST calls we make (place a call, hang up,
transfer with <Dial> TwiML, whether a number is on the account: IncomingPhoneNumbers), and the carrier declaration the service mounts (its Media Streams wire format is
twilio_media.py).

The REST calls go through the official SDK with its aiohttp-based async client; the SDK has no base-URL option,
so `RebasedTwilioHttpClient` rewrites https://api.twilio.com to TWILIO_BASE_URL (tests and a local simulator).
Signatures: X-Twilio-Signature over the URL and sorted form, HMAC-SHA1 with the auth token, or, under webhook
signature settings, HMAC-SHA1/SHA256 with the Webhooks SharedKey the settings header names.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import AsyncHttpClient
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.rest import Client

from providers.telephony.base import (
    TERMINAL_STATUSES,
    CallStatus,
    InboundCall,
    PlaceCallRequest,
    PlaceCallResult,
    ProtocolError,
    ProviderError,
    StatusEvent,
    WebhookRequest,
    query_param,
)
from providers.telephony.carrier import Carrier, CarrierConfig, CarrierRoutes, MediaRoute, WebhookRoute
from providers.telephony.twilio_media import TwilioCodec

__all__ = [
    "CARRIER",
    "ROUTES",
    "SIGNATURE_SETTINGS_HEADER",
    "TWILIO_API_BASE",
    "RebasedTwilioHttpClient",
    "TwilioCodec",
    "TwilioProvider",
    "parse_shared_keys",
]

TWILIO_API_BASE = "https://api.twilio.com"
# Webhooks signed with a Webhooks SharedKey name it and the algorithm here: "key=<sharedKeyId>,algorithm=HMAC_SHA256"
# (twilio.request_validator.SIGNATURE_SETTINGS_HEADER); without it the signature is HMAC-SHA1 with the auth token.
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
DEFAULT_HTTP_TIMEOUT = 10.0


# --- status callbacks ---

# Twilio CallStatus → (our status, end_reason)
_STATUS_MAP: dict[str, tuple[CallStatus, str | None]] = {
    "queued": (CallStatus.PENDING, None),
    "initiated": (CallStatus.PENDING, None),
    "ringing": (CallStatus.RINGING, None),
    "in-progress": (CallStatus.ONGOING, None),
    "answered": (CallStatus.ONGOING, None),
    "completed": (CallStatus.ENDED, None),
    "busy": (CallStatus.DECLINED, "busy"),
    "no-answer": (CallStatus.DECLINED, "no_answer"),
    "canceled": (CallStatus.CANCELLED, "canceled"),
    "failed": (CallStatus.FAILED, "failed"),
}


def _int_or_none(value: str | None, field: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise ProtocolError(f"Twilio {field} is not an integer: {value!r}") from exc


def _rfc2822(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"Twilio Timestamp is not RFC 2822: {value!r}") from exc


# --- REST ---

_INVALID_NUMBER_CODES = {21211, 21214, 21217, 13224}
_AUTH_CODES = {20003}
_RATE_CODES = {20429}
_ALREADY_ENDED_CODES = {20404, 21220}  # not found / "call is not in-progress"


class RebasedTwilioHttpClient(AsyncTwilioHttpClient):
    """The SDK's aiohttp client, pointed at another base URL, with a default timeout.

    The SDK builds absolute https://api.twilio.com URLs and offers no base-URL setting. Its async
    client also passes `timeout=None` to aiohttp per request, which disables aiohttp's timeout
    entirely (this subclass applies its own default instead), and sends Basic auth through
    aiohttp.BasicAuth, deprecated since aiohttp 3.14 (this subclass sets the header itself).
    Must be created inside a running loop (aiohttp's ClientSession requires one).
    """

    def __init__(self, base_url: str | None = None, timeout: float = DEFAULT_HTTP_TIMEOUT) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/") if base_url else None

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's HttpClient signature
        allow_redirects: bool = False,
    ) -> Response:
        if self.base_url and url.startswith(TWILIO_API_BASE):
            url = self.base_url + url[len(TWILIO_API_BASE) :]
        if auth is not None:
            # The SDK would wrap these in aiohttp.BasicAuth, deprecated (warns) since aiohttp 3.14.
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers = {**(headers or {}), "Authorization": f"Basic {credentials}"}
        return await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )


def _rest_message(exc: TwilioRestException | TwilioServiceException) -> str:
    return str(exc.msg if isinstance(exc, TwilioRestException) else (exc.detail or exc.title))


def _map_rest_error(exc: TwilioRestException | TwilioServiceException) -> ProviderError:
    status = exc.status
    code = exc.code
    message = _rest_message(exc)
    if code in _INVALID_NUMBER_CODES:
        return ProviderError("invalid_number", message, status=status)
    if code in _AUTH_CODES or status in (401, 403):
        return ProviderError("auth", message, status=status)
    if code in _RATE_CODES or status == 429:
        return ProviderError("rate_limited", message, status=status, retryable=True)
    if status >= 500:
        return ProviderError("unavailable", message, status=status, retryable=True)
    if 400 <= status < 500:
        return ProviderError("rejected", message, status=status)
    return ProviderError("unknown", message, status=status)


def _twiml_stream(media_url: str, call_id: str, token: str) -> str:
    return (
        "<Response><Connect>"
        f"<Stream url={quoteattr(media_url)}>"
        f'<Parameter name="call_id" value={quoteattr(call_id)}/>'
        f'<Parameter name="token" value={quoteattr(token)}/>'
        "</Stream></Connect></Response>"
    )


def _twiml_dial(to_e164: str, caller_id: str | None, status_url: str | None = None) -> str:
    caller = f" callerId={quoteattr(caller_id)}" if caller_id else ""
    # The dialled (child) call's own status callback: its `completed` carries its CallDuration and ParentCallSid.
    callback = (
        f' statusCallback={quoteattr(status_url)} statusCallbackEvent="completed" statusCallbackMethod="POST"'
        if status_url
        else ""
    )
    return f"<Response><Dial{caller}><Number{callback}>{escape(to_e164)}</Number></Dial></Response>"


class TwilioProvider:
    """Twilio Programmable Voice: outbound calls, hang-up, status callbacks, Media Streams."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        base_url: str | None = None,
        http_client_factory: Callable[[], AsyncHttpClient] | None = None,
        webhook_shared_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self._auth_token = auth_token
        self._validator = RequestValidator(auth_token)
        # Webhooks SharedKey id → its signing secret (webhooks signed under Twilio's webhook signature settings).
        self._shared_validators = {
            key_id: RequestValidator(secret) for key_id, secret in (webhook_shared_keys or {}).items()
        }
        self._http_client_factory = http_client_factory or (lambda: RebasedTwilioHttpClient(base_url))
        self._http_client: AsyncHttpClient | None = None
        self._client: Client | None = None

    def _rest(self) -> Client:
        # Created on first use: aiohttp sessions need a running event loop.
        if self._client is None:
            self._http_client = self._http_client_factory()
            self._client = Client(self.account_sid, self._auth_token, http_client=self._http_client)
        return self._client

    async def place_call(self, req: PlaceCallRequest) -> PlaceCallResult:
        kwargs: dict[str, Any] = {
            "to": req.to,
            "from_": req.from_,
            "twiml": _twiml_stream(req.media_url, req.call_id, req.token),
            "status_callback": req.status_url,
            "status_callback_method": "POST",
            "status_callback_event": ["initiated", "ringing", "answered", "completed"],
            "timeout": req.timeout_seconds,
        }
        if req.machine_detection:
            # Async AMD: the call connects to the stream at once; the result arrives as its own
            # callback (AnsweredBy) while the conversation is already running.
            kwargs.update(
                machine_detection="Enable", async_amd="true", async_amd_status_callback=req.status_url
            )
        if req.time_limit_seconds is not None:
            kwargs["time_limit"] = req.time_limit_seconds
        try:
            call = await self._rest().calls.create_async(**kwargs)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _map_rest_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            # A timeout leaves it unknown whether Twilio placed the call; status callbacks will tell.
            raise ProviderError("unavailable", f"Twilio unreachable: {exc!r}", retryable=True) from exc
        if not call.sid:
            raise ProviderError("unknown", "Twilio returned no call sid")
        return PlaceCallResult(provider_call_id=call.sid)

    async def hangup(self, provider_call_id: str) -> None:
        # "completed" ends the call in any state ("canceled" would only reach queued/ringing calls).
        try:
            await self._rest().calls(provider_call_id).update_async(status="completed")
        except (TwilioRestException, TwilioServiceException) as exc:
            if exc.status == 404 or exc.code in _ALREADY_ENDED_CODES:
                return
            raise _map_rest_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError("unavailable", f"Twilio unreachable: {exc!r}", retryable=True) from exc

    async def transfer(
        self, provider_call_id: str, to_e164: str, *, caller_id: str | None, status_url: str | None = None
    ) -> None:
        # New TwiML on a live call replaces <Connect><Stream>: Twilio sends `stop` on the media socket, dials
        # the target, and the call completes (final status callback) when the dialled leg ends.
        try:
            await self._rest().calls(provider_call_id).update_async(
                twiml=_twiml_dial(to_e164, caller_id, status_url)
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            if exc.status == 404 or exc.code in _ALREADY_ENDED_CODES:
                raise ProviderError(
                    "rejected", f"the call is not in progress: {_rest_message(exc)}", status=exc.status
                ) from exc
            raise _map_rest_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError("unavailable", f"Twilio unreachable: {exc!r}", retryable=True) from exc

    async def owns_number(self, e164: str) -> bool:
        # IncomingPhoneNumbers filters by partial number ("+1415555012" also finds "+14155550123"): compare exactly.
        try:
            found = await self._rest().incoming_phone_numbers.list_async(phone_number=e164, limit=20)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _map_rest_error(exc) from exc
        except TwilioException as exc:
            # A list page the SDK could not read: TwilioException("Unable to fetch page", <Response>).
            status = getattr(exc.args[1], "status_code", None) if len(exc.args) > 1 else None
            if status in (401, 403):
                raise ProviderError("auth", f"Twilio refused the credentials ({status})", status=status) from exc
            raise ProviderError("unavailable", f"Twilio could not list the account's numbers ({status})",
                                status=status, retryable=True) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError("unavailable", f"Twilio unreachable: {exc!r}", retryable=True) from exc
        return any(number.phone_number == e164 for number in found)

    def owns_webhook(self, req: WebhookRequest) -> bool:
        return req.form.get("AccountSid") == self.account_sid

    def verify_webhook(self, req: WebhookRequest) -> bool:
        signature = req.headers.get("x-twilio-signature")
        if not signature:
            return False
        # Twilio signs URL + sorted POST params; a GET is signed on its URL (query included) alone.
        params = dict(req.form) if req.method.upper() == "POST" else {}
        settings = req.headers.get(SIGNATURE_SETTINGS_HEADER)
        if not settings:
            return bool(self._validator.validate(req.url, params, signature))
        # Signature settings: the algorithm (HMAC_SHA1 or HMAC_SHA256) and the SharedKey whose secret signed it.
        # An unknown key id falls back to the auth token; the SDK refuses (False) an algorithm it does not know.
        key = _settings_key(settings)
        validator = self._shared_validators.get(key, self._validator) if key is not None else self._validator
        algorithm = get_signature_algorithm(settings)
        return bool(validator.validate(req.url, params, signature, algorithm=algorithm))

    def webhook_jti(self, req: WebhookRequest) -> str | None:
        """Twilio signs no one-time id; status callbacks are deduplicated by status rank instead."""
        return None

    def parse_status(self, req: WebhookRequest) -> StatusEvent | None:
        form = req.form
        call_sid = form.get("CallSid")
        if not call_sid:
            raise ProtocolError("Twilio status callback without CallSid")
        raw_status = form.get("CallStatus")
        answered_by = form.get("AnsweredBy") or None
        if raw_status:
            mapped = _STATUS_MAP.get(raw_status)
            if mapped is None:
                return None  # a status Twilio added after this was written: nothing to apply
            status, end_reason = mapped
        elif answered_by:
            # Async AMD result: its own callback, no CallStatus; AMD only runs on an answered call.
            status, end_reason, raw_status = CallStatus.ONGOING, None, "amd"
        else:
            return None
        return StatusEvent(
            provider=self.name,
            provider_call_id=call_sid,
            status=status,
            raw_status=raw_status,
            sequence=_int_or_none(form.get("SequenceNumber"), "SequenceNumber"),
            occurred_at=_rfc2822(form.get("Timestamp")),
            duration_seconds=_int_or_none(form.get("CallDuration"), "CallDuration"),
            answered_by=answered_by,
            end_reason=end_reason,
            price=None,  # not in status callbacks; Twilio prices the call later on the Call resource
            price_currency=None,
            is_final=status in TERMINAL_STATUSES,
            sip_response_code=_int_or_none(form.get("SipResponseCode"), "SipResponseCode"),
            call_id=query_param(req.url, "call_id"),
            leg=query_param(req.url, "leg"),
            parent_provider_call_id=form.get("ParentCallSid") or None,
            to=form.get("To") or None,
        )

    def parse_inbound(self, req: WebhookRequest) -> InboundCall:
        # Twilio's signature covers the whole form: every field can be trusted once it verified.
        form = req.form
        to, call_sid = form.get("To"), form.get("CallSid")
        if not to or not call_sid:
            raise ProtocolError("inbound call webhook without the called number or call id")
        return InboundCall(to=to, from_=form.get("From") or None, provider_call_id=call_sid)

    def answer_stream(self, media_url: str, call_id: str, token: str) -> tuple[str, bytes]:
        return "text/xml", _twiml_stream(media_url, call_id, token).encode()

    def answer_reject(self, message: str) -> tuple[str, bytes]:
        return "text/xml", f"<Response><Say>{escape(message)}</Say><Hangup/></Response>".encode()

    async def aclose(self) -> None:
        client, self._http_client, self._client = self._http_client, None, None
        if client is not None:
            close = getattr(client, "close", None)
            if close is not None:
                await close()


def _settings_key(settings_header: str) -> str | None:
    """The SharedKey id named in an X-Twilio-Webhooks-Signature-Settings header ("key=…,algorithm=…")."""
    for part in settings_header.split(","):
        name, separator, value = part.partition("=")
        if separator and name.strip() == "key" and value.strip():
            return value.strip()
    return None


def parse_shared_keys(value: str | None) -> dict[str, str]:
    """TWILIO_WEBHOOK_SHARED_KEYS: comma-separated `key_id:secret` pairs (several while a key is rotated)."""
    keys: dict[str, str] = {}
    for entry in (value or "").split(","):
        if not entry.strip():
            continue
        key_id, separator, secret = entry.strip().partition(":")
        if not separator or not key_id.strip() or not secret.strip():
            raise ValueError("each webhook shared key is `key_id:secret`, comma-separated")
        keys[key_id.strip()] = secret.strip()
    return keys


# --- what the service mounts and how it builds the client ---

ROUTES = CarrierRoutes(
    segment="twilio",
    webhooks=(
        WebhookRoute(
            kind="answer",
            path="voice",
            operation_id="twilioVoiceWebhook",
            summary="Twilio inbound call → TwiML",
        ),
        WebhookRoute(
            kind="status",
            path="status",
            operation_id="twilioStatusWebhook",
            summary="Twilio call status callback",
        ),
    ),
    # Twilio signs the upgrade with X-Twilio-Signature over the <Stream> URL (wss://, no POST params).
    media=MediaRoute(codec=TwilioCodec, signed_upgrade=True),
)


def _build(config: CarrierConfig) -> TwilioProvider:
    return TwilioProvider(
        account_sid=config["twilio_account_sid"] or "",
        auth_token=config["twilio_auth_token"] or "",
        base_url=config["twilio_base_url"],
        webhook_shared_keys=parse_shared_keys(config["twilio_webhook_shared_keys"]),
    )


CARRIER = Carrier(
    name="twilio",
    title="Twilio",
    routes=ROUTES,
    build=_build,
    settings=("twilio_account_sid", "twilio_auth_token", "twilio_base_url", "twilio_webhook_shared_keys"),
    required=("twilio_account_sid", "twilio_auth_token"),
)
