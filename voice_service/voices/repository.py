"""SQL for voice_agent_voices."""

from __future__ import annotations

from voice_service.repository import Table

voices = Table(
    "voice_agent_voices",
    ["id", "name", "provider", "provider_voice_id", "description", "gender", "accent", "language",
     "voice_sample_url", "metadata", "created_at", "updated_at"],
)
