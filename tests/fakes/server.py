"""Run raw ASGI fakes on a real local socket, plus the small ASGI helpers the fakes share.

`LocalServer` starts uvicorn inside the running event loop on 127.0.0.1 with an ephemeral port, so
tests and benchmarks talk to the fakes over real HTTP and WebSocket connections::

    async with LocalServer(app) as srv:
        client = SomeAdapter(base_url=srv.http_url)   # or srv.ws_url

`PathRouter` puts several fakes behind one server (e.g. Deepgram STT and Aura on one base URL).
The audio helpers at the end build real signals (tones, μ-law silence) for fakes and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import socket
import struct
import warnings
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

import msgspec
import uvicorn

# stdlib audioop warns on import on 3.11/3.12 (pytest makes warnings errors); audioop-lts on 3.13+ does not.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_json_encoder = msgspec.json.Encoder()


class _InLoopServer(uvicorn.Server):
    # uvicorn.Server.serve() installs process-wide SIGINT/SIGTERM handlers; a server running inside a
    # test's event loop must leave them alone (Ctrl-C should still stop pytest).
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class LocalServer:
    """An ASGI app served by uvicorn on 127.0.0.1:<ephemeral port> in the current event loop."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", shutdown_timeout: float = 3.0) -> None:
        self.app = app
        self.host = host
        self.port = 0
        self._shutdown_timeout = shutdown_timeout
        self._server: _InLoopServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def __aenter__(self) -> LocalServer:
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (accepted sockets inherit it);
        # without it Nagle + delayed ACK add ~40 ms stalls to small writes.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,  # do not reconfigure the test process's logging
            ws="websockets-sansio",
            timeout_graceful_shutdown=self._shutdown_timeout,
            ws_ping_interval=None,
        )
        self._server = _InLoopServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=f"local-server:{self.port}")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("local server stopped during startup")
            await asyncio.sleep(0.005)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self._shutdown_timeout + 2.0)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        finally:
            if self._sock is not None:
                self._sock.close()
            self._server = None
            self._task = None


class PathRouter:
    """Dispatch by path prefix to several ASGI apps (longest prefix wins); 404 otherwise."""

    def __init__(self, routes: dict[str, ASGIApp]) -> None:
        self._routes = sorted(routes.items(), key=lambda item: len(item[0]), reverse=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        for prefix, app in self._routes:
            if path.startswith(prefix):
                await app(scope, receive, send)
                return
        await reject(scope, receive, send, 404, {"error": f"no fake serves {path}"})


# ---------------------------------------------------------------------------------------------------------
# ASGI helpers shared by the fakes.


def header(scope: Scope, name: str) -> str | None:
    """First value of a request header (case-insensitive), decoded as latin-1."""
    wanted = name.lower().encode("latin-1")
    for key, value in scope.get("headers", ()):
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


def headers_dict(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


def query_params(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def wait_for_disconnect(receive: Receive) -> None:
    """Block until the client goes away: how a fake "hangs" without leaking a task."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_response(
    send: Send, status: int, body: bytes, content_type: str, extra_headers: Iterable[tuple[str, str]] = ()
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, payload: Any, extra_headers: Iterable[tuple[str, str]] = ()
) -> None:
    await send_response(send, status, _json_encoder.encode(payload), "application/json", extra_headers)


async def start_stream(
    send: Send, status: int, content_type: str, extra_headers: Iterable[tuple[str, str]] = ()
) -> None:
    """Start a chunked (no content-length) response; follow with send_chunk / end_stream."""
    headers = [(b"content-type", content_type.encode())]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def send_chunk(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def end_stream(send: Send) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def reject(scope: Scope, receive: Receive, send: Send, status: int, payload: Any) -> None:
    """An HTTP error for either an HTTP request or a WebSocket handshake."""
    if scope["type"] == "http":
        await read_body(receive)
        await send_json(send, status, payload)
        return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            body = _json_encoder.encode(payload)
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})


# ---------------------------------------------------------------------------------------------------------
# Audio signals.


@functools.lru_cache(maxsize=512)
def pcm16_tone(seconds: float, *, rate: int, freq: float = 440.0, amplitude: int = 8000) -> bytes:
    """Signed 16-bit little-endian mono sine: loud enough for an energy VAD to call it speech. Cached: the TTS fake
    answers the same few texts over and over under load, and building a sample at a time is its largest cost."""
    n = int(round(seconds * rate))
    step = 2 * math.pi * freq / rate
    return struct.pack(f"<{n}h", *(int(amplitude * math.sin(step * i)) for i in range(n)))


def mulaw_tone(seconds: float, *, rate: int = 8000, freq: float = 440.0, amplitude: int = 8000) -> bytes:
    return audioop.lin2ulaw(pcm16_tone(seconds, rate=rate, freq=freq, amplitude=amplitude), 2)


def mulaw_silence(seconds: float, *, rate: int = 8000) -> bytes:
    return b"\xff" * int(round(seconds * rate))  # μ-law silence is 0xFF, not 0x00


def pcm16_silence(seconds: float, *, rate: int) -> bytes:
    return b"\x00\x00" * int(round(seconds * rate))


def split_frames(audio: bytes, size: int) -> list[bytes]:
    """Telephony-sized frames (160 bytes = 20 ms of μ-law 8 kHz; 640 = 20 ms of PCM16 16 kHz)."""
    return [audio[i : i + size] for i in range(0, len(audio), size)]


# ---------------------------------------------------------------------------------------------------------
# Fault injection shared by the HTTP fakes.


@dataclass(frozen=True)
class Fault:
    """What to do instead of a normal response.

    kind "status": reply `status` with the provider's error body (e.g. 500, 429, 401).
    kind "hang":   after `after_chunks` body chunks (0: before any headers), stop sending until the
                   client gives up (exercises read timeouts).
    kind "cut":    after `after_chunks` body chunks, drop the connection mid-response.
    """

    kind: Literal["status", "hang", "cut"]
    status: int = 500
    after_chunks: int = 0

    @classmethod
    def http(cls, status: int) -> Fault:
        return cls("status", status=status)

    @classmethod
    def hang(cls, after_chunks: int = 0) -> Fault:
        return cls("hang", after_chunks=after_chunks)

    @classmethod
    def cut(cls, after_chunks: int = 1) -> Fault:
        return cls("cut", after_chunks=after_chunks)


class DisconnectWatch:
    """Watches `receive` for the client going away while a response streams (uvicorn's `send` turns
    into a silent no-op after a disconnect, so a fake would otherwise stream on to the end).

    Use as `async with DisconnectWatch(receive) as watch:` and `await watch.sleep(s)` between chunks;
    `watch.disconnected` tells whether the client left."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DisconnectWatch:
        self._task = asyncio.create_task(wait_for_disconnect(self._receive))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    @property
    def disconnected(self) -> bool:
        return self._task is not None and self._task.done()

    async def sleep(self, seconds: float) -> None:
        """Sleep, returning early if the client disconnects."""
        assert self._task is not None
        if seconds > 0:
            await asyncio.wait({self._task}, timeout=seconds)
        else:
            await asyncio.sleep(0)

    async def until_disconnect(self) -> None:
        assert self._task is not None
        await asyncio.wait({self._task})


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    disconnected: bool = False  # the client went away before the response finished
    extra: dict[str, Any] = field(default_factory=dict)


async def record_request(scope: Scope, receive: Receive) -> RecordedRequest:
    body = await read_body(receive)
    parsed: Any = None
    if body and (header(scope, "content-type") or "").startswith("application/json"):
        try:
            parsed = msgspec.json.decode(body)
        except msgspec.DecodeError:
            parsed = None
    return RecordedRequest(
        method=scope.get("method", ""),
        path=scope.get("path", ""),
        query=query_params(scope),
        headers=headers_dict(scope),
        body=body,
        json=parsed,
    )
