"""What a telephony carrier module declares: its webhook routes, media socket, callback URLs, settings and builder.

A carrier module (twilio, vonage, simulator, or one a deployment adds) ends with one `Carrier` value; the
registry lists them, and the service reads nothing else about carriers:

- the routes: every webhook (which kind, path segment, methods, where its fields come from, whether its signed
  token carries a one-time id the service must remember) and the media socket (codec, whether the upgrade is
  signed, which close codes end a call normally), all under /v1/telephony/{segment}/;
- the callback URLs of a call it places, derived from those routes and the service's public base URL;
- its configuration: the setting names it reads (upper-cased, they are environment variables) and which of them
  it cannot work without. The service looks the names up and hands `build` a plain mapping, so a carrier never
  sees the service's Settings and a new carrier needs no new Settings field (names the Settings do not know are
  read from the environment).

Carriers may share a wire format and its routes (the simulator speaks Twilio's on Twilio's paths): they declare
the same `CarrierRoutes` value, and each provider client says which webhooks are its own (`owns_webhook`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from providers.telephony.base import MediaCodec, TelephonyProvider

__all__ = [
    "ROUTE_PREFIX",
    "CallbackUrls",
    "Carrier",
    "CarrierConfig",
    "CarrierRoutes",
    "MediaRoute",
    "WebhookKind",
    "WebhookMethod",
    "WebhookRoute",
]

# Every carrier's routes live under /v1/telephony/{segment}/.
ROUTE_PREFIX = "/v1/telephony"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,49}$")  # the database checks the same format on provider columns
_SEGMENT = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")

# answer: an inbound call asks what to do (the answer is the carrier's call-control document);
# status: progress events of a call (ringing, answered, completed, …), answered 204.
WebhookKind = Literal["answer", "status"]
WebhookMethod = Literal["GET", "POST"]  # carriers call webhooks with these
CarrierConfig = Mapping[str, str | None]  # setting name → value (None when unset)


@dataclass(frozen=True, slots=True)
class WebhookRoute:
    """One webhook the carrier calls: /v1/telephony/{segment}/{path}."""

    kind: WebhookKind
    path: str
    operation_id: str  # OpenAPI; with several methods each gets the method as a suffix (…Get, …Post)
    summary: str
    methods: tuple[WebhookMethod, ...] = ("POST",)
    # Where WebhookRequest.form comes from on a POST: the form-encoded body (Twilio) or the query string (carriers
    # whose body is JSON). A GET's form is always its query string.
    form_from_body: bool = True
    # The signed token carries a one-time id (TelephonyProvider.webhook_jti): the service remembers it this long
    # (at least as long as the token's timestamp is accepted) and refuses it on any other request. None: the
    # carrier signs no such id.
    replay_window_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class MediaRoute:
    """The carrier's media WebSocket: /v1/telephony/{segment}/{path}."""

    codec: Callable[[], MediaCodec]  # a fresh codec for one call's socket
    path: str = "media"
    # The upgrade request is signed like a webhook (verify_webhook on a GET of the wss:// URL, no form): refused
    # with 403 before any frame is read when no provider sharing these routes verifies it.
    signed_upgrade: bool = False
    # The carrier ends a call by closing with one of these codes, without a stop event (Vonage: 1000).
    clean_close_codes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class CallbackUrls:
    """Where the carrier reaches the service about one call we place."""

    answer: (
        str  # the answer webhook, ?call_id=… (carriers that fetch call control instead of taking it inline)
    )
    status: str  # the status webhook, ?call_id=…
    media: str  # the media socket, ws(s)://, no query string


def _ws(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://") :]
    if base_url.startswith("http://"):
        return "ws://" + base_url[len("http://") :]
    return base_url


@dataclass(frozen=True, slots=True)
class CarrierRoutes:
    """The webhooks and media socket of one wire format, mounted under /v1/telephony/{segment}/."""

    segment: str
    webhooks: tuple[WebhookRoute, ...]
    media: MediaRoute

    def __post_init__(self) -> None:
        if not _SEGMENT.match(self.segment):
            raise ValueError(f"carrier route segment {self.segment!r} must match {_SEGMENT.pattern}")
        kinds = [hook.kind for hook in self.webhooks]
        if sorted(set(kinds)) != ["answer", "status"] or len(kinds) != len(set(kinds)):
            raise ValueError(
                f"carrier routes {self.segment!r} need exactly one answer and one status webhook"
            )

    def path(self, leaf: str) -> str:
        return f"{ROUTE_PREFIX}/{self.segment}/{leaf}"

    def webhook(self, kind: WebhookKind) -> WebhookRoute:
        return next(hook for hook in self.webhooks if hook.kind == kind)

    def callback_urls(self, public_base_url: str, call_id: str) -> CallbackUrls:
        base = public_base_url.rstrip("/")
        return CallbackUrls(
            answer=f"{base}{self.path(self.webhook('answer').path)}?call_id={call_id}",
            status=f"{base}{self.path(self.webhook('status').path)}?call_id={call_id}",
            media=f"{_ws(base)}{self.path(self.media.path)}",
        )


@dataclass(frozen=True, slots=True)
class Carrier:
    """Everything the service needs to know about one carrier (see the module docstring)."""

    name: str  # stored on numbers and calls ("twilio"); lower case, digits, underscores
    title: str  # for people: "Twilio"
    routes: CarrierRoutes
    build: Callable[[CarrierConfig], TelephonyProvider]  # raises ValueError for a malformed setting
    settings: tuple[str, ...] = ()  # setting names it reads; the environment variable is the upper-case name
    required: tuple[str, ...] = ()  # the settings it cannot work without

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"carrier name {self.name!r} must match {_NAME.pattern}")
        unknown = set(self.required) - set(self.settings)
        if unknown:
            raise ValueError(f"carrier {self.name!r} requires undeclared settings {sorted(unknown)}")
