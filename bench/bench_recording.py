"""Recording benchmark: the live capture's cost per frame, the encoder's time and size per minute of call, and
(with --media N) the media path's CPU per call with recording on and off in the same run.

    python -m bench.bench_recording [--repeat 7] [--minutes 5] [--media 200 --seconds 20]

capture: CPU (process time) per 20 ms frame of CallCapture.caller / .agent, with the spool's real file writes
(handed to a thread every 256 KB; their CPU counts too), for Twilio μ-law 8 kHz and Vonage L16 16 kHz frames;
median over --repeat runs of a 10-minute call (30,000 frames each way).

encode: a --minutes call (caller and agent speech-like noise bursts, a barge-in clear a minute) through
encode_spool: CPU seconds per minute of call (wall in a thread, as the job runs it) and bytes per minute.

media (--media N): bench_media's load (N concurrent real-time Twilio streams into the real server, the server
playing audio back) against two servers started side by side, one plain and one recording every call (each
inbound frame into CallCapture.caller, each outbound frame into CallCapture.agent with its play time, the spool
closed and removed at the end); rounds alternate off/on and the table shows each round and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRAME = 0.02


# --------------------------------------------------------------------------------------------------------------
# capture: CPU per frame


async def _capture_once(folder: Path, encoding: str, rate: int, frames: int) -> tuple[float, float, float]:
    from voice_service.recordings.capture import CallCapture

    width = 1 if encoding == "mulaw" else 2
    size = rate // 50 * width
    payloads = [os.urandom(size) for _ in range(50)]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    cap = await CallCapture.open(folder / f"bench-{encoding}.spool", encoding=encoding, sample_rate=rate, t0=t0)
    caller_cpu = agent_cpu = 0.0
    for block in range(0, frames, 50):
        start = time.process_time()
        for i in range(50):
            cap.caller(payloads[i])
        mid = time.process_time()
        for i in range(50):
            cap.agent(payloads[i], t0 + (block + i) * FRAME)
        end = time.process_time()
        caller_cpu += mid - start
        agent_cpu += end - mid
        # A second of call goes by between these blocks on a live call, much longer than a spool write: wait for
        # a write in flight (idle time; the writer thread's CPU is in process_time all the same).
        pending = cap._pending
        if pending is not None and not pending.done():
            await asyncio.wait([pending])
        await asyncio.sleep(0)
    start = time.process_time()
    result = await cap.close(t0 + frames * FRAME)
    close_cpu = time.process_time() - start
    await cap.discard()
    assert result.error is None
    # process_time includes the writer threads' CPU: the flushes are in these figures.
    return caller_cpu / frames, agent_cpu / frames, close_cpu


def bench_capture(repeat: int) -> list[str]:
    lines = [f"capture (CPU per 20 ms frame, incl. the spool writes; median of {repeat} runs of a 10-minute call)"]
    with tempfile.TemporaryDirectory() as tmp:
        for label, encoding, rate in (("twilio mulaw 8k", "mulaw", 8000), ("vonage l16 16k", "l16", 16000)):
            runs = [asyncio.run(_capture_once(Path(tmp), encoding, rate, 30_000)) for _ in range(repeat)]
            caller = statistics.median(r[0] for r in runs) * 1e6
            agent = statistics.median(r[1] for r in runs) * 1e6
            close = statistics.median(r[2] for r in runs) * 1e3
            per_second = (caller + agent) * 50
            lines.append(
                f"  {label:16} caller {caller:5.2f} µs/frame   agent {agent:5.2f} µs/frame   "
                f"= {per_second:5.0f} µs CPU per second of call ({per_second / 1e4:.4f}% of a core); close {close:.1f} ms"
            )
    return lines


# --------------------------------------------------------------------------------------------------------------
# encode: time and bytes per minute


async def _spool(path: Path, encoding: str, rate: int, minutes: float) -> float:
    """A call with speech-like audio: caller and agent take turns in 4 s bursts of shaped noise; the agent is
    cut by a clear once a minute. Returns the call's seconds."""
    from providers.audio import pcm16_to_ulaw
    from voice_service.recordings.capture import CallCapture

    rng = np.random.default_rng(7)
    seconds = minutes * 60
    n = int(seconds * rate)
    t = np.arange(n) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)  # syllable-rate modulation
    noise = rng.normal(0, 0.15 * 32767, n) * envelope
    turn = ((t // 4) % 2).astype(bool)
    caller = np.where(~turn, noise, noise * 0.05).clip(-32767, 32767).astype("<i2")
    agent = np.where(turn, noise, 0).clip(-32767, 32767).astype("<i2")
    width = 1 if encoding == "mulaw" else 2
    def wire(pcm: np.ndarray) -> bytes:
        return pcm16_to_ulaw(pcm.tobytes()) if encoding == "mulaw" else pcm.tobytes()

    caller_bytes, agent_bytes = wire(caller), wire(agent)
    size = rate // 50 * width
    t0 = 1000.0
    cap = await CallCapture.open(path, encoding=encoding, sample_rate=rate, t0=t0)
    for k in range(int(seconds * 50)):
        cap.caller(caller_bytes[k * size : (k + 1) * size])
        if k % 3000 == 2990:  # a barge-in once a minute
            cap.clear(t0 + k * FRAME)
        elif turn[k * rate // 50]:
            cap.agent(agent_bytes[k * size : (k + 1) * size], t0 + k * FRAME)
    await cap.close(t0 + seconds)
    return seconds


def bench_encode(repeat: int, minutes: float) -> list[str]:
    from voice_service.recordings.encoder import encode_spool

    lines = [f"encode ({minutes:g}-minute call, median of {repeat} runs)"]
    with tempfile.TemporaryDirectory() as tmp:
        for label, encoding, rate in (("twilio mulaw 8k", "mulaw", 8000), ("vonage l16 16k", "l16", 16000)):
            spool = Path(tmp) / f"{encoding}.spool"
            seconds = asyncio.run(_spool(spool, encoding, rate, minutes))
            cpu, wall, sizes = [], [], []
            for _ in range(repeat):
                c0, w0 = time.process_time(), time.perf_counter()
                encoded = encode_spool(spool, Path(tmp) / "out.mp3")
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
                sizes.append(encoded.size)
            per_min = seconds / 60
            lines.append(
                f"  {label:16} {statistics.median(cpu) / per_min:6.3f} s CPU / min of call "
                f"({statistics.median(wall) / per_min:6.3f} s wall)   {statistics.median(sizes) / per_min / 1000:6.1f} KB / min"
                f"   spool {spool.stat().st_size / per_min / 1e6:5.2f} MB / min"
            )
    return lines


# --------------------------------------------------------------------------------------------------------------
# media: CPU per call with recording on / off (bench_media's load generator and measurement)


def serve(port: int, dsn: str, record: bool, data_dir: str) -> None:
    import uvicorn

    from voice_service.calls import live
    from voice_service.calls.live import DrainingServer
    from voice_service.calls.session import MediaSession
    from voice_service.settings import load_settings

    prompt = b"\x7f\xff" * 4000 * 120  # two minutes of μ-law, queued at once (as bench_media)
    settings = load_settings(
        env={},
        database_url=dsn,
        data_dir=data_dir,
        host="127.0.0.1",
        port=port,
        log_level="WARNING",
        run_workers=False,
        conversation_engine=False,
        public_base_url=f"http://127.0.0.1:{port}",
        pool_max_size=20,
    )

    class PlaybackHandler:
        def __init__(self, session: MediaSession) -> None:
            self.session = session

        async def run(self) -> None:
            await self.session.send_audio(prompt)

        def on_audio(self, payload: bytes) -> None:
            return None

        def on_dtmf(self, digit: str) -> None:
            return None

        def on_mark(self, name: str) -> None:
            return None

        async def on_stop(self) -> None:
            return None

    class RecordingPlayback(PlaybackHandler):
        """PlaybackHandler + a CallCapture fed as the wired media session will feed it. The agent's play time is
        the carrier's playback model (a frame plays when it arrives or when the one before it ends, whichever is
        later), which is what the sender's schedule computes."""

        def __init__(self, session: MediaSession) -> None:
            super().__init__(session)
            from voice_service.recordings import service

            self.service = service
            self.loop = asyncio.get_running_loop()
            self.t0 = self.loop.time()
            self.capture: Any = None
            self.play_end = 0.0
            encode = session.codec.encode_audio

            def encode_and_capture(frame: bytes) -> Any:
                capture = self.capture
                if capture is not None:
                    now = self.loop.time()
                    play_at = now if now > self.play_end else self.play_end
                    self.play_end = play_at + FRAME
                    capture.agent(frame, play_at)
                return encode(frame)

            session.codec.encode_audio = encode_and_capture  # type: ignore[method-assign]

        async def run(self) -> None:
            fmt = self.session.format
            self.capture = await self.service.open_capture(
                self.session.runtime, self.session.call, encoding=fmt.encoding, sample_rate=fmt.sample_rate,
                t0=self.t0,
            )
            await super().run()

        def on_audio(self, payload: bytes) -> None:
            if self.capture is not None:
                self.capture.caller(payload)

        async def on_stop(self) -> None:
            if self.capture is not None:
                await self.capture.close(self.loop.time())
                await self.capture.discard()

    live.session_handler_factory = RecordingPlayback if record else PlaybackHandler
    from voice_service.app import create_app

    app = create_app(settings, bootstrap=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on", ws_max_size=1 << 20,
                            timeout_graceful_shutdown=5)
    DrainingServer(config, drain_timeout=1.0).run()


def bench_media(n: int, seconds: float, rounds: int) -> list[str]:
    from bench import bench_media as media
    from bench._common import database, free_port
    from voice_service.migrations import migrate

    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with database() as dsn, tempfile.TemporaryDirectory() as data_dir:
        asyncio.run(migrate(dsn))
        ports = {"off": free_port(), "on": free_port()}
        procs = {
            mode: subprocess.Popen(
                [sys.executable, "-m", "bench.bench_recording", "--serve", "--port", str(port), "--dsn", dsn,
                 "--data-dir", data_dir, *(["--record"] if mode == "on" else [])],
                cwd=ROOT,
            )
            for mode, port in ports.items()
        }
        try:
            for port in ports.values():
                media._wait_port(port)
            for _ in range(rounds):
                for mode in ("off", "on"):
                    calls = asyncio.run(media._mint_calls(dsn, n))
                    results[mode].append(
                        media._run_client(ports[mode], "/v1/telephony/twilio/media", calls, seconds,
                                          procs[mode].pid, False)
                    )
                    time.sleep(2.0)
        finally:
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    lines = [f"media path, N={n} Twilio streams at real time, {seconds:g} s per round, rounds alternate off/on"]
    for mode in ("off", "on"):
        per_call = [r["server_cpu_pct"] / n for r in results[mode]]
        slips = [r["jitter_p99_ms"] for r in results[mode]]
        errors = sum(r["closed_early"] for r in results[mode])
        lines.append(
            f"  recording {mode:3}: CPU/call {statistics.median(per_call):.3f} %core (rounds "
            f"{', '.join(f'{p:.3f}' for p in per_call)})   out slip p99 {statistics.median(slips):.2f} ms   "
            f"errors {errors}"
        )
    off = statistics.median(r["server_cpu_pct"] for r in results["off"])
    on = statistics.median(r["server_cpu_pct"] for r in results["on"])
    lines.append(f"  recording on / off: {on / off:.3f} ({100 * (on / off - 1):+.1f}% CPU per call)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--media", type=int, default=0, help="N concurrent calls for the media comparison (0: skip)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--record", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.dsn, args.record, args.data_dir)
        return
    out = [*bench_capture(args.repeat), *bench_encode(max(1, args.repeat // 2), args.minutes)]
    print("\n".join(out), flush=True)
    if args.media:
        print("\n".join(bench_media(args.media, args.seconds, args.rounds)))


if __name__ == "__main__":
    main()
