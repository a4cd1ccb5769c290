"""Run the real service (Litestar app, lifespan, uvicorn, draining server) on 127.0.0.1 in the current loop.

For tests and benchmarks that need real sockets: PUBLIC_BASE_URL must be the URL the server really listens on,
or Twilio signatures (computed over the public URL) would not match. The port is bound first, then the settings
are built for it.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from voice_service.calls.live import DrainingServer, LiveCalls
from voice_service.settings import Settings
from voice_service.simulator.server import serve_in_loop

__all__ = ["RunningService", "running_service"]


class _InLoopDrainingServer(DrainingServer):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningService:
    app: Any
    settings: Settings
    base_url: str
    server: uvicorn.Server
    live_calls: LiveCalls

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http")


@asynccontextmanager
async def running_service(
    make_settings: Callable[[str], Settings], *, bootstrap: bool = False, **uvicorn_config: Any
) -> AsyncIterator[RunningService]:
    """`make_settings(base_url)` builds the service's settings once the port is known."""
    from voice_service.app import create_app

    # proto=IPPROTO_TCP so that asyncio sets TCP_NODELAY on the accepted sockets (see serve_in_loop)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = make_settings(base_url)
    app = create_app(settings, bootstrap=bootstrap)
    calls = LiveCalls()
    app.state.live_calls = calls

    def factory(config: uvicorn.Config) -> uvicorn.Server:
        return _InLoopDrainingServer(config, drain_timeout=settings.drain_timeout_seconds, calls=calls)

    async with serve_in_loop(app, sock=sock, lifespan="on", server_factory=factory, **uvicorn_config) as (
        server,
        _,
    ):
        yield RunningService(app=app, settings=settings, base_url=base_url, server=server, live_calls=calls)


@asynccontextmanager
async def simulated_stack(base: Settings, **overrides: Any) -> AsyncIterator[tuple[Any, RunningService]]:
    """A Simulator plus the real service pointed at it (Twilio, Vonage and the simulator provider all go to
    the simulator); yields (simulator, service)."""
    import msgspec

    from voice_service.simulator.server import Simulator

    base = msgspec.structs.replace(base, **overrides)
    async with Simulator.from_settings(base, service_url=None) as sim:

        def make(base_url: str) -> Settings:
            return msgspec.structs.replace(
                base,
                public_base_url=base_url,
                twilio_base_url=sim.base_url,
                simulator_base_url=sim.base_url,
                vonage_base_url=sim.base_url,
                vonage_rest_url=sim.base_url,
                vonage_api_key=sim.vonage_api_key,
                vonage_api_secret=sim.vonage_api_secret,
            )

        async with running_service(make) as svc:
            sim.service_url = svc.base_url
            yield sim, svc


async def until(predicate: Callable[[], bool], within: float = 10.0, interval: float = 0.01) -> None:
    """Poll `predicate` until it is true; TimeoutError after `within` seconds (tests waiting on other tasks)."""
    import asyncio

    for _ in range(max(1, int(within / interval))):
        if predicate():
            return
        await asyncio.sleep(interval)
    if not predicate():
        raise TimeoutError(f"condition not met within {within} s")
