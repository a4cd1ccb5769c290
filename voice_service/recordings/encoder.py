"""The encoder: a call's spool → a two-channel MP3 (caller left, agent right), time-aligned with the transcript.

MP3 because every current browser's `<audio>` plays it (Ogg/Opus is smaller at the same quality, but older
Safari releases, still current on many iPhones, do not play Ogg). 16 kHz stereo at 40 kbit/s CBR is 300 KB a
minute of call whatever is said; both carriers' audio is at most 16 kHz, so nothing is lost to the rate, and CBR
keeps a player's byte-offset seeking (Range requests) accurate. FFmpeg's MP3 muxer writes a Xing/LAME header
with the exact length and the encoder delay, so players and decoders show the true duration and timeline.

The spool is rendered in 10-second windows (memory stays flat however long the call): the caller's samples as
received, the agent's as they played (a barge-in clear cuts the rest; silence where nothing played), decoded
from the wire format (G.711 μ-law through audioop, L16 as is), interleaved, resampled and encoded with PyAV
(FFmpeg's libmp3lame). Blocking: run it in a worker thread.
"""

from __future__ import annotations

import mmap
import warnings
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from voice_service.recordings.spool import SpoolIndex, read_index

with warnings.catch_warnings():  # stdlib up to 3.12 (deprecated, warns on import); audioop-lts on 3.13+
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "BIT_RATE",
    "CONTENT_TYPE",
    "EXTENSION",
    "OUTPUT_RATE",
    "EmptyRecording",
    "EncodedRecording",
    "encode_spool",
    "render",
]

OUTPUT_RATE = 16000
BIT_RATE = 40_000
CONTENT_TYPE = "audio/mpeg"
EXTENSION = "mp3"
WINDOW_SECONDS = 10


class EmptyRecording(ValueError):
    """The spool holds no audio at all."""


@dataclass(frozen=True, slots=True)
class EncodedRecording:
    path: Path
    size: int
    duration_ms: int
    source_rate: int
    agent_spans: int  # stretches of agent audio that played
    clears: int


def _pcm(data: memoryview, encoding: str) -> np.ndarray:
    if encoding == "mulaw":
        return np.frombuffer(audioop.ulaw2lin(data, 2), dtype="<i2")
    return np.frombuffer(data, dtype="<i2")


def render(index: SpoolIndex, data: bytes | memoryview | mmap.mmap, start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) of the call as an (n, 2) int16 array: caller in column 0, agent in column 1."""
    view = memoryview(data)
    width, encoding = index.width, index.encoding
    out = np.zeros((stop - start, 2), dtype=np.int16)
    at = 0  # caller samples before the current segment
    for offset, nbytes in index.caller:
        samples = nbytes // width
        seg_start, seg_stop = at, at + samples
        at = seg_stop
        if seg_stop <= start:
            continue
        if seg_start >= stop:
            break
        lo, hi = max(start, seg_start), min(stop, seg_stop)
        chunk = view[offset + (lo - seg_start) * width : offset + (hi - seg_start) * width]
        out[lo - start : hi - start, 0] = _pcm(chunk, encoding)
    for span in index.agent:
        if span.stop <= start or span.start >= stop:
            continue
        lo, hi = max(start, span.start), min(stop, span.stop)
        chunk = view[span.offset + (lo - span.start) * width : span.offset + (hi - span.start) * width]
        out[lo - start : hi - start, 1] = _pcm(chunk, encoding)
    return out


def encode_spool(spool: Path, target: Path) -> EncodedRecording:
    """Encode the spool file `spool` into the MP3 file `target`."""
    with spool.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        index = read_index(data)
        total = index.total_samples
        if total <= 0:
            raise EmptyRecording("nothing was recorded")
        rate = index.sample_rate
        container = av.open(str(target), "w", format="mp3")
        try:
            stream = container.add_stream("libmp3lame", rate=OUTPUT_RATE, layout="stereo")
            stream.bit_rate = BIT_RATE
            resampler = av.AudioResampler(format="s16p", layout="stereo", rate=OUTPUT_RATE)
            window = rate * WINDOW_SECONDS
            for begin in range(0, total, window):
                pcm = render(index, data, begin, min(total, begin + window))
                frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
                frame.sample_rate = rate
                for resampled in resampler.resample(frame):
                    container.mux(stream.encode(resampled))
            for resampled in resampler.resample(None):
                container.mux(stream.encode(resampled))
            container.mux(stream.encode(None))
        finally:
            container.close()
    return EncodedRecording(
        path=target,
        size=target.stat().st_size,
        duration_ms=round(total * 1000 / rate),
        source_rate=rate,
        agent_spans=len(index.agent),
        clears=len(index.clears),
    )
