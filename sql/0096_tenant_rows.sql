-- 0096_tenant_rows: a read in one round trip. `tenant_rows` sets the request's tenant for the current transaction
-- and then runs the given query, in that order (a PL/pgSQL body runs its statements in sequence), so row-level
-- security sees the tenant just as in a tenant transaction; outside an explicit transaction the setting ends with
-- the statement's own implicit one. The service calls it as
--     SELECT <columns> FROM tenant_rows($1, NULL::<table>, $2, $3) WITH ORDINALITY ... ORDER BY ordinality
-- with `p_sql` one of its own constant statements over <table> (`SELECT * FROM <table> WHERE ...`, parameters
-- read from `p_args` as `$1[i]::type`), never text from a request. It runs with the caller's rights (RLS applies).

CREATE FUNCTION tenant_rows(p_tenant uuid, p_row anyelement, p_sql text, p_args text[])
RETURNS SETOF anyelement
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    RETURN QUERY EXECUTE p_sql USING p_args;
END
$$;

REVOKE EXECUTE ON FUNCTION tenant_rows(uuid, anyelement, text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_rows(uuid, anyelement, text, text[]) TO voice_app;
