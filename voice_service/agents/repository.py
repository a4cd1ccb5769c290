"""SQL for voice_agents."""

from __future__ import annotations

from voice_service.repository import Table

agents = Table(
    "voice_agents",
    ["id", "name", "agent_instructions", "system_instructions", "outbound_starter_prompt", "inbound_starter_prompt",
     "voice_id", "gender", "language", "analysis_schema", "config", "metadata", "created_at", "updated_at"],
    id_cast="bigint",
)

# One agent as the API's JSON (schemas.Agent, field for field), encoded by PostgreSQL for list pages
# (Table.read_page_json); an agent without an analysis schema stores {} and shows null, as service.to_agent does.
AGENT_JSON = (
    "json_build_object('id', id, 'name', name, 'agent_instructions', agent_instructions, "
    "'system_instructions', system_instructions, 'outbound_starter_prompt', outbound_starter_prompt, "
    "'inbound_starter_prompt', inbound_starter_prompt, 'voice_id', voice_id, 'gender', gender, "
    "'language', language, 'analysis_schema', NULLIF(analysis_schema, '{}'::jsonb), 'config', config, "
    "'metadata', metadata, 'created_at', api_timestamp(created_at), 'updated_at', api_timestamp(updated_at))"
)
