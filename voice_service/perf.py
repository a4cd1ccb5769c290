"""Process-wide performance metrics for /metrics: event-loop lag, and each component's share of a turn's latency.

One process is one event loop: when it is late, every call in the process is late by the same amount, and no
per-call span shows it (a span starts when the loop gets round to the event). So the loop's own lateness is measured
apart: a probe sleeps `LAG_INTERVAL` and records how much later than asked it woke (`voice_event_loop_lag_seconds`).

Turn latencies (the fields of `conversation.metering.TurnLatency`, one label value per component) are exported
twice: as a histogram (`voice_turn_latency_seconds`, for rates and `histogram_quantile`) and as the p50/p90/p99 of
the last `RECENT` turns (`voice_turn_latency_recent_seconds{quantile=…}`), which need no query language to read.

The metrics are process-wide (one loop, one engine per process); every app's registry exports them through one
collector (`register`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

LAG_INTERVAL = 0.05
RECENT = 1000
COMPONENTS = {  # TurnLatency field → label
    "stt_final_ms": "stt_final",
    "llm_first_token_ms": "llm_first_token",
    "tts_first_byte_ms": "tts_first_byte",
    "response_ms": "response",
    "first_audio_ms": "first_audio",
}
_QUANTILES = (0.5, 0.9, 0.99)
_ANSWERS = frozenset({"speech_final", "utterance_end", "dtmf"})  # turns that answer the caller

LOOP_LAG = Histogram(
    "voice_event_loop_lag_seconds",
    f"How late the event loop ran a {LAG_INTERVAL * 1000:.0f} ms timer (every call in the process waits as long)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=None,
)
TURN_LATENCY = Histogram(
    "voice_turn_latency_seconds",
    "Agent turns answering the caller: latency of each component (see conversation/metering.py)",
    ["component"],
    buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.25, 0.4, 0.6, 0.8, 1.0, 1.5, 2.5, 5.0),
    registry=None,
)
_recent: dict[str, deque[float]] = {label: deque(maxlen=RECENT) for label in COMPONENTS.values()}
_recent_lag: deque[float] = deque(maxlen=RECENT)


def observe_turn(trigger: str, values: Iterable[tuple[str, float | None]]) -> None:
    """One settled agent turn: (TurnLatency field, milliseconds or None) pairs."""
    if trigger not in _ANSWERS:
        return
    for name, ms in values:
        label = COMPONENTS.get(name)
        if label is None or ms is None:
            continue
        TURN_LATENCY.labels(label).observe(ms / 1000)
        _recent[label].append(ms / 1000)


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


class _Collector:
    def collect(self) -> Iterator[Metric]:
        yield from LOOP_LAG.collect()
        yield from TURN_LATENCY.collect()
        recent = GaugeMetricFamily(
            "voice_turn_latency_recent_seconds",
            f"Quantiles of each component over the last {RECENT} agent turns of this process",
            labels=["component", "quantile"],
        )
        for label, values in _recent.items():
            ordered = sorted(values)
            for q in _QUANTILES if ordered else ():
                recent.add_metric([label, str(q)], _quantile(ordered, q))
        yield recent
        lag = GaugeMetricFamily(
            "voice_event_loop_lag_recent_seconds",
            f"Quantiles of the event loop's lag over its last {RECENT} probes",
            labels=["quantile"],
        )
        ordered = sorted(_recent_lag)
        for q in (*_QUANTILES, 1.0) if ordered else ():
            lag.add_metric([str(q)], _quantile(ordered, q))
        yield lag

    def describe(self) -> list[Any]:
        return []  # collected at scrape time only (names are fixed, nothing to check at registration)


_COLLECTOR = _Collector()


def register(registry: CollectorRegistry) -> None:
    """Export this process's metrics through `registry` (an app's)."""
    with contextlib.suppress(ValueError):  # already registered there
        registry.register(_COLLECTOR)


@contextlib.asynccontextmanager
async def loop_lag_probe(interval: float = LAG_INTERVAL) -> AsyncIterator[None]:
    """Measure the running loop's lag while the context is open."""

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + interval
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - asked)
            LOOP_LAG.observe(lag)
            _recent_lag.append(lag)

    task = asyncio.create_task(probe(), name="event-loop-lag-probe")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
