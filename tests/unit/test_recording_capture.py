"""The live capture, its spool and the encoder: what a listener of the stored file hears, and when.

Synthetic calls in both carriers' wire formats (Twilio μ-law 8 kHz, Vonage L16 16 kHz): a caller tone, agent
replies paced as the media sender paces them (20 ms frames, each stamped with the time it starts playing),
and a barge-in clear mid-utterance that drops what was queued but not yet played.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tests.support.recordings import decode, feed_synthetic_call, frames, tone, wire
from voice_service.recordings.capture import FLUSH_BYTES, CallCapture
from voice_service.recordings.encoder import EmptyRecording, encode_spool, render
from voice_service.recordings.spool import HEADER, MAGIC, SpoolError, read_index

T0 = 5000.0  # the media session's start on the loop clock (any value: only differences matter)


async def _call(tmp: Path, encoding: str, rate: int, *, seconds: float = 12.0) -> tuple[Path, dict]:
    """A synthetic call (see feed_synthetic_call): returns the spool and the facts to check."""
    cap = await CallCapture.open(tmp / "call.spool", encoding=encoding, sample_rate=rate, t0=T0)
    clear = await feed_synthetic_call(cap, encoding, rate, T0, seconds)
    result = await cap.close(T0 + seconds)
    assert result.error is None
    return result.path, {"clear": clear, "seconds": seconds, "rate": rate, "result": result}


@pytest.mark.parametrize(("encoding", "rate"), [("mulaw", 8000), ("l16", 16000)])
async def test_spool_places_each_channel_on_the_call_timeline(tmp_path: Path, encoding: str, rate: int) -> None:
    spool, facts = await _call(tmp_path, encoding, rate)
    data = spool.read_bytes()
    index = read_index(data)
    assert (index.encoding, index.sample_rate) == (encoding, rate)
    assert index.caller_samples == 12 * rate
    assert index.end == 12 * rate
    # One record per reply (consecutive frames extend it), the first cut at the clear.
    assert [(s.start, s.stop) for s in index.agent] == [(rate, int(3.5 * rate)), (6 * rate, 8 * rate)]
    assert index.clears == [int(3.5 * rate)]
    pcm = render(index, data, 0, index.total_samples)
    expected_caller = tone(440, 12, rate)
    if encoding == "l16":
        assert np.array_equal(pcm[:, 0], expected_caller)
    else:  # μ-law is lossy: within its quantisation step
        assert np.max(np.abs(pcm[:, 0].astype(int) - expected_caller.astype(int))) < 1100
    assert not pcm[: rate, 1].any()  # nothing played before the reply
    assert pcm[rate : int(3.5 * rate), 1].any()
    assert not pcm[int(3.5 * rate) : 6 * rate, 1].any()  # cut at the clear: silence until the next reply
    assert pcm[6 * rate : 8 * rate, 1].any()
    assert not pcm[8 * rate :, 1].any()


async def test_many_flushes_keep_the_stream_in_order(tmp_path: Path) -> None:
    """A long Vonage call crosses the flush threshold many times; the writes happen in a thread while frames
    keep arriving, and the spool still reads back sample for sample."""
    rate, seconds = 16000, 40.0
    cap = await CallCapture.open(tmp_path / "long.spool", encoding="l16", sample_rate=rate, t0=T0)
    caller = tone(300, seconds, rate)
    agent = tone(900, seconds, rate, amplitude=0.2)
    caller_frames, agent_frames = frames(wire(caller, "l16"), 640), frames(wire(agent, "l16"), 640)
    for k, (c, a) in enumerate(zip(caller_frames, agent_frames, strict=True)):
        cap.caller(c)
        cap.agent(a, T0 + k * 0.02)
        if k % 50 == 0:
            await asyncio.sleep(0)  # let the writer threads' completions land, as on a live loop
    result = await cap.close(T0 + seconds)
    assert result.size > 4 * FLUSH_BYTES
    data = result.path.read_bytes()
    index = read_index(data)
    pcm = render(index, data, 0, index.total_samples)
    assert np.array_equal(pcm[:, 0], caller)
    assert np.array_equal(pcm[:, 1], agent)
    # Contiguous frames extend one record until a flush hands the buffer over: one per flush, not per frame.
    assert len(index.agent) <= result.size // FLUSH_BYTES + 1 < len(agent_frames) // 50


async def test_a_spool_cut_short_reads_up_to_its_last_whole_record(tmp_path: Path) -> None:
    spool, _ = await _call(tmp_path, "mulaw", 8000)
    data = spool.read_bytes()
    cut = data[: len(data) - 2000]  # a crash mid-call: no end record, the last record torn
    index = read_index(cut)
    assert index.end is None
    assert index.caller_samples == 12 * 8000  # written before the agent's records (one flush at the end)
    assert [(s.start, s.stop) for s in index.agent] == [(8000, 28000)]  # the torn second reply is dropped
    assert index.total_samples == 12 * 8000
    with pytest.raises(SpoolError):
        read_index(b"not a spool at all, just some bytes")


async def test_jittered_play_times_extend_one_record(tmp_path: Path) -> None:
    cap = await CallCapture.open(tmp_path / "j.spool", encoding="mulaw", sample_rate=8000, t0=T0)
    reply = frames(wire(tone(700, 1.0, 8000), "mulaw"), 160)
    for k, frame in enumerate(reply):
        cap.agent(frame, T0 + 2.0 + k * 0.02 + (0.0005 if k % 2 else -0.0005))  # clock noise
    result = await cap.close(T0 + 4.0)
    index = read_index(result.path.read_bytes())
    assert [(s.start, s.stop) for s in index.agent] == [(15996, 23996)]  # placed by its first frame


async def test_close_is_final_and_discard_removes_the_spool(tmp_path: Path) -> None:
    cap = await CallCapture.open(tmp_path / "d.spool", encoding="mulaw", sample_rate=8000, t0=T0)
    cap.caller(b"\xff" * 160)
    first = await cap.close(T0 + 1.0)
    cap.caller(b"\x00" * 160)  # after the end: ignored
    again = await cap.close(T0 + 9.0)
    assert first.size == again.size
    assert read_index(first.path.read_bytes()).caller_samples == 160
    await cap.discard()
    assert not first.path.exists()


@pytest.mark.parametrize(("encoding", "rate"), [("mulaw", 8000), ("l16", 16000)])
async def test_encoded_file_is_two_aligned_channels_with_the_agent_cut_at_the_clear(
    tmp_path: Path, encoding: str, rate: int
) -> None:
    spool, facts = await _call(tmp_path, encoding, rate)
    encoded = encode_spool(spool, tmp_path / "call.mp3")
    audio = decode((tmp_path / "call.mp3").read_bytes())
    assert audio.channels == 2
    assert abs(audio.duration - facts["seconds"]) < 0.05
    assert encoded.duration_ms == 12000
    # Caller (left) throughout; agent (right) exactly where it played: from 1.0 s, cut at the clear, back at 6 s.
    assert audio.rms(0, 0.5, 11.5) > 0.1
    assert audio.onset(1) == pytest.approx(1.0, abs=0.02)
    assert audio.last_sound(1, before=5.0) == pytest.approx(facts["clear"], abs=0.02)
    assert audio.rms(1, facts["clear"] + 0.05, 5.95) < 0.001
    assert audio.rms(1, 6.05, 7.95) > 0.1
    assert audio.rms(1, 8.05, 11.9) < 0.001
    # Small: at most about 500 KB per minute of call.
    assert encoded.size / (facts["seconds"] / 60) <= 500_000


async def test_a_spool_without_audio_is_not_encoded(tmp_path: Path) -> None:
    spool = tmp_path / "empty.spool"
    spool.write_bytes(HEADER.pack(MAGIC, 0, 8000))
    with pytest.raises(EmptyRecording):
        encode_spool(spool, tmp_path / "empty.mp3")
