-- 0075_service_roles: the service logs in as roles that can do nothing but their job (issue #15 §5).
--
-- Before: the pool logged in as the migrating user (a superuser on the embedded server) and only SET ROLE
-- voice_app, so one statement (set_config('role', 'postgres', false)) left row-level security; the job queue, the
-- webhook replay guard and the dispatch pacing rows had no row-level security at all.
--
-- Now (voice_service/dbroles.py creates the logins after the migrations, or the deployment names its own):
--   * the owner (DATABASE_URL) owns the tables, migrates, and runs the command line's admin commands; never the
--     API or the jobs;
--   * the app login, a member of voice_app only: the API's pool and every job handler. No superuser, no
--     BYPASSRLS, no other membership: it cannot become another role, so row-level security holds for all it runs;
--   * the worker login, a member of voice_worker only: pgqueuer's queue manager. It must see every tenant's jobs
--     to dequeue them, so it reaches the four job tables and nothing else (no tenant table, no function of the
--     app's). The app role no longer touches the job tables: it enqueues through enqueue_jobs(), which stamps the
--     job with the transaction's tenant and refuses a job that names another tenant.
--   * webhook_replay_guard and dispatch_pacing are reached only through functions (below); the app role has no
--     privilege on them.
-- Creating roles needs CREATEROLE (or superuser) on the migrating user, as 0005 already did.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voice_worker') THEN
        CREATE ROLE voice_worker NOLOGIN;
    END IF;
END
$$;
GRANT voice_worker TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO voice_worker;

-- The passwords of the logins the service creates for itself (dbroles.py): read by every process that has the
-- owner's URL (API replicas, `voice-service worker`), so they all log in with the same one. Owner only.
CREATE TABLE service_logins (
    role_name   text PRIMARY KEY,
    member_of   text NOT NULL,
    password    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON service_logins FROM PUBLIC, voice_app;
ALTER TABLE service_logins ENABLE ROW LEVEL SECURITY;  -- no policy: nobody but the owner

-- ---------------------------------------------------------------------------------------------------------------
-- The job queue: the worker's.

-- Which tenant's transaction enqueued the job (NULL: a system job, enqueued outside any tenant).
ALTER TABLE pgqueuer ADD COLUMN tenant_id uuid;

REVOKE ALL ON pgqueuer, pgqueuer_log, pgqueuer_schedules, pgqueuer_statistics FROM voice_app;
REVOKE ALL ON SEQUENCE pgqueuer_id_seq, pgqueuer_log_id_seq, pgqueuer_schedules_id_seq, pgqueuer_statistics_id_seq
    FROM voice_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON pgqueuer, pgqueuer_log, pgqueuer_schedules, pgqueuer_statistics
    TO voice_worker;
GRANT USAGE, SELECT ON SEQUENCE pgqueuer_id_seq, pgqueuer_log_id_seq, pgqueuer_schedules_id_seq,
    pgqueuer_statistics_id_seq TO voice_worker;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['pgqueuer', 'pgqueuer_log', 'pgqueuer_schedules', 'pgqueuer_statistics'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        -- Dequeuing is the worker's job across tenants: all rows, for the worker role only.
        EXECUTE format('CREATE POLICY queue_worker ON %I TO voice_worker USING (true) WITH CHECK (true)', t);
    END LOOP;
END
$$;

-- Enqueue jobs (the app role's only way onto the queue): pgqueuer's own enqueue statement (its
-- build_enqueue_query, duplicates of a queued or picked dedupe_key skipped), with the job stamped with the
-- transaction's tenant. A payload naming a tenant (`tenant_id`, which the job's handler works for) is accepted
-- only in that tenant's transaction; outside any tenant only system jobs (no tenant_id) go in (the owner, which
-- could write the table anyway, may enqueue for any tenant). Returns one row per
-- job enqueued (job_ord: its position in the arrays, 1-based); a skipped duplicate has none.
CREATE FUNCTION enqueue_jobs(p_priority int[], p_entrypoint text[], p_payload bytea[], p_execute_after interval[],
                             p_dedupe_key text[])
RETURNS TABLE (job_ord bigint, job_id bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_tenant uuid := app_tenant_id();
    v_named text;
BEGIN
    -- The owner (admin tooling, benchmarks) writes the table directly anyway: the check is for everyone else.
    IF NOT pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = 'pgqueuer'::regclass), 'MEMBER') THEN
        SELECT named INTO v_named
        FROM (SELECT convert_from(p, 'UTF8')::jsonb ->> 'tenant_id' AS named
              FROM unnest(p_payload) AS p WHERE p IS NOT NULL) AS payloads
        WHERE named IS NOT NULL AND named IS DISTINCT FROM v_tenant::text
        LIMIT 1;
    END IF;
    IF v_named IS NOT NULL THEN
        RAISE EXCEPTION 'a job for tenant % cannot be enqueued in the transaction of tenant %',
            v_named, coalesce(v_tenant::text, '(none)');
    END IF;
    RETURN QUERY
    WITH input AS MATERIALIZED (
        SELECT nextval('pgqueuer_id_seq'::regclass) AS id, t.priority, t.entrypoint, t.payload, t.execute_after,
               t.dedupe_key, t.ord
        FROM unnest(p_priority, p_entrypoint, p_payload, p_execute_after, p_dedupe_key) WITH ORDINALITY
             AS t (priority, entrypoint, payload, execute_after, dedupe_key, ord)
    ), inserted AS (
        INSERT INTO pgqueuer AS job (id, priority, entrypoint, payload, execute_after, dedupe_key, status, tenant_id)
        SELECT i.id, i.priority, i.entrypoint, i.payload, now() + coalesce(i.execute_after, interval '0'),
               i.dedupe_key, 'queued', v_tenant
        FROM input i
        ON CONFLICT (dedupe_key)
            WHERE ((status = ANY (ARRAY['queued'::pgqueuer_status, 'picked'::pgqueuer_status]))
                   AND (dedupe_key IS NOT NULL))
            DO NOTHING
        RETURNING job.id, job.entrypoint, job.priority
    ), logged AS (
        INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
        SELECT ins.id, 'queued', ins.entrypoint, ins.priority FROM inserted ins
    )
    SELECT i.ord, ins.id FROM inserted ins JOIN input i ON i.id = ins.id ORDER BY i.ord;
END
$$;
REVOKE EXECUTE ON FUNCTION enqueue_jobs(int[], text[], bytea[], interval[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION enqueue_jobs(int[], text[], bytea[], interval[], text[]) TO voice_app;

-- ---------------------------------------------------------------------------------------------------------------
-- The webhook replay guard (global: the tenant is unknown when a signature is checked): through functions only.

REVOKE ALL ON webhook_replay_guard FROM voice_app;
ALTER TABLE webhook_replay_guard ENABLE ROW LEVEL SECURITY;  -- no policy: only the functions (owner) reach it

-- True the first time (provider, jti) is seen, and again for the very same request (a carrier's retry); false when
-- the id comes back on another request (a replay).
CREATE FUNCTION webhook_remember_id(p_provider text, p_jti text, p_request_hash bytea) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH kept AS (
        INSERT INTO webhook_replay_guard (provider, jti, request_hash) VALUES (p_provider, p_jti, p_request_hash)
        ON CONFLICT (provider, jti) DO UPDATE SET seen_at = webhook_replay_guard.seen_at
        WHERE webhook_replay_guard.request_hash = EXCLUDED.request_hash
        RETURNING true
    )
    SELECT EXISTS (SELECT 1 FROM kept)
$$;

-- Forget the ids older than the window in which their tokens are accepted.
CREATE FUNCTION webhook_prune_ids(p_provider text, p_older_than_seconds int) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DELETE FROM webhook_replay_guard
    WHERE provider = p_provider AND seen_at < now() - make_interval(secs => greatest(p_older_than_seconds, 60))
$$;

REVOKE EXECUTE ON FUNCTION webhook_remember_id(text, text, bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION webhook_prune_ids(text, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook_remember_id(text, text, bytea) TO voice_app;
GRANT EXECUTE ON FUNCTION webhook_prune_ids(text, int) TO voice_app;

-- ---------------------------------------------------------------------------------------------------------------
-- Calls-per-second pacing (0020): rows keyed 'number:<uuid>' (one of the tenant's numbers) or 'account:<carrier>'
-- (a carrier account every tenant shares). Through functions only, inside a tenant's transaction: a tenant paces
-- its own numbers and the shared accounts, never another tenant's number.

REVOKE ALL ON dispatch_pacing FROM voice_app;
ALTER TABLE dispatch_pacing ENABLE ROW LEVEL SECURITY;  -- no policy: only the functions (owner) reach it

CREATE FUNCTION dispatch_pacing_check(p_keys text[]) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_tenant uuid := app_tenant_id();
    v_bad text;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'dispatch pacing needs app.tenant_id';
    END IF;
    SELECT k INTO v_bad FROM unnest(p_keys) AS k
    WHERE NOT (
        k ~ '^account:[a-z][a-z0-9_]{0,49}$'
        OR (k ~ '^number:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
            AND EXISTS (SELECT 1 FROM voice_agent_numbers n
                        WHERE n.id = substr(k, 8)::uuid AND n.tenant_id = v_tenant)))
    LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'pacing key % is not one of this tenant''s', v_bad;
    END IF;
END
$$;

-- Lock the pacing rows (created on first use) in key order, for the rest of the transaction; their next free
-- start times.
CREATE FUNCTION dispatch_pacing_lock(p_keys text[]) RETURNS TABLE (pacing_key text, next_slot_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM dispatch_pacing_check(p_keys);
    INSERT INTO dispatch_pacing (key) SELECT DISTINCT k FROM unnest(p_keys) AS k ORDER BY k
    ON CONFLICT (key) DO NOTHING;
    RETURN QUERY
    SELECT p.key, p.next_slot_at FROM dispatch_pacing p WHERE p.key = ANY (p_keys) ORDER BY p.key FOR UPDATE;
END
$$;

CREATE FUNCTION dispatch_pacing_set(p_keys text[], p_at timestamptz[]) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM dispatch_pacing_check(p_keys);
    UPDATE dispatch_pacing p SET next_slot_at = u.at, updated_at = now()
    FROM unnest(p_keys, p_at) AS u (key, at) WHERE p.key = u.key;
END
$$;

REVOKE EXECUTE ON FUNCTION dispatch_pacing_check(text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION dispatch_pacing_lock(text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION dispatch_pacing_set(text[], timestamptz[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dispatch_pacing_lock(text[]) TO voice_app;
GRANT EXECUTE ON FUNCTION dispatch_pacing_set(text[], timestamptz[]) TO voice_app;
