"""The simulator: a local Twilio and Vonage that place "calls" the service can talk to, on one machine.

A small raw ASGI server (uvicorn, no framework) emulates the REST endpoints the adapters call; each carrier's
side lives in its own module (twilio.py: /2010-04-01/Accounts/{sid}/Calls…; vonage.py: /v1/calls…), and this
core holds what they share: the server, the calls placed so far, their tasks, and the entry points.

Each placed call plays its callee per a Scenario: ring, then answer (or busy / no-answer / fail), answering-
machine results, the media WebSocket with the exact message sequence of PROTOCOLS.md streaming the caller's
audio (a WAV file or generated speech) at real time or faster, then a normal hang-up and the final status with
its duration. A transfer ends the media leg the way the carrier does (Twilio: `stop`, then the socket closes;
Vonage: close 1000), records `transferred_to`, and the call goes on with the target until `transferred_seconds`
later, when it completes with its final status. Status webhooks are signed like the providers sign them
(Twilio's RequestValidator algorithm with the account's token, or a Webhooks SharedKey; Vonage's HS256 JWT with
payload_hash, iat, jti). `start_inbound_call` plays a caller dialling one of the service's numbers through the
voice/answer webhook.

    async with Simulator(service_url=..., twilio_accounts={sid: token}) as sim:
        sim.scenarios["+15551230001"] = Scenario(answer="busy")
        ...                                  # the service places calls against sim.twilio_base_url
        call = await sim.wait_for_call()
        await call.finished()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
import msgspec
import uvicorn

from voice_service.simulator.calls import Scenario, SimCall, caller_audio
from voice_service.simulator.twilio import TwilioSide
from voice_service.simulator.vonage import VonageSide

log = logging.getLogger(__name__)

__all__ = ["Scenario", "SimCall", "Simulator", "caller_audio", "serve_in_loop"]

_json = msgspec.json.Encoder()


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


class Simulator:
    """A local Twilio + Vonage. See the module docstring."""

    def __init__(
        self,
        *,
        service_url: str | None = None,
        twilio_accounts: Mapping[str, str] | None = None,
        twilio_shared_key: tuple[str, str] | None = None,
        vonage_signature_secret: str | None = None,
        vonage_api_key: str = "simkey",
        vonage_application_id: str | None = None,
        vonage_answer_method: Literal["GET", "POST"] = "GET",
        vonage_retry_seconds: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        default_scenario: Scenario | None = None,
    ) -> None:
        self.service_url = service_url.rstrip("/") if service_url else None
        self.twilio_accounts = dict(twilio_accounts or {})
        # (key id, secret) of a Webhooks SharedKey: Twilio requests are signed with it (HMAC-SHA256, signature
        # settings header) instead of the account's auth token.
        self.twilio_shared_key = twilio_shared_key
        self.vonage_signature_secret = vonage_signature_secret
        self.vonage_api_key = vonage_api_key
        self.vonage_application_id = vonage_application_id
        self.vonage_answer_method = vonage_answer_method
        self.vonage_retry_seconds = vonage_retry_seconds
        self.host = host
        self.port = port
        self.default_scenario = default_scenario or Scenario()
        self.scenarios: dict[str, Scenario] = {}  # by the callee's E.164 (outbound calls)
        self.calls: dict[str, SimCall] = {}
        self.twilio = TwilioSide(self)
        self.vonage = VonageSide(self)
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

    @property
    def http(self) -> httpx.AsyncClient:
        """The client webhooks to the service go through."""
        assert self._http is not None, "use the simulator inside `async with`"
        return self._http

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

    def spawn(self, coro: Any, call: SimCall) -> None:
        """Play `call` in the simulator's task group (its `done` is set however it ends)."""
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

    async def register(self, call: SimCall) -> None:
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
        reply = await self.twilio.handle(method, parts, headers, body)
        if reply is None:
            reply = await self.vonage.handle(method, parts, headers, body)
        if reply is None and path == "/health":
            reply = 200, {"status": "ok", "calls": len(self.calls)}
        status, payload = reply or (
            404,
            {"code": 20404, "message": f"no route {method} {path}", "status": 404},
        )
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
        side = self.twilio if provider == "twilio" else self.vonage
        call = SimCall(
            id=side.new_inbound_id(),
            provider=provider,
            direction="inbound",
            to=to,
            from_=from_,
            scenario=scenario or self.default_scenario,
            account_sid=account_sid or next(iter(self.twilio_accounts), ""),
        )
        await self.register(call)
        self.spawn(side.play_inbound(call, self.service_url), call)
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
