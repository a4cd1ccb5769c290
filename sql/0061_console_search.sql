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

-- A call's events (the console's call page lists them): the outbox rows about one aggregate, in order.
CREATE INDEX domain_events_tenant_aggregate_idx ON domain_events (tenant_id, aggregate_id, seq)
    WHERE aggregate_id IS NOT NULL;
