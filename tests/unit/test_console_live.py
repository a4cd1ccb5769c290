"""The console's live-view hub: one producer per topic however many watch it, none once nobody does."""

from __future__ import annotations

import asyncio
import uuid

import msgspec

from voice_service.calls.bus import MAX_PAYLOAD
from voice_service.console.live import Assembler, LiveHub, channel_of, lock_key_of, parse, pieces
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


def test_a_value_over_notify_s_limit_travels_in_pieces_and_comes_back_whole() -> None:
    text = "Zoë called about the €20 plan. " * 900  # ~28 kB with two- and three-byte characters
    data = msgspec.json.encode({"note": text})
    sent = pieces("a1", 7, data)
    assert len(sent) > 3
    assert all(len(p.encode()) <= MAX_PAYLOAD for p in sent)
    assembler = Assembler()
    out = None
    for payload in sent:
        parsed = parse(payload)
        assert parsed is not None and parsed[0][:2] == ("a1", "7")
        assert out is None  # nothing whole before the last piece
        out = assembler.add(*parsed)
    assert out is not None and msgspec.json.decode(out) == {"note": text}


def test_a_new_value_drops_the_pieces_of_one_never_completed() -> None:
    assembler = Assembler()
    first = pieces("a1", 1, b"x" * 20000)
    second = pieces("a1", 2, b'"fresh"')
    for payload in first[:-1]:  # the last piece of the first value never arrives
        parsed = parse(payload)
        assert parsed is not None
        assert assembler.add(*parsed) is None
    parsed = parse(second[0])
    assert parsed is not None
    assert assembler.add(*parsed) == '"fresh"'
    assert parse("not a piece") is None


def test_topics_have_distinct_channels_and_locks_within_postgres_limits() -> None:
    topics = [("batch", uuid.uuid4(), uuid.uuid4()) for _ in range(500)]
    assert len({channel_of(t) for t in topics}) == len({lock_key_of(t) for t in topics}) == 500
    assert all(len(channel_of(t)) <= 63 and -(2**63) <= lock_key_of(t) < 2**63 for t in topics)
    assert channel_of(topics[0]) == channel_of(tuple(topics[0]))  # the same topic on every instance
