"""Media path benchmark: N concurrent simulated Twilio media streams at real time through the real server.

    python -m bench.bench_media [--calls 50 200 500] [--seconds 20] [--recording off|on|both]

The service runs as in production (uvicorn, one worker, uvloop, httptools, websockets-sansio) on 127.0.0.1 with
its database; each call is a real call log row with a one-time media token, and every stream follows the
Twilio sequence (connected, start with the token, media frames, stop). The service's session handler plays a
long prompt back to every caller through MediaSession (20 ms frames paced by the per-call sender task, 100 ms
lead, 60 ms bursts) while metering the caller's audio: both directions of a real call, without STT/LLM/TTS.

The floor, measured in the same run with the same load generator: a bare `websockets` server (uvloop) that only
JSON-decodes each frame, base64-decodes its payload and echoes the frame back.

Reported per N: server CPU per call (% of one core, from the server process's CPU time over the steady
window), inbound frames/s processed, and outbound schedule slip: how far each audio frame a caller receives
arrives behind the stream's real-time schedule (the provider's buffer runs dry only past the 100 ms lead;
frames leave in 60 ms bursts by design, so consecutive-frame jitter is not the measure; p50/p99, ms).
"calls/core" = 100 / (CPU % per call).

Recording (--recording): every call with media is recorded unless its agent turns recording off, through the
real media path (the capture taps every inbound and outbound frame; at the call's end the spool is uploaded to
the recordings storage and its encode job queued). `off` (the default) gives the bench calls an agent with
`recording_enabled: false`; `on` an agent that records; `both` runs, for each N, a round off and a round on
against the same server and prints the difference. After a round with recording on, a sample of its spools is
encoded as the encode job does (encode_spool): CPU seconds and bytes of MP3 per minute of call.

The load generator is a lean raw-asyncio WebSocket client in its own process (zero mask key, one timer for all
streams, frames pre-built), so the client's cost stays small next to the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRAME = 0.02
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# --------------------------------------------------------------------------------------------------------------
# The service under test (subprocess): the real app, a playback handler, SIGUSR1 prints counters.


def serve(port: int, dsn: str, data_dir: str) -> None:
    import uvicorn

    from voice_service.calls import live
    from voice_service.calls.live import DrainingServer
    from voice_service.calls.session import MediaSession
    from voice_service.settings import load_settings

    counters = {"frames_in": 0, "frames_out": 0, "sessions": 0}
    prompt = b"\x7f\xff" * 4000 * 120  # two minutes of μ-law (a quiet square wave), queued at once

    class PlaybackHandler:
        def __init__(self, session: MediaSession) -> None:
            self.session = session
            counters["sessions"] += 1

        async def run(self) -> None:
            await self.session.send_audio(prompt)

        def on_audio(self, payload: bytes) -> None:
            counters["frames_in"] += 1

        def on_dtmf(self, digit: str) -> None:
            return None

        def on_mark(self, name: str) -> None:
            return None

        async def on_stop(self) -> None:
            counters["frames_out"] += self.session.frames_out

    live.session_handler_factory = PlaybackHandler

    from voice_service.app import create_app

    settings = load_settings(
        env={},
        database_url=dsn,
        data_dir=data_dir,  # recording spools and the recordings folder
        host="127.0.0.1",
        port=port,
        log_level="WARNING",
        run_workers=False,
        conversation_engine=False,  # the playback handler below drives the sessions, not STT/LLM/TTS
        public_base_url=f"http://127.0.0.1:{port}",
        pool_max_size=20,
    )
    app = create_app(settings, bootstrap=False)

    def report(*_: Any) -> None:
        live_frames = sum(s.frames_out for s in live.registry.sessions())
        print(
            json.dumps({**counters, "frames_out_live": live_frames, "live": len(live.registry)}), flush=True
        )

    signal.signal(signal.SIGUSR1, report)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        ws_max_size=1 << 20,
        timeout_graceful_shutdown=5,
    )
    if os.environ.get("BENCH_PROFILE"):  # cProfile of the server; written at every SIGUSR1 (window end)
        import cProfile

        profiler = cProfile.Profile()

        def report_and_dump(*_: Any) -> None:
            report()
            profiler.dump_stats(os.environ["BENCH_PROFILE"])

        signal.signal(signal.SIGUSR1, report_and_dump)
        profiler.enable()
    DrainingServer(config, drain_timeout=1.0).run()


# --------------------------------------------------------------------------------------------------------------
# The floor (subprocess): bare websockets echo, JSON decode + base64 per frame.


def floor(port: int) -> None:
    import msgspec
    import uvloop
    from websockets.asyncio.server import serve as ws_serve
    from websockets.exceptions import ConnectionClosed

    decode = msgspec.json.decode

    async def handler(ws: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                data = decode(message)
                if data.get("event") == "media":
                    base64.b64decode(data["media"]["payload"])
                    await ws.send(message)

    async def main() -> None:
        async with ws_serve(
            handler, "127.0.0.1", port, compression=None, ping_interval=None, max_size=1 << 20
        ):
            await asyncio.Event().wait()

    uvloop.run(main())


# --------------------------------------------------------------------------------------------------------------
# The load generator (subprocess): raw WebSocket client, Twilio message sequence.


class _Stream(asyncio.Protocol):
    """One simulated Twilio media stream (client side): sends text frames unmasked-by-zero-key, parses the
    server's frames just enough to time the audio ones."""

    def __init__(self, path: str, call_id: str, token: str, host: str, signature: str) -> None:
        self.path, self.call_id, self.token, self.host = path, call_id, token, host
        self.signature = signature
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = False
        self.close_code: int | None = None
        self.seq = 0
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.arrivals: list[float] = []
        self.measure = False
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"X-Twilio-Signature: {self.signature}\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:12])
            del buf[: end + 4]
            if b" 101" not in status:
                self.upgraded.set_exception(RuntimeError(f"handshake refused: {status!r}"))
                return
            self.upgraded.set_result(None)
        now = time.monotonic()
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            length = buf[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length = int.from_bytes(buf[2:4], "big")
                offset = 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length = int.from_bytes(buf[2:10], "big")
                offset = 10
            if len(buf) < offset + length:
                return
            if opcode == 0x1 and self.measure and buf[offset : offset + 16] == b'{"event":"media"':
                self.arrivals.append(now)
            elif opcode == 0x8:
                self.closed = True
                if length >= 2:
                    self.close_code = int.from_bytes(buf[offset : offset + 2], "big")
            del buf[: offset + length]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("connection lost during handshake"))

    def send_text(self, text: str) -> None:
        if self.closed or self.transport is None:
            return
        payload = text.encode()
        n = len(payload)
        # FIN + text; MASK bit with a zero key (allowed: the client picks the key; XOR with 0 is a no-op).
        if n < 126:
            header = bytes((0x81, 0x80 | n)) + b"\0\0\0\0"
        elif n < 65536:
            header = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big") + b"\0\0\0\0"
        else:
            header = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big") + b"\0\0\0\0"
        self.transport.write(header + payload)

    def send_close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(bytes((0x88, 0x82)) + b"\0\0\0\0" + (1000).to_bytes(2, "big"))

    def next_seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    def start(self, account: str) -> None:
        self.send_text(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        self.send_text(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": self.next_seq(),
                    "streamSid": self.stream_sid,
                    "start": {
                        "accountSid": account,
                        "streamSid": self.stream_sid,
                        "callSid": "CA" + uuid.uuid4().hex,
                        "tracks": ["inbound"],
                        "customParameters": {"call_id": self.call_id, "token": self.token},
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    },
                }
            )
        )

    def media(self, k: int, payload_b64: str) -> None:
        self.send_text(
            '{"event":"media","sequenceNumber":"'
            + self.next_seq()
            + '","streamSid":"'
            + self.stream_sid
            + '","media":{"track":"inbound","chunk":"'
            + str(k)
            + '","timestamp":"'
            + str(k * 20)
            + '","payload":"'
            + payload_b64
            + '"}}'
        )
        self.sent += 1

    def stop(self) -> None:
        self.send_text(
            json.dumps(
                {
                    "event": "stop",
                    "sequenceNumber": self.next_seq(),
                    "streamSid": self.stream_sid,
                    "stop": {"accountSid": "AC", "callSid": "CA"},
                }
            )
        )


async def _client(url_port: int, path: str, calls: list[list[str]], seconds: float) -> dict[str, Any]:
    from voice_service.settings import load_settings
    from voice_service.simulator.audio import speech_like, to_wire
    from voice_service.simulator.signing import twilio_signature

    # Twilio signs the upgrade (X-Twilio-Signature over the wss:// URL of the <Stream>); the service under test
    # runs with the simulator account's default token and public URL http://127.0.0.1:PORT.
    token = load_settings(env={}).simulator_auth_token
    signature = twilio_signature(token, f"ws://127.0.0.1:{url_port}{path}")
    loop = asyncio.get_running_loop()
    audio = to_wire(speech_like(2.0, 8000), 8000, "mulaw", 8000)
    payloads = [base64.b64encode(audio[i : i + 160]).decode() for i in range(0, len(audio) - 159, 160)]
    streams: list[_Stream] = []
    for i in range(0, len(calls), 50):  # connect in bursts of 50
        batch = []
        for call_id, token in calls[i : i + 50]:
            _, proto = await loop.create_connection(
                lambda c=call_id, t=token: _Stream(path, c, t, "127.0.0.1", signature), "127.0.0.1", url_port
            )
            batch.append(proto)
        for proto in batch:
            await proto.upgraded
            proto.start("AC" + "0" * 32)
        streams += batch
    await asyncio.sleep(1.0)  # the service claims tokens and starts the sessions
    groups = 10  # spread the streams over the 20 ms tick, as independent calls would be
    start = loop.time() + 0.05
    k = 0
    measure_from = start + 1.0
    end = start + seconds
    print(json.dumps({"event": "ready", "streams": len(streams)}), flush=True)
    measuring = False
    sent_before = 0
    while True:
        tick_at = start + k * FRAME / groups
        if tick_at >= end:
            break
        delay = tick_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if not measuring and loop.time() >= measure_from:
            measuring = True
            sent_before = sum(s.sent for s in streams)
            for s in streams:
                s.measure = True
            print(json.dumps({"event": "window_start", "t": time.monotonic()}), flush=True)
        frame_no = k // groups
        payload = payloads[frame_no % len(payloads)]
        for s in streams[k % groups :: groups]:
            s.media(frame_no + 1, payload)
        k += 1
    for s in streams:
        s.measure = False
    sent_in_window = sum(s.sent for s in streams) - sent_before
    print(json.dumps({"event": "window_end", "t": time.monotonic()}), flush=True)
    for s in streams:
        s.stop()
        s.send_close()
    await asyncio.sleep(1.0)
    jitters: list[float] = []
    received = 0
    for s in streams:
        received += len(s.arrivals)
        # Schedule slip: how far frame k arrives behind the stream's earliest real-time schedule so far
        # (min over j <= k of arrival_j - j*20 ms). The provider plays 20 ms per frame from its buffer; it runs
        # dry only when the slip exceeds the audio it held (the service's lead, 100 ms, topped up in 60 ms bursts).
        ahead = float("inf")
        for k, at in enumerate(s.arrivals):
            ahead = min(ahead, at - k * FRAME)
            jitters.append((at - k * FRAME - ahead) * 1000)
        if s.transport is not None:
            s.transport.close()
    window = seconds - 1.0
    return {
        "event": "result",
        "streams": len(streams),
        "frames_sent": sent_in_window,
        "frames_received_in_window": received,
        "recv_fps": received / window,
        "jitter_p50_ms": _percentile(jitters, 0.5),
        "jitter_p99_ms": _percentile(jitters, 0.99),
        "closed_early": sum(1 for s in streams if s.close_code not in (None, 1000)),
        "close_codes": sorted({s.close_code for s in streams if s.close_code is not None}),
    }


def client(port: int, path: str, seconds: float) -> None:
    import uvloop

    calls = json.loads(sys.stdin.read())
    result = uvloop.run(_client(port, path, calls, seconds))
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------------------------
# The orchestrator.


async def _mint_calls(dsn: str, n: int, *, record: bool = False) -> list[list[str]]:
    """N ringing inbound calls of one tenant, each with a fresh one-time media token, answered by an agent that
    records its calls or not."""
    import asyncpg

    from voice_service import composition
    from voice_service.calls import lifecycle
    from voice_service.db import create_pool, tenant_tx
    from voice_service.tenancy.service import create_tenant

    admin = await asyncpg.connect(dsn)
    try:
        tenant_id, _ = await create_tenant(admin, f"bench-{uuid.uuid4().hex[:8]}")
        agent_id = await admin.fetchval(
            "INSERT INTO voice_agents (tenant_id, name, config) VALUES ($1, 'bench', $2::jsonb) RETURNING id",
            tenant_id,
            json.dumps({"recording_enabled": record}),
        )
    finally:
        await admin.close()
    pool = await create_pool(dsn, min_size=1, max_size=4)
    out: list[list[str]] = []
    try:
        async with tenant_tx(pool, tenant_id) as conn:
            number = {"id": None, "e164": "+442079400000", "provider": "simulator"}
            for i in range(n):
                ref = await lifecycle.create_call(
                    conn,
                    listeners=composition.call_listeners(),
                    tenant_id=tenant_id,
                    initiated_by_user_id=None,
                    agent_id=agent_id,
                    from_number=number,
                    to_e164="+442079400000",
                    lead_id=None,
                    voice_id=None,
                    variables={},
                    direction="inbound",
                    from_e164=f"+1415555{i:04d}",
                    status="ringing",
                    provider_call_id=f"CA{uuid.uuid4().hex}",
                )
                out.append([str(ref.id), await lifecycle.mint_token(conn, ref)])
    finally:
        await pool.close()
    return out


def _run_client(
    port: int, path: str, calls: list[list[str]], seconds: float, server_pid: int, usr1: bool
) -> dict[str, Any]:
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--client",
            "--port",
            str(port),
            "--path",
            path,
            "--seconds",
            str(seconds),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(calls))
    proc.stdin.close()
    cpu_start = cpu_end = 0.0
    t_start = t_end = 0.0
    client_cpu = 0.0
    result: dict[str, Any] = {}
    for line in proc.stdout:
        msg = json.loads(line)
        if msg["event"] == "window_start":
            cpu_start, t_start = cpu_seconds(server_pid), time.monotonic()
            client_cpu = cpu_seconds(proc.pid)
            if usr1:
                os.kill(server_pid, signal.SIGUSR1)
        elif msg["event"] == "window_end":
            cpu_end, t_end = cpu_seconds(server_pid), time.monotonic()
            client_cpu = cpu_seconds(proc.pid) - client_cpu
            if usr1:
                os.kill(server_pid, signal.SIGUSR1)
        elif msg["event"] == "result":
            result = msg
    proc.wait(60)
    elapsed = t_end - t_start
    result["server_cpu_pct"] = 100 * (cpu_end - cpu_start) / elapsed
    result["client_cpu_pct"] = 100 * client_cpu / elapsed
    result["window_s"] = elapsed
    return result


def _start(args: list[str], stdout: Any = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT, stdout=stdout, text=True)


def _wait_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def orchestrate(ns: list[int], seconds: float, recording: str = "off", rounds: int = 1) -> None:
    import tempfile

    from bench._common import database, free_port
    from voice_service.migrations import migrate

    modes = {"off": [False], "on": [True], "both": [False, True]}[recording] * rounds
    rows = []
    encode_lines: list[str] = []
    with database() as dsn, tempfile.TemporaryDirectory(prefix="bench-media-") as data_dir:
        asyncio.run(migrate(dsn))
        svc_port, floor_port = free_port(), free_port()
        svc = _start(
            ["--serve", "--port", str(svc_port), "--dsn", dsn, "--data-dir", data_dir], stdout=subprocess.PIPE
        )
        flo = _start(["--floor", "--port", str(floor_port)])
        try:
            _wait_port(svc_port)
            _wait_port(floor_port)
            for n in ns:
                floor_result: dict[str, Any] | None = None
                for record in modes:
                    calls = asyncio.run(_mint_calls(dsn, n, record=record))
                    service_result = _run_client(
                        svc_port, "/v1/telephony/twilio/media", calls, seconds, svc.pid, True
                    )
                    if floor_result is None:
                        floor_result = _run_client(floor_port, "/", calls, seconds, flo.pid, False)
                    rows.append((n, record, service_result, floor_result))
                    time.sleep(5.0)  # let the service record the ends of the calls (and hand the spools over)
                    if record and not any(line.startswith(f"  N={n}:") for line in encode_lines):
                        encode_lines.append(_encode_sample(Path(data_dir), n))
        finally:
            for proc in (svc, flo):
                proc.send_signal(signal.SIGTERM)
            for proc in (svc, flo):
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if svc.stdout is not None:
                counters = [
                    json.loads(line) for line in svc.stdout.read().splitlines() if line.startswith("{")
                ]
                if counters:
                    print(f"service counters (SIGUSR1 snapshots): {counters[-1]}", file=sys.stderr)
    _table(rows, seconds)
    if recording == "both":
        print(f"\nrecording on vs off (same server, same N, {rounds} round(s) of each, alternating; medians):")
        for n in ns:
            off = statistics.median(r[2]["server_cpu_pct"] / n for r in rows if r[0] == n and not r[1])
            on = statistics.median(r[2]["server_cpu_pct"] / n for r in rows if r[0] == n and r[1])
            print(f"  N={n:>4}: CPU/call off {off:.3f} %core, on {on:.3f} %core: {100 * (on / off - 1):+.1f}%")
    for line in encode_lines:
        print(line)


def _encode_sample(data_dir: Path, n: int, sample: int = 5) -> str:
    """Encode a few of the spools the last round left in the recordings storage (the encode job's work; the
    bench runs no workers) and report CPU time and MP3 bytes per minute of call."""
    import shutil
    import tempfile

    from voice_service.recordings.encoder import encode_spool

    spools = sorted((data_dir / "recordings" / "spool").glob("*/*.spool"), key=lambda p: p.stat().st_mtime)
    spools = spools[-sample:]
    if not spools:
        return f"  N={n}: no spool found in the recordings storage (was anything recorded?)"
    cpu = minutes = size = 0.0
    tmp = Path(tempfile.mkdtemp(prefix="bench-encode-"))
    try:
        for spool in spools:
            started = time.process_time()
            encoded = encode_spool(spool, tmp / "out.mp3")
            cpu += time.process_time() - started
            minutes += encoded.duration_ms / 60000
            size += encoded.size
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return (
        f"  N={n}: encoding {len(spools)} recorded calls ({minutes * 60 / len(spools):.1f} s each): "
        f"{cpu / minutes:.2f} s CPU per minute of call, {size / minutes / 1000:.0f} KB per minute"
    )


def _table(rows: list[tuple[int, bool, dict[str, Any], dict[str, Any]]], seconds: float) -> None:
    head = (
        f"{'N':>4} {'rec':>3} | {'CPU/call %core':>14} {'floor':>6} {'ratio':>5} | {'calls/core':>10} "
        f"{'floor':>6} | {'in fps':>7} | {'out slip p50/p99 ms':>21} {'floor':>11} | {'out fps':>7} | errors"
    )
    print(
        f"\nmedia bench: Twilio media streams at real time, {seconds:.0f} s per N (steady window {seconds - 1:.0f}"
        f" s), 1 uvicorn worker, {os.cpu_count()} cores"
    )
    print(head)
    print("-" * len(head))
    for n, record, svc, flo in rows:
        per_call = svc["server_cpu_pct"] / n
        floor_per_call = flo["server_cpu_pct"] / n
        window = svc["window_s"]
        print(
            f"{n:>4} {'on' if record else 'off':>3} | {per_call:>14.3f} {floor_per_call:>6.3f} "
            f"{per_call / floor_per_call:>5.2f} | "
            f"{100 / per_call:>10.0f} {100 / floor_per_call:>6.0f} | {svc['frames_sent'] / window:>7.0f} | "
            f"{svc['jitter_p50_ms']:>9.2f} / {svc['jitter_p99_ms']:>6.2f}    "
            f"{flo['jitter_p50_ms']:>4.2f}/{flo['jitter_p99_ms']:>5.2f} | {svc['recv_fps']:>7.0f} | "
            f"{svc['closed_early']} (client CPU {svc['client_cpu_pct']:.0f}%)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--recording",
        choices=["off", "on", "both"],
        default="off",
        help="record the bench calls (off: their agent turns recording off; both: a round of each per N)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="with --recording both: rounds of each, alternating")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default=".data", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.dsn, args.data_dir)
    elif args.floor:
        floor(args.port)
    elif args.client:
        client(args.port, args.path, args.seconds)
    else:
        orchestrate(args.calls, args.seconds, args.recording, args.rounds)


if __name__ == "__main__":
    main()
