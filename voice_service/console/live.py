"""Live views: one producer per topic, however many browsers watch it.

A topic (for instance "the overview of tenant T in zone Z") is recomputed by a single task every interval while at
least one browser watches it; each watcher's server-sent-event stream waits for the next version and sends it. So
the database sees one query set per topic per interval, not one per open console, and a topic nobody watches costs
nothing. The producer tasks belong to a TaskGroup that the console's lifespan owns: shutdown cancels them and ends
the streams.

A stream also ends by itself after `max_stream_seconds`: the browser's EventSource reconnects at once, which passes
the session check again (an expired or revoked session stops receiving within that time), and a server that is
shutting down is never held open by a stream.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any

log = logging.getLogger(__name__)

Producer = Callable[[], Awaitable[Any]]
_serials = itertools.count(1)  # a page fragment, or what a stream makes one of


class Feed:
    """The latest rendered value of one topic."""

    def __init__(self, produce: Producer, interval: float) -> None:
        self.serial = next(_serials)  # tells this feed's versions from those of an earlier feed of the same topic
        self.produce = produce
        self.interval = interval
        self.value: Any = None
        self.version = 0
        self.watchers = 0
        self.changed = asyncio.Condition()
        self.closed = False

    async def publish(self, value: Any) -> None:
        async with self.changed:
            self.value = value
            self.version += 1
            self.changed.notify_all()

    async def close(self) -> None:
        async with self.changed:
            self.closed = True
            self.changed.notify_all()

    async def next_after(self, version: int) -> tuple[int, Any] | None:
        """The first value newer than `version`, or None once the feed closes."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.closed or self.version > version)
            if self.closed or self.value is None:
                return None
            return self.version, self.value


class LiveHub:
    def __init__(self, tasks: asyncio.TaskGroup, *, interval: float, max_stream_seconds: float = 55.0) -> None:
        self._tasks = tasks
        self._interval = interval
        self.max_stream_seconds = max_stream_seconds
        self._feeds: dict[Hashable, Feed] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def topics(self) -> int:
        return len(self._feeds)

    @asynccontextmanager
    async def watch(self, topic: Hashable, produce: Producer, *, interval: float | None = None) -> AsyncIterator[Feed]:
        """Watch `topic`; the first watcher's `produce` computes it for everyone until nobody watches, every
        `interval` seconds (the hub's own by default)."""
        if self._closing:
            raise RuntimeError("the console is shutting down")
        feed = self._feeds.get(topic)
        if feed is None:
            feed = self._feeds[topic] = Feed(produce, self._interval if interval is None else interval)
            task = self._tasks.create_task(self._run(topic, feed), name=f"console-live-{topic}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        feed.watchers += 1
        try:
            yield feed
        finally:
            feed.watchers -= 1

    async def _run(self, topic: Hashable, feed: Feed) -> None:
        try:
            while feed.watchers > 0 and not self._closing:
                try:
                    await feed.publish(await feed.produce())
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # A failed update (the database restarting, say) is logged; watchers keep the last value and
                    # the next interval tries again.
                    log.exception("console live view update failed", extra={"topic": str(topic)})
                await asyncio.sleep(feed.interval)
        finally:
            # No await between the last watcher check and this removal: a new watcher either saw this feed
            # (and kept the loop going) or finds none and starts a new one.
            if self._feeds.get(topic) is feed:
                del self._feeds[topic]
            feed.closed = True

    async def close(self) -> None:
        """Ends every stream and stops the producers (the lifespan's TaskGroup then awaits them)."""
        self._closing = True
        for feed in list(self._feeds.values()):
            await feed.close()
        for task in list(self._running):
            task.cancel()
