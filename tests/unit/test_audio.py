"""G.711 conversion, streaming resampling and 20 ms framing (providers/audio.py)."""

import math

import numpy as np
import pytest
import soxr

from providers.audio import (
    FRAME_MS,
    ULAW_SILENCE,
    FrameChunker,
    StreamResampler,
    frame_bytes,
    pcm16_to_ulaw,
    silence_byte,
    ulaw_to_pcm16,
)


def sine(rate: int, seconds: float, freq: float = 440.0, amplitude: int = 12000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype("<i2")


def test_ulaw_silence_decodes_to_zero_and_zero_encodes_to_silence():
    assert ulaw_to_pcm16(bytes([ULAW_SILENCE]) * 160) == bytes(320)
    assert pcm16_to_ulaw(bytes(320)) == bytes([ULAW_SILENCE]) * 160


def test_ulaw_round_trip_keeps_every_codeword():
    # Every μ-law byte except 0x7F (negative zero, which decodes like 0xFF) survives decode → encode.
    codewords = bytes(b for b in range(256) if b != 0x7F)
    assert pcm16_to_ulaw(ulaw_to_pcm16(codewords)) == codewords


def test_pcm_round_trip_error_is_within_ulaw_quantisation():
    pcm = sine(8000, 0.1)
    back = np.frombuffer(ulaw_to_pcm16(pcm16_to_ulaw(pcm.tobytes())), dtype="<i2").astype(float)
    # μ-law step is about 1/16 of the magnitude at these levels (plus the small-signal floor).
    assert np.all(np.abs(back - pcm) <= np.abs(pcm) / 16 + 16)
    assert len(back) == len(pcm)


@pytest.mark.parametrize(
    ("encoding", "rate", "expected"),
    [("mulaw", 8000, 160), ("l16", 8000, 320), ("l16", 16000, 640), ("l16", 24000, 960)],
)
def test_frame_bytes(encoding, rate, expected):
    assert FRAME_MS == 20
    assert frame_bytes(encoding, rate) == expected


def test_silence_byte_per_encoding():
    assert silence_byte("mulaw") == 0xFF
    assert silence_byte("l16") == 0x00


def test_streamed_20ms_chunks_match_one_shot_resampling():
    source = sine(24000, 1.0)
    resampler = StreamResampler(24000, 8000)
    chunks = [source[i : i + 480].tobytes() for i in range(0, len(source), 480)]
    out = b"".join(resampler.process(c, last=i == len(chunks) - 1) for i, c in enumerate(chunks))
    streamed = np.frombuffer(out, dtype="<i2").astype(float)
    one_shot = soxr.resample(source, 24000, 8000).astype(float)

    assert len(streamed) == len(one_shot) == 8000
    assert np.max(np.abs(streamed - one_shot)) <= 4  # a few LSB of rounding


def test_streamed_resampling_has_no_clicks_at_chunk_edges():
    amplitude, freq = 12000, 440.0
    source = sine(24000, 1.0, freq, amplitude)
    resampler = StreamResampler(24000, 8000)
    out = b"".join(resampler.process(source[i : i + 480].tobytes()) for i in range(0, len(source), 480))
    out += resampler.process(b"", last=True)
    y = np.frombuffer(out, dtype="<i2").astype(float)
    # A 440 Hz sine at 8 kHz never moves more than A·2π·f/fs between samples; a click would.
    max_step = amplitude * 2 * math.pi * freq / 8000
    assert np.max(np.abs(np.diff(y[50:-50]))) <= max_step * 1.02

    # The check is sensitive: resampling each chunk on its own does click.
    naive = np.concatenate(
        [soxr.resample(source[i : i + 480], 24000, 8000) for i in range(0, len(source), 480)]
    )
    assert np.max(np.abs(np.diff(naive[50:-50].astype(float)))) > max_step * 1.2


def test_resampler_same_rate_is_passthrough_and_odd_input_is_refused():
    assert StreamResampler(8000, 8000).process(b"\x01\x02\x03\x04") == b"\x01\x02\x03\x04"
    with pytest.raises(ValueError):
        StreamResampler(24000, 8000).process(b"\x01\x02\x03")


def test_chunker_emits_exact_frames_and_keeps_the_remainder():
    chunker = FrameChunker(160, ULAW_SILENCE)
    data = bytes(range(256)) * 2  # 512 bytes
    frames = chunker.push(data[:100]) + chunker.push(data[100:400]) + chunker.push(data[400:])
    assert [len(f) for f in frames] == [160, 160, 160]
    assert b"".join(frames) == data[:480]
    assert chunker.pending == 32

    last = chunker.flush()
    assert last == data[480:] + bytes([0xFF]) * 128
    assert chunker.flush() is None
    assert chunker.pending == 0


def test_chunker_pads_pcm_with_zero_and_clear_drops_the_remainder():
    chunker = FrameChunker(640, 0x00)
    assert chunker.push(b"\x01" * 700) == [b"\x01" * 640]
    assert chunker.flush() == b"\x01" * 60 + bytes(580)

    chunker.push(b"\x02" * 10)
    chunker.clear()
    assert chunker.flush() is None
