"""SQL for voice_agents."""

from __future__ import annotations

from voice_service.repository import Table

agents = Table(
    "voice_agents",
    ["id", "name", "agent_instructions", "system_instructions", "outbound_starter_prompt", "inbound_starter_prompt",
     "voice_id", "gender", "language", "analysis_schema", "config", "metadata", "created_at", "updated_at"],
    id_cast="bigint",
)
