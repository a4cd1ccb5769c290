"""The conversation engine's pure parts (sentence splitting, turn-taking, prompts, metering) and the call transfer
on the providers' wire formats (Twilio REST against a local server, Vonage REST through respx)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import msgspec
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from providers.stt.base import SpeechStarted, Transcript, UtteranceEnd
from providers.telephony.base import ProviderError
from providers.telephony.twilio import TwilioProvider
from providers.telephony.vonage import VonageProvider
from tests.fakes.openai import tokens
from tests.fakes.server import LocalServer, read_body, send_json
from voice_service.agents.schemas import AgentConfig, TransferTarget
from voice_service.calls.schemas import CallInfo
from voice_service.conversation import prompts, tools
from voice_service.conversation.metering import TurnLatency, latency_summary, percentile
from voice_service.conversation.sentences import SentenceSplitter, split_text
from voice_service.conversation.services import country_of, own_number, remote_number
from voice_service.conversation.turns import Backchannel, BargeIn, CallerTurns, EndOfTurn

# --- sentences -------------------------------------------------------------------------------------------------


def stream(text: str, splitter: SentenceSplitter | None = None) -> list[str]:
    """Feed `text` as an LLM streams it (words with their leading space) and collect what comes out."""
    splitter = splitter or SentenceSplitter()
    out: list[str] = []
    for piece in tokens(text):
        out += splitter.push(piece)
    rest = splitter.flush()
    return [*out, rest] if rest else out


def test_sentences_are_released_when_the_next_token_proves_they_ended() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Sure") == []
    assert splitter.push(".") == ["Sure."]  # the first sentence goes at its full stop: the caller is waiting
    assert splitter.push(" What") == []
    assert splitter.push(" time.") == [] and splitter.push(" ") == ["What time."]  # later ones wait for proof
    assert splitter.push(" Okay?") == [] and splitter.push(" ") == ["Okay?"]
    assert splitter.flush() is None


@pytest.mark.parametrize(
    ("pieces", "first"),
    [
        (["Yes", "!"], "Yes!"),
        (["Is", " that", " right", "?"], "Is that right?"),
        (["See", " you", " then", "."], "See you then."),
    ],
)
def test_an_unambiguous_first_stop_is_released_at_once(pieces: list[str], first: str) -> None:
    splitter = SentenceSplitter()
    out = [s for piece in pieces for s in splitter.push(piece)]
    assert out == [first]


@pytest.mark.parametrize(
    ("pieces", "first"),
    [
        (["It", " costs", " 3", ".", "50", " dollars", ".", " Okay"], "It costs 3.50 dollars."),
        (["Ask", " Dr", ".", " Smith", " today", ".", " Bye"], "Ask Dr. Smith today."),
        (["Call", " J", ".", " Smith", " now", ".", " Bye"], "Call J. Smith now."),
    ],
)
def test_an_ambiguous_first_stop_waits_for_the_next_token(pieces: list[str], first: str) -> None:
    splitter = SentenceSplitter()
    out = [s for piece in pieces for s in splitter.push(piece)]
    assert out[0] == first


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        (
            "Dr. Smith will see you at 3.30 tomorrow. Is that okay?",
            ["Dr. Smith will see you at 3.30 tomorrow.", "Is that okay?"],
        ),
        ("It costs $4.99, e.g. for one. Great!", ["It costs $4.99, e.g. for one.", "Great!"]),
        ("Wait... really?! Yes.", ["Wait...", "really?!", "Yes."]),
        ('He said "hello." Then he left.', ['He said "hello."', "Then he left."]),
        ("No. I don't think so.", ["No.", "I don't think so."]),
        ("Line one\nLine two", ["Line one", "Line two"]),
        ("Ask J. R. Tolkien. Fine.", ["Ask J. R. Tolkien.", "Fine."]),
    ],
)
def test_sentence_boundaries(text: str, sentences: list[str]) -> None:
    assert stream(text) == sentences


def test_a_long_first_sentence_is_cut_at_a_comma() -> None:
    text = "Well, thanks for calling about the reservation, I can certainly help you with that today"
    out = stream(text)
    assert out[0] == "Well, thanks for calling about the reservation,"
    assert " ".join(out) == text


def test_split_text_of_a_fixed_line() -> None:
    assert split_text("Hi there. How can I help with the spring menu?") == [
        "Hi there.",
        "How can I help with the spring menu?",
    ]
    assert split_text("One long line without any stop") == ["One long line without any stop"]


# --- turn-taking -----------------------------------------------------------------------------------------------


def final(text: str, *, speech_final: bool = False, start: float = 0.0, duration: float = 1.0) -> Transcript:
    return Transcript(text=text, is_final=True, speech_final=speech_final, start=start, duration=duration)


def interim(text: str) -> Transcript:
    return Transcript(text=text, is_final=False, speech_final=False, start=0.0, duration=0.5)


def test_end_of_turn_on_speech_final_concatenates_finals() -> None:
    turns = CallerTurns(interrupt_min_words=3)
    assert turns.on_event(SpeechStarted(timestamp=1.25), agent_busy=False) is None
    assert turns.on_event(interim("I would"), agent_busy=False) is None
    assert turns.on_event(final("I would like", start=1.0, duration=0.8), agent_busy=False) is None
    decision = turns.on_event(final("a table.", speech_final=True, start=1.8, duration=0.9), agent_busy=False)
    assert decision == EndOfTurn(text="I would like a table.", trigger="speech_final", start=1.25, end=2.7)
    assert turns.text == "" and not turns.speaking


def test_utterance_end_is_the_fallback() -> None:
    turns = CallerTurns(interrupt_min_words=3)
    turns.on_event(final("Hello there", start=0.0, duration=1.0), agent_busy=False)
    assert turns.on_event(UtteranceEnd(last_word_end=0.9), agent_busy=False) == EndOfTurn(
        text="Hello there", trigger="utterance_end", start=0.0, end=1.0
    )
    # Nothing said: UtteranceEnd alone does nothing.
    assert turns.on_event(UtteranceEnd(last_word_end=None), agent_busy=False) is None


def test_barge_in_needs_enough_words_while_the_agent_speaks() -> None:
    turns = CallerTurns(interrupt_min_words=3)
    assert turns.on_event(SpeechStarted(timestamp=0.0), agent_busy=True) is None
    assert turns.on_event(interim("wait"), agent_busy=True) is None
    assert turns.on_event(interim("wait a"), agent_busy=True) is None
    assert turns.on_event(interim("wait a second"), agent_busy=True) == BargeIn(words=3)
    assert turns.on_event(interim("wait a second please"), agent_busy=False) is None  # only once
    assert turns.on_event(final("Wait a second please.", speech_final=True), agent_busy=False) == EndOfTurn(
        text="Wait a second please.", trigger="speech_final", start=0.0, end=1.0
    )


def test_a_backchannel_while_the_agent_speaks_is_not_a_turn() -> None:
    turns = CallerTurns(interrupt_min_words=2)
    turns.on_event(SpeechStarted(timestamp=3.0), agent_busy=True)
    turns.on_event(interim("yeah"), agent_busy=True)
    assert turns.on_event(
        final("Yeah.", speech_final=True, start=2.5, duration=1.0), agent_busy=True
    ) == Backchannel(text="Yeah.", start=3.0, end=3.5)
    # The same word once the agent has finished is an answer.
    turns.on_event(final("Yeah.", speech_final=True), agent_busy=False)
    assert turns.on_event(final("Yes.", speech_final=True), agent_busy=False) == EndOfTurn(
        text="Yes.", trigger="speech_final", start=0.0, end=1.0
    )


def test_an_empty_final_is_noise() -> None:
    turns = CallerTurns(interrupt_min_words=2)
    turns.on_event(SpeechStarted(timestamp=0.0), agent_busy=False)
    assert turns.on_event(final("", speech_final=True), agent_busy=False) is None
    assert not turns.speaking


# --- prompts ---------------------------------------------------------------------------------------------------


def test_variables_from_the_lead_and_the_request() -> None:
    lead = {
        "first_name": "Grace",
        "last_name": "Hopper",
        "company_name": "Navy",
        "phone": "+15550001111",
        "custom_fields": {"plan": "gold", "nested": {"x": 1}},
    }
    values = prompts.call_variables(lead, {"first_name": "Amazing Grace", "visits": 3})
    assert values["first_name"] == "Amazing Grace" and values["lead.first_name"] == "Grace"
    assert values["name"] == "Grace Hopper" and values["plan"] == "gold" and values["visits"] == "3"
    assert "nested" not in values
    assert prompts.render(
        "Hi {{ first_name }}, about your {{plan}} plan at {{lead.company_name}}.", values
    ) == ("Hi Amazing Grace, about your gold plan at Navy.")
    # A missing value never reads out braces, and leaves no stray space.
    assert prompts.render("Hi {{unknown}}, welcome!", values) == "Hi, welcome!"


def test_system_prompt_has_instructions_goal_language_and_tools() -> None:
    config = AgentConfig(
        goal="Book a table for {{first_name}}",
        transfer_targets=[
            TransferTarget(name="Sales", phone="+15557654321", description="pricing questions")
        ],
    )
    agent = {
        "system_instructions": "Be kind.",
        "agent_instructions": "You work for {{company}}.",
        "language": "es-ES",
    }
    text = prompts.system_prompt(
        agent, config, direction="outbound", variables={"first_name": "Ana", "company": "Uno"}
    )
    assert text.startswith("Be kind.")
    assert "You work for Uno." in text and "The goal of this call: Book a table for Ana" in text
    assert "es-ES" in text and "You phoned this person." in text
    assert "- Sales: pricing questions" in text and "+15557654321" not in text
    assert prompts.starter_text(
        {"inbound_starter_prompt": "Hello {{first_name}}"}, "inbound", {"first_name": "Ana"}
    ) == ("Hello Ana")
    assert prompts.starter_text({"outbound_starter_prompt": None}, "outbound", {}) == ""


# --- tools -----------------------------------------------------------------------------------------------------


def test_tool_schemas_and_targets() -> None:
    targets = [TransferTarget(name="Sales", phone="+15557654321")]
    assert [t["function"]["name"] for t in tools.tool_schemas([])] == ["end_call"]
    schemas = tools.tool_schemas(targets)
    assert schemas[1]["function"]["parameters"]["properties"]["target"]["enum"] == ["Sales"]
    assert tools.find_target(targets, "sales") is targets[0]
    assert tools.find_target(targets, "+15557654321") is targets[0]
    assert tools.find_target(targets, "+19999999999") is None and tools.find_target(targets, None) is None
    assert tools.parse_arguments('{"target": "Sales"}') == {"target": "Sales"}
    assert tools.parse_arguments("{not json") == {}


class FakeTwilioRest:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = await read_body(receive)
        self.requests.append((scope["path"], dict(parse_qsl(body.decode()))))
        if self.status >= 400:
            await send_json(
                send,
                self.status,
                {"code": 21220, "message": "Call is not in-progress", "status": self.status},
            )
            return
        await send_json(send, 200, {"sid": "CA1", "status": "in-progress"})


async def test_twilio_transfer_updates_the_call_with_dial_twiml() -> None:
    fake = FakeTwilioRest()
    async with LocalServer(fake) as srv:
        provider = TwilioProvider("AC" + "1" * 32, "token", base_url=srv.http_url)
        try:
            await tools.transfer_call(provider, "CAabc", "+15557654321", caller_id="+15550001111")
        finally:
            await provider.aclose()
    [(path, form)] = fake.requests
    assert path == f"/2010-04-01/Accounts/AC{'1' * 32}/Calls/CAabc.json"
    assert form == {
        "Twiml": '<Response><Dial callerId="+15550001111"><Number>+15557654321</Number></Dial></Response>'
    }


async def test_twilio_transfer_error_is_a_provider_error() -> None:
    async with LocalServer(FakeTwilioRest(status=400)) as srv:
        provider = TwilioProvider("AC" + "1" * 32, "token", base_url=srv.http_url)
        try:
            with pytest.raises(ProviderError) as info:
                await tools.transfer_call(provider, "CAabc", "+15557654321", caller_id=None)
        finally:
            await provider.aclose()
    assert info.value.code == "rejected" and info.value.status == 400


@respx.mock
async def test_vonage_transfer_moves_the_leg_to_a_connect_ncco() -> None:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    route = respx.put("https://api.nexmo.com/v1/calls/uuid-1").mock(return_value=httpx.Response(204))
    async with httpx.AsyncClient() as http:
        provider = VonageProvider("app-id", pem, "secret", http_client=http)
        await tools.transfer_call(provider, "uuid-1", "+15557654321", caller_id="+15550001111")
        respx.put("https://api.nexmo.com/v1/calls/uuid-2").mock(
            return_value=httpx.Response(400, json={"title": "Bad Request", "detail": "Invalid action"})
        )
        with pytest.raises(ProviderError):
            await tools.transfer_call(provider, "uuid-2", "+15557654321", caller_id=None)
    body = msgspec.json.decode(route.calls[0].request.content)
    assert body == {
        "action": "transfer",
        "destination": {
            "type": "ncco",
            "ncco": [
                {
                    "action": "connect",
                    "endpoint": [{"type": "phone", "number": "15557654321"}],
                    "from": "15550001111",
                }
            ],
        },
    }
    assert route.calls[0].request.headers["authorization"].startswith("Bearer ")


# --- metering --------------------------------------------------------------------------------------------------


def test_latency_summary_percentiles_over_answering_turns() -> None:
    turns = [TurnLatency(turn=1, trigger="starter", response_ms=900.0)]
    turns += [
        TurnLatency(turn=i + 2, trigger="speech_final", response_ms=float(v), llm_first_token_ms=5.0)
        for i, v in enumerate([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    ]
    summary = latency_summary(turns)
    assert summary["summary"]["response_ms"] == {"p50": 50.0, "p90": 90.0, "count": 10}
    assert summary["summary"]["llm_first_token_ms"]["count"] == 10
    assert "tts_first_byte_ms" not in summary["summary"]
    assert summary["turns"][0] == {"turn": 1, "trigger": "starter", "response_ms": 900.0}
    assert percentile([], 50) is None and percentile([3.0], 99) == 3.0


def test_numbers_and_countries() -> None:
    call = CallInfo(
        tenant_id=uuid.uuid4(),
        call_id=uuid.uuid4(),
        call_created_at=datetime.now(UTC),
        agent_id=1,
        lead_id=None,
        direction="inbound",
        variables={},
        voice_id=None,
        provider="vonage",
        provider_call_id="x",
        from_e164="+390612345678",
        to_e164="+15550001111",
    )
    assert remote_number(call) == "+390612345678" and own_number(call) == "+15550001111"
    assert country_of(remote_number(call)) == "IT" and country_of("anonymous") is None
