"""The live-control bus between the service's instances: PostgreSQL LISTEN/NOTIFY, no other server.

Every instance keeps one dedicated connection that LISTENs on

* its inbox, `vs_live_i_<instance id>`: replies to its requests and the listen streams it asked for;
* one channel per call whose media socket it holds, `vs_live_c_<call id>` (LISTENed when the media starts,
  UNLISTENed when it ends): requests for that call.

A request is a NOTIFY on the call's channel carrying a request id (`rid`) and the sender's inbox (`reply_to`);
the instance holding the call acts and NOTIFYs its reply (`re` = the request id) to that inbox. When nobody
listens on a call's channel (its instance died, or the media has just ended) there is no reply: `request` returns
None after its timeout and the caller says so cleanly. Messages are JSON objects; a NOTIFY payload must stay under
8000 bytes. A NOTIFY from the pool is delivered at once (autocommit), in order for one sender that awaits each.

The LISTEN connection lives as long as the bus runs (`run()`); if it drops, `run()` reconnects with a growing
pause and LISTENs on every channel again. Requests made meanwhile time out like any unanswered request.

Other live views use the same connection: text channels (`listen_text`: the payload as sent, no JSON envelope),
several payloads sent in one statement and delivered in order (`notify_all`), and session advisory locks held on
the LISTEN connection (`try_lock`), which elect one instance for a piece of work and are released by PostgreSQL
itself when that instance or its connection goes away. `connections` tells a lock holder that a reconnection
(a new session) has dropped its locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec

log = logging.getLogger(__name__)

__all__ = ["LiveBus", "Message", "call_channel", "inbox_channel"]

Message = dict[str, Any]
Handler = Callable[[Message], None]
TextHandler = Callable[[str], None]

MAX_PAYLOAD = 7999
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])
_RECONNECT_MAX_SECONDS = 10.0


def call_channel(call_id: uuid.UUID) -> str:
    return f"vs_live_c_{call_id.hex}"


def inbox_channel(instance_id: uuid.UUID) -> str:
    return f"vs_live_i_{instance_id.hex}"


class LiveBus:
    """One instance's end of the bus. Handlers run on the event loop inside the connection's notification
    callback: they must not block (queue the work)."""

    def __init__(self, dsn: str, pool: asyncpg.Pool, *, instance_id: uuid.UUID | None = None,
                 reconnect_seconds: float = 0.5) -> None:
        self.dsn = dsn
        self.pool = pool
        self.instance_id = instance_id or uuid.uuid4()  # the process's (Runtime.instance_id) in the service
        self.inbox = inbox_channel(self.instance_id)
        self.reconnect_seconds = reconnect_seconds
        self._channels: dict[str, Handler] = {}
        self._texts: dict[str, TextHandler] = {}  # channels whose payloads are handed over as they came
        self._streams: dict[str, Handler] = {}  # inbox messages carrying `stream`: by stream id
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._conn: asyncpg.Connection | None = None
        self.connections = 0  # LISTEN connections made so far (a reconnection counts one more)
        self._lock = asyncio.Lock()  # one operation at a time on the LISTEN connection
        self._lost = asyncio.Event()
        self._ready = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bounded wait is the API
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        return self._ready.is_set()

    # --- the LISTEN connection ---

    async def run(self) -> None:
        """Keep the LISTEN connection up until cancelled."""
        pause = self.reconnect_seconds
        try:
            while True:
                try:
                    await self._connect()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("live-control bus cannot connect", extra={"detail": repr(exc)[:300]})
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _RECONNECT_MAX_SECONDS)
                    continue
                pause = self.reconnect_seconds
                await self._lost.wait()
                self._lost.clear()
                self._ready.clear()
                log.warning("live-control bus connection lost; reconnecting")
        finally:
            self._ready.clear()
            conn, self._conn = self._conn, None
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                    await asyncio.wait_for(conn.close(), 2.0)
            for fut in self._pending.values():
                if not fut.done():
                    fut.cancel()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        conn.add_termination_listener(self._on_lost)
        try:
            async with self._lock:
                for channel in (self.inbox, *self._channels, *self._texts):
                    await conn.add_listener(channel, self._on_notify)
                self._conn = conn
        except BaseException:
            conn.terminate()
            raise
        self.connections += 1
        self._ready.set()

    def _on_lost(self, conn: Any) -> None:
        if conn is self._conn:
            self._lost.set()

    async def listen(self, channel: str, handler: Handler) -> None:
        """Call `handler` for every message on `channel` (from now on, and again after a reconnection)."""
        self._channels[channel] = handler
        await self._listen(channel)

    async def listen_text(self, channel: str, handler: TextHandler) -> None:
        """Call `handler` with every payload on `channel`, as sent (no JSON envelope)."""
        self._texts[channel] = handler
        await self._listen(channel)

    async def _listen(self, channel: str) -> None:
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.is_closed():
                try:
                    await conn.add_listener(channel, self._on_notify)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    # The reconnection LISTENs on every channel again.
                    log.warning("LISTEN failed", extra={"channel": channel, "detail": repr(exc)[:300]})

    async def unlisten(self, channel: str) -> None:
        if self._channels.pop(channel, None) is None and self._texts.pop(channel, None) is None:
            return
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await conn.remove_listener(channel, self._on_notify)

    def open_stream(self, stream_id: str, handler: Handler) -> None:
        """Deliver inbox messages carrying `"stream": stream_id` to `handler`."""
        self._streams[stream_id] = handler

    def close_stream(self, stream_id: str) -> None:
        self._streams.pop(stream_id, None)

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        if not isinstance(payload, str):
            return  # asyncpg hands NOTIFY payloads over as str
        text = self._texts.get(channel)
        if text is not None:
            try:
                text(payload)
            except Exception:
                log.exception("live channel handler failed", extra={"channel": channel})
            return
        try:
            message = _decoder.decode(payload)
        except msgspec.DecodeError:
            log.warning("malformed live-control message", extra={"channel": channel})
            return
        if channel == self.inbox:
            rid = message.get("re")
            if rid is not None:
                fut = self._pending.pop(str(rid), None)
                if fut is not None and not fut.done():
                    fut.set_result(message)
                return
            handler = self._streams.get(str(message.get("stream")))
        else:
            handler = self._channels.get(channel)
        if handler is None:
            return
        try:
            handler(message)
        except Exception:
            log.exception("live-control handler failed", extra={"channel": channel})

    # --- sending ---

    async def notify(self, channel: str, message: Message) -> None:
        payload = _encoder.encode(message).decode()
        if len(payload.encode()) > MAX_PAYLOAD:
            raise ValueError(f"live-control message of {len(payload)} bytes is over NOTIFY's limit")
        await self.pool.execute("SELECT pg_notify($1, $2)", channel, payload)

    async def notify_all(self, channel: str, payloads: list[str]) -> None:
        """Send `payloads` on `channel` in one statement: PostgreSQL delivers them together, in this order."""
        if any(len(p.encode()) > MAX_PAYLOAD for p in payloads):
            raise ValueError("a payload is over NOTIFY's limit")
        sql = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p"
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.is_closed() and self._ready.is_set():
                # On the LISTEN connection: one statement, where the pool would add its reset on release. (Live
                # control's `notify` stays on the pool: its requests and listen streams run in parallel there.)
                await conn.execute(sql, channel, payloads)
                return
        await self.pool.execute(sql, channel, payloads)

    # --- advisory locks on the LISTEN connection ---

    async def try_lock(self, key: int) -> bool:
        """Take the session advisory lock `key` on the LISTEN connection if nobody holds it (False when another
        session holds it, or the bus is not connected). It is held until `unlock`, or until this connection ends
        (`connections` then changes)."""
        async with self._lock:
            conn = self._conn
            if conn is None or conn.is_closed() or not self._ready.is_set():
                return False
            try:
                return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("advisory lock not taken", extra={"detail": repr(exc)[:300]})
                return False

    async def unlock(self, key: int) -> None:
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await conn.fetchval("SELECT pg_advisory_unlock($1)", key)

    async def request(self, channel: str, message: Message, *, timeout: float) -> Message | None:  # noqa: ASYNC109
        """Send `message` to `channel` and wait for its reply; None when none comes within `timeout` seconds."""
        rid = uuid.uuid4().hex
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            await self.notify(channel, {**message, "rid": rid, "reply_to": self.inbox})
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The database did not take the request: nobody can answer it, as when the call's instance is gone.
            log.warning("live-control request not sent", extra={"channel": channel, "detail": repr(exc)[:300]})
            return None
        finally:
            self._pending.pop(rid, None)

    async def reply(self, request: Message, message: Message) -> None:
        reply_to, rid = request.get("reply_to"), request.get("rid")
        if isinstance(reply_to, str) and rid is not None:
            await self.notify(reply_to, {**message, "re": rid})
