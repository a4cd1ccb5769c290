"""`transfer_call` end to end: POST /v1/calls → the simulator (Twilio or Vonage wire format) → the conversation engine
(fake Deepgram, OpenAI and TTS servers) → the provider's transfer request → the simulator moves the call the way the
carrier does (Twilio: `stop` on the media socket; Vonage: close 1000) and completes it once the target hangs up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from tests.fakes.openai import ToolCall, ToolCalls
from tests.support.conversation import Fakes, call, caller_wav, place, said, settled
from voice_service.conversation.engine import TRANSFER_FAILED_TEXT, TRANSFER_TEXT
from voice_service.simulator import Scenario

SALES = "+15557654321"
TARGETS = {"transfer_targets": [{"name": "Sales", "phone": SALES, "description": "New orders"}]}


async def from_number(api: httpx.AsyncClient, tenant: Any, request: str) -> str:
    """The agent's own number (the E.164 of the request's from_number_id)."""
    number_id = msgspec.json.decode(request)["from_number_id"]
    r = await api.get(f"/v1/numbers/{number_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["phone_number"])


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_transfer_to_a_configured_target(
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
        script=["Can I talk to someone in sales?"],
        replies=[ToolCalls([ToolCall("transfer_call", {"target": "Sales"})])],
    )
    to, request = await place(api, tenant, provider, config=TARGETS)
    own = await from_number(api, tenant, request)
    wav = caller_wav(tmp_path, [("silence", 1.0), ("speech", 0.8), ("silence", 6.0)])
    call_id, sim_call = await call(
        api, tenant, sim, to, request, Scenario(wav=wav, hangup_after=None, transferred_seconds=1.5)
    )

    # The carrier moved the call to the target, showing the agent's number; the service never hung up.
    assert (sim_call.transferred_to, sim_call.transfer_caller_id) == (SALES, own)
    assert not sim_call.hangup_requested.is_set()
    media = sim_call.media
    assert media.close_code == 1000 and media.other_messages == [] and media.clears == 0
    # The call went on with the target, and completed (signed final status) when the target hung up.
    assert sim_call.final_status == "completed" and set(sim_call.webhook_statuses) == {204}
    assert sim_call.duration is not None and sim_call.ended_at is not None
    assert (
        sim_call.ended_at - sim_call.answered_at >= 1.5 + 1.8
    )  # the dialled leg came after the conversation

    row = await settled(admin_conn, call_id)
    meta = row["metadata"]
    assert row["status"] == "ended" and row["duration_seconds"] == sim_call.duration
    # The media leg ended from the carrier's side (Twilio stop / Vonage close), not by a hang-up of ours.
    assert meta["media_end_reason"] == ("media_stopped" if provider == "twilio" else "media_closed")
    assert meta.get("end_reason") in (None, "transferred")
    conversation = meta["conversation"]
    assert conversation["end_reason"] == "transferred" and conversation["transferred_to"] == "Sales"
    assert "transfer_failed" not in conversation
    assert [(t["role"], t["text"], t["interrupted"]) for t in row["transcripts"]] == [
        ("agent", "Hi there.", False),
        ("caller", "Can I talk to someone in sales?", False),
        ("agent", TRANSFER_TEXT, False),
    ]
    # The caller heard the transfer line before the leg moved: its audio arrived and its mark was echoed.
    spoken = len("Hi there.") + len(TRANSFER_TEXT)
    assert media.received_seconds == pytest.approx(spoken * 0.01, abs=0.3)
    assert len(media.marks_received) == 2 and media.marks_echoed == media.marks_received
    usage = meta["usage"]
    assert usage["tts"][0]["characters"] == spoken
    assert usage["stt"][0]["seconds"] == pytest.approx(fakes.deepgram.sessions[0].audio_seconds, abs=0.05)
    [llm] = usage["llm"]
    assert llm["prompt_tokens"] > 0 and llm["completion_tokens"] > 0
    assert usage["telephony"]["provider"] == provider and usage["telephony"]["seconds"] > 0
    # The model was offered the tool with the configured target names only.
    [request_json] = [r.json for r in fakes.openai.chat_requests()]
    [transfer_tool] = [t for t in request_json["tools"] if t["function"]["name"] == "transfer_call"]
    assert transfer_tool["function"]["parameters"]["properties"]["target"]["enum"] == ["Sales"]


async def test_unknown_transfer_target_is_a_tool_error_and_the_call_goes_on(
    stack: Any,
    engine: None,
    fakes: Fakes,
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    sim, _ = stack
    fakes.reset(
        script=["Put me through to billing.", "No thanks, bye."],
        replies=[
            ToolCalls([ToolCall("transfer_call", {"target": "Billing"})]),
            "I can only transfer you to sales. Anything else?",
            ToolCalls([ToolCall("end_call", {})], text="Goodbye!"),
        ],
    )
    to, request = await place(api, tenant, "twilio", config=TARGETS)
    wav = caller_wav(
        tmp_path, [("silence", 1.0), ("speech", 0.8), ("silence", 2.5), ("speech", 0.8), ("silence", 6.0)]
    )
    call_id, sim_call = await call(api, tenant, sim, to, request, Scenario(wav=wav, hangup_after=None))

    assert sim_call.transferred_to is None and sim_call.hangup_requested.is_set()
    # The model got the error as the tool's result, in the same turn, and answered.
    requests = fakes.openai.chat_requests()
    assert len(requests) == 3
    tool_round = requests[1].json["messages"]
    assert tool_round[-2]["tool_calls"][0]["function"]["name"] == "transfer_call"
    assert tool_round[-1]["role"] == "tool"
    assert tool_round[-1]["content"] == "Unknown transfer target. Valid targets: Sales."
    row = await settled(admin_conn, call_id)
    assert row["metadata"]["end_reason"] == "agent_ended"
    assert "transferred_to" not in row["metadata"]["conversation"]
    assert said(row) == ["Hi there.", "I can only transfer you to sales. Anything else?", "Goodbye!"]
    assert said(row, "caller") == ["Put me through to billing.", "No thanks, bye."]


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_failed_transfer_says_so_and_the_call_goes_on(
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
        script=["Sales please.", "Okay, never mind. Bye."],
        replies=[
            ToolCalls([ToolCall("transfer_call", {"target": "Sales"})]),
            ToolCalls([ToolCall("end_call", {})], text="Sorry about that. Goodbye!"),
        ],
    )
    to, request = await place(api, tenant, provider, config=TARGETS)
    wav = caller_wav(
        tmp_path, [("silence", 1.0), ("speech", 0.6), ("silence", 3.0), ("speech", 0.8), ("silence", 6.0)]
    )
    call_id, sim_call = await call(
        api, tenant, sim, to, request, Scenario(wav=wav, hangup_after=None, transfer_status=500)
    )

    assert sim_call.transferred_to is None
    row = await settled(admin_conn, call_id)
    meta = row["metadata"]
    assert row["status"] == "ended" and meta["end_reason"] == "agent_ended"
    assert meta["conversation"]["transfer_failed"] == "unavailable"
    assert "transferred_to" not in meta["conversation"]
    assert [(t["role"], t["text"]) for t in row["transcripts"]] == [
        ("agent", "Hi there."),
        ("caller", "Sales please."),
        ("agent", TRANSFER_TEXT),
        ("agent", TRANSFER_FAILED_TEXT),
        ("caller", "Okay, never mind. Bye."),
        ("agent", "Sorry about that. Goodbye!"),
    ]
    # The caller heard the failure line; the model saw it in the history on the next turn.
    spoken = (
        sum(len(t) for t in said(row)) - 1
    )  # the space between the two goodbye sentences is not synthesized
    assert sim_call.media.received_seconds == pytest.approx(spoken * 0.01, abs=0.3)
    last = fakes.openai.chat_requests()[-1].json["messages"]
    assert {"role": "assistant", "content": TRANSFER_FAILED_TEXT} in last
