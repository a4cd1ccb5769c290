"""SQL for voice_agent_numbers."""

from __future__ import annotations

from voice_service.repository import Table

numbers = Table(
    "voice_agent_numbers",
    ["id", "e164 AS phone_number", "country_code", "base_number", "provider", "status", "default_agent_id",
     "metadata", "created_at", "updated_at"],
)
