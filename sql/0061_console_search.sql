-- 0061_console_search: the indexes behind the console's lead search and a call's event list.
--
-- Lead search: the console's search box matches words of a lead's name, e-mail, company and phone by prefix
-- ("ali" finds Alice, "1415" finds +14155550123), through a full-text index (the 'simple' configuration: no
-- stemming, no stop words; PostgreSQL's default parser keeps an e-mail address as one token, so "alice@" and
-- "alice" both find it). The same expression is in voice_service/leads/repository.py (SEARCH_DOCUMENT): the
-- planner uses the index only when the query repeats it exactly.
CREATE INDEX leads_search_idx ON leads USING gin (
    to_tsvector('simple'::regconfig,
                coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(email, '') || ' ' ||
                coalesce(company_name, '') || ' ' || coalesce(phone, ''))
) WHERE deleted_at IS NULL;

-- A call's events (the console's call page lists them): the outbox rows about one aggregate, in order.
CREATE INDEX domain_events_tenant_aggregate_idx ON domain_events (tenant_id, aggregate_id, seq)
    WHERE aggregate_id IS NOT NULL;
