"""Live control of this instance's calls, and the routing of commands and listeners to the instance holding a call.

A call's media socket is on one instance (its LiveCalls registry); the API request that ends, steers or listens
to it may land on any other. Each instance runs one `LiveControl` (for the app's lifespan, `running(app)`):

* the media side: a session that joins the instance's LiveCalls registry makes the instance answer requests on
  the call's bus channel (calls/bus.py: PostgreSQL LISTEN/NOTIFY) until it leaves;
* the API side: `send(...)` applies a command to a call of this instance directly, or sends it over the bus and
  waits for the holding instance's reply (None when none comes: that instance is gone or the media has ended);
  `listen(...)` opens a listen stream, local (a feed on the session) or remote (the holding instance pumps its
  feed to this instance's inbox every 100 ms, while this one sends keep-alives).

Commands are applied through the session's handler when it takes them (calls/commands.py `Controllable`: the
conversation engine), so they follow the engine's rules; an `end` that the engine has not carried out within
END_GRACE_SECONDS (it is still setting up, say) hangs the media session up directly. Every task this module
starts belongs to the TaskGroup of `running(app)`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from voice_service.calls.bus import LiveBus, Message, call_channel
from voice_service.calls.commands import EndCall, Say, Transfer, controllable
from voice_service.calls.listen import Item, ListenFeed, items_from_bus, items_to_bus
from voice_service.calls.live import LiveCalls, registry_of_app
from voice_service.calls.session import MediaSession

log = logging.getLogger(__name__)

__all__ = ["ListenSource", "LiveControl", "control_of", "running"]

COMMAND_TIMEOUT_SECONDS = 2.0  # for the holding instance's reply; it comes within milliseconds when it is alive
END_GRACE_SECONDS = 1.5  # for the engine to carry out an end before the media session is hung up directly
FINISH_WAIT_SECONDS = 5.0  # for the end of a call to be recorded before a command's reply
PUMP_SECONDS = 0.1  # a listen stream's batches
KEEPALIVE_SECONDS = 3.0  # a remote listener's keep-alives
STREAM_IDLE_SECONDS = 10.0  # a remote stream without keep-alives this long has lost its listener
LISTEN_SILENCE_SECONDS = 5.0  # a remote listener with no batch this long has lost the call's instance
HEARTBEAT_SECONDS = 2.0  # a remote stream with nothing to send says it is alive this often


def control_of(app: Any) -> LiveControl | None:
    return getattr(app.state, "live_control", None) if app is not None else None


def _width(encoding: str) -> int:
    return 1 if encoding == "mulaw" else 2


async def apply_command(session: MediaSession, op: str, args: Message) -> Message:
    """Apply `op` (end, say, transfer) to a session of this instance; the reply as the bus carries it."""
    if session.ended:
        return {"ok": False, "error": "ended"}
    handler = session.handler
    engine = controllable(handler)
    if op == "end":
        reason = str(args.get("reason") or "ended_by_api")
        if engine is not None and not engine.accepting_commands:
            await session.wait_finished(FINISH_WAIT_SECONDS)  # ending by itself already
            return {"ok": True}
        if engine is None or not engine.command(EndCall(reason)) or not await session.wait_finished(
            END_GRACE_SECONDS
        ):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FINISH_WAIT_SECONDS):
                    await session.hangup(reason)
        return {"ok": True}
    if engine is None:
        return {"ok": False, "error": "not_controllable"}
    if op == "say":
        command: Say | Transfer = Say(str(args["text"]), interrupt=bool(args.get("interrupt", True)))
    elif op == "transfer":
        command = Transfer(str(args["to"]))
    else:
        return {"ok": False, "error": "unknown"}
    if not engine.command(command):
        return {"ok": False, "error": "ending"}
    return {"ok": True}


class ListenSource(abc.ABC):
    """What a listener's WebSocket reads: batches of items until the call ends (from this instance's call, or
    relayed from the instance holding it)."""

    encoding: str
    sample_rate: int

    @abc.abstractmethod
    async def next(self) -> tuple[list[Item], Message | None]:
        """The items since the last call, and (last) how it ended: {"end_reason"} or {"error"}."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop listening (the feed is detached or the relay unsubscribed)."""


def _attach_feed(session: MediaSession) -> tuple[ListenFeed, Callable[[], None]]:
    fmt = session.format
    loop = asyncio.get_running_loop()
    handler = session.handler
    engine = controllable(handler)
    # The engine's observer times (at_ms) are on its clock; both are monotonic (see recordings.capture).
    t0 = getattr(handler, "t0", session.t0)
    feed = ListenFeed(t0=t0, encoding=fmt.encoding, sample_rate=fmt.sample_rate, clock=loop.time)
    removers = [session.add_tap(feed)]
    if engine is not None:
        removers.append(engine.observe(feed))

    def remove() -> None:
        for remover in removers:
            remover()

    return feed, remove


class _LocalSource(ListenSource):
    def __init__(self, session: MediaSession) -> None:
        self.session = session
        self.encoding, self.sample_rate = session.format.encoding, session.format.sample_rate
        self.feed, self._remove = _attach_feed(session)

    async def next(self) -> tuple[list[Item], Message | None]:
        session = self.session
        if not session.ended:
            await asyncio.sleep(PUMP_SECONDS)
            return self.feed.take(), None
        # The last transcript entries are written as the session stops: wait for the end to be recorded.
        await session.wait_finished(FINISH_WAIT_SECONDS)
        return self.feed.take(), {"end_reason": session.end_reason}

    async def close(self) -> None:
        self._remove()


class _RemoteSource(ListenSource):
    def __init__(self, control: LiveControl, tenant_id: uuid.UUID, call_id: uuid.UUID) -> None:
        self.control = control
        self.tenant_id, self.call_id = tenant_id, call_id
        self.stream_id = uuid.uuid4().hex
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.encoding, self.sample_rate = "mulaw", 8000
        self._keepalive_at = 0.0

    async def open(self) -> Message | None:
        bus = self.control.bus
        bus.open_stream(self.stream_id, self.queue.put_nowait)
        reply = await bus.request(
            call_channel(self.call_id),
            {"op": "listen", "tenant_id": str(self.tenant_id), "stream": self.stream_id},
            timeout=self.control.command_timeout,
        )
        if reply is not None and reply.get("ok"):
            self.encoding, self.sample_rate = str(reply["encoding"]), int(reply["sample_rate"])
            self._keepalive_at = asyncio.get_running_loop().time()
        else:
            bus.close_stream(self.stream_id)
        return reply

    async def next(self) -> tuple[list[Item], Message | None]:
        loop = asyncio.get_running_loop()
        if loop.time() - self._keepalive_at >= KEEPALIVE_SECONDS:
            self._keepalive_at = loop.time()
            await self._send({"op": "keepalive"})
        try:
            async with asyncio.timeout(LISTEN_SILENCE_SECONDS):
                messages = [await self.queue.get()]
        except TimeoutError:
            return [], {"error": "the instance carrying the call's media stopped responding"}
        while not self.queue.empty():
            messages.append(self.queue.get_nowait())
        items: list[Item] = []
        end: Message | None = None
        for message in messages:
            items += items_from_bus(message.get("items") or [])
            if "end" in message:
                end = dict(message["end"] or {})
        return items, end

    async def _send(self, message: Message) -> None:
        try:
            await self.control.bus.notify(
                call_channel(self.call_id),
                {**message, "tenant_id": str(self.tenant_id), "stream": self.stream_id},
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("live-control message not sent", extra={"detail": repr(exc)[:300]})

    async def close(self) -> None:
        self.control.bus.close_stream(self.stream_id)
        await self._send({"op": "unlisten"})


class _Outbound:
    """A listen stream this instance feeds to a listener on another instance."""

    def __init__(self, session: MediaSession, stream_id: str, reply_to: str) -> None:
        self.session = session
        self.stream_id = stream_id
        self.reply_to = reply_to
        self.feed, self.remove = _attach_feed(session)
        self.keepalive_at = asyncio.get_running_loop().time()
        self.stopped = False


class LiveControl:
    """This instance's live control (see the module docstring)."""

    def __init__(
        self,
        calls: LiveCalls,
        bus: LiveBus,
        tg: asyncio.TaskGroup,
        *,
        command_timeout: float = COMMAND_TIMEOUT_SECONDS,
    ) -> None:
        self.calls = calls
        self.bus = bus
        self.command_timeout = command_timeout
        self._tg = tg
        self._tasks: set[asyncio.Task[None]] = set()
        self._outbound: dict[str, _Outbound] = {}

    def _spawn(self, coro: Any, name: str) -> None:
        task = self._tg.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        """Cancel the requests and streams in flight (the lifespan is ending)."""
        for task in list(self._tasks):
            task.cancel()

    # --- the media side ---

    def on_registry(self, session: MediaSession, added: bool) -> None:
        """A session joined or left this instance's registry (LiveCalls.watch): answer for its call, or stop."""
        call_id = session.call.call_id
        if added:
            handler = functools.partial(self._on_request, call_id)
            self._spawn(self._channel(self.bus.listen(call_channel(call_id), handler)), name="live-control:listen")
        else:
            self._spawn(self._channel(self.bus.unlisten(call_channel(call_id))), name="live-control:unlisten")

    async def _channel(self, change: Any) -> None:
        try:
            await change
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The bus LISTENs on every registered channel again when it reconnects.
            log.warning("live-control channel change failed", extra={"detail": repr(exc)[:300]})

    def _on_request(self, call_id: uuid.UUID, message: Message) -> None:
        self._spawn(self._serve(call_id, message), name=f"live-control:{message.get('op')}")

    async def _serve(self, call_id: uuid.UUID, message: Message) -> None:
        op = message.get("op")
        try:
            session = self.calls.get(call_id)
            if session is None or str(session.call.tenant_id) != message.get("tenant_id"):
                if op not in ("keepalive", "unlisten"):
                    await self.bus.reply(message, {"ok": False, "error": "ended"})
                return
            stream_id = str(message.get("stream") or "")
            if op == "keepalive" or op == "unlisten":
                outbound = self._outbound.get(stream_id)
                if outbound is not None and outbound.session is session:
                    outbound.keepalive_at = asyncio.get_running_loop().time()
                    outbound.stopped = op == "unlisten"
                return
            if op == "listen":
                reply = self._start_outbound(session, stream_id, message)
            else:
                reply = await apply_command(session, str(op), message)
            await self.bus.reply(message, reply)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("live-control request failed", extra={"op": op, "detail": repr(exc)[:300]})
        except Exception:
            # A bad request must not take the instance's live control (this task group) down with it.
            log.exception("live-control request crashed", extra={"op": op})

    def _start_outbound(self, session: MediaSession, stream_id: str, message: Message) -> Message:
        reply_to = message.get("reply_to")
        if not stream_id or not isinstance(reply_to, str) or stream_id in self._outbound:
            return {"ok": False, "error": "bad_request"}
        outbound = _Outbound(session, stream_id, reply_to)
        self._outbound[stream_id] = outbound
        self._spawn(self._pump(outbound), name=f"live-listen:{stream_id}")
        return {"ok": True, "encoding": session.format.encoding, "sample_rate": session.format.sample_rate}

    async def _pump(self, outbound: _Outbound) -> None:
        session, loop = outbound.session, asyncio.get_running_loop()
        width = _width(session.format.encoding)
        end: Message | None = None
        sent_at = loop.time()
        try:
            while end is None:
                await asyncio.sleep(PUMP_SECONDS)
                if outbound.stopped:
                    return
                if loop.time() - outbound.keepalive_at > STREAM_IDLE_SECONDS:
                    log.info("listen stream abandoned by its listener", extra={"stream": outbound.stream_id})
                    return
                if session.ended:
                    await session.wait_finished(FINISH_WAIT_SECONDS)
                    end = {"end_reason": session.end_reason}
                bodies = items_to_bus(outbound.feed.take(), width)
                if not bodies and loop.time() - sent_at >= HEARTBEAT_SECONDS:
                    bodies = [[]]
                for body in bodies:
                    await self.bus.notify(outbound.reply_to, {"stream": outbound.stream_id, "items": body})
                    sent_at = loop.time()
            await self.bus.notify(outbound.reply_to, {"stream": outbound.stream_id, "end": end})
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("listen stream failed", extra={"stream": outbound.stream_id, "detail": repr(exc)[:300]})
        except Exception:
            log.exception("listen stream crashed", extra={"stream": outbound.stream_id})
        finally:
            outbound.remove()
            self._outbound.pop(outbound.stream_id, None)

    # --- the API side ---

    async def send(self, tenant_id: uuid.UUID, call_id: uuid.UUID, op: str, args: Message) -> Message | None:
        """Apply a command wherever the call's media is; its reply, or None when no instance answered."""
        session = self.calls.get(call_id)
        if session is not None and session.call.tenant_id == tenant_id:
            return await apply_command(session, op, args)
        return await self.bus.request(
            call_channel(call_id), {**args, "op": op, "tenant_id": str(tenant_id)}, timeout=self.command_timeout
        )

    async def listen(self, tenant_id: uuid.UUID, call_id: uuid.UUID) -> ListenSource | Message | None:
        """A listen stream on the call, or the holding instance's refusal, or None when no instance answered."""
        session = self.calls.get(call_id)
        if session is not None and session.call.tenant_id == tenant_id:
            if session.ended:
                return {"ok": False, "error": "ended"}
            return _LocalSource(session)
        source = _RemoteSource(self, tenant_id, call_id)
        reply = await source.open()
        if reply is None or not reply.get("ok"):
            return reply
        return source


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[LiveControl]:
    """The instance's live control for the app's lifespan (after the Runtime is open): `app.state.live_control`."""
    runtime = app.state.runtime
    bus = LiveBus(runtime.dsn, runtime.pool, instance_id=uuid.UUID(runtime.instance_id))
    calls = registry_of_app(app)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(bus.run(), name="live-control-bus")
        control = LiveControl(calls, bus, tg)
        app.state.live_control = control
        unwatch = calls.watch(control.on_registry)
        for session in calls.sessions():  # (none, as a rule: the lifespan starts before any media socket)
            control.on_registry(session, True)
        await bus.wait_ready(5.0)  # requests before it is up time out cleanly; the start-up need not fail
        try:
            yield control
        finally:
            unwatch()
            app.state.live_control = None
            control.stop()
            runner.cancel()
