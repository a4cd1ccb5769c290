"""Vonage's account API: which numbers the account holds (the Numbers API, GET /account/numbers on the REST host),
through the official SDK (`vonage_numbers` over `vonage_http_client`), with the account's API key and secret.

The SDK is synchronous (requests): each lookup runs in a worker thread, never on the event loop. It builds
`https://{rest_host}{path}` URLs only; a REST URL given as plain `http://` (the simulator, a local fake) gets an
adapter that sends those requests over HTTP instead, the way twilio.RebasedTwilioHttpClient rebases Twilio's.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from vonage_http_client import (
    Auth,
    AuthenticationError,
    ForbiddenError,
    HttpClient,
    HttpClientOptions,
    HttpRequestError,
    RateLimitedError,
)
from vonage_numbers import ListOwnedNumbersFilter, Numbers

from providers.telephony.base import ProviderError, ProviderErrorCode

__all__ = ["VONAGE_REST_BASE", "VonageNumbers"]

VONAGE_REST_BASE = "https://rest.nexmo.com"
LOOKUP_TIMEOUT_SECONDS = 10


class _PlainHttpAdapter(HTTPAdapter):
    """Sends the SDK's https:// requests for one host over plain HTTP (a local server)."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if request.url and request.url.startswith("https://"):
            request.url = "http://" + request.url[len("https://"):]
        return super().send(request, *args, **kwargs)


class VonageNumbers:
    """The numbers on one Vonage account."""

    def __init__(self, api_key: str | None, api_secret: str | None, rest_url: str = VONAGE_REST_BASE) -> None:
        self._api_key = api_key
        self._api_secret = api_secret
        self._rest_url = rest_url.rstrip("/")
        self._numbers: Numbers | None = None

    def _client(self) -> Numbers:
        if self._numbers is None:
            parts = urlsplit(self._rest_url)
            host = parts.netloc
            http = HttpClient(Auth(api_key=self._api_key, api_secret=self._api_secret),
                              HttpClientOptions(rest_host=host, timeout=LOOKUP_TIMEOUT_SECONDS, max_retries=1))
            if parts.scheme == "http":
                # The SDK's own session (it has no option for a plain-HTTP host).
                http._session.mount(f"https://{host}", _PlainHttpAdapter(max_retries=1))
            self._numbers = Numbers(http)
        return self._numbers

    def _holds(self, digits: str) -> bool:
        try:
            numbers, _count, _next = self._client().list_owned_numbers(
                ListOwnedNumbersFilter(pattern=digits, search_pattern=0, size=100)
            )
        except (AuthenticationError, ForbiddenError) as exc:
            raise ProviderError("auth", f"Vonage refused the API key: {exc.response.status_code}",
                                status=exc.response.status_code) from exc
        except RateLimitedError as exc:
            raise ProviderError("rate_limited", "Vonage rate limit", status=429, retryable=True) from exc
        except HttpRequestError as exc:
            status = exc.response.status_code
            code: ProviderErrorCode = "unavailable" if status >= 500 else "rejected"
            raise ProviderError(code, f"Vonage answered {status}", status=status, retryable=status >= 500) from exc
        except requests.RequestException as exc:
            raise ProviderError("unavailable", f"Vonage unreachable: {exc!r}", retryable=True) from exc
        # `pattern` with search_pattern 0 finds every number starting with these digits: compare exactly.
        return any(number.msisdn == digits for number in numbers)

    async def holds(self, e164: str) -> bool:
        """Whether the account holds `e164`. Raises ProviderError (auth without VONAGE_API_KEY / VONAGE_API_SECRET,
        or when Vonage refuses them; unavailable when it cannot be reached)."""
        if not self._api_key or not self._api_secret:
            raise ProviderError("auth", "checking the account's numbers needs VONAGE_API_KEY and VONAGE_API_SECRET")
        return await asyncio.to_thread(self._holds, e164.removeprefix("+"))

    def close(self) -> None:
        if self._numbers is not None:
            self._numbers.http_client._session.close()
            self._numbers = None
