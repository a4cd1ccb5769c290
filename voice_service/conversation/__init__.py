"""The real-time conversation engine: every media session is driven by a CallSession (STT → LLM → TTS).

`install(runtime)` makes new media sessions run a CallSession; `running(app)` does it for the app's lifespan
(registered in `voice_service.app.background_services`) and restores the previous handler factory on exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from voice_service.calls import live
from voice_service.calls.session import MediaSession, SessionHandler
from voice_service.conversation.engine import CallSession
from voice_service.conversation.services import EngineConfig, RuntimeServices, warn_unconfigured
from voice_service.runtime import Runtime, worker_index

__all__ = ["CallSession", "EngineConfig", "RuntimeServices", "handler_factory", "install", "running"]


def handler_factory(services: RuntimeServices) -> Callable[[MediaSession], SessionHandler]:
    def create(session: MediaSession) -> SessionHandler:
        return CallSession(session, services)

    return create


def install(
    runtime: Runtime, config: EngineConfig | None = None, *, calls: live.LiveCalls | None = None
) -> Callable[[MediaSession], SessionHandler] | None:
    """Drive every new media session of this process (or only those of the registry `calls`) with a CallSession;
    returns the factory it replaced."""
    factory = handler_factory(RuntimeServices(runtime, config))
    if calls is not None:
        previous_own = calls.handler_factory
        calls.handler_factory = factory
        return previous_own
    previous = live.session_handler_factory
    live.session_handler_factory = factory
    return previous


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[None]:
    """Background service for the app's lifespan (after the Runtime is open); says at start-up which speech and LLM
    settings are missing, if any (once per host: `serve --workers N` leaves it to its first worker)."""
    if worker_index() in (None, 0):
        warn_unconfigured(app.state.runtime.settings)
    previous = live.session_handler_factory
    install(app.state.runtime)
    try:
        yield
    finally:
        live.session_handler_factory = previous
