"""Conversation engine benchmark: added latency per turn on the caller's clock and inside the service, barge-in,
event-loop lag, CPU and memory per concurrent call.

Three kinds of process on 127.0.0.1, so none measures itself:

* the service (`voice-service serve --workers W`, the conversation engine installed), pinned with `taskset` to
  `--service-cpus` (default: core 0) — the figure is then "conversations per core";
* the fakes (Deepgram STT WebSocket, OpenAI SSE, Deepgram Aura TTS) answering after fixed delays, and this process
  (the simulator carrier: answers the calls the service places over Twilio's wire format, streams each caller's
  audio in real time, timestamps every frame it sends and every agent frame and `clear` it receives), both pinned
  to `--harness-cpus` (default: every other core), with the benchmark's PostgreSQL.

Caller's clock (the figure): from the caller's last audio frame that lets the STT decide the turn ended (the frame
whose audio ends where the fake's final `Results` ends: start + duration on the stream's timeline, which starts at
the call's first frame) to the first agent audio frame arriving at the caller, minus the fakes' own delays (STT
processing, LLM first token, TTS first byte). All clocks are CLOCK_MONOTONIC, shared by the processes. Turns are
matched to calls by the caller audio (each call's is unique and the STT fake receives it byte for byte).

The same turns are cut into hops, to say where the caller's wait goes:
  audio in   caller frame sent → the STT fake decided (carrier → service → STT forwarding → fake's VAD)
  STT out    the fake decided → its `speech_final` left (its processing delay, subtracted above)
  wire       `speech_final` left → first agent audio at the caller, minus LLM and TTS delays
  service    the engine's own span (speech_final read → first frame handed to the sender; call logs), minus the
             same delays; wire − service is the STT → service read and the service → caller send.

Only turns inside the steady window count: after the last call connected and before the first call hung up, so
every turn is taken with all N calls live (calls start at `--rate` per second, as a dialler starts them).

Barge-in (`--barge-in`): the same N calls with a long agent answer, so the caller's next utterance talks over it:
the time from the caller frame that let the STT produce the words that stop the agent, to the `clear` arriving at
the caller, minus the STT delay (and, for reference, from the first speech frame of that utterance).

The harness must not stall: its processes run on uvloop, and their cyclic GC runs the full collection only
between cases (`harness_gc`), since one full collection of their growing records used to stop every caller
or every provider for 75-110 ms at once. Their own loop lag is printed next to the figures ("carrier lag",
"fakes lag"), with each core's busy % over the steady window ("cores busy": the machine may be shared; a core
busier than what the service and the harness use carries someone else's load).

Memory: the service's RSS before the first call and at its peak with N calls live, per call. Event-loop lag: the
service's `voice_event_loop_lag_seconds` histogram over the steady window (/metrics). The floor, measured in the
same run: the same calls with the media-only handler (no STT/LLM/TTS).

    .venv/bin/python -m bench.bench_conversation [--turns 1000] [--concurrency 150 200] [--rate 20]
        [--workers 1] [--service-cpus 0] [--harness-cpus 1] [--barge-in] [--no-pin]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import os
import sys
import tempfile
import time
import uuid
import wave
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import numpy as np
import psutil
import uvloop

from bench._common import ROOT, database, free_port
from voice_service.migrations import migrate
from voice_service.simulator import Scenario, Simulator
from voice_service.simulator.audio import speech_like, to_wire
from voice_service.tenancy.service import create_tenant

LLM_DELAY = 0.150  # FakeOpenAI first_token_delay
TTS_DELAY = 0.050  # FakeTts first_byte_delay
STT_DELAY = 0.020  # FakeDeepgram processing_delay (before speech_final is sent: not part of the figure)
SIM_ACCOUNT, SIM_TOKEN = "ACsimulator0000000000000000000000", "simulator-dev-token"
FINGERPRINT_BYTES = 8000  # the first second of μ-law caller audio (unique per call)

FAKES = r"""
import gc, hashlib, sys, time
import msgspec
from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import PathRouter, send_json
from tests.fakes.tts import FakeTts

port, llm_delay, tts_delay, stt_delay = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
finals = []  # (monotonic send time, request_id)
decided = []  # (monotonic time the fake decided, request_id, audio end s, words, speech_final)
dg = FakeDeepgram(script=lambda i: "Can you hear me now?", processing_delay=stt_delay, idle_timeout=30)
oai = FakeOpenAI(default_reply="Okay, sure.", first_token_delay=llm_delay)
tts = FakeTts(seconds_per_char=0.02, chunk_ms=100, first_byte_delay=tts_delay)
SHORT, LONG = "Okay, sure.", "Okay, sure. Let me tell you all about it, it takes quite a while to say. " * 3

from tests.fakes import deepgram as dgmod
_emit = dgmod._Connection._emit

def emit(self, message):
    if message.get("type") == "Results":
        words = len(message["channel"]["alternatives"][0]["transcript"].split())
        decided.append((time.monotonic(), self.session.request_id, message["start"] + message["duration"], words,
                        message["speech_final"]))
    _emit(self, message)

dgmod._Connection._emit = emit
lags = []  # (monotonic, lag s) of this process's loop: a late fake delays the service's turns too

async def probe():
    import asyncio
    while True:
        asked = time.monotonic() + 0.05
        await asyncio.sleep(0.05)
        lags.append((asked, max(0.0, time.monotonic() - asked)))

async def stt(scope, receive, send):
    async def timed(message):
        await send(message)
        text = message.get("text") if message["type"] == "websocket.send" else None
        if text and '"speech_final":true' in text:
            finals.append((time.monotonic(), msgspec.json.decode(text)["metadata"]["request_id"]))
    await dg(scope, receive, timed)

async def stats(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/bench/reset":
        global prober
        if prober is None:
            import asyncio
            prober = asyncio.get_running_loop().create_task(probe())
        finals.clear(); decided.clear(); dg.sessions.clear(); lags.clear()
        gc.unfreeze(); gc.collect(); gc.freeze()  # see harness_gc() in the bench: no full collections while the calls run
        oai.default_reply = LONG if b"long" in scope.get("query_string", b"") else SHORT
        await send_json(send, 200, {})
        return
    sessions = {s.request_id: hashlib.sha1(bytes(s.audio[:FINGERPRINT_BYTES])).hexdigest() for s in dg.sessions}
    await send_json(send, 200, {"finals": finals, "decided": decided, "sessions": sessions, "lags": lags})

prober = None
gc.set_threshold(700, 10, 1 << 30)

import uvicorn
router = PathRouter({"/v1/listen": stt, "/v1/speak": tts, "/v1/chat": oai, "/bench": stats})
uvicorn.run(router, host="127.0.0.1", port=port, lifespan="off", log_level="warning", ws="websockets-sansio",
            ws_ping_interval=None, backlog=2048)
""".replace("FINGERPRINT_BYTES", str(FINGERPRINT_BYTES))

TURN_SECONDS = 2.4
INTERRUPT_MIN_WORDS = 3  # AgentConfig.interrupt_min_words default: the words that stop the agent


def harness_gc() -> None:
    """The harness's processes (this one: the carrier and its callers; the fakes) keep every frame's timestamp and
    every session's record, so their heaps grow all run long, and the cyclic GC's full collections of them took
    75-110 ms (gc.callbacks): each one stalled every call's caller or provider at once, and the stall was counted
    as the service's latency. The harness runs the young generations as usual and the full collection only
    between cases (here and at /bench/reset). The service's own GC is left as it is: its pauses are measured."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 1 << 30)


def caller_audio(index: int, turns: int, lead: float) -> bytes:
    """PCM16 8 kHz: `lead` s of faint noise (unique per call, far below any VAD threshold), then per turn 0.6 s of
    speech and 1.8 s of faint noise (room for endpointing, the fakes' delays and the agent's short answer).
    Leads differ per call so that the calls' turns are spread over time, as real calls are (all calls answering
    at the same instant would measure a thundering herd, not a turn)."""
    rng = np.random.default_rng(index)
    rate = 8000

    def noise(seconds: float) -> np.ndarray:
        return rng.normal(0, 30, int(seconds * rate))

    parts = [noise(lead)]
    for t in range(turns):
        parts.append(np.frombuffer(speech_like(0.6, rate, seed=index * 1000 + t), dtype="<i2").astype(float))
        parts.append(noise(1.8))
    return np.concatenate(parts).clip(-32768, 32767).astype("<i2").tobytes()


def write_wav(path: Path, pcm: bytes, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)


async def wait_http(url: str, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(url, timeout=1.0)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def cpu_of(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def rss_of(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


async def scrape_lag(base: str) -> dict[float, float]:
    """The service's loop-lag histogram (cumulative counts by upper bound) from /metrics."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{base}/metrics")).text
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("voice_event_loop_lag_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def lag_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """Upper bounds (ms) of the bucket holding p50 / p99 / max of the probes between the two scrapes."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    out: dict[str, float] = {"probes": total}
    for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        out[name] = next((b * 1000 for b, c in zip(bounds, counts, strict=True) if total and c >= q * total),
                         float("nan"))
    return out


async def run_case(
    *,
    mode: str,
    n: int,
    turns: int,
    dsn: str,
    key: str,
    fakes_url: str,
    harness: list[int],
    tmp: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with Simulator(service_url=base, twilio_accounts={SIM_ACCOUNT: SIM_TOKEN}) as sim:
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PUBLIC_BASE_URL": base,
            "LOG_LEVEL": "WARNING",
            "RUN_WORKERS": "false",
            # media-only: the same calls with the default metering handler (no STT/LLM/TTS) — the floor.
            "CONVERSATION_ENGINE": "false" if mode == "media-only" else "true",
            "ENFORCE_WALLET_BALANCE": "false",
            "POOL_MAX_SIZE": "40",
            "SIMULATOR_BASE_URL": sim.base_url,
            "SIMULATOR_ACCOUNT_SID": SIM_ACCOUNT,
            "SIMULATOR_AUTH_TOKEN": SIM_TOKEN,
            "DEEPGRAM_API_KEY": "test-key",
            "DEEPGRAM_BASE_URL": fakes_url.replace("http://", "ws://"),
            "DEEPGRAM_HTTP_URL": fakes_url,
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": f"{fakes_url}/v1",
            "DEFAULT_TTS_PROVIDER": "deepgram",
            "DEFAULT_TTS_VOICE": "aura-2-thalia-en",
            "HTTP_POOL_SHARDS": str(args.http_shards),
        }
        pin = ["taskset", "-c", args.service_cpus] if args.service_cpus else []
        proc = await asyncio.create_subprocess_exec(
            *pin, sys.executable, "-m", "voice_service.cli", "serve", "--workers", str(args.workers),
            env=env, cwd=ROOT,
        )
        try:
            await wait_http(f"{base}/health")
            return await _drive(sim, proc, base, key, fakes_url, n=n, turns=turns, tmp=tmp, mode=mode,
                                harness=harness, dsn=dsn, args=args)
        finally:
            await _stop(proc)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        async with asyncio.timeout(60):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _drive(
    sim: Simulator,
    proc: asyncio.subprocess.Process,
    base: str,
    key: str,
    fakes_url: str,
    *,
    n: int,
    turns: int,
    tmp: Path,
    mode: str,
    harness: list[int],
    dsn: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    h = {"Authorization": f"Bearer {key}"}
    rate = args.rate
    # Enough turns per call to talk through the ramp and then `turns` more with all N calls live.
    per_call = int(n / rate / TURN_SECONDS) + max(2, -(-turns // n)) + 3
    async with httpx.AsyncClient(base_url=base, headers=h, timeout=120) as api:
        await api.post(f"{fakes_url}/bench/reset" + ("?reply=long" if mode == "barge-in" else ""))
        agent = (await api.post("/v1/agents", json={
            "name": "Bench", "outbound_starter_prompt": "Hi.", "agent_instructions": "Be brief.",
            "config": {"silence_reprompt_seconds": 60, "silence_hangup_seconds": 120,
                       "interrupt_min_words": INTERRUPT_MIN_WORDS, "recording_enabled": False},
        })).json()
        number = (await api.post("/v1/numbers", json={
            "phone_number": f"+1415555{uuid.uuid4().int % 10000:04d}", "provider": "simulator",
            "default_agent_id": agent["id"],
        })).json()
        fingerprints: dict[str, str] = {}
        targets = []
        for i in range(n):
            to = f"+4420796{i:05d}"
            pcm = caller_audio(i, per_call, lead=1.0 + TURN_SECONDS * i / n)
            path = tmp / f"caller-{mode}-{n}-{i}.wav"
            write_wav(path, pcm)
            sim.scenarios[to] = Scenario(wav=str(path), hangup_after=0.3, ring_seconds=0.05)
            fingerprints[to] = hashlib.sha1(to_wire(pcm, 8000, "mulaw", 8000)[:FINGERPRINT_BYTES]).hexdigest()
            targets.append(to)
        service = tree(proc.pid)
        harness_gc()
        await asyncio.sleep(1.0)
        rss0 = rss_of(service)
        lag0 = await scrape_lag(base) if mode != "media-only" else {}
        fakes_and_me = [psutil.Process(pid) for pid in harness]
        cpu0, wall0 = cpu_of(service), time.monotonic()
        peak = [rss0]

        async def place(i: int, to: str) -> httpx.Response:
            # Calls start at `rate` per second, as a dialler (or a carrier's CPS limit) starts them.
            await asyncio.sleep(i / rate)
            return await api.post("/v1/calls", json={"agent_id": agent["id"], "from_number_id": number["id"],
                                                     "to": to})

        my_lags: list[tuple[float, float]] = []

        async def watch_rss() -> None:
            while True:
                asked = time.monotonic() + 0.05
                await asyncio.sleep(0.05)
                now = time.monotonic()
                my_lags.append((asked, max(0.0, now - asked)))
                if len(my_lags) % 10 == 0:
                    peak[0] = max(peak[0], rss_of(service))

        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(watch_rss())
            responses = await asyncio.gather(*[place(i, to) for i, to in enumerate(targets)])
            bad = [r.text for r in responses if r.status_code != 201]
            if bad:
                watcher.cancel()
                raise RuntimeError(f"{len(bad)} calls were refused: {bad[0]}")
            live = []
            for to in targets:  # a call the service failed to place (overloaded) is counted, not waited for
                with contextlib.suppress(TimeoutError):
                    live.append(await sim.wait_for_call(lambda c, t=to: c.to == t, timeout=60))
            lost = n - len(live)
            # The steady window's figures of the service: loop lag and CPU, from all-connected to first-ended.
            deadline = time.monotonic() + 60
            while any(not c.media.send_times for c in live) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            lost += sum(1 for c in live if not c.media.send_times)
            live = [c for c in live if c.media.send_times]
            cpu_a, others_a, wall_a = cpu_of(service), cpu_of(fakes_and_me), time.monotonic()
            cores_a = psutil.cpu_times(percpu=True)
            lag_a = await scrape_lag(base) if mode != "media-only" else {}
            waiters = [tg.create_task(c.finished(timeout=900)) for c in live]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            cpu_b, others_b, wall_b = cpu_of(service), cpu_of(fakes_and_me), time.monotonic()
            cores_b = psutil.cpu_times(percpu=True)
            lag_b = await scrape_lag(base) if mode != "media-only" else {}
            calls = [await w for w in waiters]
            watcher.cancel()
        cpu1, wall1 = cpu_of(service), time.monotonic()
        stats = (await api.get(f"{fakes_url}/bench/stats")).json()
    steady = max(wall_b - wall_a, 1e-9)
    result: dict[str, Any] = {
        "mode": mode,
        "n": n,
        "workers": args.workers,
        # CPU over the steady window (all N live), % of one core: per call and for the whole service.
        "cpu_per_call_pct": 100 * (cpu_b - cpu_a) / steady / n,
        "service_pct": 100 * (cpu_b - cpu_a) / steady,
        "harness_pct": 100 * (others_b - others_a) / steady,
        "service_pct_all": 100 * (cpu1 - cpu0) / (wall1 - wall0),
        # Each core's busy % over the steady window (everything on it: ours, PostgreSQL, anyone else's work): the
        # machine is shared, and a core busy beyond what the service and the harness use is someone else's load.
        "cores_busy_pct": [100 * (_busy(b) - _busy(a)) / steady for a, b in zip(cores_a, cores_b, strict=True)],
        "steady_s": steady,
        "rss_per_call_mb": (peak[0] - rss0) / n / 2**20,
        "rss0_mb": rss0 / 2**20,
        "errors": lost + sum(1 for c in calls if c.error or c.media.ended_by not in ("caller",)),
        "lag": lag_quantiles(lag_a, lag_b) if lag_a else {},
        "lag_all": lag_quantiles(lag0, lag_b) if lag0 else {},
        # The harness's own loops over the same window: when they are late, the figures carry it.
        "carrier_lag": _lag_in([lag for t, lag in my_lags if wall_a <= t <= wall_b]),
        "fakes_lag": _lag_in([lag for t, lag in stats["lags"] if wall_a <= t <= wall_b]),
    }
    if mode == "media-only":
        return result
    window = (max(c.media.send_times[0] for c in calls), min(c.media.send_times[-1] for c in calls))
    result["window_s"] = window[1] - window[0]
    result.update(_turn_figures(calls, stats, fingerprints, window, barge_in=mode == "barge-in"))
    if mode == "engine":
        result.update(await _service_figures(dsn, n))
    return result


def _busy(times: Any) -> float:
    return float(times.user + times.nice + times.system + times.irq + times.softirq + getattr(times, "steal", 0.0))


def _lag_in(lags: list[float]) -> dict[str, float]:
    return {"p50": pct(lags, .5) * 1000, "p99": pct(lags, .99) * 1000, "max": max(lags, default=float("nan")) * 1000}


def _turn_figures(calls: list[Any], stats: dict[str, Any], fingerprints: dict[str, str],
                  window: tuple[float, float], *, barge_in: bool) -> dict[str, Any]:
    by_print = {fingerprints[c.to]: c for c in calls}
    call_of = {rid: by_print.get(fp) for rid, fp in stats["sessions"].items()}
    delays = STT_DELAY + LLM_DELAY + TTS_DELAY
    sent_at = {}  # (request_id, audio end) -> when the fake's speech_final left
    for t_sent, rid in stats["finals"]:
        sent_at.setdefault(rid, []).append(t_sent)
    caller: list[float] = []
    wire: list[float] = []
    audio_in: list[float] = []
    stt_out: list[float] = []
    unmatched = outside = 0
    barge: list[float] = []
    barge_from_start: list[float] = []
    finals_by_rid: dict[str, list[tuple[float, float, int, bool]]] = {}
    for decided_at, rid, end_s, words, speech_final in stats["decided"]:
        finals_by_rid.setdefault(rid, []).append((decided_at, end_s, words, speech_final))
    for rid, decisions in finals_by_rid.items():
        call = call_of.get(rid)
        if call is None:
            unmatched += sum(1 for d in decisions if d[3])
            continue
        sends = call.media.send_times
        frames = call.media.frame_times
        sents = iter(sorted(sent_at.get(rid, [])))
        utterance_start: float | None = None
        for decided_at, end_s, words, speech_final in decisions:
            k = round(end_s * 50) - 1  # the caller frame whose audio ends where the STT's result ends
            if words and utterance_start is None:
                utterance_start = max(0.0, end_s - 0.3)  # first interim comes 300 ms into speech
            if not speech_final:
                continue
            t_sent = next(sents, None)
            utterance_start = None
            if t_sent is None or not 0 <= k < len(sends):
                unmatched += 1
                continue
            if not window[0] <= sends[k] <= window[1]:
                outside += 1
                continue
            after = next((t for t in frames if t > t_sent), None)
            if after is None:
                unmatched += 1
                continue
            caller.append((after - sends[k] - delays) * 1000)
            wire.append((after - t_sent - LLM_DELAY - TTS_DELAY) * 1000)
            audio_in.append((decided_at - sends[k]) * 1000)
            stt_out.append((t_sent - decided_at) * 1000)
        if barge_in:
            for clear_at in call.media.clear_times:
                trigger = max(((d, e) for d, e, w, _ in decisions if w >= INTERRUPT_MIN_WORDS and d < clear_at),
                              default=None)
                if trigger is None:
                    continue
                k = round(trigger[1] * 50) - 1
                if 0 <= k < len(sends):
                    barge.append((clear_at - sends[k] - STT_DELAY) * 1000)
    out: dict[str, Any] = {"turns": len(caller), "unmatched": unmatched, "outside_window": outside}
    for name, values in (("caller", caller), ("wire", wire), ("audio_in", audio_in), ("stt_out", stt_out),
                         ("barge", barge)):
        out[f"{name}_p50"], out[f"{name}_p99"], out[f"{name}_max"] = pct(values, .5), pct(values, .99), \
            max(values) if values else float("nan")
        out[f"{name}_n"] = len(values)
    del barge_from_start
    return out


async def _service_figures(dsn: str, n: int) -> dict[str, Any]:
    """The engine's own per-turn figures from the call logs (metadata.latency), minus the fakes' delays."""
    conn = await asyncpg.connect(dsn)
    try:
        await asyncio.sleep(1.0)  # the last records are written as the calls end
        rows = await conn.fetch(
            "SELECT metadata->'latency'->'turns' AS turns, metadata->'conversation' AS conv, "
            "metadata->>'end_reason' AS end_reason FROM voice_call_logs ORDER BY created_at DESC LIMIT $1",
            n,
        )
    finally:
        await conn.close()
    figures: dict[str, list[float]] = {"response": [], "llm": [], "tts": []}
    delays = {"response": (LLM_DELAY + TTS_DELAY) * 1000, "llm": LLM_DELAY * 1000, "tts": TTS_DELAY * 1000}
    keys = {"response": "response_ms", "llm": "llm_first_token_ms", "tts": "tts_first_byte_ms"}
    events: dict[str, int] = {"no_records": 0}
    for row in rows:
        if row["turns"] is None:
            events["no_records"] += 1
            continue
        for turn in msgspec.json.decode(row["turns"]):
            if turn.get("trigger") != "speech_final":
                continue
            for name, key in keys.items():
                if turn.get(key) is not None:
                    figures[name].append(turn[key] - delays[name])
        conversation = msgspec.json.decode(row["conv"] or "{}")
        for key in ("barge_ins", "backchannels", "llm_failures", "tts_failures", "stt_reconnects"):
            events[key] = events.get(key, 0) + int(conversation.get(key) or 0)
    out: dict[str, Any] = {"events": {k: v for k, v in events.items() if v}}
    for name, values in figures.items():
        out[f"svc_{name}_p50"] = pct(values, .5)
        out[f"svc_{name}_p99"] = pct(values, .99)
    return out


def _cpus(spec: str) -> set[int]:
    out: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


async def amain(args: argparse.Namespace) -> None:
    if args.no_pin:
        args.service_cpus = ""
    elif args.service_cpus:
        harness_cpus = _cpus(args.harness_cpus) if args.harness_cpus else \
            set(os.sched_getaffinity(0)) - _cpus(args.service_cpus)
        os.sched_setaffinity(0, harness_cpus or _cpus(args.service_cpus))  # the fakes and PostgreSQL inherit it
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; service cpus "
          f"{args.service_cpus or 'any'}, harness cpus {sorted(os.sched_getaffinity(0))}, workers {args.workers}",
          flush=True)
    rows = []
    with database() as dsn, tempfile.TemporaryDirectory(prefix="bench-conv-") as tmpdir:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            _, key = await create_tenant(conn, "bench")
        finally:
            await conn.close()
        fakes_port = free_port()
        fakes_url = f"http://127.0.0.1:{fakes_port}"
        fakes = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FAKES, str(fakes_port), str(LLM_DELAY), str(TTS_DELAY), str(STT_DELAY), cwd=ROOT,
        )
        try:
            await wait_http(f"{fakes_url}/bench/stats")
            modes = ["engine", *(["barge-in"] if args.barge_in else []), "media-only"]
            for n in args.concurrency:
                for mode in modes:
                    row = await run_case(mode=mode, n=n, turns=args.turns, dsn=dsn, key=key, fakes_url=fakes_url,
                                         harness=[fakes.pid, os.getpid()], tmp=Path(tmpdir), args=args)
                    rows.append(row)
                    print(_format(row), flush=True)
        finally:
            await _stop(fakes)
    print()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"fake delays subtracted: STT {STT_DELAY * 1000:.0f} ms, LLM first token {LLM_DELAY * 1000:.0f} ms, "
        f"TTS first byte {TTS_DELAY * 1000:.0f} ms. Steady window only (all N calls live). ms: p50 / p99 / max"
    )
    print(f"{'N':>4} {'mode':>10} {'turns':>6}  {'caller clock':>22}  {'wire (sf sent→audio)':>22}  "
          f"{'service span':>14}  {'audio in':>14}  {'STT out':>14}")
    for row in rows:
        if row["mode"] == "engine":
            print(f"{row['n']:>4} {row['mode']:>10} {row['turns']:>6}  "
                  f"{row['caller_p50']:6.1f} /{row['caller_p99']:7.1f} /{row['caller_max']:7.1f}  "
                  f"{row['wire_p50']:6.1f} /{row['wire_p99']:7.1f} /{row['wire_max']:7.1f}  "
                  f"{row['svc_response_p50']:6.1f} /{row['svc_response_p99']:6.1f}  "
                  f"{row['audio_in_p50']:6.1f} /{row['audio_in_p99']:6.1f}  "
                  f"{row['stt_out_p50']:6.1f} /{row['stt_out_p99']:6.1f}")
    print()
    print("inside the service (call logs, delays subtracted) p50 / p99 ms; the harness's own loop lag p50 / p99 / max ms")
    for row in rows:
        if row["mode"] == "engine":
            c, f = row["carrier_lag"], row["fakes_lag"]
            print(f"{row['n']:>4} LLM first token {row['svc_llm_p50']:6.1f} /{row['svc_llm_p99']:7.1f}   TTS first byte "
                  f"{row['svc_tts_p50']:6.1f} /{row['svc_tts_p99']:7.1f}   carrier lag {c['p50']:.1f} / {c['p99']:.1f} / "
                  f"{c['max']:.1f}   fakes lag {f['p50']:.1f} / {f['p99']:.1f} / {f['max']:.1f}")
    for row in rows:
        if row["mode"] == "barge-in":
            print(f"{row['n']:>4} barge-in: clear at the caller after the STT's trigger frame (minus STT delay) "
                  f"p50 {row['barge_p50']:.1f} / p99 {row['barge_p99']:.1f} / max {row['barge_max']:.1f} ms "
                  f"over {row['barge_n']} barge-ins")
    print()
    print(f"{'N':>4} {'mode':>10} {'CPU/call %core':>15} {'service %core':>14} {'harness %':>10} "
          f"{'RSS/call MB':>12} {'loop lag p50/p99/max ms':>24} {'errors':>7}")
    for row in rows:
        print(_format(row))


def _format(row: dict[str, Any]) -> str:
    lag = row.get("lag") or {}
    lag_text = f"{lag.get('p50', float('nan')):6.1f} /{lag.get('p99', float('nan')):6.1f} /" \
               f"{lag.get('max', float('nan')):7.1f}"
    text = (f"{row['n']:>4} {row['mode']:>10} {row['cpu_per_call_pct']:15.3f} {row['service_pct']:14.1f} "
            f"{row['harness_pct']:10.1f} {row['rss_per_call_mb']:12.2f} {lag_text:>24} {row['errors']:>7}")
    text += "   cores busy " + " / ".join(f"{c:.0f}" for c in row["cores_busy_pct"]) + " %"
    if row["mode"] != "media-only":
        text += (f"   turns {row['turns']} in a {row['window_s']:.1f} s window (+{row['outside_window']} outside it, "
                 f"{row['unmatched']} unmatched)")
        text += f"  caller clock p50 {row['caller_p50']:.1f} p99 {row['caller_p99']:.1f} ms"
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=1000, help="agent turns in the steady window per N (about)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[150, 200])
    ap.add_argument("--rate", type=float, default=20.0, help="calls started per second (ramp-up)")
    ap.add_argument("--workers", type=int, default=1, help="service processes (`serve --workers`)")
    ap.add_argument("--service-cpus", default="0", help="taskset cpu list for the service")
    ap.add_argument("--harness-cpus", default="", help="cpu list for the fakes, carrier, PostgreSQL (default: "
                                                          "the others)")
    ap.add_argument("--no-pin", action="store_true", help="no pinning: service and harness share every core")
    ap.add_argument("--barge-in", action="store_true", help="also measure barge-in (long agent answers)")
    ap.add_argument("--http-shards", type=int, default=32, help="the service's HTTP_POOL_SHARDS (1: one pool, as "
                                                                 "before providers/http.py)")
    args = ap.parse_args()
    # The carrier simulator (every caller's 20 ms frames) runs on uvloop, as the service and the fakes (uvicorn's
    # default) do: the stdlib loop's own per-frame overhead was a large part of the harness core.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(amain(args))


if __name__ == "__main__":
    main()
