"""The post-call analysis: LLM analysis (or a rule for calls without caller speech), billed on its own.

Scheduled when the call is billed (`schedule_analysis`, billing's `on_call_billed` listener: the pending row and
the job, in the billing transaction). A run has three steps: read the call and claim an attempt number (short
transaction); run the LLM (no transaction open); store the outcome (one transaction): VOICE_CALL_ANALYSIS, the
analysis's usage event (`voice_call_analysis:<analysis id>`, `:<attempt>` appended from the second attempt on)
with its ledger debit (billing's public `charge`), the `voice_call.analyzed` outbox event, the lead's do-not-call
flag (leads repository) and the batch entry and batch counters (batches repository). The store step checks that
no other run stored this attempt meanwhile (optimistic: the attempt counter), so a duplicate or re-picked job
cannot bill twice. A failed analysis leaves the call billed and is retried later with exponential backoff;
`request_rerun` runs it again on demand.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from analysis.categorize import categorize_without_llm
from analysis.llm import AnalysisOutcome, analyze_call
from analysis.pricing import CostBreakdown
from providers.llm.base import LlmProvider
from providers.llm.openai import OpenAiLlm
from voice_service.auth import Principal
from voice_service.batches import repository as batches_repo
from voice_service.billing import repository as billing_repo
from voice_service.billing.pipeline import Checkpoint, call_payload, no_checkpoint
from voice_service.billing.usage import charge, price_meter
from voice_service.call_analysis import repository as repo
from voice_service.call_analysis.schemas import CallAnalysis
from voice_service.calls import repository as calls_repo
from voice_service.db import tenant_tx
from voice_service.enqueue import enqueue
from voice_service.errors import Conflict, NotFound
from voice_service.events.outbox import emit
from voice_service.leads import repository as leads_repo
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

# The entrypoint name queued jobs carry in the database: it keeps the `billing.` prefix it had when the analysis
# lived in billing, so jobs queued before the move still run.
ANALYSIS_JOB = "billing.analyze_call"
FEATURE_KEY = "voice-agent-analysis"
NOT_CONFIGURED = "llm_not_configured"


@dataclass(frozen=True)
class AnalysisPolicy:
    base_delay_seconds: float = 60.0
    factor: float = 4.0
    max_failures: int = 5  # automatic retries stop here; a rerun can still be requested

    def delay(self, failures: int) -> timedelta:
        return timedelta(seconds=self.base_delay_seconds * self.factor ** (failures - 1))


DEFAULT_POLICY = AnalysisPolicy()


def analysis_llm(runtime: Runtime) -> LlmProvider | None:
    """The runtime's analysis LLM (a test may set `runtime.analysis_llm`), built from settings on first use;
    None when no OpenAI key is configured."""
    llm = runtime.analysis_llm
    if llm is None and runtime.settings.openai_api_key:
        llm = OpenAiLlm(
            runtime.settings.openai_api_key,
            base_url=runtime.settings.openai_base_url,
            model=runtime.settings.analysis_model,
            http_client=runtime.http,
        )
        runtime.analysis_llm = llm
    return llm


async def schedule_analysis(
    conn: asyncpg.Connection,
    *,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    call_created_at: datetime,
    lead_id: uuid.UUID | None,
) -> None:
    """Billing's `on_call_billed` listener: the call's pending analysis row and its job (in the caller's
    transaction, the one that billed the call)."""
    await repo.ensure_analysis(conn, tenant_id, call_id, call_created_at, lead_id)
    await enqueue(
        conn,
        ANALYSIS_JOB,
        call_payload(tenant_id, call_id, call_created_at),
        dedupe_key=f"analysis:{call_id}",
    )


def _agent_context(agent: asyncpg.Record | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    if agent is None:
        return {}, None
    config = agent["config"] or {}
    context = {
        "name": agent["name"],
        "goal": config.get("goal"),
        "instructions": agent["agent_instructions"],
        "language": agent["language"],
    }
    return context, (agent["analysis_schema"] or None)


async def run_analysis(
    runtime: Runtime,
    *,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    call_created_at: datetime,
    rerun: int = 0,
    checkpoint: Checkpoint = no_checkpoint,
) -> str:
    """Analyse one call; returns the stored status ('completed' / 'failed') or 'skipped'."""
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        call = await calls_repo.get_for_pipeline(conn, tenant_id, call_id, call_created_at)
        if call is None:
            return "skipped"
        current = await repo.ensure_analysis(conn, tenant_id, call_id, call_created_at, call["lead_id"])
        meta = current["metadata"] or {}
        if current["status"] == "completed" and rerun <= meta.get("rerun_done", 0):
            return "skipped"
        agent = (
            await repo.get_agent(conn, tenant_id, call["agent_id"]) if call["agent_id"] is not None else None
        )
    attempt = int(meta.get("attempts", 0)) + 1

    turns = call["transcripts"] or []
    outcome = categorize_without_llm(turns, call["answered_by"], call["status"])
    if outcome is None:
        llm = analysis_llm(runtime)
        if llm is None:
            outcome = AnalysisOutcome(status="failed", error=f"{NOT_CONFIGURED}: set OPENAI_API_KEY")
        else:
            agent_ctx, schema = _agent_context(agent)
            outcome = await analyze_call(
                llm,
                turns=turns,
                agent=agent_ctx,
                analysis_schema=schema,
                model=runtime.settings.analysis_model,
                call={
                    "direction": call["direction"],
                    "answered_by": call["answered_by"],
                    "duration_seconds": call["duration_seconds"],
                },
            )
    await checkpoint("analyzed")

    policy = runtime.analysis_policy or DEFAULT_POLICY
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        return await _store(conn, tenant_id, call, outcome, attempt, rerun, policy, checkpoint)


async def _store(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call: asyncpg.Record,
    outcome: AnalysisOutcome,
    attempt: int,
    rerun: int,
    policy: AnalysisPolicy,
    checkpoint: Checkpoint,
) -> str:
    call_id, call_created_at = call["id"], call["created_at"]
    current = await repo.get_analysis(conn, tenant_id, call_id, for_update=True)
    assert current is not None
    meta = dict(current["metadata"] or {})
    if int(meta.get("attempts", 0)) != attempt - 1:
        return "skipped"  # another run stored this attempt first

    now = datetime.now(UTC)
    breakdown = (
        await price_meter(conn, tenant_id, outcome.usage_meter(), now)
        if outcome.usage
        else CostBreakdown(items=[], total=Decimal(0))
    )
    failures = int(meta.get("failures", 0)) + (1 if outcome.status == "failed" else 0)
    meta.update(
        {
            "attempts": attempt,
            "failures": 0 if outcome.status == "completed" else failures,
            "llm_attempts": outcome.attempts,
            "validation_error": outcome.validation_error,
            "usage": outcome.usage_meter().to_builtins(),
            "cost_breakdown": breakdown.to_json_items(),
            "rerun_done": max(rerun, int(meta.get("rerun_done", 0))),
            "analyzed_at": now.isoformat(),
        }
    )
    fields: dict[str, Any] = {
        "status": outcome.status,
        "error": outcome.error or outcome.validation_error,
        "model": outcome.model,
        "cost": breakdown.total,
        "metadata": meta,
    }
    if outcome.status == "completed":
        fields |= {
            "summary": outcome.summary,
            "sentiment": outcome.sentiment,
            "lead_category": outcome.lead_category,
            "lead_extraction": outcome.lead_extraction or {},
            "success_evaluation": outcome.success_evaluation or {},
        }
    row = await repo.save_analysis(conn, tenant_id, current["id"], fields)
    await checkpoint("stored")

    if breakdown.items:
        key = f"voice_call_analysis:{current['id']}" + ("" if attempt == 1 else f":{attempt}")
        usage_event_id = await billing_repo.insert_usage_event(
            conn,
            tenant_id,
            user_id=call["initiated_by_user_id"],
            feature_key=FEATURE_KEY,
            usage_items=breakdown.to_json_items(),
            total_quantity=Decimal(1),
            total_cost=breakdown.total,
            currency=breakdown.currency,
            idempotency_key=key,
            metadata={"call_id": str(call_id), "analysis_id": str(current["id"]), "attempt": attempt},
        )
        if usage_event_id is not None:
            await charge(conn, tenant_id, usage_event_id, breakdown.total, key, f"call analysis {call_id}", None)
    await checkpoint("billed")

    if outcome.status == "completed":
        payload = {
            "call_id": str(call_id),
            "analysis_id": str(row["id"]),
            "summary": row["summary"],
            "sentiment": row["sentiment"],
            "lead_category": row["lead_category"],
            "success_evaluation": row["success_evaluation"],
            "lead_extraction": row["lead_extraction"],
            "validation_error": outcome.validation_error,
            "cost": format(breakdown.total, "f"),
            "currency": breakdown.currency,
            "lead_id": None if call["lead_id"] is None else str(call["lead_id"]),
            "batch_id": None if call["batch_id"] is None else str(call["batch_id"]),
        }
        await emit(
            conn,
            tenant_id=tenant_id,
            event_type="voice_call.analyzed",
            aggregate_type="voice_call",
            aggregate_id=call_id,
            payload=payload,
        )
        if outcome.lead_category == "do_not_call" and call["lead_id"] is not None:
            await leads_repo.mark_do_not_call(
                conn, tenant_id, call["lead_id"], f"asked not to be called again (call {call_id})"
            )
        if call["batch_id"] is not None and call["batch_entry_id"] is not None:
            await batches_repo.record_analysis_outcome(
                conn,
                tenant_id,
                call["batch_id"],
                call["batch_entry_id"],
                call_id,
                {
                    "lead_category": outcome.lead_category,
                    "sentiment": outcome.sentiment,
                    "success": (outcome.success_evaluation or {}).get("success"),
                },
            )
    elif not (outcome.error or "").startswith(NOT_CONFIGURED) and failures < policy.max_failures:
        await enqueue(
            conn,
            ANALYSIS_JOB,
            call_payload(tenant_id, call_id, call_created_at, rerun=rerun),
            dedupe_key=f"analysis_retry:{call_id}:{failures}",
            delay=policy.delay(failures),
        )
    return outcome.status


async def request_rerun(
    conn: asyncpg.Connection,
    *,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    call_created_at: datetime,
    lead_id: uuid.UUID | None,
) -> asyncpg.Record:
    """Mark the analysis pending and enqueue a run (inside the caller's transaction)."""
    current: asyncpg.Record | None
    current = await repo.ensure_analysis(conn, tenant_id, call_id, call_created_at, lead_id)
    current = await repo.get_analysis(conn, tenant_id, call_id, for_update=True)
    assert current is not None
    meta = dict(current["metadata"] or {})
    rerun = int(meta.get("reruns", 0)) + 1
    meta |= {"reruns": rerun, "failures": 0, "rerun_requested_at": datetime.now(UTC).isoformat()}
    row = await repo.save_analysis(conn, tenant_id, current["id"], {"status": "pending", "metadata": meta})
    await enqueue(
        conn,
        ANALYSIS_JOB,
        call_payload(tenant_id, call_id, call_created_at, rerun=rerun),
        dedupe_key=f"analysis_rerun:{call_id}:{rerun}",
    )
    return row


# --- the API ---


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def to_call_analysis(row: asyncpg.Record) -> CallAnalysis:
    meta: dict[str, Any] = row["metadata"] or {}
    return CallAnalysis(
        id=row["id"],
        call_id=row["call_log_id"],
        status=row["status"],
        summary=row["summary"],
        sentiment=row["sentiment"],
        lead_category=row["lead_category"],
        lead_extraction=row["lead_extraction"],
        success_evaluation=row["success_evaluation"],
        error=row["error"],
        model=row["model"],
        cost=_money(row["cost"]),
        attempts=int(meta.get("attempts", 0)),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _locate_call(conn: asyncpg.Connection, principal: Principal, call_id: uuid.UUID) -> asyncpg.Record:
    call = await calls_repo.locate(conn, principal.tenant_id, call_id)
    if call is None:
        raise NotFound("call not found")
    return call


async def get_call_analysis(
    conn: asyncpg.Connection, principal: Principal, call_id: uuid.UUID
) -> CallAnalysis:
    await _locate_call(conn, principal, call_id)
    row = await repo.get_analysis(conn, principal.tenant_id, call_id)
    if row is None:
        raise NotFound("this call has no analysis yet: it is analysed after it ends and is billed")
    return to_call_analysis(row)


async def find_call_analysis(
    conn: asyncpg.Connection, principal: Principal, call_id: uuid.UUID
) -> CallAnalysis | None:
    """The call's analysis, or None while there is none (the caller has found the call already)."""
    row = await repo.get_analysis(conn, principal.tenant_id, call_id)
    return None if row is None else to_call_analysis(row)


async def rerun_call_analysis(
    conn: asyncpg.Connection, principal: Principal, call_id: uuid.UUID
) -> CallAnalysis:
    call = await _locate_call(conn, principal, call_id)
    full = await calls_repo.get_for_pipeline(conn, principal.tenant_id, call_id, call["created_at"])
    assert full is not None
    if full["cost"] is None:
        raise Conflict("the call has not been finalised yet; it is analysed once it ends")
    row = await request_rerun(
        conn,
        tenant_id=principal.tenant_id,
        call_id=call_id,
        call_created_at=call["created_at"],
        lead_id=full["lead_id"],
    )
    return to_call_analysis(row)
