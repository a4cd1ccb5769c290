"""The conversation engine against the STT/LLM/TTS fakes over real sockets, driving the real MediaSession.

The carrier side is an in-memory Twilio Media Streams line (`PhoneLine`): it streams the caller's audio at real
time as `media` events, plays the agent's audio back at real time, echoes marks once the audio before them has
played and, on `clear`, drops what it holds and echoes every pending mark at once (as Twilio does). No database:
the call's setup is built from plain dicts and the records are captured in memory.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from tests.fakes.openai import Text, ToolCall, ToolCalls
from tests.fakes.server import Fault
from tests.support.engine import PhoneLine, agent, chat_messages, fakes, run_call, silence, speech
from voice_service.agents.schemas import AgentConfig, TransferTarget
from voice_service.conversation.control import CallObserver, EndCall, Say, Transfer
from voice_service.conversation.engine import TRANSFER_TEXT, CallSession
from voice_service.conversation.metering import TranscriptTurn

# --- the tests ---------------------------------------------------------------------------------------------


async def test_whole_conversation_starter_answer_end_call() -> None:
    replies = [
        Text("Sure. For how many people?"),
        ToolCalls([ToolCall("end_call", {"reason": "done"})], text="Great, see you then. Goodbye!"),
    ]
    audio = silence(1.0) + speech(0.6) + silence(2.2) + speech(0.6) + silence(6.0)
    async with fakes(script=["I'd like to book a table.", "Four people, thanks."], replies=replies) as f:
        r = await run_call(f, audio, agent_row=agent("Hi there. How can I help with {{product}}?"))

    assert r.media.end_reason == "agent_ended" and r.media.hung_up
    assert r.conversation["end_reason"] == "agent_ended"
    assert [(t["role"], t["text"], t["interrupted"]) for t in r.transcripts] == [
        ("agent", "Hi there. How can I help with the spring menu?", False),
        ("caller", "I'd like to book a table.", False),
        ("agent", "Sure. For how many people?", False),
        ("caller", "Four people, thanks.", False),
        ("agent", "Great, see you then. Goodbye!", False),
    ]
    starts = [t["start_ms"] for t in r.transcripts]
    assert starts == sorted(starts) and all(t["end_ms"] >= t["start_ms"] for t in r.transcripts)
    # The caller's turns sit where the caller spoke on the audio timeline (1.0 s and 3.8 s into the call).
    assert r.transcripts[1]["start_ms"] == pytest.approx(1000, abs=150)
    assert r.transcripts[3]["start_ms"] == pytest.approx(3800, abs=150)

    # The LLM saw the system prompt, the starter and the caller's words, and the tools.
    first = f.openai.chat_requests()[0].json
    assert first["messages"][0]["role"] == "system"
    assert "You book tables for the spring menu." in first["messages"][0]["content"]
    assert first["messages"][1:] == [
        {"role": "assistant", "content": "Hi there. How can I help with the spring menu?"},
        {"role": "user", "content": "I'd like to book a table."},
    ]
    assert [t["function"]["name"] for t in first["tools"]] == ["end_call"]
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    assert chat_messages(f, 1)[-2:] == [
        {"role": "assistant", "content": "Sure. For how many people?"},
        {"role": "user", "content": "Four people, thanks."},
    ]

    # Every sentence was followed by a mark; all were played and echoed before the hang-up.
    marks = [m["mark"]["name"] for _, m in r.line.sent("mark")]
    assert len(marks) == 2 + 2 + 2 and set(marks) <= set(r.line.marks_echoed)
    assert r.line.clears == []

    usage = r.usage
    spoken = [
        "Hi there.",
        "How can I help with the spring menu?",
        "Sure.",
        "For how many people?",
        "Great, see you then.",
        "Goodbye!",
    ]
    assert usage["tts"] == [
        {
            "provider": "deepgram",
            "model": "aura-2-thalia-en",
            "characters": sum(map(len, spoken)),
            "audio_seconds": pytest.approx(sum(map(len, spoken)) * 0.01, abs=0.05),
        }
    ]
    reported = [req.extra for req in f.openai.chat_requests()]
    assert len(reported) == 2
    llm = usage["llm"]
    assert len(llm) == 1 and llm[0]["provider"] == "openai" and llm[0]["model"] == "gpt-4o-mini"
    assert "estimated" not in llm[0] or llm[0]["estimated"] is False
    assert llm[0]["prompt_tokens"] > 0 and llm[0]["completion_tokens"] > 0
    session_dg = await f.deepgram.wait_for_session()
    assert usage["stt"] == [
        {
            "provider": "deepgram",
            "model": "nova-3",
            "seconds": pytest.approx(session_dg.audio_seconds, abs=0.05),
        }
    ]
    assert usage["telephony"]["provider"] == "twilio" and usage["telephony"]["country"] == "GB"
    assert usage["telephony"]["seconds"] == pytest.approx(r.line.received[-1][0] - r.line.t0, abs=1.0)
    assert session_dg.controls[-1] == "CloseStream"

    latency = r.metadata["latency"]
    answers = [t for t in latency["turns"] if t["trigger"] == "speech_final"]
    assert len(answers) == 2
    for t in answers:
        assert t["response_ms"] < 500 and t["llm_first_token_ms"] < 500 and t["tts_first_byte_ms"] < 500
        assert t["first_audio_ms"] >= t["response_ms"]
    assert latency["summary"]["response_ms"]["count"] == 2


async def test_first_audio_leaves_before_the_llm_finishes() -> None:
    long_reply = "Sure thing. " + " ".join(["This part of the answer keeps streaming for a while."] * 4)
    audio = silence(0.5) + speech(0.6) + silence(5.0)
    async with fakes(script=["Tell me about the menu."], replies=[long_reply]) as f:
        f.openai.inter_token_delay = 0.05
        r = await run_call(f, audio, agent_row=agent(starter=None), stop_after=4.0)
    # The first request is the opening turn (no starter line); the second answers the caller.
    answer = r.metadata["latency"]["turns"][1]
    stream_seconds = len(long_reply.split()) * 0.05
    assert answer["response_ms"] < stream_seconds * 1000 / 3
    assert r.conversation["end_reason"] == "media_stopped"


async def test_barge_in_clears_within_a_frame_and_keeps_only_what_was_heard() -> None:
    starter = "Hi there. " + "This second sentence is long enough that the caller will talk over it for sure."
    # The caller starts talking at 1.0 s, while the second sentence plays (the first ends at ~0.1 s + 0.54 s).
    audio = silence(1.0) + speech(1.5) + silence(4.0)
    async with fakes(
        script=["Sorry, can I book for tonight?"], replies=["Of course. What time?"], seconds_per_char=0.06
    ) as f:
        r = await run_call(f, audio, agent_row=agent(starter, interrupt_min_words=3), stop_after=5.0)

    assert len(r.line.clears) == 1
    # The interim that reached three words left the fake at t; `clear` reached the carrier within a frame.
    interims = [
        (t, m)
        for t, m in f.stt_wire.sent
        if m.get("type") == "Results" and len(m["channel"]["alternatives"][0]["transcript"].split()) >= 3
    ]
    assert interims
    assert r.line.clears[0] - interims[0][0] < 0.020
    assert r.conversation["barge_ins"] == 1 and r.conversation["barge_in_ms"][0] < 20
    # History: only the sentence whose mark came back.
    assert chat_messages(f, 0)[1:] == [
        {"role": "assistant", "content": "Hi there."},
        {"role": "user", "content": "Sorry, can I book for tonight?"},
    ]
    assert r.transcripts[0] == {
        "role": "agent",
        "text": "Hi there.",
        "start_ms": r.transcripts[0]["start_ms"],
        "end_ms": r.transcripts[0]["end_ms"],
        "interrupted": True,
    }
    assert r.transcripts[0]["end_ms"] == pytest.approx(r.transcripts[1]["start_ms"] + 900, abs=250)
    # Playback stopped at the clear: far less than the whole starter was played.
    assert r.line.played_frames * 0.02 < len(starter) * 0.06 / 2 + len("Of course. What time?") * 0.06 + 0.5


async def test_backchannel_does_not_interrupt() -> None:
    starter = "Hi there. " + "I am calling about your reservation for the spring menu tonight."
    audio = silence(1.2) + speech(0.35) + silence(6.0)
    async with fakes(script=["Yeah."], seconds_per_char=0.06) as f:
        r = await run_call(f, audio, agent_row=agent(starter, interrupt_min_words=2), stop_after=6.0)
    assert r.line.clears == []
    assert r.conversation["backchannels"] == 1 and r.conversation["barge_ins"] == 0
    assert f.openai.chat_requests() == []  # nothing to answer
    agent_turns = [t for t in r.transcripts if t["role"] == "agent"]
    assert agent_turns[0]["text"] == starter and agent_turns[0]["interrupted"] is False
    assert {"role": "caller", "text": "Yeah."} in [
        {"role": t["role"], "text": t["text"]} for t in r.transcripts
    ]
    # The whole starter played.
    assert r.line.played_frames * 0.02 == pytest.approx(len(starter) * 0.06, abs=0.1)


async def test_dtmf_reaches_the_llm_as_text() -> None:
    async with fakes(replies=["Thanks, you pressed one two."]) as f:
        r = await run_call(
            f, silence(5.0), agent_row=agent(), dtmf=[(1.0, "1"), (1.2, "2"), (1.3, "#")], stop_after=3.0
        )
    assert chat_messages(f, 0)[-1] == {"role": "user", "content": "[keypad] 1 2 #"}
    assert "Thanks, you pressed one two." in r.texts("agent")


async def test_silence_reprompts_then_hangs_up_politely() -> None:
    async with fakes() as f:
        r = await run_call(
            f, silence(10.0), agent_row=agent(silence_reprompt_seconds=1.0, silence_hangup_seconds=2.5)
        )
    assert r.media.end_reason == "silence_timeout"
    assert r.texts("agent") == ["Hi there.", "Are you still there?", "Thanks for your time. Goodbye!"]
    assert r.conversation["reprompts"] == 1
    goodbye = r.transcripts[-1]
    assert goodbye["start_ms"] == pytest.approx(2500 + 90, abs=250)


async def test_max_call_seconds_ends_the_call() -> None:
    async with fakes() as f:
        r = await run_call(
            f,
            silence(6.0),
            agent_row=agent(),
            config_override=AgentConfig(
                max_call_seconds=2, silence_reprompt_seconds=60, silence_hangup_seconds=120
            ),
        )
    assert r.media.end_reason == "max_duration"
    assert r.texts("agent")[-1] == "Thanks for your time. Goodbye!"
    assert r.usage["telephony"]["seconds"] == pytest.approx(2.4, abs=0.5)


async def test_transfer_call_uses_a_configured_target() -> None:
    targets = [TransferTarget(name="Sales", phone="+15557654321", description="sales team")]
    replies = [ToolCalls([ToolCall("transfer_call", {"target": "sales"})])]
    audio = silence(0.5) + speech(0.6) + silence(5.0)
    async with fakes(script=["Can I talk to sales?"], replies=replies) as f:
        r = await run_call(f, audio, agent_row=agent(transfer_targets=targets), stop_after=8.0)
    assert r.services.transfers == ["+15557654321"]
    assert r.texts("agent")[-1] == "Please hold while I transfer your call."
    tools = f.openai.chat_requests()[0].json["tools"]
    assert tools[1]["function"]["parameters"]["properties"]["target"]["enum"] == ["Sales"]
    # The carrier did not stop the stream (this line ignores transfers): the session ends without a hang-up.
    assert r.media.end_reason == "transferred" and not r.media.hung_up
    assert r.conversation["transferred_to"] == "Sales"


async def test_unknown_transfer_target_goes_back_to_the_llm() -> None:
    targets = [TransferTarget(name="Sales", phone="+15557654321")]
    replies = [
        ToolCalls([ToolCall("transfer_call", {"target": "+19999999999"})]),
        "I can only transfer to sales.",
    ]
    audio = silence(0.5) + speech(0.6) + silence(5.0)
    async with fakes(script=["Transfer me to my cousin."], replies=replies) as f:
        r = await run_call(f, audio, agent_row=agent(transfer_targets=targets), stop_after=3.5)
    assert r.services.transfers == []
    second = chat_messages(f, 1)
    assert second[-2]["tool_calls"][0]["function"]["name"] == "transfer_call"
    assert second[-1]["role"] == "tool" and "Valid targets: Sales" in second[-1]["content"]
    assert "I can only transfer to sales." in r.texts("agent")


# --- failures ----------------------------------------------------------------------------------------------


async def test_stt_drop_reconnects_once_and_the_call_goes_on() -> None:
    audio = silence(1.5) + speech(0.6) + silence(5.0)
    async with fakes(script=["Are you there?"], replies=["Yes, I am here."], drop_after_audio_s=1.0) as f:
        r = await run_call(f, audio, agent_row=agent(), stop_after=4.0)
    assert r.conversation["stt_reconnects"] == 1
    assert len(f.deepgram.sessions) == 2
    assert "Yes, I am here." in r.texts("agent")
    assert r.conversation["end_reason"] == "media_stopped"
    # Both streams' audio is metered.
    assert r.usage["stt"][0]["seconds"] == pytest.approx(
        sum(s.audio_seconds for s in f.deepgram.sessions), abs=0.05
    )


async def test_stt_dropping_twice_apologises_and_ends() -> None:
    async with fakes(drop_after_audio_s=0.6, drop_once=False) as f:
        r = await run_call(f, silence(6.0), agent_row=agent())
    assert r.media.end_reason == "stt_failed" and r.media.hung_up
    assert r.texts("agent")[-1].startswith("I'm sorry, I can't hear you properly")
    assert r.conversation["stt_reconnects"] == 1


async def test_stt_refusing_the_stream_ends_the_call() -> None:
    async with fakes(api_key="another-key") as f:
        r = await run_call(f, silence(4.0), agent_row=agent())
    assert r.media.end_reason == "stt_failed"
    assert len(f.deepgram.sessions) == 0  # rejected at the handshake, twice
    # The starter was cut short by the apology (Twilio-style clear), which then played out.
    assert (
        r.texts("agent")[-1]
        == "I'm sorry, I can't hear you properly right now. Please call back later. Goodbye."
    )


async def test_llm_error_speaks_the_fallback_and_recovers() -> None:
    audio = silence(0.5) + speech(0.6) + silence(2.5) + speech(0.6) + silence(4.0)
    async with fakes(script=["Hello?", "Hello again?"], replies=[Fault.http(500), "Now I can help."]) as f:
        r = await run_call(f, audio, agent_row=agent(), stop_after=6.5)
    fallback = "Sorry, I'm having trouble right now. Could you say that again?"
    assert r.texts("agent") == ["Hi there.", fallback, "Now I can help."]
    assert r.conversation["llm_failures"] == 1 and r.conversation["end_reason"] == "media_stopped"


async def test_repeated_llm_failures_end_the_call() -> None:
    audio = silence(0.5) + speech(0.6) + silence(2.5) + speech(0.6) + silence(5.0)
    async with fakes(script=["Hello?", "Hello again?"], replies=[Fault.hang(), Fault.http(503)]) as f:
        r = await run_call(f, audio, agent_row=agent())
    assert r.media.end_reason == "llm_failed" and r.media.hung_up
    assert r.texts("agent")[-1] == "Thanks for your time. Goodbye!"
    assert r.conversation["llm_failures"] == 2
    # The hung request was abandoned: its usage is an estimate, marked so.
    assert [u.get("estimated", False) for u in r.usage["llm"]] == [True]
    assert f.openai.chat_requests()[0].disconnected


async def test_tts_errors_fall_back_then_end() -> None:
    async with fakes(tts_faults=[Fault.http(500)]) as f:
        r = await run_call(f, silence(3.0), agent_row=agent(), stop_after=2.0)
    assert r.texts("agent") == ["Sorry, I'm having trouble right now. Could you say that again?"]
    assert r.conversation["tts_failures"] == 1

    async with fakes(tts_faults=[Fault.http(500), Fault.hang()]) as f:
        r = await run_call(f, silence(6.0), agent_row=agent())
    assert r.media.end_reason == "tts_failed" and r.media.hung_up
    assert r.conversation["tts_failures"] == 2 and r.texts("agent") == []
    assert "tts" not in r.usage  # neither failed request produced audio: nothing to bill


async def test_caller_hangup_mid_sentence_records_an_interrupted_turn() -> None:
    starter = "Hi there. " + "This is a long sentence the caller will not wait to hear until the very end."
    async with fakes(seconds_per_char=0.06) as f:
        r = await run_call(f, silence(5.0), agent_row=agent(starter), stop_after=1.5)
    assert r.media.end_reason == "media_stopped" and not r.media.hung_up
    assert r.transcripts == [
        {
            "role": "agent",
            "text": "Hi there.",
            "start_ms": r.transcripts[0]["start_ms"],
            "end_ms": r.transcripts[0]["end_ms"],
            "interrupted": True,
        }
    ]
    assert r.usage["telephony"]["seconds"] == pytest.approx(1.5, abs=0.3)


# --- live control and observers (the seams of control.py) ---------------------------------------------------


class Watcher(CallObserver):
    """Everything an observer is told about a call."""

    def __init__(self) -> None:
        self.caller_bytes = 0
        self.caller_texts: list[tuple[str, bool]] = []
        self.agent_bytes = 0
        self.agent_texts: list[str] = []
        self.clears = 0
        self.entries: list[TranscriptTurn] = []

    def caller_audio(self, payload: bytes) -> None:
        self.caller_bytes += len(payload)

    def caller_text(self, text: str, *, final: bool) -> None:
        self.caller_texts.append((text, final))

    def agent_audio(self, payload: bytes, at: float) -> None:
        self.agent_bytes += len(payload)

    def agent_cleared(self, at: float) -> None:
        self.clears += 1

    def agent_text(self, text: str) -> None:
        self.agent_texts.append(text)

    def transcript(self, entry: TranscriptTurn) -> None:
        self.entries.append(entry)


class Broken(CallObserver):
    """An observer with a bug: it must cost the call nothing."""

    def __init__(self) -> None:
        self.calls = 0

    def caller_audio(self, payload: bytes) -> None:
        self.calls += 1
        raise RuntimeError("a listener's bug")


async def at(line: PhoneLine, seconds: float) -> None:
    """Until `seconds` into the call."""
    await asyncio.sleep(max(0.0, line.t0 + seconds - time.monotonic()))


async def test_say_command_interrupts_goes_into_the_history_and_end_command_hangs_up() -> None:
    starter = (
        "Hi there. " + "This second sentence is long enough that the operator will talk over it for sure."
    )
    operator_line = "This is the operator speaking."
    audio = silence(3.6) + speech(0.6) + silence(8.0)
    watcher, broken = Watcher(), Broken()
    accepted: list[bool] = []

    async def operator(session: CallSession, line: PhoneLine) -> None:
        session.observe(watcher)
        session.observe(broken)
        await at(line, 1.0)  # the starter's second sentence is playing
        accepted.append(session.command(Say(operator_line, interrupt=True)))
        await at(line, 7.0)
        accepted.append(session.command(EndCall()))

    async with fakes(script=["What was that?"], replies=["Sorry about that."], seconds_per_char=0.06) as f:
        r = await run_call(f, audio, agent_row=agent(starter), stop_after=12.0, during=operator)

    assert accepted == [True, True]
    assert r.media.end_reason == "ended_by_api" and r.media.hung_up
    assert r.conversation["end_reason"] == "ended_by_api"
    # The operator's line cut the agent like a barge-in does (one clear), but it is not the caller's.
    assert len(r.line.clears) == 1 and r.conversation["barge_ins"] == 0
    assert [(t["role"], t["text"], t["interrupted"]) for t in r.transcripts] == [
        ("agent", "Hi there.", True),
        ("agent", operator_line, False),
        ("caller", "What was that?", False),
        ("agent", "Sorry about that.", False),
    ]
    # The LLM knows what the caller heard: the first sentence of the starter, then the operator's line.
    assert chat_messages(f, 0)[1:] == [
        {"role": "assistant", "content": "Hi there."},
        {"role": "assistant", "content": operator_line},
        {"role": "user", "content": "What was that?"},
    ]
    assert session_ended(r.session)

    # The observer saw the same call: every caller frame, the caller's words, each sentence as it began to
    # play (the starter's second one began before the operator cut it), the clear, every transcript entry.
    assert watcher.caller_bytes == r.media.inbound_bytes > 0
    assert ("What was that?", True) in watcher.caller_texts
    assert watcher.agent_texts == [
        "Hi there.",
        "This second sentence is long enough that the operator will talk over it for sure.",
        operator_line,
        "Sorry about that.",
    ]
    assert watcher.clears == 1
    stored = sorted(watcher.entries, key=lambda t: t.start_ms)
    assert msgspec.to_builtins(stored) == r.transcripts
    tts_seconds = sum(u["audio_seconds"] for u in r.usage["tts"])
    assert watcher.agent_bytes == pytest.approx(tts_seconds * 8000, abs=8)  # μ-law 8 kHz: 8000 bytes a second
    # The broken observer was dropped after its first error; the call went on regardless.
    assert broken.calls == 1


def session_ended(session: CallSession) -> bool:
    """A finished call accepts no command (the API answers 409 then)."""
    return not session.accepting_commands and session.command(EndCall()) is False


async def test_say_without_interrupt_waits_for_the_agent_then_transfer_command() -> None:
    starter = "Hi there. I am calling about your booking for tonight."
    async with fakes(seconds_per_char=0.04) as f:

        async def operator(session: CallSession, line: PhoneLine) -> None:
            await at(line, 0.5)  # the starter is playing
            assert session.command(Say("One more thing.", interrupt=False))
            await at(line, 5.0)
            assert session.command(Transfer("+15550009999"))

        r = await run_call(f, silence(10.0), agent_row=agent(starter), stop_after=9.0, during=operator)

    assert r.line.clears == []
    assert [(t["role"], t["text"], t["interrupted"]) for t in r.transcripts] == [
        ("agent", starter, False),
        ("agent", "One more thing.", False),
        ("agent", TRANSFER_TEXT, False),
    ]
    assert r.transcripts[1]["start_ms"] >= r.transcripts[0]["end_ms"]  # after the starter, not over it
    assert r.services.transfers == ["+15550009999"]
    # This line does not stop the stream on a transfer: the session ends without hanging up the caller.
    assert r.media.end_reason == "transferred" and not r.media.hung_up
    assert r.conversation["transferred_to"] == "+15550009999"
    assert session_ended(r.session)
