"""/metrics exports the process's event-loop lag (a histogram fed by a running probe) and each turn component's
latency (histogram and recent quantiles) as the conversation engine settles agent turns."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from voice_service import perf
from voice_service.conversation.metering import LATENCY_FIELDS, TurnLatency


def _value(text: str, pattern: str) -> float:
    match = re.search(pattern + r" ([0-9.e+-]+)$", text, re.M)
    assert match, f"{pattern} not in /metrics"
    return float(match.group(1))


async def test_loop_lag_is_measured_while_the_app_runs(client: Any) -> None:
    before = _value((await client.get("/metrics")).text, r"voice_event_loop_lag_seconds_count")
    await asyncio.sleep(0.3)  # the probe wakes every 50 ms
    text = (await client.get("/metrics")).text
    assert _value(text, r"voice_event_loop_lag_seconds_count") >= before + 3
    assert 'voice_event_loop_lag_recent_seconds{quantile="0.99"}' in text


async def test_turn_latencies_per_component(client: Any) -> None:
    text = (await client.get("/metrics")).text
    count = _value(text, r'voice_turn_latency_seconds_count\{component="response"\}') \
        if 'component="response"' in text else 0.0
    turn = TurnLatency(turn=1, trigger="speech_final", stt_final_ms=310.0, llm_first_token_ms=180.0,
                       tts_first_byte_ms=60.0, response_ms=245.0, first_audio_ms=555.0)
    perf.observe_turn(turn.trigger, ((name, getattr(turn, name)) for name in LATENCY_FIELDS))
    perf.observe_turn("starter", [("response_ms", 9999.0)])  # not an answer to the caller: not counted
    text = (await client.get("/metrics")).text
    assert _value(text, r'voice_turn_latency_seconds_count\{component="response"\}') == count + 1
    for component in ("stt_final", "llm_first_token", "tts_first_byte", "response", "first_audio"):
        assert f'voice_turn_latency_recent_seconds{{component="{component}",quantile="0.5"}}' in text
    assert _value(text, r'voice_turn_latency_seconds_bucket\{component="response",le="0.25"\}') >= 1
