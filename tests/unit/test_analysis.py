"""Post-call analysis: strict schema, prompt, validation and retry, the no-LLM shortcut."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import respx
from jsonschema import Draft202012Validator

from analysis.categorize import categorize_without_llm
from analysis.llm import analyze_call
from analysis.pricing import PriceRow, price_usage
from analysis.prompt import build_messages, build_response_schema, to_strict_schema, validate_json_schema
from analysis.usage import LlmUsage
from providers.llm.base import LlmError, UsageEvent
from providers.llm.openai import OpenAiLlm

AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "company": {"type": "string", "minLength": 2, "title": "Company"},
        "email": {"type": "string", "format": "email"},
        "budget": {"type": "integer", "minimum": 0, "default": 0},
        "interests": {"type": "array", "items": {"type": "string", "enum": ["solar", "battery"]}},
        "address": {"$ref": "#/$defs/address"},
    },
    "required": ["company"],
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["city"],
        }
    },
}
TURNS = [
    {"role": "assistant", "text": "Hi, this is Sam from Sunny Roofs. Is this Acme?"},
    {"role": "user", "text": "Yes, Acme here. We might want solar panels, budget around five thousand."},
    {"role": "system", "text": "tool result"},
    {"role": "assistant", "text": "Great, where are you located?"},
    {"role": "user", "text": "Austin."},
]
AGENT = {"name": "Sam", "goal": "Book a site visit", "language": "en-US"}
CALL = {"direction": "outbound", "answered_by": "human", "duration": 95}


def answer(**overrides: Any) -> str:
    data = {
        "summary": "Acme is interested in solar panels.",
        "sentiment": "positive",
        "lead_category": "warm",
        "success_evaluation": {"success": False, "score": 6, "reason": "No visit booked yet."},
        "lead_extraction": {
            "company": "Acme",
            "email": None,
            "budget": 5000,
            "interests": ["solar"],
            "address": {"city": "Austin", "zip": None},
        },
    }
    data.update(overrides)
    return json.dumps(data)


class FakeLlm:
    """Implements providers.llm.base.LlmProvider.complete_json from a script of replies."""

    name = "openai"
    model = "gpt-4o-mini"

    def __init__(self, *replies: tuple[str, UsageEvent | None] | Exception) -> None:
        self.replies = list(replies)
        self.calls: list[dict[str, Any]] = []

    async def complete_json(
        self, messages: list[dict], *, schema: dict, schema_name: str, model: str | None = None
    ) -> tuple[str, UsageEvent | None]:
        self.calls.append(
            {"messages": [dict(m) for m in messages], "schema": schema, "name": schema_name, "model": model}
        )
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def stream_chat(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def usage(p: int, c: int) -> UsageEvent:
    return UsageEvent(prompt_tokens=p, completion_tokens=c, model="gpt-4o-mini-2024-07-18")


async def run(llm: FakeLlm, schema: dict | None = AGENT_SCHEMA):
    return await analyze_call(
        llm, turns=TURNS, agent=AGENT, call=CALL, analysis_schema=schema, model="gpt-4o-mini"
    )


# --- analyze_call ------------------------------------------------------------------------------------------------


async def test_valid_answer_is_completed_in_one_attempt() -> None:
    llm = FakeLlm((answer(), usage(900, 120)))
    out = await run(llm)
    assert out.status == "completed" and out.attempts == 1
    assert (out.summary, out.sentiment, out.lead_category) == (
        "Acme is interested in solar panels.",
        "positive",
        "warm",
    )
    assert out.success_evaluation == {"success": False, "score": 6, "reason": "No visit booked yet."}
    assert out.lead_extraction is not None and out.lead_extraction["budget"] == 5000
    assert out.validation_error is None and out.error is None
    assert out.usage == [LlmUsage("openai", "gpt-4o-mini-2024-07-18", 900, 120)]
    assert out.model == "gpt-4o-mini-2024-07-18"
    call = llm.calls[0]
    assert call["schema"] == build_response_schema(AGENT_SCHEMA) and call["name"] == "call_analysis"
    assert call["model"] == "gpt-4o-mini"


async def test_invalid_then_valid_retries_with_the_errors_and_bills_both() -> None:
    bad = answer(
        sentiment="happy", lead_extraction={**json.loads(answer())["lead_extraction"], "company": "A"}
    )
    llm = FakeLlm((bad, usage(900, 120)), (answer(), usage(1100, 118)))
    out = await run(llm)
    assert out.status == "completed" and out.attempts == 2 and out.validation_error is None
    assert out.sentiment == "positive"
    assert [u.prompt_tokens for u in out.usage] == [900, 1100]
    retry = llm.calls[1]["messages"]
    assert retry[:2] == llm.calls[0]["messages"]
    assert retry[2] == {"role": "assistant", "content": bad}
    assert retry[3]["role"] == "user"
    assert "sentiment: 'happy' is not one of" in retry[3]["content"]
    # minLength is not sent to the model (strict mode does not support it) but the agent's schema enforces it
    assert "lead_extraction.company: 'A' is too short" in retry[3]["content"]


async def test_invalid_twice_is_stored_as_returned_with_the_validation_error() -> None:
    bad = answer(lead_category="lukewarm", success_evaluation={"success": True, "score": 11, "reason": "ok"})
    llm = FakeLlm((bad, usage(900, 120)), (bad, usage(1000, 120)))
    out = await run(llm)
    assert out.status == "completed" and out.attempts == 2
    assert out.lead_category == "lukewarm" and out.success_evaluation == {
        "success": True,
        "score": 11,
        "reason": "ok",
    }
    assert out.validation_error is not None
    assert "lead_category: 'lukewarm' is not one of" in out.validation_error
    assert "success_evaluation.score: 11 is greater than the maximum of 10" in out.validation_error
    assert len(out.usage) == 2


async def test_not_json_fails_and_still_bills_the_attempt() -> None:
    llm = FakeLlm(("Sure! Here is the analysis: {", usage(900, 12)))
    out = await run(llm)
    assert out.status == "failed" and out.error is not None and out.error.startswith("invalid_json")
    assert out.summary is None and out.usage == [LlmUsage("openai", "gpt-4o-mini-2024-07-18", 900, 12)]
    assert len(llm.calls) == 1


async def test_llm_error_fails_with_the_reason() -> None:
    out = await run(FakeLlm(LlmError("HTTP 503 from the provider", retryable=True, status=503)))
    assert out.status == "failed" and out.error == "llm_error: HTTP 503 from the provider"
    assert out.usage == [] and out.attempts == 1
    bad = answer(sentiment="happy")
    out = await run(FakeLlm((bad, usage(10, 5)), LlmError("timeout", retryable=True)))
    assert out.status == "failed" and out.attempts == 2 and len(out.usage) == 1


async def test_missing_usage_is_estimated_and_marked() -> None:
    out = await run(FakeLlm((answer(), None)))
    assert len(out.usage) == 1
    u = out.usage[0]
    assert u.estimated and u.model == "gpt-4o-mini" and u.prompt_tokens > 100 and u.completion_tokens > 20


async def test_outcome_usage_is_priced_like_any_usage() -> None:
    out = await run(FakeLlm((answer(sentiment="x"), usage(1000, 100)), (answer(), usage(1200, 100))))
    catalog = [
        PriceRow(
            id=f"p-{d}",
            category="llm",
            provider="openai",
            model="gpt-4o-mini",
            unit="token",
            unit_price=Decimal(price),
            effective_from=datetime(2025, 1, 1, tzinfo=UTC),
            metadata={"direction": d},
        )
        for d, price in (("input", "0.00000015"), ("output", "0.0000006"))
    ]
    b = price_usage(out.usage_meter(), catalog, at=datetime(2025, 6, 1, tzinfo=UTC), tenant_id=None)
    assert b.total == Decimal("0.000450")  # 2200 × 0.15/1M + 200 × 0.60/1M


async def test_without_agent_schema_lead_extraction_is_an_empty_object() -> None:
    llm = FakeLlm((answer(lead_extraction={}), usage(1, 1)))
    out = await run(llm, schema=None)
    assert out.status == "completed" and out.lead_extraction == {}
    extra = FakeLlm(
        (answer(lead_extraction={"x": 1}), usage(1, 1)), (answer(lead_extraction={"x": 1}), usage(1, 1))
    )
    out = await run(extra, schema=None)
    assert (
        out.validation_error is not None and "Additional properties are not allowed" in out.validation_error
    )


async def test_real_openai_adapter_sends_the_strict_schema() -> None:
    captured: list[dict] = []

    def reply(request: httpx.Request) -> httpx.Response:
        captured.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1735689600,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer(), "refusal": None},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {"prompt_tokens": 812, "completion_tokens": 95, "total_tokens": 907},
            },
        )

    async with httpx.AsyncClient() as http:
        llm = OpenAiLlm("sk-test", base_url="https://llm.test/v1", http_client=http, json_max_retries=0)
        with respx.mock(assert_all_called=True) as mock:
            mock.post("https://llm.test/v1/chat/completions").mock(side_effect=reply)
            out = await analyze_call(
                llm, turns=TURNS, agent=AGENT, call=CALL, analysis_schema=AGENT_SCHEMA, model="gpt-4o-mini"
            )
        await llm.aclose()
    assert out.status == "completed" and out.usage == [LlmUsage("openai", "gpt-4o-mini-2024-07-18", 812, 95)]
    fmt = captured[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == build_response_schema(AGENT_SCHEMA)


# --- strict schema -----------------------------------------------------------------------------------------------


def _objects(node: Any):
    if isinstance(node, dict):
        if node.get("type") == "object" or (isinstance(node.get("type"), list) and "object" in node["type"]):
            yield node
        for v in node.values():
            yield from _objects(v)
    elif isinstance(node, list):
        for v in node:
            yield from _objects(v)


def test_agent_schema_made_strict() -> None:
    strict, defs = to_strict_schema(AGENT_SCHEMA)
    assert strict == {
        "type": "object",
        "properties": {
            "company": {"type": "string"},
            "email": {"type": ["string", "null"], "format": "email"},
            "budget": {"type": ["integer", "null"], "minimum": 0},
            "interests": {
                "type": ["array", "null"],
                "items": {"type": "string", "enum": ["solar", "battery"]},
            },
            "address": {"anyOf": [{"$ref": "#/$defs/address"}, {"type": "null"}]},
        },
        "required": ["company", "email", "budget", "interests", "address"],
        "additionalProperties": False,
    }
    assert defs == {
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "zip": {"type": ["string", "null"], "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
            "additionalProperties": False,
        }
    }


def test_strict_conversion_of_other_constructs() -> None:
    strict, defs = to_strict_schema(
        {
            "type": "object",
            "definitions": {"tier": {"enum": ["gold", "silver"]}},
            "properties": {
                "tier": {"$ref": "#/definitions/tier"},
                "status": {"type": "string", "enum": ["a", "b"]},
                "contact": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "notes": {},
                "meta": {"type": "object", "additionalProperties": {"type": "string"}},
                "score": {"allOf": [{"type": "number"}], "not": {"const": 3}},
            },
            "required": ["tier", "contact", "notes", "meta", "score"],
            "patternProperties": {"^x": {}},
        }
    )
    props = strict["properties"]
    assert props["tier"] == {"$ref": "#/$defs/tier"}
    assert defs == {"tier": {"type": "string", "enum": ["gold", "silver"]}}
    assert props["status"] == {"type": ["string", "null"], "enum": ["a", "b", None]}
    assert props["contact"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert props["notes"] == {"type": "string"}
    assert props["meta"] == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }
    assert props["score"] == {"type": "number"}
    assert "patternProperties" not in strict


def test_response_schema_is_strict_everywhere_and_valid() -> None:
    for agent_schema in (None, AGENT_SCHEMA):
        schema = build_response_schema(agent_schema)
        Draft202012Validator.check_schema(schema)
        objects = list(_objects(schema))
        assert len(objects) >= 3
        for obj in objects:
            assert obj["additionalProperties"] is False
            assert obj["required"] == list(obj["properties"])
        props = schema["properties"]
        assert props["sentiment"]["enum"] == ["positive", "neutral", "negative", "mixed"]
        assert props["lead_category"]["enum"] == [
            "hot",
            "warm",
            "cold",
            "not_interested",
            "callback_requested",
            "wrong_number",
            "voicemail",
            "do_not_call",
        ]
    assert build_response_schema(None)["properties"]["lead_extraction"]["properties"] == {}
    assert build_response_schema(AGENT_SCHEMA)["$defs"]["address"]["required"] == ["city", "zip"]


def test_validate_json_schema_names_the_path() -> None:
    assert validate_json_schema(AGENT_SCHEMA) == []
    assert validate_json_schema({"type": "array"}) == ['type: the schema must have "type": "object"']
    errors = validate_json_schema({"type": "object", "properties": {"a": {"type": "strin"}}})
    assert len(errors) == 1 and errors[0].startswith("properties.a.type: ")
    assert validate_json_schema(
        {"type": "object", "properties": {"a": {"$ref": "https://x.test/s.json"}}}
    ) == ["properties.a.$ref: only local references (#/...) are allowed"]
    assert validate_json_schema([1]) == ["(root): the schema must be a JSON object"]
    deep: dict[str, Any] = {"type": "object", "properties": {}}
    node = deep
    for _ in range(9):
        child: dict[str, Any] = {"type": "object", "properties": {}}
        node["properties"]["x"] = child
        node = child
    assert any("nested 10 levels" in e for e in validate_json_schema(deep))


# --- messages ----------------------------------------------------------------------------------------------------


def test_messages_render_the_transcript_and_context() -> None:
    system, user = build_messages(TURNS, AGENT, CALL)
    assert system["role"] == "system" and user["role"] == "user"
    assert "lead_category" in system["content"] and "en-US" in system["content"]
    assert "omitted" not in system["content"]
    assert "Agent's goal: Book a site visit" in user["content"]
    assert "Answered by: human" in user["content"] and "Duration: 95 seconds" in user["content"]
    assert user["content"].endswith(
        "Transcript:\nAgent: Hi, this is Sam from Sunny Roofs. Is this Acme?\n"
        "Caller: Yes, Acme here. We might want solar panels, budget around five thousand.\n"
        "Agent: Great, where are you located?\nCaller: Austin."
    )


def test_long_transcripts_lose_their_middle_and_say_so() -> None:
    turns = [{"role": "user" if i % 2 else "agent", "text": f"turn {i} " + "word " * 40} for i in range(400)]
    system, user = build_messages(turns, AGENT, CALL, max_transcript_chars=4000)
    transcript = user["content"].split("Transcript:\n", 1)[1]
    assert len(transcript) <= 4100
    assert transcript.startswith("Agent: turn 0 ") and "turn 399" in transcript.splitlines()[-1]
    assert "turns omitted from the middle of the call" in transcript
    assert "middle part was omitted" in system["content"]


# --- no-LLM categorisation ---------------------------------------------------------------------------------------


def test_categorize_without_llm() -> None:
    assert categorize_without_llm(TURNS, "human", "ended") is None
    agent_only = [{"role": "assistant", "text": "Hello?"}, {"role": "user", "text": "  "}]
    vm = categorize_without_llm(agent_only, "machine_end_beep", "ended")
    assert vm is not None and (vm.status, vm.lead_category, vm.sentiment) == (
        "completed",
        "voicemail",
        "neutral",
    )
    assert (
        vm.usage == []
        and vm.lead_extraction == {}
        and vm.success_evaluation
        == {
            "success": False,
            "score": 0,
            "reason": "The call went to voicemail.",
        }
    )
    fax = categorize_without_llm([], "fax", "ended")
    assert fax is not None and fax.lead_category == "voicemail"
    declined = categorize_without_llm([], None, "declined")
    assert declined is not None and declined.lead_category is None and "declined" in (declined.summary or "")
    silent = categorize_without_llm(agent_only, "human", "ended")
    assert silent is not None and silent.lead_category == "cold"
