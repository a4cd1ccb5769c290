"""The carrier accounts the tests' service is configured with: which phone numbers are on them.

Registering a number checks that it is on the configured carrier account (issue #15 §3). This fake answers the two
lookups the real SDKs make, with the wire formats of the real APIs, on one local server:

- Twilio: `GET /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json?PhoneNumber=…` (Basic auth: account sid
  and auth token), a page of `incoming_phone_numbers` (Twilio matches PhoneNumber as a partial number);
- Vonage: `GET /account/numbers?pattern=…&search_pattern=…` (Basic auth: API key and secret), `{count, numbers}`
  with each `msisdn` in E.164 digits without the '+'.

By default an account holds every number a test uses (as a test account would have bought them); a test takes a
number away with `not_owned.add(e164)`, or makes the carrier fail with `failing = <HTTP status>`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.server import Receive, Scope, Send, headers_dict, query_params, read_body, send_json

__all__ = ["CarrierAccounts"]


@dataclass
class CarrierAccounts:
    twilio: dict[str, str] = field(default_factory=dict)  # account sid → auth token
    vonage: dict[str, str] = field(default_factory=dict)  # api key → api secret
    not_owned: set[str] = field(default_factory=set)  # E.164 numbers on no account
    failing: int | None = None  # answer every lookup with this HTTP status
    lookups: list[tuple[str, str]] = field(default_factory=list)  # (carrier, number asked about)
    base_url: str = ""  # where it listens, once served (tests.fakes.server.LocalServer)

    def owns(self, e164: str) -> bool:
        return e164 not in self.not_owned

    def _basic(self, headers: dict[str, str]) -> tuple[str, str]:
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return "", ""
        try:
            user, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "", ""
        return user, secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)
        path, query, headers = scope["path"], query_params(scope), headers_dict(scope)
        parts = path.strip("/").split("/")
        if scope["method"] == "GET" and len(parts) == 4 and parts[:2] == ["2010-04-01", "Accounts"] \
                and parts[3] == "IncomingPhoneNumbers.json":
            await self._twilio(send, parts[2], query, headers)
        elif scope["method"] == "GET" and path == "/account/numbers":
            await self._vonage(send, query, headers)
        else:
            await send_json(send, 404, {"code": 20404, "message": f"no route {scope['method']} {path}",
                                        "status": 404})

    async def _twilio(self, send: Send, sid: str, query: dict[str, str], headers: dict[str, str]) -> None:
        user, token = self._basic(headers)
        if user != sid or self.twilio.get(sid) != token:
            await send_json(send, 401, {"code": 20003, "message": "Authenticate", "status": 401,
                                        "more_info": "https://www.twilio.com/docs/errors/20003"})
            return
        if self.failing is not None:
            await send_json(send, self.failing, {"code": 20500, "message": "Internal Server Error",
                                                 "status": self.failing})
            return
        pattern = query.get("PhoneNumber", "")
        self.lookups.append(("twilio", pattern))
        # A partial match, as Twilio's: a pattern also finds the longer numbers that contain it.
        found = [n for n in (pattern, pattern + "9") if pattern and self.owns(n)]
        uri = f"/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json"
        await send_json(send, 200, {
            "incoming_phone_numbers": [_twilio_number(sid, n) for n in found],
            "first_page_uri": f"{uri}?PhoneNumber={pattern}&PageSize=50&Page=0", "next_page_uri": None,
            "previous_page_uri": None, "page": 0, "page_size": 50, "start": 0, "end": max(0, len(found) - 1),
            "uri": f"{uri}?PhoneNumber={pattern}&PageSize=50&Page=0",
        })

    async def _vonage(self, send: Send, query: dict[str, str], headers: dict[str, str]) -> None:
        key, secret = self._basic(headers)
        if not key or self.vonage.get(key) != secret:
            await send_json(send, 401, {"type": "https://developer.nexmo.com/api-errors#unauthorized",
                                        "title": "Unauthorized", "detail": "Invalid credentials"})
            return
        if self.failing is not None:
            await send_json(send, self.failing, {"error-code": str(self.failing), "error-code-label": "failure"})
            return
        pattern = query.get("pattern", "")
        self.lookups.append(("vonage", pattern))
        found = [d for d in (pattern, pattern + "9") if pattern and self.owns("+" + d)]
        if not found:
            await send_json(send, 200, {"count": 0})  # Vonage leaves `numbers` out when there are none
            return
        await send_json(send, 200, {"count": len(found), "numbers": [_vonage_number(d) for d in found]})


def _twilio_number(sid: str, e164: str) -> dict[str, Any]:
    return {"sid": "PN" + e164.lstrip("+").rjust(32, "0"), "account_sid": sid, "phone_number": e164,
            "friendly_name": e164, "capabilities": {"voice": True, "sms": True, "mms": False},
            "status": "in-use", "origin": "twilio", "api_version": "2010-04-01"}


def _vonage_number(digits: str) -> dict[str, Any]:
    return {"country": "US", "msisdn": digits, "type": "mobile-lvn", "features": ["VOICE", "SMS"]}
