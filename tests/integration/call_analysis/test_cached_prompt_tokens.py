"""Prompt tokens OpenAI serves from its prompt cache are metered apart and billed at the cached-input price: in the
live conversation's usage (engine against the OpenAI fake, which reports cached tokens the way OpenAI does) and in
the post-call analysis call (OpenAI mocked at the transport)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import msgspec

from analysis import catalog_default
from analysis.pricing import price_usage
from analysis.usage import UsageMeter
from tests.fakes.openai import Text, ToolCall, ToolCalls
from tests.support.analysis import analysis_row, analysis_usage, answer, billed_call
from tests.support.engine import agent, fakes, run_call, silence, speech
from tests.support.pipeline import credit
from voice_service.call_analysis.service import run_analysis
from voice_service.runtime import Runtime

# The analysis half uses the call-analysis fixtures (conftest.py): a Runtime whose analysis LLM is OpenAI at a
# respx-mocked URL, and job cleanup.

# Long enough (over 1,024 tokens) for OpenAI to cache the prompt's prefix from the second turn on.
LONG_INSTRUCTIONS = "You book tables for {{product}}. " + "Answer in one short sentence, politely. " * 130


async def test_the_live_conversation_meters_cached_prompt_tokens() -> None:
    replies = [
        Text("Sure. For how many people?"),
        ToolCalls([ToolCall("end_call", {"reason": "done"})], text="Great, see you then. Goodbye!"),
    ]
    audio = silence(1.0) + speech(0.6) + silence(2.2) + speech(0.6) + silence(6.0)
    row = agent("Hi there.") | {"agent_instructions": LONG_INSTRUCTIONS}
    async with fakes(script=["I'd like to book a table.", "Four people, thanks."], replies=replies) as f:
        f.openai.prompt_caching = True
        r = await run_call(f, audio, agent_row=row)

    assert r.media.end_reason == "agent_ended"
    reported = f.openai.cached_reported
    assert len(reported) == 2 and reported[0] == 0 and reported[1] >= 1024  # the second turn reuses the first
    [llm] = r.usage["llm"]
    assert llm["cached_prompt_tokens"] == sum(reported)
    assert llm["prompt_tokens"] > llm["cached_prompt_tokens"]
    # Priced as the post-call pipeline prices it: the cached part at the cached-input price.
    meter = UsageMeter.from_builtins(r.usage)
    catalog = [*catalog_default.DEFAULT_PRICES, *catalog_default.CACHED_INPUT_PRICES]
    items = price_usage(meter, catalog, at=catalog_default.VERIFIED_AT, tenant_id=None).items
    llm_items = {i.direction: i for i in items if i.category == "llm"}
    assert llm_items["cached_input"].quantity == sum(reported)
    assert llm_items["input"].quantity == llm["prompt_tokens"] - sum(reported)
    assert llm_items["cached_input"].unit_price == Decimal("0.075") / 1_000_000


def cached_completion(content: str, prompt: int, cached: int, completion_tokens: int) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-cached",
            "object": "chat.completion",
            "created": 1_750_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            },
        },
    )


async def test_the_analysis_call_bills_cached_prompt_tokens_at_the_cached_price(
    tenant: Any, runtime: Runtime, openai: Any, admin_conn: asyncpg.Connection
) -> None:
    await credit(runtime, tenant.id, "5")
    call_id, created_at = await billed_call(admin_conn, runtime, tenant)
    openai.mock(return_value=cached_completion(answer(), 2000, 1536, 100))

    assert await run_analysis(runtime, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at) == (
        "completed"
    )

    row = await analysis_row(admin_conn, call_id)
    assert row["metadata"]["usage"]["llm"][0]["cached_prompt_tokens"] == 1536
    # gpt-4o-mini: 464 uncached × $0.15/1M + 1536 cached × $0.075/1M + 100 × $0.60/1M
    # = 0.000070 + 0.000115 + 0.000060 (0.000360 if the cached tokens were billed as input)
    assert row["cost"] == Decimal("0.000245")
    [usage] = await analysis_usage(admin_conn, tenant.id)
    assert usage["total_cost"] == Decimal("0.000245")
    lines = {i["direction"]: (i["quantity"], i["cost"]) for i in msgspec.json.decode(usage["usage_items"])}
    assert lines == {
        "input": ("464", "0.000070"),
        "cached_input": ("1536", "0.000115"),
        "output": ("100", "0.000060"),
    }

