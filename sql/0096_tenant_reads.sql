-- 0096_tenant_reads: reads in one round trip. A request's tenant transaction takes three (BEGIN + the tenant, the
-- query, COMMIT + the pool's reset); each function here sets the tenant for the current transaction and then runs
-- its query, in that order (a PL/pgSQL body runs its statements in sequence), so row-level security sees the tenant
-- just as in a tenant transaction; called outside an explicit transaction, the setting ends with the statement's own
-- implicit one. Static SQL, so PL/pgSQL caches each plan per connection (a dynamic EXECUTE would plan every call:
-- measured slower than the three round trips). They run with the caller's rights: RLS applies.
--
-- api_timestamp: a timestamptz as the API writes it (RFC 3339 in UTC with `Z`, microseconds only when not zero:
-- what msgspec writes for the same value), so rows PostgreSQL encodes read exactly as those the service encodes.

CREATE FUNCTION api_timestamp(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || CASE WHEN date_part('microseconds', t)::bigint % 1000000 = 0 THEN ''
                   ELSE to_char(t AT TIME ZONE 'UTC', '.US') END
           || 'Z'
$$;

-- GET /v1/agents/{id}
CREATE FUNCTION agent_read(p_tenant uuid, p_id bigint) RETURNS SETOF voice_agents
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    RETURN QUERY SELECT * FROM voice_agents WHERE tenant_id = p_tenant AND id = p_id AND deleted_at IS NULL;
END
$$;

-- GET /v1/agents: one page, newest first, after the cursor (p_after_at, p_after_id) when given, encoded here as the
-- API's JSON (schemas.Agent field for field; an agent without an analysis schema stores {} and shows null).
-- Returns {items JSON array, rows found (up to p_limit + 1), last item's created_at, last item's id}.
CREATE FUNCTION agents_page_json(p_tenant uuid, p_limit int, p_after_at timestamptz, p_after_id bigint)
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
    WITH page AS (
        SELECT a.*, row_number() OVER (ORDER BY a.created_at DESC, a.id DESC) AS ord
        FROM voice_agents a
        WHERE a.tenant_id = p_tenant AND a.deleted_at IS NULL
          AND (a.created_at, a.id) < (p_after_at, p_after_id)
        ORDER BY a.created_at DESC, a.id DESC
        LIMIT p_limit + 1
    )
    SELECT ARRAY[
        coalesce((SELECT json_agg(json_build_object(
                      'id', p.id, 'name', p.name, 'agent_instructions', p.agent_instructions,
                      'system_instructions', p.system_instructions,
                      'outbound_starter_prompt', p.outbound_starter_prompt,
                      'inbound_starter_prompt', p.inbound_starter_prompt, 'voice_id', p.voice_id,
                      'gender', p.gender, 'language', p.language,
                      'analysis_schema', NULLIF(p.analysis_schema, '{}'::jsonb), 'config', p.config,
                      'metadata', p.metadata, 'created_at', api_timestamp(p.created_at),
                      'updated_at', api_timestamp(p.updated_at)) ORDER BY p.ord)
                  FROM page p WHERE p.ord <= p_limit)::text, '[]'),
        (SELECT count(*) FROM page)::text,
        (SELECT to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
           FROM page p WHERE p.ord = p_limit),
        (SELECT p.id::text FROM page p WHERE p.ord = p_limit)
    ] INTO result;
    RETURN result;
END
$$;

REVOKE EXECUTE ON FUNCTION agent_read(uuid, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION agents_page_json(uuid, int, timestamptz, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION agent_read(uuid, bigint) TO voice_app;
GRANT EXECUTE ON FUNCTION agents_page_json(uuid, int, timestamptz, bigint) TO voice_app;
