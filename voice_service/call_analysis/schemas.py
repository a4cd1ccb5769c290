"""Call analysis schemas: the post-call analysis as the API returns it (money as a decimal string)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from voice_service.openapi import example


@example({"id": "3a2b1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d", "call_id": "0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b",
          "status": "completed",
          "summary": "Ann asked for a demo next Tuesday.", "sentiment": "positive", "lead_category": "interested",
          "lead_extraction": {"demo_day": "Tuesday"}, "success_evaluation": {"success": True, "reason": "demo booked"},
          "error": None, "model": "gpt-4o-mini", "cost": "0.000410", "attempts": 1,
          "created_at": "2025-03-04T15:22:55.310Z", "updated_at": "2025-03-04T15:22:55.310Z"})
class CallAnalysis(msgspec.Struct):
    """The post-call analysis of a call (status pending, completed or failed)."""

    id: uuid.UUID
    call_id: uuid.UUID
    status: str
    summary: str | None
    sentiment: str | None
    lead_category: str | None
    lead_extraction: dict[str, Any]
    success_evaluation: dict[str, Any]
    error: str | None
    model: str | None
    cost: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
