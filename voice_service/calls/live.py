"""The live media sessions of this process: lookup by call id, the live-calls gauge, and shutdown draining.

`session_handler_factory` builds the handler that drives each new session; the conversation engine replaces
the default (MeteringHandler) at start-up:

    from voice_service.calls import live
    live.session_handler_factory = lambda session: CallSession(session)

A registry may carry its own factory (`LiveCalls.handler_factory`): several apps in one process (tests running two
service instances side by side) then each drive their sessions with their own runtime. `watch(fn)` tells `fn` of
every session that joins or leaves the registry (live control answers for the calls of its instance that way, so
whatever registers a session — the carriers' media sockets, a browser call — is controllable).

Draining (SIGTERM): uvicorn closes every WebSocket (1012) as soon as it starts shutting down, so the drain has to
run before that: `DrainingServer` (a uvicorn.Server) first stops new calls (inbound webhooks answer with a polite
rejection, POST /v1/calls with 503), lets live sessions finish for up to `drain_timeout_seconds`, hangs up the
rest (end_reason `shutdown`), and only then lets uvicorn shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import uvicorn

from voice_service.calls.session import MediaSession, MeteringHandler, SessionHandler
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = [
    "DrainingServer",
    "LiveCalls",
    "attach",
    "registry",
    "registry_of",
    "registry_of_app",
    "session_handler_factory",
]


def _default_factory(session: MediaSession) -> SessionHandler:
    return MeteringHandler(session)


# Replaced by the conversation engine: builds the handler that drives a new session.
session_handler_factory: Callable[[MediaSession], SessionHandler] = _default_factory


class LiveCalls:
    """Sessions with an open media socket in this process."""

    def __init__(self) -> None:
        # This registry's own handler factory; None: the process's `session_handler_factory`.
        self.handler_factory: Callable[[MediaSession], SessionHandler] | None = None
        self._sessions: dict[uuid.UUID, MediaSession] = {}
        self._watchers: list[Callable[[MediaSession, bool], None]] = []
        self._gauges: list[Any] = []
        self._empty = asyncio.Event()
        self._empty.set()
        self.draining = False

    def __len__(self) -> int:
        return len(self._sessions)

    def new_handler(self, session: MediaSession) -> SessionHandler:
        """The handler that will drive `session`."""
        return (self.handler_factory or session_handler_factory)(session)

    def get(self, call_id: uuid.UUID) -> MediaSession | None:
        return self._sessions.get(call_id)

    def sessions(self) -> list[MediaSession]:
        return list(self._sessions.values())

    def track_gauge(self, gauge: Any) -> None:
        """A prometheus Gauge (an app's metrics.live_calls) kept equal to the number of live sessions."""
        if gauge not in self._gauges:
            self._gauges.append(gauge)
            gauge.set(len(self._sessions))

    def watch(self, watcher: Callable[[MediaSession, bool], None]) -> Callable[[], None]:
        """Call `watcher(session, added)` whenever a session joins (True) or leaves (False); returns the remover.
        Called synchronously: it must not block."""
        self._watchers.append(watcher)
        return lambda: self._watchers.remove(watcher) if watcher in self._watchers else None

    def add(self, session: MediaSession) -> None:
        self._sessions[session.call.call_id] = session
        self._empty.clear()
        self._update()
        self._tell(session, True)

    def remove(self, session: MediaSession) -> None:
        removed = self._sessions.get(session.call.call_id) is session
        if removed:
            del self._sessions[session.call.call_id]
        if not self._sessions:
            self._empty.set()
        self._update()
        if removed:
            self._tell(session, False)

    def _tell(self, session: MediaSession, added: bool) -> None:
        for watcher in tuple(self._watchers):
            try:
                watcher(session, added)
            except Exception:
                log.exception("live-calls watcher failed")

    def _update(self) -> None:
        for gauge in self._gauges:
            gauge.set(len(self._sessions))

    async def drain(self, grace_seconds: float) -> int:
        """Stop new calls; wait up to `grace_seconds` for live sessions to end; hang up the rest. Returns how many
        sessions were hung up."""
        self.draining = True
        if self._sessions:
            log.info(
                "draining live calls", extra={"live": len(self._sessions), "grace_seconds": grace_seconds}
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), grace_seconds)
        remaining = self.sessions()
        if remaining:
            log.warning("drain timeout: hanging up live calls", extra={"live": len(remaining)})
            async with asyncio.TaskGroup() as tg:
                for session in remaining:
                    tg.create_task(session.hangup("shutdown"))
        return len(remaining)


registry = LiveCalls()


def registry_of(runtime: Runtime | None) -> LiveCalls:
    """The registry the runtime's media sessions are in (an app may have its own: tests); the process's
    otherwise."""
    calls = runtime.live_calls if runtime is not None else None
    return calls if calls is not None else registry


def registry_of_app(app: Any) -> LiveCalls:
    """The app's live-call registry (tests give an app its own in `app.state.live_calls`); the process's
    otherwise."""
    calls = getattr(app.state, "live_calls", None) if app is not None else None
    return calls if isinstance(calls, LiveCalls) else registry


def attach(runtime: Runtime, calls: LiveCalls) -> None:
    """Record `calls` as the runtime's registry (the first one attached stays)."""
    if runtime.live_calls is None:
        runtime.live_calls = calls


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that drains live calls (see the module docstring) before its own shutdown."""

    def __init__(
        self, config: uvicorn.Config, *, drain_timeout: float, calls: LiveCalls | None = None
    ) -> None:
        super().__init__(config)
        self.drain_timeout = drain_timeout
        self.calls = calls if calls is not None else registry

    async def shutdown(self, sockets: Any = None) -> None:
        await self.calls.drain(self.drain_timeout)
        await super().shutdown(sockets=sockets)
