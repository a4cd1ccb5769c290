"""Shared helpers for the recordings tests (no tests here): a real S3-compatible server on 127.0.0.1 (moto in
server mode, a separate HTTP server the S3 client talks to over the loopback), synthetic call audio in the
carriers' wire formats, and decoding a stored recording with PyAV."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key_id: str = "test-access-key"
    secret_access_key: str = "test-secret-key"
    region: str = "us-east-1"


@contextlib.contextmanager
def moto_server() -> Iterator[S3Server]:
    """An S3-compatible HTTP server on 127.0.0.1 (a free port), stopped on exit."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def s3_client(server: S3Server) -> AsyncIterator[object]:
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
    ) as client:
        yield client


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")


def wire(pcm: np.ndarray, encoding: str) -> bytes:
    """PCM16 samples in the carrier's wire format (Twilio μ-law, Vonage L16 little-endian)."""
    raw = pcm.astype("<i2").tobytes()
    return audioop.lin2ulaw(raw, 2) if encoding == "mulaw" else raw


def frames(data: bytes, frame_bytes: int) -> list[bytes]:
    return [data[i : i + frame_bytes] for i in range(0, len(data), frame_bytes)]


LEAD = 0.1  # the media sender keeps this much unplayed audio at the carrier
REPLY_AT, CLEAR_AFTER, SECOND_AT = 1.0, 2.5, 6.0  # seconds from the media's start


def agent_burst(cap: Any, audio: bytes, frame_bytes: int, start: float, clear_after: float | None) -> float | None:
    """Feed frames as the media sender does: frame k plays at start + k·20 ms and is handed over `LEAD` earlier.
    With `clear_after` (seconds into the burst) a barge-in happens then: frames already handed over stay (the
    carrier had them), the rest is never sent. Returns the clear's time."""
    for k, frame in enumerate(frames(audio, frame_bytes)):
        play_at = start + k * 0.02
        if clear_after is not None and play_at - LEAD > start + clear_after:
            at = start + clear_after
            cap.clear(at)
            return at
        cap.agent(frame, play_at)
    return None


async def feed_synthetic_call(cap: Any, encoding: str, rate: int, t0: float, seconds: float = 12.0) -> float:
    """A call as the media session would feed it: caller 440 Hz throughout; agent 1 kHz from 1.0 s, a 4 s
    reply cleared (barge-in) 2.5 s in; agent again from 6.0 s for 2 s. Returns the clear's offset (s)."""
    width = 1 if encoding == "mulaw" else 2
    frame_bytes = rate // 50 * width
    reply = wire(tone(1000, 4.0, rate), encoding)
    second = wire(tone(1000, 2.0, rate), encoding)
    cut_at = None
    for i, frame in enumerate(frames(wire(tone(440, seconds, rate), encoding), frame_bytes)):
        cap.caller(frame)  # caller frames arrive while agent frames go out
        if i == int(REPLY_AT * 50):
            cut_at = agent_burst(cap, reply, frame_bytes, t0 + REPLY_AT, clear_after=CLEAR_AFTER)
        if i == int(SECOND_AT * 50):
            agent_burst(cap, second, frame_bytes, t0 + SECOND_AT, clear_after=None)
    assert cut_at is not None
    return cut_at - t0


@dataclass(frozen=True)
class Decoded:
    channels: int
    rate: int
    samples: np.ndarray  # (channels, n) float32 in [-1, 1]
    container_duration: float | None

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.rate

    def rms(self, channel: int, start: float, stop: float) -> float:
        x = self.samples[channel, int(start * self.rate) : int(stop * self.rate)].astype(np.float64)
        return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0

    def onset(self, channel: int, threshold: float = 0.05) -> float | None:
        hits = np.nonzero(np.abs(self.samples[channel]) > threshold)[0]
        return float(hits[0] / self.rate) if hits.size else None

    def last_sound(self, channel: int, before: float, threshold: float = 0.05) -> float | None:
        hits = np.nonzero(np.abs(self.samples[channel, : int(before * self.rate)]) > threshold)[0]
        return float(hits[-1] / self.rate) if hits.size else None


def decode(data: bytes) -> Decoded:
    """Decode a recording the way a player would (FFmpeg through PyAV)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray() for frame in container.decode(stream)]
        duration = container.duration / 1_000_000 if container.duration else None
        channels = stream.codec_context.layout.nb_channels
        rate = stream.codec_context.sample_rate
    samples = np.concatenate(chunks, axis=1)
    if samples.shape[0] != channels:  # packed formats decode as (1, n·channels)
        samples = samples.reshape(-1, channels).T
    return Decoded(channels=channels, rate=rate, samples=samples, container_duration=duration)
