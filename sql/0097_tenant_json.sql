-- 0097_tenant_json: a read whose rows PostgreSQL encodes as the API's JSON, in one round trip (where decoding rows
-- into Python objects and encoding them again cost more than the query: list pages).
--
-- api_timestamp: a timestamptz as the API writes it (RFC 3339 in UTC, `Z`, microseconds only when not zero: what
-- msgspec writes for the same value), so a row encoded here reads exactly as the same row encoded by the service.
-- tenant_value: like tenant_rows (0096), the tenant for this statement only, then `p_sql`, which returns one
-- text[] (the service's own constant statements; RLS applies).

CREATE FUNCTION api_timestamp(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || CASE WHEN date_part('microseconds', t)::bigint % 1000000 = 0 THEN ''
                   ELSE to_char(t AT TIME ZONE 'UTC', '.US') END
           || 'Z'
$$;

CREATE FUNCTION tenant_value(p_tenant uuid, p_sql text, p_args text[]) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    result text[];
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    EXECUTE p_sql INTO result USING p_args;
    RETURN result;
END
$$;

REVOKE EXECUTE ON FUNCTION tenant_value(uuid, text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_value(uuid, text, text[]) TO voice_app;
