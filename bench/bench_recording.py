"""Recording benchmark: the live capture's cost per frame, and the encoder's time and size per minute of call.

    python -m bench.bench_recording [--repeat 7] [--minutes 5]

The media path's CPU per call with recording on and off, through the real wiring (the capture tapped onto every
media session), is bench_media's: `python -m bench.bench_media --calls 200 --recording both`.

capture: CPU (process time) per 20 ms frame of CallCapture.caller / .agent, with the spool's real file writes
(handed to a thread every 256 KB; their CPU counts too), for Twilio μ-law 8 kHz and Vonage L16 16 kHz frames;
median over --repeat runs of a 10-minute call (30,000 frames each way).

encode: a --minutes call (caller and agent speech-like noise bursts, a barge-in clear a minute) through
encode_spool: CPU seconds per minute of call (wall in a thread, as the job runs it) and bytes per minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    out = [*bench_capture(args.repeat), *bench_encode(max(1, args.repeat // 2), args.minutes)]
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    main()
