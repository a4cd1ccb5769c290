"""An inbound call driven by the conversation engine: the simulator dials one of the service's numbers (Twilio voice
webhook / Vonage answer webhook), the number's default agent greets the caller with its inbound starter prompt, the
caller speaks, the agent answers, and `end_call` hangs up through the provider.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.fakes.openai import ToolCall, ToolCalls
from tests.support.conversation import Fakes, caller_wav, said, settled
from voice_service.simulator import Scenario

CALLER = "+14155550123"
INBOUND_STARTER = "Thanks for calling Bistro Uno, this is Ava. How can I help?"
OUTBOUND_STARTER = "Hi, this is Ava calling from Bistro Uno."


async def inbound_number(api: httpx.AsyncClient, tenant: Any, provider: str) -> tuple[int, str]:
    """An agent with both starter prompts, and a number of `provider` whose default agent it is."""
    r = await api.post(
        "/v1/agents",
        json={
            "name": "Ava",
            "agent_instructions": "You take table bookings for Bistro Uno.",
            "inbound_starter_prompt": INBOUND_STARTER,
            "outbound_starter_prompt": OUTBOUND_STARTER,
        },
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    agent_id = r.json()["id"]
    phone = f"+4420796{uuid.uuid4().int % 100000:05d}"
    r = await api.post(
        "/v1/numbers",
        json={"phone_number": phone, "provider": provider, "default_agent_id": agent_id},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    return agent_id, phone


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_inbound_conversation(
    stack: Any,
    engine: None,
    fakes: Fakes,
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    provider: str,
) -> None:
    sim, svc = stack
    fakes.reset(
        script=["I'd like a table for two tonight.", "Great, thanks. Bye."],
        replies=[
            "Sure, seven o'clock works. Anything else?",
            ToolCalls([ToolCall("end_call", {"reason": "booked"})], text="You're welcome. Goodbye!"),
        ],
    )
    agent_id, phone = await inbound_number(api, tenant, provider)
    wav = caller_wav(
        tmp_path, [("silence", 1.2), ("speech", 0.8), ("silence", 2.2), ("speech", 0.8), ("silence", 6.0)]
    )
    sim_call = await sim.inbound_call(
        provider,
        to=phone,
        from_=CALLER,
        account_sid=svc.settings.twilio_account_sid,
        scenario=Scenario(wav=wav, hangup_after=None),
        timeout=40,
    )

    assert sim_call.answer_status == 200 and sim_call.media.connected
    # end_call hung up through the provider's REST API; the caller was still listening.
    assert sim_call.hangup_requested.is_set() and sim_call.media.ended_by in ("service", "hangup")
    assert sim_call.media.other_messages == [] and sim_call.media.clears == 0
    assert sim_call.final_status == "completed"
    call_id = sim_call.custom_parameters["call_id"]
    row = await settled(admin_conn, call_id)
    meta = row["metadata"]
    assert (row["direction"], row["status"], row["agent_id"], row["provider"]) == (
        "inbound",
        "ended",
        agent_id,
        provider,
    )
    assert (row["from_e164"], row["to_e164"], row["provider_call_id"]) == (CALLER, phone, sim_call.id)
    assert meta["end_reason"] == "agent_ended" and meta["conversation"]["end_reason"] == "agent_ended"
    assert [(t["role"], t["text"], t["interrupted"]) for t in row["transcripts"]] == [
        ("agent", INBOUND_STARTER, False),
        ("caller", "I'd like a table for two tonight.", False),
        ("agent", "Sure, seven o'clock works. Anything else?", False),
        ("caller", "Great, thanks. Bye.", False),
        ("agent", "You're welcome. Goodbye!", False),
    ]
    assert row["transcripts"][1]["start_ms"] == pytest.approx(1200, abs=250)
    # The caller heard all of it.
    spoken = sum(len(t) for t in said(row)) - 3  # spaces between sentences are not synthesized
    assert sim_call.media.received_seconds == pytest.approx(spoken * 0.01, abs=0.3)
    assert (
        len(sim_call.media.marks_received) == 6
        and sim_call.media.marks_echoed == sim_call.media.marks_received
    )
    # The LLM knew the caller phoned in, and saw the inbound greeting as its own first line.
    [first, _] = [r.json["messages"] for r in fakes.openai.chat_requests()]
    assert "The caller phoned you." in first[0]["content"]
    assert "You take table bookings for Bistro Uno." in first[0]["content"]
    assert first[1:] == [
        {"role": "assistant", "content": INBOUND_STARTER},
        {"role": "user", "content": "I'd like a table for two tonight."},
    ]
    usage = meta["usage"]
    assert usage["telephony"] == {
        "provider": provider,
        "seconds": pytest.approx(sim_call.duration, abs=1.0),
        "direction": "inbound",
        "country": "US",
    }
    assert usage["tts"][0]["characters"] == spoken
    assert usage["stt"][0]["seconds"] == pytest.approx(fakes.deepgram.sessions[0].audio_seconds, abs=0.05)
    assert [u["estimated"] for u in usage["llm"]] == [False]
