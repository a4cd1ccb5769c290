"""Vonage Voice API: event webhooks, answer webhooks, signed-webhook checks, REST calls (place a call, hang up,
transfer to an NCCO), and the carrier declaration the service mounts (its WebSocket media wire format is
vonage_media.py).

The REST API is called with httpx and an RS256 application JWT we sign (the `vonage` SDK is synchronous);
request bodies follow the `vonage-voice` SDK models (CreateCallRequest, Connect, WebsocketEndpoint). Whether a
number is on the account goes through the SDK's Numbers API (vonage_account.py).

Signed webhooks: `verify_webhook` checks the HS256 JWT, its `payload_hash` and its `iat`. The token signs the
body, never the URL: events find their call by the body's uuid, POST answers are read from the body, and only a
GET answer (Vonage's default method, which has nothing else) is read from its query string, which the replay guard
binds to the token. Replay protection needs state: the service records
`webhook_jti(req)` with the request it came on (for as long as `iat` is accepted), lets the carrier's retry of that
same request through and refuses the jti on any other request.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import jwt
import msgspec

from providers.telephony.base import (
    TERMINAL_STATUSES,
    CallStatus,
    InboundCall,
    PlaceCallRequest,
    PlaceCallResult,
    ProtocolError,
    ProviderError,
    ProviderErrorCode,
    StatusEvent,
    WebhookRequest,
    query_param,
)
from providers.telephony.carrier import Carrier, CarrierConfig, CarrierRoutes, MediaRoute, WebhookRoute
from providers.telephony.vonage_account import VONAGE_REST_BASE, VonageNumbers
from providers.telephony.vonage_media import VONAGE_CONTENT_TYPE, VonageCodec

__all__ = ["CARRIER", "ROUTES", "VONAGE_API_BASE", "VONAGE_CONTENT_TYPE", "VonageCodec", "VonageProvider"]

VONAGE_API_BASE = "https://api.nexmo.com"
DEFAULT_HTTP_TIMEOUT = 10.0
APP_JWT_TTL_SECONDS = 300
WEBHOOK_MAX_SKEW_SECONDS = 300
# A Vonage account is billed in the currency chosen when it was opened (EUR unless another was asked for); its
# event webhooks' `price` and `rate` are in that currency and say nothing of it.
DEFAULT_ACCOUNT_CURRENCY = "EUR"


def account_currency(value: str | None) -> str:
    """VONAGE_ACCOUNT_CURRENCY as an ISO 4217 code; ValueError naming the setting otherwise."""
    code = (value or DEFAULT_ACCOUNT_CURRENCY).strip().upper()
    if len(code) != 3 or not code.isalpha() or not code.isascii():
        raise ValueError(f"VONAGE_ACCOUNT_CURRENCY must be an ISO 4217 code such as EUR or USD, not {value!r}")
    return code


# --- event webhooks ---


# Only the fields the service reads are declared (msgspec skips the rest): a field Vonage adds or changes that we
# do not use never makes an event unreadable.
class _Event(msgspec.Struct):
    status: str | None = None
    uuid: str | None = None
    call_uuid: str | None = None  # human/machine events name the call this way
    timestamp: datetime | None = None
    duration: str | int | None = None
    price: Decimal | None = None
    end_time: datetime | None = None
    detail: str | None = None
    conversation_uuid: Any = None  # read leniently: only a string is used
    to: Any = None  # a number's digits; other endpoints (websocket, app) may name theirs otherwise: read leniently


_EVENT_DECODER = msgspec.json.Decoder(_Event)
_DICT_DECODER = msgspec.json.Decoder(dict[str, Any])

# Vonage status → (our status, end_reason). human/machine are AMD results, handled apart;
# `disconnected` concerns the WebSocket leg, not the phone call, and is ignored.
_STATUS_MAP: dict[str, tuple[CallStatus, str | None]] = {
    "started": (CallStatus.PENDING, None),
    "ringing": (CallStatus.RINGING, None),
    "answered": (CallStatus.ONGOING, None),
    "completed": (CallStatus.ENDED, None),
    "busy": (CallStatus.DECLINED, "busy"),
    "timeout": (CallStatus.DECLINED, "no_answer"),
    "unanswered": (CallStatus.DECLINED, "no_answer"),
    "rejected": (CallStatus.DECLINED, "rejected"),
    "cancelled": (CallStatus.CANCELLED, "cancelled"),
    "failed": (CallStatus.FAILED, "failed"),
}
_AMD_STATUSES = {"human", "machine"}


def _e164_digits(number: str) -> str:
    """Vonage wants E.164 digits without the leading '+'."""
    return number.removeprefix("+")


def _plus(number: str) -> str:
    """Vonage sends E.164 digits without the '+'; anything else (a withheld caller's word) is left as it is."""
    return f"+{number}" if number.isdigit() else number


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _ncco_connect(media_url: str, call_id: str, token: str, from_: str | None = None) -> list[dict[str, Any]]:
    connect: dict[str, Any] = {"action": "connect"}
    if from_ is not None:
        connect["from"] = _e164_digits(from_)
    connect["endpoint"] = [
        {
            "type": "websocket",
            "uri": media_url,
            "content-type": VONAGE_CONTENT_TYPE,
            "headers": {"call_id": call_id, "token": token},
        }
    ]
    return [connect]


def _transfer_body(to_e164: str, caller_id: str | None, status_url: str | None = None) -> dict[str, Any]:
    """PUT /v1/calls/{uuid} body moving the call to an NCCO that connects `to_e164` (vonage-voice's
    transfer_call_ncco with a Connect to a PhoneEndpoint); the connected leg's events go to `status_url`."""
    connect: dict[str, Any] = {"action": "connect"}
    if caller_id:
        connect["from"] = _e164_digits(caller_id)
    if status_url:
        connect["eventUrl"] = [status_url]
        connect["eventMethod"] = "POST"
    connect["endpoint"] = [{"type": "phone", "number": _e164_digits(to_e164)}]
    return {"action": "transfer", "destination": {"type": "ncco", "ncco": [connect]}}


class VonageProvider:
    """Vonage Voice API: outbound calls, hang-up, event webhooks, WebSocket media."""

    name = "vonage"

    def __init__(
        self,
        application_id: str,
        private_key_pem: str | bytes,
        signature_secret: str,
        base_url: str = VONAGE_API_BASE,
        http_client: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_skew_seconds: int = WEBHOOK_MAX_SKEW_SECONDS,
        price_currency: str = DEFAULT_ACCOUNT_CURRENCY,
        api_key: str | None = None,
        api_secret: str | None = None,
        rest_url: str = VONAGE_REST_BASE,
    ) -> None:
        self.application_id = application_id
        self._private_key = private_key_pem
        self._signature_secret = signature_secret
        self.base_url = base_url.rstrip("/")
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=DEFAULT_HTTP_TIMEOUT)
        self._clock = clock
        self._max_skew = max_skew_seconds
        # Event webhooks give `price` and `rate` without a currency: they are in the account's billing currency
        # (VONAGE_ACCOUNT_CURRENCY), which the billing pipeline reconciles or flags against its own.
        self._price_currency = account_currency(price_currency)
        # The account's numbers are listed with the account's API key and secret (the application's JWT cannot).
        self._account = VonageNumbers(api_key, api_secret, rest_url)

    # --- REST ---

    def _app_jwt(self) -> str:
        now = int(self._clock())
        claims = {
            "application_id": self.application_id,
            "iat": now,
            "exp": now + APP_JWT_TTL_SECONDS,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self._private_key, algorithm="RS256")

    async def _request(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self._http.request(
                method,
                f"{self.base_url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {self._app_jwt()}", "Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise ProviderError("unavailable", f"Vonage unreachable: {exc!r}", retryable=True) from exc

    async def place_call(self, req: PlaceCallRequest) -> PlaceCallResult:
        body: dict[str, Any] = {
            "to": [{"type": "phone", "number": _e164_digits(req.to)}],
            "from": {"type": "phone", "number": _e164_digits(req.from_)},
            "ncco": _ncco_connect(req.media_url, req.call_id, req.token, from_=req.from_),
            "event_url": [req.status_url],
            "event_method": "POST",
            "ringing_timer": req.timeout_seconds,
        }
        if req.machine_detection:
            body["machine_detection"] = "continue"  # report human/machine, keep the call up
        if req.time_limit_seconds is not None:
            body["length_timer"] = req.time_limit_seconds
        response = await self._request("POST", "/v1/calls", body)
        if response.status_code >= 300:
            raise _map_http_error(response)
        try:
            call_uuid = response.json()["uuid"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(
                "unknown", "Vonage returned no call uuid", status=response.status_code
            ) from exc
        return PlaceCallResult(provider_call_id=call_uuid)

    async def hangup(self, provider_call_id: str) -> None:
        response = await self._request("PUT", f"/v1/calls/{provider_call_id}", {"action": "hangup"})
        if response.status_code < 300 or response.status_code in (404, 410):
            return
        # A call that has already ended cannot be modified: Vonage answers 4xx saying so.
        if response.status_code in (400, 409) and _mentions_ended(response):
            return
        raise _map_http_error(response)

    async def transfer(
        self, provider_call_id: str, to_e164: str, *, caller_id: str | None, status_url: str | None = None
    ) -> None:
        # The phone leg moves to a new NCCO that connects the target; Vonage then closes our WebSocket leg
        # (1000), and the call's `completed` event comes once the transferred leg ends.
        response = await self._request(
            "PUT", f"/v1/calls/{provider_call_id}", _transfer_body(to_e164, caller_id, status_url)
        )
        if response.status_code < 300:
            return
        if response.status_code in (404, 410) or (
            response.status_code in (400, 409) and _mentions_ended(response)
        ):
            raise ProviderError(
                "rejected",
                f"the call is not in progress: {_error_text(response)}",
                status=response.status_code,
            )
        if response.status_code in (400, 422):
            names = _invalid_parameter_names(response)
            code: ProviderErrorCode = (
                "invalid_number" if any("number" in name for name in names) else "rejected"
            )
            raise ProviderError(code, _error_text(response), status=response.status_code)
        raise _map_http_error(response)

    async def owns_number(self, e164: str) -> bool:
        return await self._account.holds(e164)

    # --- webhooks ---

    def _bearer(self, req: WebhookRequest) -> str | None:
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()

    def verify_webhook(self, req: WebhookRequest) -> bool:
        """Signature (HS256, signature secret), payload_hash of a non-empty body, iat within the skew.

        Replay (jti) is the caller's check: see `webhook_jti`.
        """
        token = self._bearer(req)
        if token is None:
            return False
        try:
            # Time claims are checked below against the injectable clock, not pyjwt's.
            claims = jwt.decode(
                token,
                self._signature_secret,
                algorithms=["HS256"],
                options={"require": ["iat"], "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidTokenError:
            return False
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or abs(self._clock() - iat) > self._max_skew:
            return False
        exp = claims.get("exp")
        if isinstance(exp, int | float) and self._clock() > exp:
            return False
        app_id = claims.get("application_id")
        if app_id is not None and app_id != self.application_id:
            return False
        if req.body:
            expected = hashlib.sha256(req.body).hexdigest()
            claimed = claims.get("payload_hash")
            if not isinstance(claimed, str) or not hmac.compare_digest(claimed.lower(), expected):
                return False
        return True

    def webhook_jti(self, req: WebhookRequest) -> str | None:
        """The signed token's `jti`; call only after verify_webhook returned True."""
        token = self._bearer(req)
        if token is None:
            return None
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return None
        jti = claims.get("jti")
        return jti if isinstance(jti, str) and jti else None

    def parse_status(self, req: WebhookRequest) -> StatusEvent | None:
        """Map an event webhook. Each leg posts its own events under its own uuid (the WebSocket leg
        too), so match on provider_call_id. Vonage has no sequence number: order by occurred_at."""
        try:
            event = _EVENT_DECODER.decode(req.body)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed Vonage event webhook: {exc}") from exc
        raw_status = event.status
        call_uuid = event.uuid or event.call_uuid
        if raw_status is None:
            return None  # input, record, transfer … events carry no call status
        if not call_uuid:
            raise ProtocolError("Vonage event webhook without uuid")
        answered_by = None
        end_reason = None
        if raw_status in _AMD_STATUSES:
            status, answered_by = CallStatus.ONGOING, raw_status
        elif raw_status in _STATUS_MAP:
            status, end_reason = _STATUS_MAP[raw_status]
            if status is CallStatus.FAILED and event.detail:
                end_reason = event.detail
        else:
            return None
        leg = query_param(req.url, "leg")
        duration = None
        if event.duration is not None and event.duration != "":
            try:
                duration = int(event.duration)
            except ValueError as exc:
                raise ProtocolError(f"Vonage duration is not an integer: {event.duration!r}") from exc
        return StatusEvent(
            provider=self.name,
            provider_call_id=call_uuid,
            status=status,
            raw_status=raw_status,
            sequence=None,
            occurred_at=event.timestamp or event.end_time,
            duration_seconds=duration,
            answered_by=answered_by,
            end_reason=end_reason,
            price=event.price,
            price_currency=self._price_currency if event.price is not None else None,
            is_final=status in TERMINAL_STATUSES,
            # The signed token covers the body, not the URL: the ?call_id= of the event URL is nobody's word, so
            # the call is found by the body's uuid alone. A transferred call's dialled leg (?leg=transfer) has a
            # uuid of its own: its call_id is only a hint, which the service checks against the signed
            # conversation_uuid.
            call_id=query_param(req.url, "call_id") if leg == "transfer" else None,
            leg=leg,
            conversation_id=event.conversation_uuid if isinstance(event.conversation_uuid, str) else None,
            to=_plus(event.to) if isinstance(event.to, str) and event.to else None,
        )

    def owns_webhook(self, req: WebhookRequest) -> bool:
        return True  # one application per deployment; verify_webhook checks the token's application_id

    def parse_inbound(self, req: WebhookRequest) -> InboundCall:
        """The answer webhook's to / from / uuid. A POST's come from its JSON body, which the token's payload_hash
        signs; its query string is ignored (unsigned). A GET (Vonage's default answer method) has only its query
        string, which no signature covers: the replay guard binds the token to that exact URL, and POST
        (answer_method) is the way to have the numbers signed."""
        fields: Mapping[str, Any]
        if req.method.upper() == "POST":
            try:
                fields = _DICT_DECODER.decode(req.body)
            except msgspec.DecodeError as exc:
                raise ProtocolError(f"answer webhook body is not a JSON object: {exc}") from None
        else:
            fields = req.form
        to, from_, call_uuid = (_text(fields.get(key)) for key in ("to", "from", "uuid"))
        if not to or not call_uuid:
            raise ProtocolError("inbound call webhook without the called number or call id")
        return InboundCall(to=_plus(to), from_=_plus(from_) if from_ else None, provider_call_id=call_uuid)

    def answer_stream(self, media_url: str, call_id: str, token: str) -> tuple[str, bytes]:
        return "application/json", msgspec.json.encode(_ncco_connect(media_url, call_id, token))

    def answer_reject(self, message: str) -> tuple[str, bytes]:
        # A talk action and nothing after it: Vonage hangs up when the NCCO runs out.
        return "application/json", msgspec.json.encode([{"action": "talk", "text": message}])

    async def aclose(self) -> None:
        self._account.close()
        if self._owns_http:
            await self._http.aclose()


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(data, dict):
        parts = [str(data[key]) for key in ("title", "detail", "error_title") if data.get(key)]
        if parts:
            return ": ".join(parts)
    return response.text[:500]


def _mentions_ended(response: httpx.Response) -> bool:
    text = response.text.lower()
    return any(word in text for word in ("completed", "already", "not found", "does not exist"))


def _invalid_parameter_names(response: httpx.Response) -> set[str]:
    try:
        data = response.json()
    except ValueError:
        return set()
    params = data.get("invalid_parameters") if isinstance(data, dict) else None
    if not isinstance(params, list):
        return set()
    return {str(p.get("name", "")).lower() for p in params if isinstance(p, dict)}


def _map_http_error(response: httpx.Response) -> ProviderError:
    status = response.status_code
    message = _error_text(response)
    if status in (400, 422):
        # Our own request fields are fixed; an invalid parameter is almost always the callee number,
        # unless Vonage names another field (our caller id, for instance).
        names = _invalid_parameter_names(response)
        if names and not any(name.startswith("to") for name in names):
            return ProviderError("rejected", message, status=status)
        return ProviderError("invalid_number", message, status=status)
    if status in (401, 403):
        return ProviderError("auth", message, status=status)
    if status == 429:
        return ProviderError("rate_limited", message, status=status, retryable=True)
    if status >= 500:
        return ProviderError("unavailable", message, status=status, retryable=True)
    if 400 <= status < 500:
        return ProviderError("rejected", message, status=status)
    return ProviderError("unknown", message, status=status)


# --- what the service mounts and how it builds the client ---

ROUTES = CarrierRoutes(
    segment="vonage",
    webhooks=(
        WebhookRoute(
            kind="answer",
            path="answer",
            operation_id="vonageAnswerWebhook",
            summary="Vonage inbound call → NCCO",
            methods=("GET", "POST"),
            form_from_body=False,
            # A jti has to be remembered while its iat is still accepted (either side of now).
            replay_window_seconds=2 * WEBHOOK_MAX_SKEW_SECONDS,
        ),
        WebhookRoute(
            kind="status",
            path="events",
            operation_id="vonageEventWebhook",
            summary="Vonage call event webhook",
            form_from_body=False,
            replay_window_seconds=2 * WEBHOOK_MAX_SKEW_SECONDS,
        ),
    ),
    # Vonage does not sign the upgrade (the one-time token is the check) and ends a call by closing with 1000.
    media=MediaRoute(codec=VonageCodec, clean_close_codes=(1000,)),
)


def _build(config: CarrierConfig) -> VonageProvider:
    # Without a private key the provider still verifies webhooks and answers calls; placing a call fails with a
    # clear error from the JWT signer.
    return VonageProvider(
        application_id=config["vonage_application_id"] or "",
        private_key_pem=config["vonage_private_key"] or "",
        signature_secret=config["vonage_signature_secret"] or "",
        base_url=config["vonage_base_url"] or VONAGE_API_BASE,
        price_currency=account_currency(config.get("vonage_account_currency")),
        # Optional: only checking the account's numbers (registering a number) needs them.
        api_key=config.get("vonage_api_key"),
        api_secret=config.get("vonage_api_secret"),
        rest_url=config.get("vonage_rest_url") or VONAGE_REST_BASE,
    )


CARRIER = Carrier(
    name="vonage",
    title="Vonage",
    routes=ROUTES,
    build=_build,
    settings=(
        "vonage_application_id",
        "vonage_private_key",
        "vonage_signature_secret",
        "vonage_base_url",
        "vonage_account_currency",
        "vonage_api_key",
        "vonage_api_secret",
        "vonage_rest_url",
    ),
    required=("vonage_application_id", "vonage_signature_secret"),
)
