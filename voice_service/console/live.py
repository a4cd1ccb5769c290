"""Live views: one producer per topic, however many browsers watch it, on however many instances.

A topic (for instance "the progress of batch B of tenant T") is recomputed by a single task every interval while at
least one browser watches it; each watcher's server-sent-event stream waits for the next version and sends it. So
the database sees one query set per topic per interval, not one per open console, and a topic nobody watches costs
nothing. The producer tasks belong to a TaskGroup that the console's lifespan owns: shutdown cancels them and ends
the streams.

A shared topic (`watch(..., shared_as=T)`) is produced once across every instance of the service (`serve --workers
N` runs N processes; several hosts run more), through the live-control bus (calls/bus.py, PostgreSQL LISTEN/NOTIFY):

* every instance watching the topic LISTENs on the topic's channel;
* the one holding the topic's advisory lock (taken on its bus connection) produces: it reads, shows the value to its
  own watchers and NOTIFYs it, msgspec JSON cut into pieces under NOTIFY's 8000-byte limit, sent in one statement
  (PostgreSQL delivers them together and in order);
* the others show what they receive. One that hears nothing for `SILENCE_INTERVALS` intervals, or hears the
  producer sign off (its last watcher left), tries the lock and takes over; PostgreSQL frees the lock of an instance
  that dies or loses its connection, so a producer always comes back.

Without a bus (or while it is reconnecting) an instance produces for itself, as a lone process would.

A stream also ends by itself after `max_stream_seconds`: the browser's EventSource reconnects at once, which passes
the session check again (an expired or revoked session stops receiving within that time), and a server that is
shutting down is never held open by a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any

import msgspec

from voice_service.calls.bus import MAX_PAYLOAD, LiveBus

log = logging.getLogger(__name__)

__all__ = ["Assembler", "Feed", "LiveHub", "channel_of", "lock_key_of", "parse", "pieces"]

Producer = Callable[[], Awaitable[Any]]
_serials = itertools.count(1)  # a page fragment, or what a stream makes one of
SILENCE_INTERVALS = 2.5  # a follower that hears nothing for this many intervals tries to take over
_SIGN_OFF = "bye"
_encoder = msgspec.json.Encoder()


def _digest(topic: Hashable) -> bytes:
    return hashlib.blake2b(repr(topic).encode(), digest_size=16).digest()


def channel_of(topic: Hashable) -> str:
    """The NOTIFY channel of a shared topic (under PostgreSQL's 63-byte identifiers)."""
    return "vs_feed_" + _digest(topic).hex()


def lock_key_of(topic: Hashable) -> int:
    """The advisory lock (a signed 64-bit key) that elects a shared topic's producer."""
    return int.from_bytes(_digest(topic)[:8], "big", signed=True)


def pieces(sender: str, serial: int, data: bytes) -> list[str]:
    """`data` cut into NOTIFY payloads `sender.serial.i.n|text`, each under the limit, never inside a UTF-8
    character."""
    room = MAX_PAYLOAD - 64  # the header's share
    cuts: list[bytes] = []
    start = 0
    while start < len(data):
        end = min(start + room, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte: cut before its character
            end -= 1
        cuts.append(data[start:end])
        start = end
    cuts = cuts or [b""]
    return [f"{sender}.{serial}.{i}.{len(cuts)}|{cut.decode()}" for i, cut in enumerate(cuts)]


class Assembler:
    """Puts a producer's pieces back together; `add` returns the whole text once its last piece is in."""

    def __init__(self) -> None:
        self._key: tuple[str, str] | None = None
        self._parts: dict[int, str] = {}

    def add(self, header: tuple[str, str, int, int], text: str) -> str | None:
        sender, serial, i, n = header
        if self._key != (sender, serial):
            self._key, self._parts = (sender, serial), {}
        self._parts[i] = text
        if len(self._parts) < n:
            return None
        whole = "".join(self._parts[k] for k in range(n))
        self._key, self._parts = None, {}
        return whole


def parse(payload: str) -> tuple[tuple[str, str, int, int], str] | None:
    head, sep, text = payload.partition("|")
    fields = head.split(".")
    if not sep or len(fields) != 4 or not fields[2].isdigit() or not fields[3].isdigit():
        return None
    return (fields[0], fields[1], int(fields[2]), int(fields[3])), text


class Feed:
    """The latest value of one topic."""

    def __init__(self, produce: Producer, interval: float) -> None:
        self.serial = next(_serials)  # tells this feed's versions from those of an earlier feed of the same topic
        self.produce = produce
        self.interval = interval
        self.value: Any = None
        self.version = 0
        self.watchers = 0
        self.closed = False
        self.leading = False  # this instance produces the topic (always, for a topic that is not shared)
        self._changed = asyncio.Event()

    def publish(self, value: Any) -> None:
        self.value = value
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def next_after(self, version: int) -> tuple[int, Any] | None:
        """The first value newer than `version`, or None once the feed closes."""
        while not (self.closed or self.version > version):
            await self._changed.wait()
        if self.closed or self.value is None:
            return None
        return self.version, self.value


class LiveHub:
    def __init__(self, tasks: asyncio.TaskGroup, *, interval: float, max_stream_seconds: float = 55.0,
                 bus: LiveBus | None = None) -> None:
        self._tasks = tasks
        self._interval = interval
        self.max_stream_seconds = max_stream_seconds
        self._bus = bus
        self._sender = uuid.uuid4().hex[:12]  # tells this hub's NOTIFYs from the other instances'
        self._feeds: dict[Hashable, Feed] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def topics(self) -> int:
        return len(self._feeds)

    @property
    def leads(self) -> int:
        """The topics this instance produces now (the others' values come from another instance)."""
        return sum(feed.leading for feed in self._feeds.values())

    @asynccontextmanager
    async def watch(self, topic: Hashable, produce: Producer, *, interval: float | None = None,
                    shared_as: type | None = None) -> AsyncIterator[Feed]:
        """Watch `topic`; the first watcher's `produce` computes it for everyone until nobody watches, every
        `interval` seconds (the hub's own by default). With `shared_as` (the value's type, which msgspec encodes
        and decodes) one instance produces it for every instance."""
        if self._closing:
            raise RuntimeError("the console is shutting down")
        feed = self._feeds.get(topic)
        if feed is None:
            feed = self._feeds[topic] = Feed(produce, self._interval if interval is None else interval)
            if shared_as is None or self._bus is None:
                work = self._run(topic, feed)
            else:
                work = self._run_shared(topic, feed, self._bus, msgspec.json.Decoder(shared_as))
            task = self._tasks.create_task(work, name=f"console-live-{topic}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        feed.watchers += 1
        try:
            yield feed
        finally:
            feed.watchers -= 1

    async def _produce(self, topic: Hashable, feed: Feed) -> Any:
        try:
            value = await feed.produce()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A failed update (the database restarting, say) is logged; watchers keep the last value and the next
            # interval tries again.
            log.exception("console live view update failed", extra={"topic": str(topic)})
            return None
        feed.publish(value)
        return value

    async def _run(self, topic: Hashable, feed: Feed) -> None:
        feed.leading = True
        try:
            while feed.watchers > 0 and not self._closing:
                await self._produce(topic, feed)
                await asyncio.sleep(feed.interval)
        finally:
            self._forget(topic, feed)

    def _forget(self, topic: Hashable, feed: Feed) -> None:
        # No await between the last watcher check and this removal: a new watcher either saw this feed (and kept
        # the loop going) or finds none and starts a new one.
        if self._feeds.get(topic) is feed:
            del self._feeds[topic]
        feed.leading = False
        feed.close()

    async def _run_shared(self, topic: Hashable, feed: Feed, bus: LiveBus, decoder: msgspec.json.Decoder[Any]) -> None:
        channel, key = channel_of(topic), lock_key_of(topic)
        assembler = Assembler()
        wake = asyncio.Event()
        heard = float("-inf")  # when the producer was last heard from (never, at first: try the lock at once)
        serials = itertools.count(1)

        def on_payload(payload: str) -> None:
            nonlocal heard
            parsed = parse(payload)
            if parsed is None or parsed[0][0] == self._sender:
                return  # not ours to read, or our own
            header, text = parsed
            if text == _SIGN_OFF and header[3] == 1:
                heard = float("-inf")
                wake.set()
                return
            whole = assembler.add(header, text)
            if whole is None:
                return
            heard = time.monotonic()
            if feed.leading:
                return  # a producer that has not heard it lost the lead yet: ours is the value
            try:
                feed.publish(decoder.decode(whole))
            except msgspec.DecodeError:
                log.warning("undecodable live view update", extra={"topic": str(topic)})

        await bus.listen_text(channel, on_payload)
        epoch = -1  # the bus connection (session) that holds our lock, while we lead
        try:
            while feed.watchers > 0 and not self._closing:
                if feed.leading and epoch != bus.connections:
                    feed.leading = False  # the connection that held the lock is gone, and the lock with it
                silent = time.monotonic() - heard > SILENCE_INTERVALS * feed.interval
                if not feed.leading and silent and await bus.try_lock(key):
                    feed.leading, epoch = True, bus.connections
                if feed.leading or not bus.connected:
                    value = await self._produce(topic, feed)
                    if value is not None and feed.leading:
                        await self._send(bus, channel, pieces(self._sender, next(serials), _encoder.encode(value)))
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), feed.interval)
        finally:
            leading = feed.leading
            self._forget(topic, feed)
            # Cancelled at shutdown or not, leave no lock and no LISTEN behind; the others take over at once.
            with contextlib.suppress(Exception):
                if leading:
                    await self._send(bus, channel, pieces(self._sender, next(serials), _SIGN_OFF.encode()))
                    await bus.unlock(key)
            with contextlib.suppress(Exception):
                await bus.unlisten(channel)

    async def _send(self, bus: LiveBus, channel: str, payloads: list[str]) -> None:
        try:
            await bus.notify_all(channel, payloads)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("console live view update not shared", extra={"channel": channel})

    async def close(self) -> None:
        """Ends every stream and stops the producers (the lifespan's TaskGroup then awaits them)."""
        self._closing = True
        for feed in list(self._feeds.values()):
            feed.close()
        for task in list(self._running):
            task.cancel()
