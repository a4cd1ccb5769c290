"""Conversation engine benchmark: the service's own added latency per turn, and CPU per concurrent call.

Three processes on 127.0.0.1, so none measures itself:

* the service (`voice_service.app` under uvicorn, one worker, the conversation engine installed) — a subprocess;
* the fakes (Deepgram STT WebSocket, OpenAI SSE, Deepgram Aura TTS) answering after fixed delays — a subprocess
  that timestamps every `speech_final` it sends;
* this process: the simulator carrier, which places nothing itself but answers the calls the service places
  (POST /v1/calls, provider `simulator` = Twilio's wire format), streams each caller's audio at real time over
  the real media WebSocket, and timestamps every agent audio frame that arrives.

Added latency of a turn = (first agent audio frame at the carrier after the fake's `speech_final`) − (the fake's
`speech_final` send time) − (LLM first-token delay + TTS first-byte delay). Both timestamps are CLOCK_MONOTONIC,
shared by the processes. Turns are matched to calls by the caller audio (each call's is unique and the STT fake
receives it byte for byte).

The floor, measured in the same run: the same calls through the same service with the default media-only handler
(inbound metering, nothing played): CPU per call of the media path alone.

    .venv/bin/python -m bench.bench_conversation [--turns 1000] [--concurrency 50 200] [--rate 20]

Calls start at `--rate` per second (a dialler's ramp), then all N talk at once; each call's first turn is offset
within one turn length, so turns are spread over time as real calls' are.

BENCH_PROFILE=/tmp/service.prof profiles the service process (cProfile, dumped on SIGUSR1 before it stops).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import statistics
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
import hashlib, sys, time
import msgspec
from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import PathRouter, send_json
from tests.fakes.tts import FakeTts

port, llm_delay, tts_delay, stt_delay = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
finals = []  # (monotonic send time, request_id)
dg = FakeDeepgram(script=lambda i: "Can you hear me now?", processing_delay=stt_delay, idle_timeout=30)
oai = FakeOpenAI(default_reply="Okay, sure.", first_token_delay=llm_delay)
tts = FakeTts(seconds_per_char=0.02, chunk_ms=100, first_byte_delay=tts_delay)

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
        finals.clear(); dg.sessions.clear()
        await send_json(send, 200, {})
        return
    sessions = {s.request_id: hashlib.sha1(bytes(s.audio[:FINGERPRINT_BYTES])).hexdigest() for s in dg.sessions}
    await send_json(send, 200, {"finals": finals, "sessions": sessions})

import uvicorn
router = PathRouter({"/v1/listen": stt, "/v1/speak": tts, "/v1/chat": oai, "/bench": stats})
uvicorn.run(router, host="127.0.0.1", port=port, lifespan="off", log_level="warning", ws="websockets-sansio",
            ws_ping_interval=None, backlog=2048)
""".replace("FINGERPRINT_BYTES", str(FINGERPRINT_BYTES))

SERVICE = r"""
import os
import sys
import uvicorn
from voice_service.app import background_services, create_app
from voice_service.settings import load_settings

# CONVERSATION_ENGINE (set per mode by the bench) decides whether the engine drives the media sessions.
background_services[:] = [s for s in background_services if s[0] != "conversation"]
settings = load_settings()
app = create_app(settings, bootstrap=False)
config = uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_config=None, lifespan="on",
                        ws_max_size=1 << 20, ws_ping_interval=None, backlog=2048)
if os.environ.get("BENCH_PROFILE") and sys.argv[1] == "engine":
    import cProfile, signal
    profile = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: profile.dump_stats(os.environ["BENCH_PROFILE"]))
    profile.enable()
uvicorn.Server(config).run()
"""


TURN_SECONDS = 2.4


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


async def wait_http(url: str, within: float = 60.0) -> None:
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


async def run_case(
    *,
    mode: str,
    n: int,
    turns: int,
    dsn: str,
    key: str,
    fakes_url: str,
    fakes_pid: int,
    tmp: Path,
    rate: float,
) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with Simulator(service_url=base, twilio_accounts={SIM_ACCOUNT: SIM_TOKEN}) as sim:
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "PORT": str(port),
            "PUBLIC_BASE_URL": base,
            "LOG_LEVEL": "WARNING",
            "RUN_WORKERS": "false",
            # media-only: the same calls with the default metering handler (no STT/LLM/TTS) — the floor.
            "CONVERSATION_ENGINE": "true" if mode == "engine" else "false",
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
        }
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVICE, mode, env=env, cwd=ROOT)
        try:
            await wait_http(f"{base}/health")
            result = await _drive(
                sim,
                proc,
                base,
                key,
                fakes_url,
                n=n,
                turns=turns,
                tmp=tmp,
                mode=mode,
                fakes_pid=fakes_pid,
                rate=rate,
            )
            if mode == "engine":
                result.update(await _service_figures(dsn, n))
            return result
        finally:
            await _stop(proc, dump_profile=mode == "engine")


async def _stop(proc: asyncio.subprocess.Process, *, dump_profile: bool = False) -> None:
    if dump_profile and os.environ.get("BENCH_PROFILE"):
        proc.send_signal(signal.SIGUSR1)  # only the engine service installs the handler (else: it would die)
        await asyncio.sleep(2.0)
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        async with asyncio.timeout(30):
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
    fakes_pid: int,
    rate: float,
) -> dict[str, Any]:
    h = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=h, timeout=60) as api:
        await api.post(f"{fakes_url}/bench/reset")
        agent = (
            await api.post(
                "/v1/agents",
                json={
                    "name": "Bench",
                    "outbound_starter_prompt": "Hi.",
                    "agent_instructions": "Be brief.",
                    "config": {"silence_reprompt_seconds": 60, "silence_hangup_seconds": 120},
                },
            )
        ).json()
        number = (
            await api.post(
                "/v1/numbers",
                json={
                    "phone_number": f"+1415555{uuid.uuid4().int % 10000:04d}",
                    "provider": "simulator",
                    "default_agent_id": agent["id"],
                },
            )
        ).json()
        fingerprints: dict[str, str] = {}
        targets = []
        for i in range(n):
            to = f"+4420796{i:05d}"
            pcm = caller_audio(i, turns, lead=1.0 + TURN_SECONDS * i / n)
            path = tmp / f"caller-{mode}-{n}-{i}.wav"
            write_wav(path, pcm)
            sim.scenarios[to] = Scenario(wav=str(path), hangup_after=0.3, ring_seconds=0.05)
            fingerprints[to] = hashlib.sha1(to_wire(pcm, 8000, "mulaw", 8000)[:FINGERPRINT_BYTES]).hexdigest()
            targets.append(to)
        ps = psutil.Process(proc.pid)
        others = {"fakes": psutil.Process(fakes_pid), "carrier": psutil.Process()}
        cpu0, wall0 = ps.cpu_times(), time.monotonic()
        others0 = {name: p.cpu_times() for name, p in others.items()}
        async def place(i: int, to: str) -> httpx.Response:
            # Calls start at `rate` per second, as a dialler (or a carrier's CPS limit) starts them; all N
            # then talk at once. Placing all of them in the same instant would measure the setup burst (N
            # call creations, carrier requests and status callbacks) on top of the first turns.
            await asyncio.sleep(i / rate)
            return await api.post(
                "/v1/calls", json={"agent_id": agent["id"], "from_number_id": number["id"], "to": to}
            )

        responses = await asyncio.gather(*[place(i, to) for i, to in enumerate(targets)])
        bad = [r.text for r in responses if r.status_code != 201]
        if bad:
            raise RuntimeError(f"{len(bad)} calls were refused: {bad[0]}")
        calls = await asyncio.gather(
            *[(await sim.wait_for_call(lambda c, t=to: c.to == t)).finished(timeout=600) for to in targets]
        )
        cpu1, wall1 = ps.cpu_times(), time.monotonic()
        others1 = {name: p.cpu_times() for name, p in others.items()}
        stats = (await api.get(f"{fakes_url}/bench/stats")).json()
    media_seconds = statistics.mean(c.duration or 0 for c in calls)
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    result: dict[str, Any] = {
        "mode": mode,
        "n": n,
        "cpu_per_call_pct": 100 * cpu / (wall1 - wall0) / n,
        # Whole-process load (% of one core) over the same window: a process near 100 % is saturated (each is
        # one event loop), and then its lag is in the figures, whichever process it is.
        "service_pct": 100 * cpu / (wall1 - wall0),
        **{
            f"{name}_pct": 100
            * ((others1[name].user + others1[name].system) - (others0[name].user + others0[name].system))
            / (wall1 - wall0)
            for name in others
        },
        "wall": wall1 - wall0,
        "media_seconds": media_seconds,
        "errors": sum(1 for c in calls if c.error or c.media.ended_by not in ("caller",)),
    }
    if mode != "engine":
        return result
    by_print = {fingerprints[c.to]: c for c in calls}
    added: list[float] = []
    unmatched = 0
    for t_final, request_id in stats["finals"]:
        call = by_print.get(stats["sessions"].get(request_id, ""))
        frames = call.media.frame_times if call is not None else []
        after = next((t for t in frames if t > t_final), None)
        if after is None:
            unmatched += 1
            continue
        added.append((after - t_final - LLM_DELAY - TTS_DELAY) * 1000)
    added.sort()
    result.update(
        turns=len(added),
        unmatched=unmatched,
        p50=statistics.median(added) if added else float("nan"),
        p99=added[max(0, int(len(added) * 0.99) - 1)] if added else float("nan"),
        max=added[-1] if added else float("nan"),
    )
    return result


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
        values.sort()
        out[f"svc_{name}_p50"] = statistics.median(values) if values else float("nan")
        out[f"svc_{name}_p99"] = values[max(0, int(len(values) * 0.99) - 1)] if values else float("nan")
    return out


async def amain(args: argparse.Namespace) -> None:
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
            sys.executable,
            "-c",
            FAKES,
            str(fakes_port),
            str(LLM_DELAY),
            str(TTS_DELAY),
            str(STT_DELAY),
            cwd=ROOT,
        )
        rows = []
        try:
            await wait_http(f"{fakes_url}/bench/stats")
            for n in args.concurrency:
                turns = max(2, -(-args.turns // n))
                for mode in ("engine", "media-only"):
                    row = await run_case(
                        mode=mode,
                        n=n,
                        turns=turns,
                        dsn=dsn,
                        key=key,
                        fakes_url=fakes_url,
                        fakes_pid=fakes.pid,
                        tmp=Path(tmpdir),
                        rate=args.rate,
                    )
                    rows.append(row)
                    print(_format(row), flush=True)
        finally:
            await _stop(fakes)
    print()
    print(
        f"fake delays: LLM first token {LLM_DELAY * 1000:.0f} ms, TTS first byte {TTS_DELAY * 1000:.0f} ms "
        f"(subtracted); STT {STT_DELAY * 1000:.0f} ms before speech_final (not in the figure)"
    )
    print(
        f"{'N':>4} {'mode':>11} {'turns':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU/call %core':>15} "
        f"{'errors':>7}   process load, % of one core: service / fakes / carrier (this process)"
    )
    for row in rows:
        print(_format(row))
    print()
    print("inside the service (call logs, fakes' delays subtracted): p50 / p99 ms")
    print(f"{'N':>4} {'speech_final→audio':>20} {'LLM first token':>18} {'TTS first byte':>18}")
    for row in rows:
        if row["mode"] == "engine":
            print(
                f"{row['n']:>4} {row['svc_response_p50']:9.2f} /{row['svc_response_p99']:8.2f} "
                f"{row['svc_llm_p50']:8.2f} /{row['svc_llm_p99']:7.2f} {row['svc_tts_p50']:8.2f} /"
                f"{row['svc_tts_p99']:7.2f}   {row['events']}"
            )


def _format(row: dict[str, Any]) -> str:
    load = f"   {row['service_pct']:5.1f} / {row['fakes_pct']:5.1f} / {row['carrier_pct']:5.1f}"
    if row["mode"] == "engine":
        return (
            f"{row['n']:>4} {row['mode']:>11} {row['turns']:>6} {row['p50']:8.2f} {row['p99']:8.2f} "
            f"{row['max']:8.2f} {row['cpu_per_call_pct']:15.3f} {row['errors']:>7}"
            + load
            + (f"  ({row['unmatched']} turns unmatched)" if row["unmatched"] else "")
        )
    return (
        f"{row['n']:>4} {row['mode']:>11} {'':>6} {'':>8} {'':>8} {'':>8} {row['cpu_per_call_pct']:15.3f} "
        f"{row['errors']:>7}" + load
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=1000, help="agent turns per concurrency level (about)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--rate", type=float, default=20.0, help="calls started per second (ramp-up)")
    asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    main()
