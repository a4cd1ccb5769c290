"""Call analysis schemas: the post-call analysis as the API returns it (money as a decimal string)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec


class CallAnalysis(msgspec.Struct):
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
