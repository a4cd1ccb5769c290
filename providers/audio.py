"""Audio codecs for the media path: G.711 μ-law ↔ PCM16, streaming resampling, 20 ms framing.

Telephony carries 20 ms frames: Twilio μ-law 8 kHz (160 bytes), Vonage PCM16LE at 8 or 16 kHz
(320 / 640 bytes). Audio is only converted where a provider offers no matching format (OpenAI TTS:
PCM16 24 kHz); everything here is C-backed (audioop, soxr) and costs microseconds per frame.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import soxr

# audioop is stdlib up to 3.12 (deprecated since 3.11, so importing it warns, and pytest turns warnings
# into errors); on 3.13+ the `audioop-lts` package installs the same module name without the warning.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

Encoding = Literal["mulaw", "l16"]

FRAME_MS = 20
ULAW_SILENCE = 0xFF  # μ-law's zero level: padding with 0x00 would add full-scale clicks
PCM_SILENCE = 0x00

__all__ = [
    "FRAME_MS",
    "PCM_SILENCE",
    "ULAW_SILENCE",
    "Encoding",
    "FrameChunker",
    "StreamResampler",
    "frame_bytes",
    "pcm16_to_ulaw",
    "silence_byte",
    "ulaw_to_pcm16",
]


def ulaw_to_pcm16(data: bytes) -> bytes:
    """Decode G.711 μ-law to signed 16-bit little-endian PCM (twice as many bytes)."""
    return audioop.ulaw2lin(data, 2)


def pcm16_to_ulaw(data: bytes) -> bytes:
    """Encode signed 16-bit little-endian PCM to G.711 μ-law (half as many bytes)."""
    return audioop.lin2ulaw(data, 2)


def frame_bytes(encoding: Encoding, sample_rate: int, channels: int = 1, frame_ms: int = FRAME_MS) -> int:
    """Size in bytes of one frame: μ-law is 1 byte a sample, l16 (PCM16) 2 bytes."""
    width = 1 if encoding == "mulaw" else 2
    return sample_rate * frame_ms // 1000 * width * channels


def silence_byte(encoding: Encoding) -> int:
    """The byte value that pads a frame with silence in this encoding."""
    return ULAW_SILENCE if encoding == "mulaw" else PCM_SILENCE


class StreamResampler:
    """Streaming PCM16 mono resampler (soxr), one per call leg and direction.

    Keeps filter state between chunks, so a stream of 20 ms chunks comes out continuous (a one-shot
    resample per chunk clicks at every chunk edge). soxr emits in blocks: at "HQ", 24k→8k returns
    nothing for the first few 20 ms chunks, then ~60 ms at a time; the total follows the rate ratio
    once `last=True` flushes the filter delay. Re-frame the output with FrameChunker.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._passthrough = in_rate == out_rate
        self._stream = (
            None
            if self._passthrough
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)
        )

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        """Resample a chunk of PCM16LE mono; pass `last=True` on the final chunk to flush."""
        if self._stream is None:
            return pcm
        if len(pcm) % 2:
            raise ValueError("PCM16 input must have an even number of bytes")
        samples = np.frombuffer(pcm, dtype="<i2")
        out = self._stream.resample_chunk(samples, last=last)
        resampled: bytes = out.astype("<i2", copy=False).tobytes()
        return resampled

    def reset(self) -> None:
        """Drop the filter state (e.g. after a barge-in cut the stream)."""
        if self._stream is not None:
            self._stream.clear()


class FrameChunker:
    """Turns byte chunks of any size into exact frames; keeps the remainder for the next chunk."""

    def __init__(self, frame_bytes: int, pad_byte: int) -> None:
        if frame_bytes <= 0:
            raise ValueError("frame_bytes must be positive")
        self.frame_bytes = frame_bytes
        self.pad_byte = pad_byte
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return len(self._buffer)

    def push(self, data: bytes) -> list[bytes]:
        """Add a chunk; return every complete frame now available (possibly none)."""
        self._buffer += data
        size = self.frame_bytes
        whole = len(self._buffer) - len(self._buffer) % size
        if not whole:
            return []
        ready = bytes(self._buffer[:whole])
        del self._buffer[:whole]
        return [ready[start : start + size] for start in range(0, whole, size)]

    def flush(self) -> bytes | None:
        """Return the remainder padded to a full frame with the pad byte, or None if nothing is held."""
        if not self._buffer:
            return None
        frame = bytes(self._buffer) + bytes([self.pad_byte]) * (self.frame_bytes - len(self._buffer))
        self._buffer.clear()
        return frame

    def clear(self) -> None:
        """Drop the held remainder (barge-in: the rest of the utterance is never sent)."""
        self._buffer.clear()
