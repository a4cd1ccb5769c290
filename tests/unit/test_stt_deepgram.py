"""DeepgramStt against the local Deepgram fake, over a real WebSocket."""

from __future__ import annotations

import asyncio

import pytest

from providers.stt.base import SpeechStarted, SttClosed, SttError, SttEvent, Transcript, UtteranceEnd
from providers.stt.deepgram import DeepgramStt, DeepgramSttStream, UnsupportedLanguage, deepgram_language
from providers.telephony.base import MediaFormat
from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.server import (
    LocalServer,
    mulaw_silence,
    mulaw_tone,
    pcm16_silence,
    pcm16_tone,
    split_frames,
)

MULAW_8K = MediaFormat(encoding="mulaw", sample_rate=8000)
L16_16K = MediaFormat(encoding="l16", sample_rate=16000)


def caller_turn(speech_s: float, silence_s: float) -> list[bytes]:
    return split_frames(mulaw_tone(speech_s) + mulaw_silence(silence_s), 160)


async def send_all(stream: DeepgramSttStream, frames: list[bytes]) -> None:
    for frame in frames:
        await stream.send_audio(frame)


async def collect(stream: DeepgramSttStream) -> list[SttEvent]:
    events: list[SttEvent] = []
    async with asyncio.timeout(5):
        async for event in stream.events():
            events.append(event)
    return events


async def test_turn_produces_speech_started_interims_and_speech_final() -> None:
    fake = FakeDeepgram(script=["I would like to book a table."])
    async with LocalServer(fake) as srv:
        stt = DeepgramStt("test-key", base_url=srv.ws_url)
        stream = await stt.connect(MULAW_8K, "en-US", endpointing_ms=300, utterance_end_ms=1000)
        async with asyncio.TaskGroup() as tg:
            consumer = tg.create_task(collect(stream))
            await send_all(stream, caller_turn(1.2, 1.4))
            await asyncio.sleep(0.1)
            await stream.close()
        events = consumer.result()
        session = await fake.wait_for_session()

    assert isinstance(events[0], SpeechStarted)
    assert events[0].timestamp == pytest.approx(0.0, abs=0.03)
    interims = [e for e in events if isinstance(e, Transcript) and not e.is_final]
    assert interims and all("I would like to book a table.".startswith(e.text) for e in interims)
    finals = [e for e in events if isinstance(e, Transcript) and e.is_final]
    assert len(finals) == 1
    final = finals[0]
    assert final.text == "I would like to book a table."
    assert final.speech_final is True
    assert final.words == 7
    assert final.start == pytest.approx(0.0, abs=0.03)
    # endpointing fires 300 ms into the silence that follows 1.2 s of speech
    assert final.start + final.duration == pytest.approx(1.5, abs=0.05)
    utterance_ends = [e for e in events if isinstance(e, UtteranceEnd)]
    assert len(utterance_ends) == 1 and utterance_ends[0].last_word_end == pytest.approx(1.2, abs=0.03)
    assert events.index(final) < events.index(utterance_ends[0])
    assert events[-1] == SttClosed(error=None)

    assert session.query["encoding"] == "mulaw"
    assert session.query["sample_rate"] == "8000"
    assert session.query["model"] == "nova-3"
    assert session.query["language"] == "en-US"
    assert session.query["endpointing"] == "300"
    assert session.query["utterance_end_ms"] == "1000"
    assert session.query["interim_results"] == session.query["vad_events"] == "true"
    assert session.headers["authorization"] == "Token test-key"
    assert session.controls == ["CloseStream"]
    assert session.close_code == 1000
    assert session.sent_of("Metadata")[0]["duration"] == pytest.approx(2.6)
    assert stream.audio_seconds == pytest.approx(2.6) == pytest.approx(session.audio_seconds)


async def test_linear16_audio_is_sent_untouched_at_the_call_rate() -> None:
    fake = FakeDeepgram(script=["Hello there."])
    audio = pcm16_tone(0.6, rate=16000) + pcm16_silence(0.5, rate=16000)
    async with LocalServer(fake) as srv:
        stream = await DeepgramStt("test-key", base_url=srv.http_url).connect(L16_16K, "en")
        async with asyncio.TaskGroup() as tg:
            consumer = tg.create_task(collect(stream))
            await send_all(stream, split_frames(audio, 640))
            await stream.close()
        session = await fake.wait_for_session()

    assert session.query["encoding"] == "linear16" and session.query["sample_rate"] == "16000"
    assert bytes(session.audio) == audio
    finals = [e for e in consumer.result() if isinstance(e, Transcript) and e.is_final]
    assert [f.text for f in finals] == ["Hello there."] and finals[0].speech_final


async def test_withheld_speech_final_leaves_utterance_end_as_the_turn_signal() -> None:
    fake = FakeDeepgram(script=["Yes please."], withhold_speech_final=True)
    async with LocalServer(fake) as srv:
        stream = await DeepgramStt("test-key", base_url=srv.ws_url).connect(MULAW_8K, "en")
        async with asyncio.TaskGroup() as tg:
            consumer = tg.create_task(collect(stream))
            await send_all(stream, caller_turn(0.8, 1.5))
            await stream.close()

    events = consumer.result()
    finals = [e for e in events if isinstance(e, Transcript) and e.is_final]
    assert [(f.text, f.speech_final) for f in finals] == [("Yes please.", False)]
    assert any(isinstance(e, UtteranceEnd) for e in events[events.index(finals[0]) :])


async def test_keep_alive_holds_an_idle_stream_open_and_silence_closes_it() -> None:
    fake = FakeDeepgram(idle_timeout=0.3)
    async with LocalServer(fake) as srv:
        stream = await DeepgramStt("test-key", base_url=srv.ws_url).connect(MULAW_8K, "en")
        async with asyncio.TaskGroup() as tg:
            consumer = tg.create_task(collect(stream))
            for _ in range(6):  # 0.6 s idle, kept alive
                await asyncio.sleep(0.1)
                await stream.keep_alive()
            assert not consumer.done()
        session = await fake.wait_for_session()

    events = consumer.result()
    assert session.controls == ["KeepAlive"] * 6
    assert events == [
        SttClosed(error="closed with 1011 NET0001: no audio or text received within the timeout window")
    ]


async def test_finalize_flushes_the_current_utterance() -> None:
    fake = FakeDeepgram(script=["Wait, one more thing"])
    async with LocalServer(fake) as srv:
        stream = await DeepgramStt("test-key", base_url=srv.ws_url).connect(MULAW_8K, "en")
        async with asyncio.TaskGroup() as tg:
            consumer = tg.create_task(collect(stream))
            await send_all(stream, split_frames(mulaw_tone(0.7), 160))
            await stream.finalize()
            await asyncio.sleep(0.05)
            await stream.close()
        session = await fake.wait_for_session()

    finals = [e for e in consumer.result() if isinstance(e, Transcript) and e.is_final]
    assert [f.text for f in finals] == ["Wait, one more thing"]
    assert session.finals[0]["from_finalize"] is True
    assert session.controls == ["Finalize", "CloseStream"]


@pytest.mark.parametrize(
    ("mode", "error"),
    [("abort", "connection lost without a close frame (1006)"), ("error", "closed with 1011 fault injected")],
)
async def test_dropped_socket_surfaces_as_stt_closed_with_error(mode: str, error: str) -> None:
    fake = FakeDeepgram(script=["First.", "Second."], drop_on_utterance=2, drop_mode=mode)
    async with LocalServer(fake) as srv:
        stream = await DeepgramStt("test-key", base_url=srv.ws_url).connect(MULAW_8K, "en")
        async with asyncio.TaskGroup() as tg:
            consumer = tg.create_task(collect(stream))
            await send_all(stream, caller_turn(0.5, 0.6) + caller_turn(0.5, 0.6))
            await stream.send_audio(b"\xff" * 160)  # after the drop: ignored, no exception

    events = consumer.result()
    finals = [e.text for e in events if isinstance(e, Transcript) and e.is_final]
    assert finals == ["First."]
    assert events[-1] == SttClosed(error=error)
    assert sum(isinstance(e, SttClosed) for e in events) == 1


async def test_rejected_credentials_raise_stt_error() -> None:
    async with LocalServer(FakeDeepgram()) as srv:
        with pytest.raises(SttError) as info:
            await DeepgramStt("wrong-key", base_url=srv.ws_url).connect(MULAW_8K, "en")
    assert info.value.status == 401


async def test_processing_delay_holds_each_message_back() -> None:
    fake = FakeDeepgram(script=["Hi."], processing_delay=0.25)
    async with LocalServer(fake) as srv:
        stream = await DeepgramStt("test-key", base_url=srv.ws_url).connect(MULAW_8K, "en")
        loop = asyncio.get_running_loop()
        await send_all(stream, caller_turn(0.4, 0.5))
        sent_at = loop.time()
        async with asyncio.timeout(5):
            async for event in stream.events():
                if isinstance(event, Transcript) and event.is_final:
                    break
        waited = loop.time() - sent_at
        await stream.close()

    assert event.text == "Hi."
    assert 0.2 <= waited < 1.0


@pytest.mark.parametrize(
    ("tag", "sent"),
    [
        ("de-DE", "de"),
        ("fr-FR", "fr"),
        ("es-ES", "es"),
        ("de-CH", "de-CH"),
        ("fr-CA", "fr-CA"),
        ("es-MX", "es-419"),
        ("en-US", "en-US"),
        ("en-GB", "en-GB"),
        ("en-ZA", "en"),
        ("pt-BR", "pt-BR"),
        ("nb-NO", "no"),
        ("zh-Hant-TW", "zh-TW"),
        ("DE-de", "de"),
    ],
)
async def test_the_agents_language_tag_becomes_a_code_the_model_accepts(tag: str, sent: str) -> None:
    # The fake refuses what nova-3 refuses (de-DE, fr-FR, es-ES: 400 at the handshake), as Deepgram does.
    fake = FakeDeepgram(script=["Hallo."])
    async with LocalServer(fake) as srv:
        stream = await DeepgramStt("test-key", base_url=srv.ws_url).connect(MULAW_8K, tag)
        await stream.close()
        session = await fake.wait_for_session()
    assert session.query["language"] == sent


def test_each_model_maps_tags_to_its_own_codes() -> None:
    assert deepgram_language("nova-2", "it-IT") == "it"
    assert deepgram_language("nova-2-phonecall", "en-GB") == "en"  # the English-only variants
    assert deepgram_language("a-self-hosted-model", "de-DE") == "de-DE"  # unknown models get the tag as is


@pytest.mark.parametrize(("model", "tag"), [("nova-3", "ar-SA"), ("nova-3", "xx"), ("nova-2-phonecall", "de-DE")])
async def test_a_language_the_model_cannot_take_fails_before_connecting(model: str, tag: str) -> None:
    with pytest.raises(UnsupportedLanguage) as info:
        deepgram_language(model, tag)
    assert tag in str(info.value) and model in str(info.value)
    with pytest.raises(SttError):
        DeepgramStt("test-key", base_url="ws://127.0.0.1:9", model=model).listen_url(MULAW_8K, tag)
