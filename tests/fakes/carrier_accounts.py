"""The carrier accounts the tests' service is configured with: which phone numbers are on them.

Registering a number checks that it is on the configured carrier account (issue #15 §3). This fake answers the two
lookups the real SDKs make, with the wire formats of the real APIs, on one local server:

- Twilio: `GET /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json?PhoneNumber=…` (Basic auth: account sid
  and auth token), a page of `incoming_phone_numbers` (Twilio matches PhoneNumber as a partial number);
- Vonage: `GET /account/numbers?pattern=…&search_pattern=…` (Basic auth: API key and secret), `{count, numbers}`
  with each `msisdn` in E.164 digits without the '+'.

By default an account holds every number a test uses (as a test account would have bought them); a test takes a
number away with `not_owned.add(e164)`, or makes the carrier fail with `failing = <HTTP status>`.

It serves from a thread of its own (`serve()`), not on the tests' event loop: Litestar's AsyncTestClient runs the
app through a blocking portal, which holds the test's loop while the app waits for the carrier's answer.
"""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec

__all__ = ["CarrierAccounts"]

_json = msgspec.json.Encoder()


@dataclass
class CarrierAccounts:
    twilio: dict[str, str] = field(default_factory=dict)  # account sid → auth token
    vonage: dict[str, str] = field(default_factory=dict)  # api key → api secret
    not_owned: set[str] = field(default_factory=set)  # E.164 numbers on no account
    failing: int | None = None  # answer every lookup with this HTTP status
    lookups: list[tuple[str, str]] = field(default_factory=list)  # (carrier, number asked about)
    base_url: str = ""  # where it listens, while served

    def owns(self, e164: str) -> bool:
        return e164 not in self.not_owned

    @contextlib.contextmanager
    def serve(self) -> Iterator[CarrierAccounts]:
        """Serve on 127.0.0.1:<ephemeral port> from a thread until the block ends."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                status, payload = fake.answer(parts.path, query, self.headers.get("authorization", ""))
                raw = _json.encode(payload)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="carrier-accounts", daemon=True)
        thread.start()
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)

    def answer(self, path: str, query: dict[str, str], authorization: str) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["2010-04-01", "Accounts"] and parts[3] == "IncomingPhoneNumbers.json":
            return self._twilio(parts[2], query, authorization)
        if path == "/account/numbers":
            return self._vonage(query, authorization)
        return 404, {"code": 20404, "message": f"no route GET {path}", "status": 404}

    @staticmethod
    def _basic(authorization: str) -> tuple[str, str]:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return "", ""
        try:
            user, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "", ""
        return user, secret

    def _twilio(self, sid: str, query: dict[str, str], authorization: str) -> tuple[int, Any]:
        user, token = self._basic(authorization)
        if user != sid or self.twilio.get(sid) != token:
            return 401, {"code": 20003, "message": "Authenticate", "status": 401,
                         "more_info": "https://www.twilio.com/docs/errors/20003"}
        if self.failing is not None:
            return self.failing, {"code": 20500, "message": "Internal Server Error", "status": self.failing}
        pattern = query.get("PhoneNumber", "")
        self.lookups.append(("twilio", pattern))
        # A partial match, as Twilio's: a pattern also finds the longer numbers that contain it.
        found = [n for n in (pattern, pattern + "9") if pattern and self.owns(n)]
        uri = f"/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json?PhoneNumber={pattern}&PageSize=50&Page=0"
        return 200, {
            "incoming_phone_numbers": [_twilio_number(sid, n) for n in found],
            "first_page_uri": uri, "next_page_uri": None, "previous_page_uri": None, "page": 0, "page_size": 50,
            "start": 0, "end": max(0, len(found) - 1), "uri": uri,
        }

    def _vonage(self, query: dict[str, str], authorization: str) -> tuple[int, Any]:
        key, secret = self._basic(authorization)
        if not key or self.vonage.get(key) != secret:
            return 401, {"type": "https://developer.nexmo.com/api-errors#unauthorized", "title": "Unauthorized",
                         "detail": "Invalid credentials"}
        if self.failing is not None:
            return self.failing, {"error-code": str(self.failing), "error-code-label": "failure"}
        pattern = query.get("pattern", "")
        self.lookups.append(("vonage", pattern))
        found = [d for d in (pattern, pattern + "9") if pattern and self.owns("+" + d)]
        if not found:
            return 200, {"count": 0}  # Vonage leaves `numbers` out when there are none
        return 200, {"count": len(found), "numbers": [_vonage_number(d) for d in found]}


def _twilio_number(sid: str, e164: str) -> dict[str, Any]:
    return {"sid": "PN" + e164.lstrip("+").rjust(32, "0"), "account_sid": sid, "phone_number": e164,
            "friendly_name": e164, "capabilities": {"voice": True, "sms": True, "mms": False},
            "status": "in-use", "origin": "twilio", "api_version": "2010-04-01"}


def _vonage_number(digits: str) -> dict[str, Any]:
    return {"country": "US", "msisdn": digits, "type": "mobile-lvn", "features": ["VOICE", "SMS"]}
