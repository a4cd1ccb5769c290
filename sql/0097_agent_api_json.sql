-- 0097_agent_api_json: every agent row keeps its own API JSON (schemas.Agent field for field, as agents_page_json
-- encoded it), written by a trigger at every insert and update, so a page of agents is its rows' texts joined.
-- Encoding 50 rows per request (json_build_object, two timestamps each) cost PostgreSQL about 0.5 ms a page: the
-- list endpoint's bottleneck. Whatever writes a row (the API, the console, a cascading `ON DELETE SET NULL`, SQL
-- by hand) goes through the trigger; a row without the column (written with triggers off) is encoded at read time.

CREATE FUNCTION agent_api_json(a voice_agents) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT json_build_object(
        'id', a.id, 'name', a.name, 'agent_instructions', a.agent_instructions,
        'system_instructions', a.system_instructions,
        'outbound_starter_prompt', a.outbound_starter_prompt,
        'inbound_starter_prompt', a.inbound_starter_prompt, 'voice_id', a.voice_id,
        'gender', a.gender, 'language', a.language,
        'analysis_schema', NULLIF(a.analysis_schema, '{}'::jsonb), 'config', a.config,
        'metadata', a.metadata, 'created_at', api_timestamp(a.created_at),
        'updated_at', api_timestamp(a.updated_at))::text
$$;

ALTER TABLE voice_agents ADD COLUMN api_json text;

CREATE FUNCTION voice_agents_store_api_json() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.api_json := agent_api_json(NEW);
    RETURN NEW;
END
$$;

-- BEFORE triggers fire in the order of their names: this one after voice_agents_set_updated_at, so the JSON
-- carries the updated_at the row is stored with.
CREATE TRIGGER voice_agents_store_api_json BEFORE INSERT OR UPDATE ON voice_agents
    FOR EACH ROW EXECUTE FUNCTION voice_agents_store_api_json();

-- Existing rows: their JSON, without touching their updated_at.
ALTER TABLE voice_agents DISABLE TRIGGER voice_agents_set_updated_at;
UPDATE voice_agents SET api_json = NULL;
ALTER TABLE voice_agents ENABLE TRIGGER voice_agents_set_updated_at;

-- GET /v1/agents (same result as 0096's, byte for byte): the page's stored texts joined as json_agg joined them,
-- and the rest of the answer from the same single pass over the page.
CREATE OR REPLACE FUNCTION agents_page_json(p_tenant uuid, p_limit int, p_after_at timestamptz, p_after_id bigint)
RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    result text[];
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    IF p_after_at IS NULL THEN  -- the first page: one keyset condition either way (an index range scan)
        p_after_at := 'infinity';
        p_after_id := 9223372036854775807;
    END IF;
    SELECT ARRAY[
        '[' || coalesce(string_agg(p.doc, ', ' ORDER BY p.ord) FILTER (WHERE p.ord <= p_limit), '') || ']',
        count(*)::text,
        min(to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
            FILTER (WHERE p.ord = p_limit),
        min(p.id) FILTER (WHERE p.ord = p_limit)::text
    ] INTO result
    FROM (
        SELECT coalesce(a.api_json, agent_api_json(a)) AS doc, a.created_at, a.id,
               row_number() OVER (ORDER BY a.created_at DESC, a.id DESC) AS ord
        FROM voice_agents a
        WHERE a.tenant_id = p_tenant AND a.deleted_at IS NULL
          AND (a.created_at, a.id) < (p_after_at, p_after_id)
        ORDER BY a.created_at DESC, a.id DESC
        LIMIT p_limit + 1
    ) p;
    RETURN result;
END
$$;
