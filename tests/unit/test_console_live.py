"""The console's live-view hub: one producer per topic however many watch it, none once nobody does."""

from __future__ import annotations

import asyncio

from voice_service.console.live import LiveHub
from voice_service.simulator.harness import until


async def test_watchers_of_a_topic_share_one_producer_that_stops_when_they_leave() -> None:
    calls = {"first": 0, "second": 0}

    def producer(name: str):  # noqa: ANN202
        async def produce() -> str:
            calls[name] += 1
            return f"{name}-{calls[name]}"
        return produce

    async with asyncio.TaskGroup() as tasks:
        hub = LiveHub(tasks, interval=0.01)
        async with hub.watch("tenant-1", producer("first")) as a, hub.watch("tenant-1", producer("second")) as b:
            assert hub.topics == 1
            seen = [await a.next_after(0), await b.next_after(0), await a.next_after(2), await b.next_after(3)]
            # Every value, whoever reads it, is the one producer's (its n-th run is version n).
            for item in seen:
                assert item is not None
                version, value = item
                assert value == f"first-{version}"
        assert calls["second"] == 0
        await until(lambda: hub.topics == 0, within=5)
        stopped_at = calls["first"]
        await asyncio.sleep(0.05)
        assert calls["first"] == stopped_at  # nobody watches: nothing is computed
        await hub.close()


async def test_a_failing_update_is_retried_and_closing_ends_every_stream() -> None:
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("database restarting")
        return f"value-{attempts}"

    async with asyncio.TaskGroup() as tasks:
        hub = LiveHub(tasks, interval=0.01)
        async with hub.watch("t", flaky) as feed:
            got = await feed.next_after(0)
            assert got is not None and got[1] == "value-2"
            waiting = asyncio.ensure_future(feed.next_after(10**9))
            await hub.close()
            assert await waiting is None
