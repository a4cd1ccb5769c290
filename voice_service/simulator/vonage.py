"""The simulator's Vonage: the Voice API endpoints the adapter calls, signed event webhooks, WebSocket calls.

    POST /v1/calls          create a call (Bearer application JWT)
    PUT  /v1/calls/{uuid}   {"action": "hangup"} | {"action": "transfer", "destination": {"type": "ncco", …}}
    GET  /account/numbers   the account's numbers (the REST host's Numbers API; Basic auth: API key and secret)

An outbound call posts started / ringing / answered, the AMD result (human / machine) and completed with its
duration, rate and price to its event_url, and streams on the websocket endpoint of its NCCO. An inbound call
asks the service's answer webhook for an NCCO (GET with the call in the query string, Vonage's default, or POST
with it in a JSON body) and follows it. Every webhook carries a Bearer HS256 JWT signed with the signature secret
(payload_hash of the body, iat, jti). Like Vonage, a webhook that gets a 429 or a 5xx is retried with the same
token, up to twice.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import jwt
import msgspec

from voice_service.simulator.calls import SimCall, caller_audio, transferred_leg, wait_hangup
from voice_service.simulator.media import MediaScript, run_media_leg
from voice_service.simulator.signing import vonage_signed_jwt

if TYPE_CHECKING:
    from voice_service.simulator.server import Simulator

__all__ = ["VonageSide", "ncco_stream"]

Reply = tuple[int, dict[str, Any]]
RETRIES = 2
_json = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


def ncco_stream(ncco: Any) -> tuple[str | None, dict[str, str], str, str | None]:
    """(websocket uri, headers, content-type, talk text) of an NCCO."""
    for action in ncco if isinstance(ncco, list) else []:
        if action.get("action") == "connect":
            for endpoint in action.get("endpoint", []):
                if endpoint.get("type") == "websocket":
                    headers = {k: str(v) for k, v in (endpoint.get("headers") or {}).items()}
                    return (
                        endpoint.get("uri"),
                        headers,
                        endpoint.get("content-type", "audio/l16;rate=16000"),
                        None,
                    )
        if action.get("action") == "talk":
            return None, {}, "", str(action.get("text", ""))
    return None, {}, "", None


def _rate_of(content_type: str) -> int:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key == "rate":
            return int(value)
    return 16000


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class VonageSide:
    """Vonage's REST endpoints, webhooks and media legs, for the Simulator that holds the secret and calls."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    # --- REST ---

    async def handle(
        self, method: str, parts: list[str], headers: Mapping[str, str], body: bytes,
        query: Mapping[str, str] | None = None,
    ) -> Reply | None:
        """The answer to a request on Vonage's REST paths; None for any other path."""
        if parts == ["account", "numbers"] and method == "GET":
            return self._numbers(headers, query or {})
        if parts == ["v1", "calls"] and method == "POST":
            return await self._create(headers, body)
        if len(parts) == 3 and parts[:2] == ["v1", "calls"] and method == "PUT":
            return await self._modify(parts[2], headers, body)
        return None

    def _numbers(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply:
        """The account's numbers (Basic auth: API key and secret), `pattern` with search_pattern 0 = starts with."""
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        try:
            key, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            key, secret = "", ""
        if scheme.lower() != "basic" or key != self.sim.vonage_api_key or (
            self.sim.vonage_api_secret is not None and secret != self.sim.vonage_api_secret
        ):
            return 401, {"type": "https://developer.nexmo.com/api-errors#unauthorized", "title": "Unauthorized",
                         "detail": "You did not provide correct credentials."}
        digits = query.get("pattern", "")
        if not digits or not self.sim.holds("+" + digits):
            return 200, {"count": 0}
        return 200, {"count": 1, "numbers": [{"country": "US", "msisdn": digits, "type": "mobile-lvn",
                                               "features": ["VOICE"], "app_id": self.sim.vonage_application_id}]}

    async def _create(self, headers: Mapping[str, str], body: bytes) -> Reply:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        try:
            claims = (
                jwt.decode(token, options={"verify_signature": False}) if scheme.lower() == "bearer" else {}
            )
        except jwt.InvalidTokenError:
            claims = {}
        if not claims.get("application_id"):
            return 401, {
                "type": "https://developer.nexmo.com/api-errors#unauthorized",
                "title": "Unauthorized",
                "detail": "You did not provide correct credentials.",
            }
        request = _json_decoder.decode(body)
        to = "+" + str(request["to"][0]["number"]).lstrip("+")
        from_ = "+" + str(request["from"]["number"]).lstrip("+")
        scenario = self.sim.scenario_for(to)
        if scenario.rest_status is not None:
            return scenario.rest_status, {
                "type": "https://developer.nexmo.com/api-errors",
                "title": "Simulated error",
                "detail": f"Simulated error {scenario.rest_status}",
            }
        call = SimCall(
            id=str(uuid.uuid4()),
            provider="vonage",
            direction="outbound",
            to=to,
            from_=from_,
            scenario=scenario,
            request=request,
        )
        await self.sim.register(call)
        self.sim.spawn(self._play_outbound(call), call)
        return 201, {
            "uuid": call.id,
            "status": "started",
            "direction": "outbound",
            "conversation_uuid": "CON-" + str(uuid.uuid4()),
        }

    async def _modify(self, call_uuid: str, headers: Mapping[str, str], body: bytes) -> Reply:
        if not headers.get("authorization", "").lower().startswith("bearer "):
            return 401, {"title": "Unauthorized"}
        call = self.sim.calls.get(call_uuid)
        if call is None or call.provider != "vonage" or call.done.is_set():
            return 404, {
                "type": "https://developer.nexmo.com/api-errors#not-found",
                "title": "Not Found",
                "detail": f"Call {call_uuid} was not found or has already completed",
            }
        request = _json_decoder.decode(body)
        action = request.get("action")
        if action == "hangup":
            call.hang_up()
        elif action == "transfer":
            return self._transfer(call, request)
        return 204, {}

    def _transfer(self, call: SimCall, request: Any) -> Reply:
        """A transfer to an NCCO that connects a phone endpoint."""
        destination = request.get("destination") or {}
        phone: dict[str, Any] = {}
        connect: dict[str, Any] = {}
        for action in destination.get("ncco") or []:
            if action.get("action") == "connect":
                connect = action
                phone = next((e for e in action.get("endpoint", []) if e.get("type") == "phone"), {})
        if destination.get("type") != "ncco" or not phone.get("number"):
            return 400, {
                "type": "https://developer.nexmo.com/api-errors#bad-request",
                "title": "Bad Request",
                "invalid_parameters": [{"name": "destination", "reason": "no connect action to a phone"}],
            }
        if not call.in_progress:
            return 400, {
                "type": "https://developer.nexmo.com/api-errors#bad-request",
                "title": "Bad Request",
                "detail": f"Call {call.id} is not in progress: it has already completed",
            }
        if call.scenario.transfer_status is not None:
            return call.scenario.transfer_status, {
                "type": "https://developer.nexmo.com/api-errors",
                "title": "Simulated error",
                "detail": f"Simulated error {call.scenario.transfer_status}",
            }
        caller_id = connect.get("from")
        event_url = (connect.get("eventUrl") or [None])[0]
        call.transfer(
            "+" + str(phone["number"]).lstrip("+"),
            "+" + str(caller_id).lstrip("+") if caller_id else None,
            event_url,
        )
        return 204, {}

    # --- webhooks to the service ---

    def _token(self, body: bytes) -> str:
        secret = self.sim.vonage_signature_secret
        assert secret, "Vonage webhooks need the simulator's vonage_signature_secret"
        return vonage_signed_jwt(
            secret, body, api_key=self.sim.vonage_api_key, application_id=self.sim.vonage_application_id
        )

    async def _deliver(
        self,
        call: SimCall,
        method: str,
        url: str,
        *,
        body: bytes = b"",
        params: Mapping[str, str] | None = None,
        record: bool = True,
    ) -> Any:
        """One webhook, retried with the same token after a 429 or 5xx (as Vonage does); `record`: each delivery's
        status goes to call.webhook_statuses (the answer webhook's goes to call.answer_status instead)."""
        headers = {"Authorization": f"Bearer {self._token(body)}"}
        if body:
            headers["Content-Type"] = "application/json"
        for attempt in range(RETRIES + 1):
            response = await self.sim.http.request(
                method, url, content=body or None, params=params, headers=headers
            )
            if record:
                call.webhook_statuses.append(response.status_code)
            if response.status_code != 429 and response.status_code < 500 or attempt == RETRIES:
                return response
            await asyncio.sleep(self.sim.vonage_retry_seconds)
        raise AssertionError("unreachable")

    async def _event(self, call: SimCall, url: str, payload: dict[str, Any]) -> int:
        response = await self._deliver(call, "POST", url, body=_json.encode(payload))
        return int(response.status_code)

    # --- calls ---

    async def _play_outbound(self, call: SimCall) -> None:
        request = call.request
        event_url = (request.get("event_url") or [None])[0]
        conversation = call.conversation_id = "CON-" + str(uuid.uuid4())

        async def event(status: str, **extra: Any) -> None:
            call.statuses.append(status)
            if event_url:
                payload = {
                    "status": status,
                    "uuid": call.id,
                    "conversation_uuid": conversation,
                    "direction": "outbound",
                    "from": call.from_.lstrip("+"),
                    "to": call.to.lstrip("+"),
                    "timestamp": _iso(time.time()),
                    **extra,
                }
                await self._event(call, event_url, payload)

        await event("started")
        await event("ringing")
        scenario = call.scenario
        if await wait_hangup(call, scenario.ring_seconds):
            await event("cancelled")
            return
        if scenario.answer != "answer" and scenario.answer != "machine":
            await event({"busy": "busy", "no-answer": "timeout", "failed": "failed"}[scenario.answer])
            return
        call.answered_at = time.time()
        await event("answered", start_time=_iso(call.answered_at))
        if request.get("machine_detection"):
            amd_status = "machine" if scenario.answer == "machine" else "human"
            call.statuses.append(amd_status)
            if event_url:
                await self._event(
                    call,
                    event_url,
                    {
                        "status": amd_status,
                        "call_uuid": call.id,
                        "conversation_uuid": conversation,
                        "timestamp": _iso(time.time()),
                    },
                )
        uri, headers, content_type, _ = ncco_stream(request.get("ncco"))
        await self._media(call, uri, headers, content_type)
        await event("completed", **self._completed(call))

    def _completed(self, call: SimCall) -> dict[str, Any]:
        rate = call.scenario.vonage_rate_per_minute
        minutes = math.ceil((call.duration or 0) / 60)
        return {
            "duration": str(call.duration or 0),
            "rate": rate,
            "price": f"{float(rate) * minutes:.8f}",
            "start_time": _iso(call.answered_at or time.time()),
            "end_time": _iso(call.ended_at or time.time()),
        }

    async def _media(
        self, call: SimCall, uri: str | None, headers: dict[str, str], content_type: str
    ) -> None:
        call.custom_parameters = headers
        if uri:
            scenario = call.scenario
            rate = _rate_of(content_type)
            script = MediaScript(
                audio=caller_audio(scenario, "l16", rate),
                frame_bytes=rate // 50 * 2,
                speed=scenario.speed,
                dtmf=scenario.dtmf,
                hangup_after=scenario.hangup_after,
                drop_after=scenario.drop_after,
            )
            await run_media_leg(
                "vonage",
                uri,
                script,
                call.media,
                custom=headers,
                content_type=content_type,
                call_sid=call.id,
                hangup=call.media_end,
            )
            leg = await transferred_leg(call, str(uuid.uuid4()))
            if leg is not None and call.transfer_status_url:
                await self._leg_events(call, leg, call.transfer_status_url)
        call.ended_at = time.time()
        call.duration = round(call.ended_at - (call.answered_at or call.ended_at))

    async def _leg_events(self, call: SimCall, leg: SimCall, url: str) -> None:
        """The dialled leg's answered and completed events (its own uuid, the call's conversation, its duration,
        rate and price), to the connect action's eventUrl, as Vonage posts them."""
        common = {
            "uuid": leg.id,
            "conversation_uuid": call.conversation_id,
            "direction": "outbound",
            "from": leg.from_.lstrip("+"),
            "to": leg.to.lstrip("+"),
        }
        await self._event(call, url, {**common, "status": "answered", "timestamp": _iso(leg.answered_at or 0)})
        await self._event(
            call, url, {**common, "status": "completed", "timestamp": _iso(leg.ended_at or 0), **self._completed(leg)}
        )

    def new_inbound_id(self) -> str:
        return str(uuid.uuid4())

    async def play_inbound(self, call: SimCall, service_url: str) -> None:
        """A caller dialling one of the service's numbers: the answer webhook, then the NCCO's websocket."""
        conversation = call.conversation_id = "CON-" + str(uuid.uuid4())
        fields = {
            "to": call.to.lstrip("+"),
            "from": call.from_.lstrip("+"),
            "uuid": call.id,
            "conversation_uuid": conversation,
        }
        answer = f"{service_url}/v1/telephony/vonage/answer"
        if self.sim.vonage_answer_method == "POST":
            response = await self._deliver(call, "POST", answer, body=_json.encode(fields), record=False)
        else:
            response = await self._deliver(call, "GET", answer, params=fields, record=False)
        call.answer_status, call.answer_body = response.status_code, response.text
        if response.status_code != 200:
            return
        uri, headers, content_type, said = ncco_stream(response.json())
        events = f"{service_url}/v1/telephony/vonage/events"

        async def event(status: str, **extra: Any) -> None:
            call.statuses.append(status)
            await self._event(
                call,
                events,
                {
                    "status": status,
                    "uuid": call.id,
                    "direction": "inbound",
                    "conversation_uuid": conversation,
                    "timestamp": _iso(time.time()),
                    **extra,
                },
            )

        if uri is None:
            call.rejected_message = said
            await event("completed", duration="0")
            return
        call.answered_at = time.time()
        await event("answered")
        await self._media(call, uri, headers, content_type)
        await event("completed", **self._completed(call))
