"""The simulator: a local Twilio and Vonage that place "calls" the service can talk to, on one machine.

A small raw ASGI server (uvicorn, no framework) emulates the REST endpoints the adapters call:

    POST /2010-04-01/Accounts/{sid}/Calls.json        Twilio: create a call (Basic auth: sid + token)
    POST /2010-04-01/Accounts/{sid}/Calls/{CA…}.json  Twilio: update (Status=completed|canceled hangs up;
                                                      Twiml=<Response><Dial>… transfers)
    POST /v1/calls                                    Vonage: create a call (Bearer application JWT)
    PUT  /v1/calls/{uuid}                             Vonage: {"action": "hangup"} | {"action": "transfer", …}

Each placed call plays its callee per a Scenario: ring, then answer (or busy / no-answer / fail), answering-
machine results, the media WebSocket with the exact message sequence of PROTOCOLS.md streaming the caller's
audio (a WAV file or generated speech) at real time or faster, then a normal hang-up and the final status with
its duration. A transfer ends the media leg the way the carrier does (Twilio: `stop`, then the socket closes;
Vonage: close 1000), records `transferred_to`, and the call goes on with the target until `transferred_seconds`
later, when it completes with its final status. Status webhooks are signed like the providers sign them
(Twilio's RequestValidator algorithm with the account's token; Vonage's HS256 JWT with payload_hash, iat, jti).
`start_inbound_call` plays a caller dialling one of the service's numbers through the voice/answer webhook.

    async with Simulator(service_url=..., twilio_accounts={sid: token}) as sim:
        sim.scenarios["+15551230001"] = Scenario(answer="busy")
        ...                                  # the service places calls against sim.twilio_base_url
        call = await sim.wait_for_call()
        await call.finished()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import parse_qs, parse_qsl

import httpx
import jwt
import msgspec
import uvicorn

from voice_service.simulator.audio import load_wav, speech_like, to_wire
from voice_service.simulator.media import MediaRecord, MediaScript, run_media_leg
from voice_service.simulator.signing import twilio_signature, vonage_signed_jwt

log = logging.getLogger(__name__)

__all__ = ["Scenario", "SimCall", "Simulator", "serve_in_loop"]

Outcome = Literal["answer", "busy", "no-answer", "failed", "machine"]
_json = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()
TWILIO_API_VERSION = "2010-04-01"


@dataclass(frozen=True)
class Scenario:
    """How the callee (outbound) or caller (inbound) behaves."""

    answer: Outcome = "answer"  # machine: answers, and AMD reports a machine
    ring_seconds: float = 0.2
    talk_seconds: float = 1.0  # generated speech-like caller audio, unless `wav` is given
    wav: str | None = None  # a 16-bit PCM WAV file to stream as the caller
    speed: float = 1.0  # 1.0 = real time
    hangup_after: float | None = (
        0.5  # seconds of listening after the audio; None: wait for the service to hang up
    )
    drop_after: float | None = None  # abort the media TCP connection (no stop, no close) after this long
    dtmf: tuple[tuple[float, str], ...] = ()
    rest_status: int | None = None  # answer the place-call request with this HTTP error instead
    transfer_status: int | None = None  # answer a transfer request with this HTTP error instead
    transferred_seconds: float = 0.5  # how long the transfer target talks before hanging up
    vonage_rate_per_minute: str = "0.01270000"


@dataclass
class SimCall:
    """One simulated call, as the provider saw it."""

    id: str  # Twilio CallSid / Vonage uuid
    provider: Literal["twilio", "vonage"]
    direction: Literal["outbound", "inbound"]
    to: str
    from_: str
    scenario: Scenario
    account_sid: str = ""
    request: dict[str, Any] = field(
        default_factory=dict
    )  # the place-call request (Twilio form / Vonage JSON)
    statuses: list[str] = field(default_factory=list)  # provider status words sent, in order
    webhook_statuses: list[int] = field(
        default_factory=list
    )  # HTTP status of each webhook the service answered
    media: MediaRecord = field(default_factory=MediaRecord)
    answer_status: int | None = None  # inbound: the service's answer to the voice/answer webhook
    answer_body: str | None = None
    rejected_message: str | None = None  # inbound: what a <Say>/talk rejection said
    custom_parameters: dict[str, str] = field(default_factory=dict)
    hangup_requested: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when the carrier ends the media leg: a hang-up or a transfer request.
    media_end: asyncio.Event = field(default_factory=asyncio.Event)
    transferred_to: str | None = None  # the E.164 number the service transferred the call to
    transfer_caller_id: str | None = None  # the caller id it asked to show the target (E.164), if any
    done: asyncio.Event = field(default_factory=asyncio.Event)
    answered_at: float | None = None
    ended_at: float | None = None
    duration: int | None = None  # seconds, as reported in the final status
    error: str | None = None

    @property
    def in_progress(self) -> bool:
        """Answered, and the media leg has not ended (a hang-up or transfer request ends it)."""
        return self.answered_at is not None and not self.media_end.is_set() and not self.done.is_set()

    def hang_up(self) -> None:
        self.hangup_requested.set()
        self.media_end.set()

    def transfer(self, to: str, caller_id: str | None) -> None:
        self.transferred_to, self.transfer_caller_id = to, caller_id
        self.media_end.set()

    @property
    def final_status(self) -> str | None:
        return self.statuses[-1] if self.done.is_set() and self.statuses else None

    async def finished(self, timeout: float = 30.0) -> SimCall:  # noqa: ASYNC109 - public test-helper API
        await asyncio.wait_for(self.done.wait(), timeout)
        return self


class _InLoopServer(uvicorn.Server):
    # A server inside someone else's event loop must leave the process's signal handlers alone.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serve_in_loop(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: str = "off",
    server_factory: Callable[[uvicorn.Config], uvicorn.Server] | None = None,
    sock: socket.socket | None = None,
    **config: Any,
) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """Serve an ASGI app with uvicorn on host:port (0 = ephemeral) in the running loop; yields (server, port)."""
    if sock is None:
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (accepted sockets
        # inherit it); with proto 0, Nagle + delayed ACK stall small writes (media frames) by up to ~40 ms.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    bound = sock.getsockname()[1]
    cfg = uvicorn.Config(app, lifespan=lifespan, log_config=None, ws_ping_interval=None, **config)
    server = server_factory(cfg) if server_factory else _InLoopServer(cfg)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn:{bound}")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.005)
        yield server, bound
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), 60)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            sock.close()


@lru_cache(maxsize=32)
def _speech(seconds: float, rate: int) -> bytes:
    return speech_like(seconds, rate)


def caller_audio(scenario: Scenario, encoding: str, rate: int) -> bytes:
    """The scenario's caller audio in the wire format."""
    if scenario.wav:
        pcm, wav_rate = load_wav(scenario.wav)
    else:
        pcm, wav_rate = _speech(scenario.talk_seconds, rate), rate
    return to_wire(pcm, wav_rate, encoding, rate)


def _twiml_stream(twiml: str) -> tuple[str | None, dict[str, str], str | None]:
    """(stream url, <Parameter>s, <Say> text) of a TwiML document."""
    root = ET.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    if stream is not None:
        params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        return stream.get("url"), params, None
    say = root.find("Say")
    return None, {}, (say.text or "") if say is not None else ""


def _ncco_stream(ncco: Any) -> tuple[str | None, dict[str, str], str, str | None]:
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


class Simulator:
    """A local Twilio + Vonage. See the module docstring."""

    def __init__(
        self,
        *,
        service_url: str | None = None,
        twilio_accounts: Mapping[str, str] | None = None,
        vonage_signature_secret: str | None = None,
        vonage_api_key: str = "simkey",
        vonage_application_id: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        default_scenario: Scenario | None = None,
    ) -> None:
        self.service_url = service_url.rstrip("/") if service_url else None
        self.twilio_accounts = dict(twilio_accounts or {})
        self.vonage_signature_secret = vonage_signature_secret
        self.vonage_api_key = vonage_api_key
        self.vonage_application_id = vonage_application_id
        self.host = host
        self.port = port
        self.default_scenario = default_scenario or Scenario()
        self.scenarios: dict[str, Scenario] = {}  # by the callee's E.164 (outbound calls)
        self.calls: dict[str, SimCall] = {}
        self._new_call = asyncio.Condition()
        self._tg: asyncio.TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> Simulator:
        """Accounts from the service's settings: the simulator's own, and Twilio's / Vonage's when set."""
        accounts = {settings.simulator_account_sid: settings.simulator_auth_token}
        if settings.twilio_account_sid and settings.twilio_auth_token:
            accounts[settings.twilio_account_sid] = settings.twilio_auth_token
        return cls(
            service_url=kwargs.pop("service_url", settings.public_base_url),
            twilio_accounts=accounts,
            vonage_signature_secret=settings.vonage_signature_secret,
            vonage_application_id=settings.vonage_application_id,
            **kwargs,
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    twilio_base_url = base_url
    vonage_base_url = base_url

    async def __aenter__(self) -> Simulator:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            self._http = await stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
            _, self.port = await stack.enter_async_context(
                serve_in_loop(self, host=self.host, port=self.port)
            )
            self._tg = await stack.enter_async_context(asyncio.TaskGroup())
            stack.callback(self._cancel_calls)  # runs before the task group waits for its tasks
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(*exc_info)

    def _cancel_calls(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Any, call: SimCall) -> None:
        assert self._tg is not None, "use the simulator inside `async with`"
        task = self._tg.create_task(self._guard(coro, call), name=f"sim-call:{call.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: Any, call: SimCall) -> None:
        try:
            await coro
        except Exception as exc:
            log.exception("simulated call failed", extra={"sim_call": call.id})
            call.error = f"{type(exc).__name__}: {exc}"
        finally:
            call.ended_at = call.ended_at or time.time()
            call.done.set()

    async def _register(self, call: SimCall) -> None:
        async with self._new_call:
            self.calls[call.id] = call
            self._new_call.notify_all()

    async def wait_for_call(
        self,
        predicate: Callable[[SimCall], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - public test-helper API
    ) -> SimCall:
        """The first call (matching `predicate`) placed so far or within `timeout` seconds."""

        def find() -> SimCall | None:
            for call in self.calls.values():
                if predicate is None or predicate(call):
                    return call
            return None

        async with self._new_call:
            found = await asyncio.wait_for(self._new_call.wait_for(find), timeout)
        assert found is not None
        return found

    def scenario_for(self, to: str) -> Scenario:
        return self.scenarios.get(to) or self.scenarios.get(to.lstrip("+")) or self.default_scenario

    # --- ASGI: the REST endpoints ---

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        parts = path.strip("/").split("/")
        status, payload = 404, {"code": 20404, "message": f"no route {method} {path}", "status": 404}
        if len(parts) == 4 and parts[:2] == [TWILIO_API_VERSION, "Accounts"] and parts[3] == "Calls.json":
            status, payload = (
                await self._twilio_create(parts[2], headers, body) if method == "POST" else (405, {})
            )
        elif len(parts) == 5 and parts[:2] == [TWILIO_API_VERSION, "Accounts"] and parts[3] == "Calls":
            status, payload = await self._twilio_update(
                parts[2], parts[4].removesuffix(".json"), headers, body
            )
        elif parts == ["v1", "calls"] and method == "POST":
            status, payload = await self._vonage_create(headers, body)
        elif len(parts) == 3 and parts[:2] == ["v1", "calls"] and method == "PUT":
            status, payload = await self._vonage_modify(parts[2], headers, body)
        elif path == "/health":
            status, payload = 200, {"status": "ok", "calls": len(self.calls)}
        raw = b"" if status == 204 else _json.encode(payload)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})

    def _twilio_auth(self, path_sid: str, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]] | None:
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        try:
            sid, _, token = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            sid, token = "", ""
        if scheme.lower() != "basic" or sid != path_sid or self.twilio_accounts.get(sid) != token:
            return 401, {
                "code": 20003,
                "message": "Authenticate",
                "status": 401,
                "more_info": "https://www.twilio.com/docs/errors/20003",
            }
        return None

    async def _twilio_create(
        self, sid: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        denied = self._twilio_auth(sid, headers)
        if denied:
            return denied
        form_lists = parse_qs(body.decode(), keep_blank_values=True)
        form: dict[str, Any] = {k: v[0] for k, v in form_lists.items()}
        form["StatusCallbackEvent"] = form_lists.get("StatusCallbackEvent", [])
        to, from_ = form.get("To", ""), form.get("From", "")
        scenario = self.scenario_for(to)
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
        await self._register(call)
        self._spawn(self._play_twilio_outbound(call), call)
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

    async def _twilio_update(
        self, sid: str, call_sid: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        denied = self._twilio_auth(sid, headers)
        if denied:
            return denied
        call = self.calls.get(call_sid)
        if call is None or call.provider != "twilio":
            return 404, {
                "code": 20404,
                "message": f"The requested resource {call_sid} was not found",
                "status": 404,
            }
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        if "Twiml" in form:
            denied = self._twilio_dial(call, form["Twiml"])
            if denied:
                return denied
        if form.get("Status") in ("completed", "canceled"):
            call.hang_up()
        status = call.final_status or "in-progress"
        return 200, {"sid": call.id, "account_sid": sid, "status": status, "to": call.to, "from": call.from_}

    def _twilio_dial(self, call: SimCall, twiml: str) -> tuple[int, dict[str, Any]] | None:
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
        call.transfer((number.text or "").strip(), dial.get("callerId"))
        return None

    async def _vonage_create(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
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
        scenario = self.scenario_for(to)
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
        await self._register(call)
        self._spawn(self._play_vonage_outbound(call), call)
        return 201, {
            "uuid": call.id,
            "status": "started",
            "direction": "outbound",
            "conversation_uuid": "CON-" + str(uuid.uuid4()),
        }

    async def _vonage_modify(
        self, call_uuid: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        if not headers.get("authorization", "").lower().startswith("bearer "):
            return 401, {"title": "Unauthorized"}
        call = self.calls.get(call_uuid)
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
            return self._vonage_transfer(call, request)
        return 204, {}

    def _vonage_transfer(self, call: SimCall, request: Any) -> tuple[int, dict[str, Any]]:
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
        call.transfer(
            "+" + str(phone["number"]).lstrip("+"), "+" + str(caller_id).lstrip("+") if caller_id else None
        )
        return 204, {}

    # --- webhooks to the service ---

    async def _post_twilio(self, call: SimCall, url: str, params: dict[str, str]) -> int:
        assert self._http is not None
        token = self.twilio_accounts[call.account_sid]
        response = await self._http.post(
            url, data=params, headers={"X-Twilio-Signature": twilio_signature(token, url, params)}
        )
        call.webhook_statuses.append(response.status_code)
        return response.status_code

    async def _post_vonage(self, call: SimCall, url: str, payload: dict[str, Any]) -> int:
        assert self._http is not None and self.vonage_signature_secret
        body = _json.encode(payload)
        token = vonage_signed_jwt(
            self.vonage_signature_secret,
            body,
            api_key=self.vonage_api_key,
            application_id=self.vonage_application_id,
        )
        response = await self._http.post(
            url,
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        call.webhook_statuses.append(response.status_code)
        return response.status_code

    async def _transferred_leg(self, call: SimCall) -> None:
        """After a transfer the call goes on with the target until it hangs up (or the service hangs up)."""
        if call.transferred_to is not None:
            await self._wait_hangup(call, call.scenario.transferred_seconds)

    async def _wait_hangup(self, call: SimCall, seconds: float) -> bool:
        """Sleep `seconds`; True if the service hung up meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.hangup_requested.wait(), seconds)
        return call.hangup_requested.is_set()

    # --- Twilio ---

    def _twilio_status(self, call: SimCall, seq: int, status: str, **extra: str) -> dict[str, str]:
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

    async def _play_twilio_outbound(self, call: SimCall) -> None:
        form = call.request
        status_url = form.get("StatusCallback")
        wanted = set(form.get("StatusCallbackEvent") or [])
        seq = 0

        async def status(word: str, **extra: str) -> None:
            nonlocal seq
            call.statuses.append(word)
            if status_url:
                await self._post_twilio(call, status_url, self._twilio_status(call, seq, word, **extra))
            seq += 1

        if "initiated" in wanted:
            await status("initiated")
        if "ringing" in wanted:
            await status("ringing")
        scenario = call.scenario
        if await self._wait_hangup(call, scenario.ring_seconds):
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
            await self._post_twilio(
                call,
                amd_url,
                {
                    "CallSid": call.id,
                    "AccountSid": call.account_sid,
                    "AnsweredBy": answered_by,
                    "MachineDetectionDuration": "1800",
                },
            )
        url, params, _ = _twiml_stream(form.get("Twiml", "<Response/>"))
        await self._twilio_media(call, url, params)
        await status(
            "completed",
            CallDuration=str(call.duration or 0),
            Duration=str(math.ceil((call.duration or 0) / 60)),
            **({"AnsweredBy": answered_by} if amd and form.get("AsyncAmd") != "true" else {}),
        )

    async def _twilio_media(self, call: SimCall, url: str | None, params: dict[str, str]) -> None:
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
            token = self.twilio_accounts[call.account_sid]
            await run_media_leg(
                "twilio",
                url,
                script,
                call.media,
                custom=params,
                call_sid=call.id,
                account_sid=call.account_sid,
                hangup=call.media_end,
                headers={"X-Twilio-Signature": twilio_signature(token, url)},
            )
            await self._transferred_leg(call)
        call.ended_at = time.time()
        call.duration = round(call.ended_at - (call.answered_at or call.ended_at))

    # --- Vonage ---

    async def _play_vonage_outbound(self, call: SimCall) -> None:
        request = call.request
        event_url = (request.get("event_url") or [None])[0]
        conversation = "CON-" + str(uuid.uuid4())

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
                await self._post_vonage(call, event_url, payload)

        await event("started")
        await event("ringing")
        scenario = call.scenario
        if await self._wait_hangup(call, scenario.ring_seconds):
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
                await self._post_vonage(
                    call,
                    event_url,
                    {
                        "status": amd_status,
                        "call_uuid": call.id,
                        "conversation_uuid": conversation,
                        "timestamp": _iso(time.time()),
                    },
                )
        uri, headers, content_type, _ = _ncco_stream(request.get("ncco"))
        await self._vonage_media(call, uri, headers, content_type)
        await event("completed", **self._vonage_completed(call))

    def _vonage_completed(self, call: SimCall) -> dict[str, Any]:
        rate = call.scenario.vonage_rate_per_minute
        minutes = math.ceil((call.duration or 0) / 60)
        return {
            "duration": str(call.duration or 0),
            "rate": rate,
            "price": f"{float(rate) * minutes:.8f}",
            "start_time": _iso(call.answered_at or time.time()),
            "end_time": _iso(call.ended_at or time.time()),
        }

    async def _vonage_media(
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
            await self._transferred_leg(call)
        call.ended_at = time.time()
        call.duration = round(call.ended_at - (call.answered_at or call.ended_at))

    # --- inbound calls (a caller dials one of the service's numbers) ---

    async def start_inbound_call(
        self,
        provider: Literal["twilio", "vonage"],
        *,
        to: str,
        from_: str,
        scenario: Scenario | None = None,
        account_sid: str | None = None,
    ) -> SimCall:
        """Start a caller dialling `to`; returns at once (await `call.finished()`)."""
        if self.service_url is None:
            raise RuntimeError("inbound calls need the simulator's service_url")
        call = SimCall(
            id="CA" + uuid.uuid4().hex if provider == "twilio" else str(uuid.uuid4()),
            provider=provider,
            direction="inbound",
            to=to,
            from_=from_,
            scenario=scenario or self.default_scenario,
            account_sid=account_sid or next(iter(self.twilio_accounts), ""),
        )
        await self._register(call)
        play = self._play_twilio_inbound(call) if provider == "twilio" else self._play_vonage_inbound(call)
        self._spawn(play, call)
        return call

    async def inbound_call(
        self,
        provider: Literal["twilio", "vonage"],
        *,
        to: str,
        from_: str,
        scenario: Scenario | None = None,
        account_sid: str | None = None,
        timeout: float = 60.0,  # noqa: ASYNC109 - public test-helper API
    ) -> SimCall:
        """A whole inbound call; returns when it has ended."""
        call = await self.start_inbound_call(
            provider, to=to, from_=from_, scenario=scenario, account_sid=account_sid
        )
        return await call.finished(timeout)

    async def _play_twilio_inbound(self, call: SimCall) -> None:
        assert self._http is not None and self.service_url
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
        url = f"{self.service_url}/v1/telephony/twilio/voice"
        token = self.twilio_accounts[call.account_sid]
        response = await self._http.post(
            url, data=params, headers={"X-Twilio-Signature": twilio_signature(token, url, params)}
        )
        call.answer_status, call.answer_body = response.status_code, response.text
        if response.status_code != 200:
            return
        stream_url, custom, said = _twiml_stream(response.text)
        if stream_url is None:
            call.rejected_message = said
            call.statuses.append("completed")
            return
        status_url = f"{self.service_url}/v1/telephony/twilio/status"
        call.answered_at = time.time()
        call.statuses.append("in-progress")
        await self._post_twilio(call, status_url, self._twilio_status(call, 0, "in-progress"))
        await self._twilio_media(call, stream_url, custom)
        call.statuses.append("completed")
        await self._post_twilio(
            call, status_url, self._twilio_status(call, 1, "completed", CallDuration=str(call.duration or 0))
        )

    async def _play_vonage_inbound(self, call: SimCall) -> None:
        assert self._http is not None and self.service_url and self.vonage_signature_secret
        conversation = "CON-" + str(uuid.uuid4())
        query = {
            "to": call.to.lstrip("+"),
            "from": call.from_.lstrip("+"),
            "uuid": call.id,
            "conversation_uuid": conversation,
        }
        token = vonage_signed_jwt(
            self.vonage_signature_secret,
            b"",
            api_key=self.vonage_api_key,
            application_id=self.vonage_application_id,
        )
        response = await self._http.get(
            f"{self.service_url}/v1/telephony/vonage/answer",
            params=query,
            headers={"Authorization": f"Bearer {token}"},
        )
        call.answer_status, call.answer_body = response.status_code, response.text
        if response.status_code != 200:
            return
        uri, headers, content_type, said = _ncco_stream(response.json())
        events = f"{self.service_url}/v1/telephony/vonage/events"

        async def event(status: str, **extra: Any) -> None:
            call.statuses.append(status)
            await self._post_vonage(
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
        await self._vonage_media(call, uri, headers, content_type)
        await event("completed", **self._vonage_completed(call))
