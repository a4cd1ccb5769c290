"""Helpers for the call-analysis tests: an OpenAI chat completion as the API returns it, the analysis answer the
LLM gives, a billed call ready to be analysed, and the analysis row and usage events read back."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import msgspec

from tests.support.pipeline import (
    insert_agent,
    insert_call,
    sample_meter,
)
from voice_service.billing import pipeline
from voice_service.db import tenant_tx
from voice_service.runtime import Runtime

_dec = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()
# The analysis LLM's base URL in these tests (OpenAI's API, mocked at the transport with respx).
BASE = "https://llm.test/v1"
AGENT_SCHEMA = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "format": "email"},
        "meeting_day": {"type": "string", "enum": ["monday", "tuesday", "wednesday", "thursday", "friday"]},
    },
    "required": ["meeting_day"],
}


def completion(content: str, prompt_tokens: int = 1000, completion_tokens: int = 100) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": f"chatcmpl-{uuid.uuid4().hex[:8]}",
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
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
    )


def answer(category: str = "hot", **extraction: Any) -> str:
    return _enc.encode(
        {
            "summary": "Ann agreed to a demo on Tuesday at 10.",
            "sentiment": "positive",
            "lead_category": category,
            "success_evaluation": {"success": True, "score": 9, "reason": "A demo was booked."},
            "lead_extraction": {"email": "ann@example.com", "meeting_day": "tuesday", **extraction},
        }
    ).decode()


async def billed_call(
    admin: asyncpg.Connection, runtime: Runtime, tenant: Any, **kwargs: Any
) -> tuple[uuid.UUID, datetime]:
    agent = kwargs.pop("agent_id", None) or await insert_agent(admin, tenant.id, analysis_schema=AGENT_SCHEMA)
    call_id, created_at = await insert_call(admin, tenant.id, meter=sample_meter(), agent_id=agent, **kwargs)
    async with tenant_tx(runtime.pool, tenant.id) as conn:
        assert await pipeline.finalize_call(
            conn,
            listeners=runtime.billing_listeners,
            tenant_id=tenant.id,
            call_id=call_id,
            call_created_at=created_at,
        )
    return call_id, created_at


async def analysis_row(admin: asyncpg.Connection, call_id: uuid.UUID) -> dict[str, Any]:
    row = await admin.fetchrow("SELECT * FROM voice_call_analysis WHERE call_log_id = $1", call_id)
    out = dict(row)
    for k in ("lead_extraction", "success_evaluation", "metadata"):
        out[k] = _dec.decode(out[k])
    return out


async def analysis_usage(admin: asyncpg.Connection, tenant_id: uuid.UUID) -> list[asyncpg.Record]:
    return await admin.fetch(
        "SELECT idempotency_key, total_cost, usage_items, status, ledger_transaction_id FROM billing_usage_events "
        "WHERE tenant_id = $1 AND feature_key = 'voice-agent-analysis' ORDER BY created_at, idempotency_key",
        tenant_id,
    )
