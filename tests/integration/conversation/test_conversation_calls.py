"""Whole AI conversations through the real service: POST /v1/calls → the simulator (Twilio or Vonage wire format)
answers and streams the caller over the real media WebSocket → the conversation engine (fake Deepgram, OpenAI and
TTS servers speaking the real protocols) → the records in voice_call_logs.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest

from tests.fakes.openai import ToolCall, ToolCalls, prompt_tokens, tokens
from tests.fakes.server import Fault
from tests.support.conversation import Fakes, call, caller_wav, place, said, settled
from voice_service.simulator import Scenario

FALLBACK = "Sorry, I'm having trouble right now. Could you say that again?"
GOODBYE = "Thanks for your time. Goodbye!"


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_whole_conversation(
    stack: Any,
    engine: None,
    fakes: Fakes,
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    provider: str,
) -> None:
    sim, _ = stack
    fakes.reset(
        script=["I'd like to book a table.", "Four people. Bye."],
        replies=[
            "Sure. For how many people?",
            ToolCalls([ToolCall("end_call", {})], text="Perfect, see you then. Goodbye!"),
        ],
    )
    to, request = await place(
        api,
        tenant,
        provider,
        starter="Hi {{first_name}}, this is Ava from {{company}}.",
        variables={"company": "Bistro Uno"},
        lead={"first_name": "Grace"},
    )
    wav = caller_wav(
        tmp_path, [("silence", 1.0), ("speech", 0.8), ("silence", 2.2), ("speech", 0.8), ("silence", 6.0)]
    )
    call_id, sim_call = await call(api, tenant, sim, to, request, Scenario(wav=wav, hangup_after=None))

    row = await settled(admin_conn, call_id)
    meta = row["metadata"]
    assert row["status"] == "ended" and meta["end_reason"] == "agent_ended"
    assert [(t["role"], t["text"], t["interrupted"]) for t in row["transcripts"]] == [
        ("agent", "Hi Grace, this is Ava from Bistro Uno.", False),
        ("caller", "I'd like to book a table.", False),
        ("agent", "Sure. For how many people?", False),
        ("caller", "Four people. Bye.", False),
        ("agent", "Perfect, see you then. Goodbye!", False),
    ]
    assert row["transcripts"][1]["start_ms"] == pytest.approx(1000, abs=200)
    # The carrier heard it: audio came back, every sentence's mark was played and echoed, nothing cleared.
    media = sim_call.media
    assert media.other_messages == [] and media.clears == 0
    assert len(media.marks_received) == 5 and media.marks_echoed == media.marks_received
    spoken = sum(len(t) for t in said(row)) - 2  # the spaces between sentences are not synthesized
    assert media.received_seconds == pytest.approx(spoken * 0.01, abs=0.3)
    # Usage, as the post-call pipeline prices it.
    usage = meta["usage"]
    assert usage["telephony"] == {
        "provider": provider,
        "seconds": pytest.approx(sim_call.duration, abs=1.0),
        "direction": "outbound",
        "country": "GB",
    }
    assert usage["stt"] == [
        {
            "provider": "deepgram",
            "model": "nova-3",
            "seconds": pytest.approx(fakes.deepgram.sessions[0].audio_seconds, abs=0.05),
        }
    ]
    assert usage["tts"][0]["characters"] == spoken and usage["tts"][0]["provider"] == "deepgram"
    requests = fakes.openai.chat_requests()
    assert len(requests) == 2
    # Reported by the provider (the fake counts like OpenAI's usage chunk), not estimated.
    assert usage["llm"] == [
        {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "estimated": False,
            "prompt_tokens": sum(prompt_tokens(r.json) for r in requests),
            "completion_tokens": len(tokens("Sure. For how many people?"))
            + len(tokens("Perfect, see you then. Goodbye!"))
            + 2,
            "cached_prompt_tokens": 0,  # short prompts: OpenAI caches from 1,024 tokens on
        }
    ]
    # The LLM got the system prompt with the call's facts, the starter and the caller's words.
    messages = requests[0].json["messages"]
    assert "You book tables." in messages[0]["content"] and "company: Bistro Uno" in messages[0]["content"]
    assert messages[1:] == [
        {"role": "assistant", "content": "Hi Grace, this is Ava from Bistro Uno."},
        {"role": "user", "content": "I'd like to book a table."},
    ]
    latency = meta["latency"]
    assert latency["summary"]["response_ms"]["count"] == 2 and latency["summary"]["response_ms"]["p90"] < 500
    assert meta["conversation"]["end_reason"] == "agent_ended"


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_barge_in_and_backchannel(
    stack: Any,
    engine: None,
    fakes: Fakes,
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    provider: str,
) -> None:
    sim, _ = stack
    starter = "Hi there. I am calling about the booking you made for the spring menu next week at our place."
    # A backchannel at 1.0 s (one word), then a real interruption at 2.5 s.
    fakes.reset(
        script=["Yeah.", "Sorry, I need to change the date."],
        replies=["No problem. Which date?"],
        seconds_per_char=0.06,
    )
    to, request = await place(api, tenant, provider, starter=starter, config={"interrupt_min_words": 2})
    wav = caller_wav(
        tmp_path, [("silence", 1.0), ("speech", 0.3), ("silence", 1.2), ("speech", 1.0), ("silence", 2.5)]
    )
    call_id, sim_call = await call(api, tenant, sim, to, request, Scenario(wav=wav, hangup_after=0.0))

    row = await settled(admin_conn, call_id)
    conversation = row["metadata"]["conversation"]
    assert conversation["backchannels"] == 1 and conversation["barge_ins"] == 1
    assert conversation["barge_in_ms"][0] < 20
    assert sim_call.media.clears == 1
    first = row["transcripts"][0]
    assert (first["role"], first["text"], first["interrupted"]) == ("agent", "Hi there.", True)
    assert said(row, "caller")[:2] == ["Yeah.", "Sorry, I need to change the date."]
    [request_json] = [r.json for r in fakes.openai.chat_requests()]
    assert request_json["messages"][1:] == [
        {"role": "assistant", "content": "Hi there."},
        {"role": "user", "content": "Sorry, I need to change the date."},
    ]


@pytest.mark.parametrize(
    ("provider", "failure"), [("twilio", "stt"), ("vonage", "stt"), ("twilio", "llm"), ("vonage", "tts")]
)
async def test_failures_end_the_call_cleanly(
    stack: Any,
    engine: None,
    fakes: Fakes,
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    provider: str,
    failure: str,
) -> None:
    sim, _ = stack
    if failure == "stt":
        fakes.reset(drop_after_audio_s=0.8, drop_once=False)
    elif failure == "llm":
        fakes.reset(script=["Hello?", "Hello?"], replies=[Fault.http(500), Fault.hang()])
    else:
        fakes.reset(tts_faults=[Fault.http(500), Fault.http(503)])
    to, request = await place(api, tenant, provider)
    wav = caller_wav(
        tmp_path, [("silence", 0.8), ("speech", 0.6), ("silence", 2.5), ("speech", 0.6), ("silence", 6.0)]
    )
    call_id, sim_call = await call(api, tenant, sim, to, request, Scenario(wav=wav, hangup_after=None))

    row = await settled(admin_conn, call_id)
    meta = row["metadata"]
    reason = f"{failure}_failed"
    assert row["status"] == "ended" and meta["end_reason"] == reason
    assert meta["conversation"]["end_reason"] == reason
    assert sim_call.media.ended_by in ("service", "hangup")
    assert meta["usage"]["telephony"]["seconds"] > 0 and "latency" in meta
    if failure == "stt":
        assert len(fakes.deepgram.sessions) == 2 and meta["conversation"]["stt_reconnects"] == 1
        assert said(row)[-1].startswith("I'm sorry, I can't hear you properly")
    elif failure == "llm":
        assert said(row) == ["Hi there.", FALLBACK, GOODBYE]
        assert meta["conversation"]["llm_failures"] == 2
        assert any(u.get("estimated") for u in meta["usage"]["llm"])  # the abandoned request, estimated
    else:
        assert said(row) == [] and meta["conversation"]["tts_failures"] == 2


async def test_keypad_input_reaches_the_llm(
    stack: Any,
    engine: None,
    fakes: Fakes,
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    sim, _ = stack
    fakes.reset(replies=[ToolCalls([ToolCall("end_call", {})], text="Thanks, noted. Goodbye!")])
    to, request = await place(api, tenant, "twilio")
    wav = caller_wav(tmp_path, [("silence", 4.0)])
    call_id, _ = await call(
        api,
        tenant,
        sim,
        to,
        request,
        Scenario(wav=wav, hangup_after=3.0, dtmf=((1.0, "4"), (1.2, "2"), (1.4, "#"))),
    )
    row = await settled(admin_conn, call_id)
    assert fakes.openai.chat_requests()[0].json["messages"][-1] == {
        "role": "user",
        "content": "[keypad] 4 2 #",
    }
    assert row["metadata"]["end_reason"] == "agent_ended"
    assert said(row, "caller") == ["[keypad] 4 2 #"]


def test_caller_wav_is_speech_where_asked(tmp_path: Path) -> None:
    path = caller_wav(tmp_path, [("silence", 0.5), ("speech", 0.5)])
    with wave.open(path) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
    rate = 16000
    assert np.sqrt(np.mean(samples[: rate // 2] ** 2)) == 0
    assert np.sqrt(np.mean(samples[rate // 2 :] ** 2)) > 1000
