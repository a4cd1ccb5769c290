-- 0061_console_search: what the console's lead search and a call's event list read.
--
-- Lead search: the console's search box matches words of a lead's name, e-mail, company and phone by prefix
-- ("ali" finds Alice, "+1415" finds +14155550123), through a full-text index (the 'simple' configuration: no
-- stemming, no stop words). An e-mail address goes in as its words ("alice.lee@acme.com": alice, lee, acme, com):
-- whole addresses would be one distinct word per lead, and a prefix such as "ali" would then have to visit every
-- address starting with it in the index. The document is a stored column rather than an expression index: a page
-- of results may be found by testing the newest rows one by one, which must not mean parsing their text again.
ALTER TABLE leads ADD COLUMN search_document tsvector GENERATED ALWAYS AS (
    to_tsvector('simple'::regconfig,
                coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' ||
                regexp_replace(coalesce(email, ''), '[@._+-]+', ' ', 'g') || ' ' ||
                coalesce(company_name, '') || ' ' || coalesce(phone, ''))
) STORED;
CREATE INDEX leads_search_idx ON leads USING gin (search_document) WHERE deleted_at IS NULL;

-- Under row-level security the planner cannot use that index: `@@` is not a leakproof operator, so it is applied only
-- after the tenant policy, row by row, over the whole tenant. This narrow function runs the match as the table's
-- owner, for the caller's own tenant only (app_tenant_id(), exactly as the policy reads it; no tenant parameter), and
-- returns a page of ids and times, newest first; the rows themselves are then read under RLS as usual.
CREATE FUNCTION lead_search_page(p_query tsquery, p_limit int, p_do_not_call boolean, p_before_at timestamptz,
                                 p_before_id uuid)
RETURNS TABLE (id uuid, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH matches AS MATERIALIZED (
        SELECT l.id, l.created_at FROM leads l
        WHERE l.tenant_id = app_tenant_id() AND l.deleted_at IS NULL AND l.search_document @@ p_query
          AND (p_do_not_call IS NULL OR l.do_not_call = p_do_not_call)
          AND (p_before_at IS NULL OR (l.created_at, l.id) < (p_before_at, p_before_id))
    )
    SELECT m.id, m.created_at FROM matches m ORDER BY m.created_at DESC, m.id DESC LIMIT p_limit
$$;
REVOKE EXECUTE ON FUNCTION lead_search_page(tsquery, int, boolean, timestamptz, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lead_search_page(tsquery, int, boolean, timestamptz, uuid) TO voice_app;

-- A call's events (the console's call page lists them): the outbox rows about one aggregate, in order.
CREATE INDEX domain_events_tenant_aggregate_idx ON domain_events (tenant_id, aggregate_id, seq)
    WHERE aggregate_id IS NOT NULL;
