"""The simulator's Twilio: the REST endpoints the adapter calls, signed status callbacks, Media Streams calls.

    POST /2010-04-01/Accounts/{sid}/Calls.json        create a call (Basic auth: sid + token)
    POST /2010-04-01/Accounts/{sid}/Calls/{CA…}.json  update (Status=completed|canceled hangs up;
                                                      Twiml=<Response><Dial>… transfers)
    GET  /2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json?PhoneNumber=…   the account's numbers

An outbound call posts initiated / ringing / in-progress / completed to its StatusCallback (those asked for in
StatusCallbackEvent), the async AMD result to AsyncAmdStatusCallback, and streams on the <Stream> of its TwiML. An
inbound call posts to the service's voice webhook and follows the TwiML it gets back. Every request is signed
with the account's auth token (X-Twilio-Signature, HMAC-SHA1), or under webhook signature settings with a
SharedKey (HMAC-SHA256) when the simulator has one; the media upgrade too.
"""

from __future__ import annotations

import base64
import math
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, parse_qsl

from voice_service.simulator.calls import SimCall, caller_audio, transferred_leg, wait_hangup
from voice_service.simulator.media import MediaScript, run_media_leg
from voice_service.simulator.signing import twilio_signature_headers

if TYPE_CHECKING:
    from voice_service.simulator.server import Simulator

__all__ = ["TWILIO_API_VERSION", "TwilioSide", "twiml_stream"]

TWILIO_API_VERSION = "2010-04-01"
Reply = tuple[int, dict[str, Any]]


def twiml_stream(twiml: str) -> tuple[str | None, dict[str, str], str | None]:
    """(stream url, <Parameter>s, <Say> text) of a TwiML document."""
    root = ET.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    if stream is not None:
        params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        return stream.get("url"), params, None
    say = root.find("Say")
    return None, {}, (say.text or "") if say is not None else ""


class TwilioSide:
    """Twilio's REST endpoints, webhooks and media legs, for the Simulator that holds the accounts and calls."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def _signed(self, account_sid: str, url: str, params: Mapping[str, str] | None = None) -> dict[str, str]:
        return twilio_signature_headers(
            self.sim.twilio_accounts[account_sid], url, params, shared_key=self.sim.twilio_shared_key
        )

    # --- REST ---

    async def handle(
        self, method: str, parts: list[str], headers: Mapping[str, str], body: bytes,
        query: Mapping[str, str] | None = None,
    ) -> Reply | None:
        """The answer to a request on Twilio's REST paths; None for any other path."""
        if len(parts) < 4 or parts[:2] != [TWILIO_API_VERSION, "Accounts"]:
            return None
        if len(parts) == 4 and parts[3] == "IncomingPhoneNumbers.json" and method == "GET":
            return self._numbers(parts[2], headers, query or {})
        if len(parts) == 4 and parts[3] == "Calls.json":
            return await self._create(parts[2], headers, body) if method == "POST" else (405, {})
        if len(parts) == 5 and parts[3] == "Calls":
            return await self._update(parts[2], parts[4].removesuffix(".json"), headers, body)
        return None

    def _auth(self, path_sid: str, headers: Mapping[str, str]) -> Reply | None:
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        try:
            sid, _, token = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            sid, token = "", ""
        if scheme.lower() != "basic" or sid != path_sid or self.sim.twilio_accounts.get(sid) != token:
            return 401, {
                "code": 20003,
                "message": "Authenticate",
                "status": 401,
                "more_info": "https://www.twilio.com/docs/errors/20003",
            }
        return None

    def _numbers(self, sid: str, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply:
        """IncomingPhoneNumbers of the account, filtered by PhoneNumber (a partial match, as Twilio's)."""
        denied = self._auth(sid, headers)
        if denied:
            return denied
        pattern = query.get("PhoneNumber", "")
        held = [pattern] if pattern and self.sim.holds(pattern) else []
        uri = f"/{TWILIO_API_VERSION}/Accounts/{sid}/IncomingPhoneNumbers.json?PhoneNumber={pattern}&PageSize=50&Page=0"
        return 200, {
            "incoming_phone_numbers": [
                {"sid": "PN" + uuid.uuid5(uuid.NAMESPACE_OID, n).hex, "account_sid": sid, "phone_number": n,
                 "friendly_name": n, "capabilities": {"voice": True}, "status": "in-use", "origin": "twilio"}
                for n in held
            ],
            "first_page_uri": uri, "next_page_uri": None, "previous_page_uri": None, "page": 0, "page_size": 50,
            "start": 0, "end": max(0, len(held) - 1), "uri": uri,
        }

    async def _create(self, sid: str, headers: Mapping[str, str], body: bytes) -> Reply:
        denied = self._auth(sid, headers)
        if denied:
            return denied
        form_lists = parse_qs(body.decode(), keep_blank_values=True)
        form: dict[str, Any] = {k: v[0] for k, v in form_lists.items()}
        form["StatusCallbackEvent"] = form_lists.get("StatusCallbackEvent", [])
        to, from_ = form.get("To", ""), form.get("From", "")
        scenario = self.sim.scenario_for(to)
        if scenario.rest_status is not None:
            return scenario.rest_status, {
                "code": 20000 + scenario.rest_status,
                "status": scenario.rest_status,
                "message": f"Simulated error {scenario.rest_status}",
            }
        call = SimCall(
            id="CA" + uuid.uuid4().hex,
            provider="twilio",
            direction="outbound",
            to=to,
            from_=from_,
            scenario=scenario,
            account_sid=sid,
            request=form,
        )
        await self.sim.register(call)
        self.sim.spawn(self._play_outbound(call), call)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        return 201, {
            "sid": call.id,
            "account_sid": sid,
            "to": to,
            "from": from_,
            "status": "queued",
            "direction": "outbound-api",
            "api_version": TWILIO_API_VERSION,
            "date_created": now,
            "date_updated": now,
            "uri": f"/{TWILIO_API_VERSION}/Accounts/{sid}/Calls/{call.id}.json",
        }

    async def _update(self, sid: str, call_sid: str, headers: Mapping[str, str], body: bytes) -> Reply:
        denied = self._auth(sid, headers)
        if denied:
            return denied
        call = self.sim.calls.get(call_sid)
        if call is None or call.provider != "twilio":
            return 404, {
                "code": 20404,
                "message": f"The requested resource {call_sid} was not found",
                "status": 404,
            }
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        if "Twiml" in form:
            denied = self._dial(call, form["Twiml"])
            if denied:
                return denied
        if form.get("Status") in ("completed", "canceled"):
            call.hang_up()
        status = call.final_status or "in-progress"
        return 200, {"sid": call.id, "account_sid": sid, "status": status, "to": call.to, "from": call.from_}

    def _dial(self, call: SimCall, twiml: str) -> Reply | None:
        """New TwiML on a live call: a <Dial><Number> transfers it. An error response, or None."""
        try:
            dial = ET.fromstring(twiml).find("Dial")
        except ET.ParseError:
            return 400, {"code": 12100, "message": "Document parse failure", "status": 400}
        if dial is None:
            return None
        number = dial.find("Number")
        if number is None or not (number.text or "").strip():
            return 400, {"code": 13224, "message": "Dial: Invalid phone number", "status": 400}
        if not call.in_progress:
            return 400, {"code": 21220, "message": "Call is not in-progress. Cannot redirect.", "status": 400}
        if call.scenario.transfer_status is not None:
            return call.scenario.transfer_status, {
                "code": 20000 + call.scenario.transfer_status,
                "message": f"Simulated error {call.scenario.transfer_status}",
                "status": call.scenario.transfer_status,
            }
        call.transfer((number.text or "").strip(), dial.get("callerId"), number.get("statusCallback"))
        return None

    # --- webhooks to the service ---

    async def _post(self, call: SimCall, url: str, params: dict[str, str]) -> int:
        response = await self.sim.http.post(
            url, data=params, headers=self._signed(call.account_sid, url, params)
        )
        call.webhook_statuses.append(response.status_code)
        return response.status_code

    def _status(self, call: SimCall, seq: int, status: str, **extra: str) -> dict[str, str]:
        params = {
            "CallSid": call.id,
            "AccountSid": call.account_sid,
            "From": call.from_,
            "To": call.to,
            "CallStatus": status,
            "Direction": "outbound-api" if call.direction == "outbound" else "inbound",
            "ApiVersion": TWILIO_API_VERSION,
            "SequenceNumber": str(seq),
            "Timestamp": format_datetime(datetime.now(UTC), usegmt=True),
            "CallbackSource": "call-progress-events",
        }
        params.update(extra)
        return params

    # --- calls ---

    async def _play_outbound(self, call: SimCall) -> None:
        form = call.request
        status_url = form.get("StatusCallback")
        wanted = set(form.get("StatusCallbackEvent") or [])
        seq = 0

        async def status(word: str, **extra: str) -> None:
            nonlocal seq
            call.statuses.append(word)
            if status_url:
                await self._post(call, status_url, self._status(call, seq, word, **extra))
            seq += 1

        if "initiated" in wanted:
            await status("initiated")
        if "ringing" in wanted:
            await status("ringing")
        scenario = call.scenario
        if await wait_hangup(call, scenario.ring_seconds):
            await status("canceled", CallDuration="0")
            return
        if scenario.answer in ("busy", "no-answer", "failed"):
            await status(scenario.answer, CallDuration="0")
            return
        call.answered_at = time.time()
        if "answered" in wanted:
            await status("in-progress")
        amd = form.get("MachineDetection")
        answered_by = "machine_start" if scenario.answer == "machine" else "human"
        amd_url = form.get("AsyncAmdStatusCallback")
        if amd and form.get("AsyncAmd") == "true" and amd_url:
            await self._post(
                call,
                amd_url,
                {
                    "CallSid": call.id,
                    "AccountSid": call.account_sid,
                    "AnsweredBy": answered_by,
                    "MachineDetectionDuration": "1800",
                },
            )
        url, params, _ = twiml_stream(form.get("Twiml", "<Response/>"))
        await self._media(call, url, params)
        await status(
            "completed",
            CallDuration=str(call.duration or 0),
            Duration=str(math.ceil((call.duration or 0) / 60)),
            **({"AnsweredBy": answered_by} if amd and form.get("AsyncAmd") != "true" else {}),
        )

    async def _media(self, call: SimCall, url: str | None, params: dict[str, str]) -> None:
        call.custom_parameters = params
        if url:
            scenario = call.scenario
            script = MediaScript(
                audio=caller_audio(scenario, "mulaw", 8000),
                frame_bytes=160,
                speed=scenario.speed,
                dtmf=scenario.dtmf,
                hangup_after=scenario.hangup_after,
                drop_after=scenario.drop_after,
            )
            await run_media_leg(
                "twilio",
                url,
                script,
                call.media,
                custom=params,
                call_sid=call.id,
                account_sid=call.account_sid,
                hangup=call.media_end,
                headers=self._signed(call.account_sid, url),
            )
            leg = await transferred_leg(call, "CA" + uuid.uuid4().hex)
            if leg is not None and call.transfer_status_url:
                # The dialled (child) call's status callback, as Twilio posts it when that call completes.
                await self._post(
                    call,
                    call.transfer_status_url,
                    {
                        **self._status(leg, 0, "completed", CallDuration=str(leg.duration or 0)),
                        "ParentCallSid": call.id,
                        "Direction": "outbound-dial",
                    },
                )
        call.ended_at = time.time()
        call.duration = round(call.ended_at - (call.answered_at or call.ended_at))

    def new_inbound_id(self) -> str:
        return "CA" + uuid.uuid4().hex

    async def play_inbound(self, call: SimCall, service_url: str) -> None:
        """A caller dialling one of the service's numbers: the voice webhook, then the TwiML's stream."""
        params = {
            "CallSid": call.id,
            "AccountSid": call.account_sid,
            "From": call.from_,
            "To": call.to,
            "Caller": call.from_,
            "Called": call.to,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": TWILIO_API_VERSION,
        }
        url = f"{service_url}/v1/telephony/twilio/voice"
        response = await self.sim.http.post(
            url, data=params, headers=self._signed(call.account_sid, url, params)
        )
        call.answer_status, call.answer_body = response.status_code, response.text
        if response.status_code != 200:
            return
        stream_url, custom, said = twiml_stream(response.text)
        if stream_url is None:
            call.rejected_message = said
            call.statuses.append("completed")
            return
        status_url = f"{service_url}/v1/telephony/twilio/status"
        call.answered_at = time.time()
        call.statuses.append("in-progress")
        await self._post(call, status_url, self._status(call, 0, "in-progress"))
        await self._media(call, stream_url, custom)
        call.statuses.append("completed")
        await self._post(
            call, status_url, self._status(call, 1, "completed", CallDuration=str(call.duration or 0))
        )
