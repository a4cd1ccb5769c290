"""The fake JSONWire carrier (protocol in tests/fakes/jsonwire_carrier.py): places the service's calls and dials it.

An outbound call (POST /calls) posts ringing and answered, opens the media socket, says hello with the call's
params, streams `frames` 20 ms PCM16 frames of caller audio, records what the service plays back (echoing each
mark as "played"), waits `listen_seconds`, says bye, closes, and posts ended with its length. `dial` plays a caller:
the signed incoming webhook, then the same media leg and progress posts. All calls run in the fake's task group.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.fakes.jsonwire_carrier import SIGNATURE_HEADER, sign
from tests.fakes.server import (
    LocalServer,
    Receive,
    Scope,
    Send,
    headers_dict,
    read_body,
    send_json,
    send_response,
)

__all__ = ["FakeJsonWire", "WireCall"]

FRAME_BYTES = 320  # 20 ms of PCM16 at 8 kHz
_json = msgspec.json.Encoder()


@dataclass
class WireCall:
    id: str
    direction: str
    to: str
    from_: str
    status_url: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    answer: dict[str, Any] = field(default_factory=dict)
    webhook_statuses: list[int] = field(default_factory=list)
    sent_audio: bytearray = field(default_factory=bytearray)  # caller audio sent to the service
    received_audio: bytearray = field(default_factory=bytearray)  # what the service played
    marks: list[str] = field(default_factory=list)
    close_code: int | None = None
    seconds: int = 0
    hangup: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None


def caller_frames(count: int) -> list[bytes]:
    """Distinct, recognisable PCM16 frames (a ramp per frame)."""
    return [bytes((k * 7 + i) % 256 for i in range(FRAME_BYTES)) for k in range(count)]


class FakeJsonWire:
    def __init__(self, *, api_key: str, secret: str, frames: int = 25, listen_seconds: float = 0.8) -> None:
        self.api_key = api_key
        self.secret = secret
        self.frames = frames
        self.listen_seconds = listen_seconds
        self.calls: dict[str, WireCall] = {}

        async def asgi(scope: Scope, receive: Receive, send: Send) -> None:  # a function: uvicorn sees ASGI 3
            await self.app(scope, receive, send)

        self._server = LocalServer(asgi)
        self._tg: asyncio.TaskGroup | None = None
        self._http: httpx.AsyncClient | None = None
        self._stack = contextlib.AsyncExitStack()

    @property
    def base_url(self) -> str:
        return self._server.http_url

    async def __aenter__(self) -> FakeJsonWire:
        await self._stack.__aenter__()
        self._http = await self._stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
        await self._stack.enter_async_context(self._server)
        self._tg = await self._stack.enter_async_context(asyncio.TaskGroup())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.__aexit__(*exc)

    # --- the carrier's REST API ---

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if headers_dict(scope).get("authorization") != f"Bearer {self.api_key}":
            await send_json(send, 401, {"error": "bad api key"})
            return
        parts = scope["path"].strip("/").split("/")
        if parts == ["calls"] and scope["method"] == "POST":
            request = msgspec.json.decode(body)
            call = WireCall(
                id="JW" + uuid.uuid4().hex[:12],
                direction="outbound",
                to=request["to"],
                from_=request["from"],
                status_url=request["status_url"],
                params=request["params"],
            )
            self.calls[call.id] = call
            self._spawn(self._outbound(call, request["media_url"]), call)
            await send_json(send, 201, {"id": call.id})
        elif len(parts) == 2 and parts[0] == "numbers" and scope["method"] == "GET":
            # The test account holds every number it is asked about.
            await send_json(send, 200, {"number": parts[1]})
        elif len(parts) == 3 and parts[0] == "calls" and parts[2] == "hangup" and scope["method"] == "POST":
            call = self.calls.get(parts[1])
            if call is None or call.done.is_set():
                await send_json(send, 404, {"error": "no such call"})
                return
            call.hangup.set()
            await send_response(send, 204, b"", "application/json")
        else:
            await send_json(send, 404, {"error": "no route"})

    def _spawn(self, coro: Any, call: WireCall) -> None:
        assert self._tg is not None, "use the fake inside `async with`"
        self._tg.create_task(self._guard(coro, call), name=f"jsonwire:{call.id}")

    async def _guard(self, coro: Any, call: WireCall) -> None:
        try:
            await coro
        except Exception as exc:  # the test reads it from the call
            call.error = f"{type(exc).__name__}: {exc}"
        finally:
            call.done.set()

    # --- webhooks to the service ---

    async def _post(self, call: WireCall, url: str, payload: dict[str, Any]) -> httpx.Response:
        assert self._http is not None
        body = _json.encode(payload)
        response = await self._http.post(
            url,
            content=body,
            headers={
                SIGNATURE_HEADER: sign(self.secret, "POST", url, body),
                "Content-Type": "application/json",
            },
        )
        call.webhook_statuses.append(response.status_code)
        return response

    async def _progress(self, call: WireCall, state: str, **extra: Any) -> None:
        assert call.status_url is not None
        await self._post(call, call.status_url, {"id": call.id, "state": state, **extra})

    # --- calls ---

    async def _outbound(self, call: WireCall, media_url: str) -> None:
        await self._progress(call, "ringing")
        await self._progress(call, "answered")
        await self._media(call, media_url)
        await self._progress(call, "ended", seconds=call.seconds)

    async def dial(self, service_url: str, *, to: str, from_: str) -> WireCall:
        """A caller dialling one of the service's numbers; returns once the call has ended."""
        call = WireCall(id="JW" + uuid.uuid4().hex[:12], direction="inbound", to=to, from_=from_)
        call.status_url = f"{service_url}/v1/telephony/jsonwire/progress"
        self.calls[call.id] = call
        self._spawn(self._inbound(call, service_url), call)
        await asyncio.wait_for(call.done.wait(), 30)
        return call

    async def _inbound(self, call: WireCall, service_url: str) -> None:
        response = await self._post(
            call,
            f"{service_url}/v1/telephony/jsonwire/incoming",
            {"id": call.id, "to": call.to, "from": call.from_},
        )
        response.raise_for_status()
        call.answer = response.json()
        if call.answer.get("action") != "stream":
            return
        call.params = call.answer["params"]
        await self._progress(call, "answered")
        await self._media(call, call.answer["url"])
        await self._progress(call, "ended", seconds=call.seconds)

    async def _media(self, call: WireCall, url: str) -> None:
        started = time.monotonic()
        async with connect(url, open_timeout=10, ping_interval=None) as ws:
            await ws.send(_json.encode({"type": "hello", "params": call.params, "rate": 8000}).decode())
            listener = asyncio.create_task(self._listen(call, ws))
            try:
                for frame in caller_frames(self.frames):
                    await ws.send(_json.encode({"type": "audio", "pcm": frame}).decode())
                    call.sent_audio += frame
                    await asyncio.sleep(0.02)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(call.hangup.wait(), self.listen_seconds)
                await ws.send(_json.encode({"type": "bye"}).decode())
                await ws.close(1000)
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            call.close_code = ws.close_code
        call.seconds = max(1, round(time.monotonic() - started))

    async def _listen(self, call: WireCall, ws: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                frame = msgspec.json.decode(message)
                if frame["type"] == "audio":
                    call.received_audio += base64.b64decode(frame["pcm"])
                elif frame["type"] == "mark":
                    call.marks.append(frame["name"])
                    await ws.send(_json.encode({"type": "played", "name": frame["name"]}).decode())
