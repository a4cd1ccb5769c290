"""Caller audio for the simulator: speech-like test signals and WAV files, in each provider's wire format."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from providers.audio import StreamResampler, pcm16_to_ulaw

__all__ = ["load_wav", "speech_like", "to_wire"]


def speech_like(seconds: float, rate: int = 8000, *, seed: int = 7) -> bytes:
    """PCM16 mono that an energy VAD and a spectrogram both take for speech: a voiced source (gliding f0 with
    harmonics) shaped into ~4 syllables a second, with short pauses between words."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t) + 15 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, np.pi)), 0, None) ** 0.6
    words = (np.sin(2 * np.pi * 0.45 * t) > -0.6).astype(float)  # a pause now and then
    signal = voiced * syllables * words + rng.normal(0, 0.01, n)
    peak = np.max(np.abs(signal)) or 1.0
    pcm: bytes = (signal / peak * 9000).astype("<i2").tobytes()
    return pcm


def load_wav(path: str | Path) -> tuple[bytes, int]:
    """(PCM16 mono, sample rate) from a 16-bit WAV file (stereo is mixed down)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files are supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = wav.readframes(wav.getnframes())
    if channels > 1:
        samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels).mean(axis=1)
        data = samples.astype("<i2").tobytes()
    return data, rate


def _resample(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    if in_rate == out_rate:
        return pcm
    resampler = StreamResampler(in_rate, out_rate)
    return resampler.process(pcm, last=True)


def to_wire(pcm: bytes, rate: int, encoding: str, out_rate: int) -> bytes:
    """PCM16 at `rate` → the wire format: μ-law (Twilio) or PCM16 (Vonage) at `out_rate`."""
    pcm = _resample(pcm, rate, out_rate)
    return pcm16_to_ulaw(pcm) if encoding == "mulaw" else pcm
