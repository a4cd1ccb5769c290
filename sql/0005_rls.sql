-- 0005_rls: the application role, its grants, row-level security on every tenant table, and the
-- narrow SECURITY DEFINER functions for work done before the tenant is known.
--
-- The pool's connection init runs SET ROLE voice_app; each transaction then sets app.tenant_id with
-- set_config('app.tenant_id', <uuid>, true). voice_app has no BYPASSRLS, so the policies apply
-- whoever DATABASE_URL names. RLS is ENABLEd, not FORCEd: the table owner (the migrating user) runs
-- the SECURITY DEFINER functions below and the migrations, unfiltered.
-- Creating the role needs CREATEROLE (or superuser) on the migrating user.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voice_app') THEN
        CREATE ROLE voice_app NOLOGIN;
    END IF;
END
$$;
GRANT voice_app TO CURRENT_USER;

-- The tenant of the current transaction, or NULL (then every policy matches no rows). Once a
-- transaction-local setting has ended, current_setting() returns '' instead of NULL: hence NULLIF.
-- A plain SQL function, so it is inlined into the policies and evaluated once per scan.
CREATE FUNCTION app_tenant_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid
$$;

GRANT USAGE ON SCHEMA public TO voice_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO voice_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO voice_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO voice_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO voice_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO voice_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO voice_app;

-- The ledger is append-only for the app (the trigger in 0004 also refuses it for the owner).
REVOKE UPDATE, DELETE ON billing_ledger_transactions FROM voice_app;

-- Call-log partitions are reached through the parent, where the policy applies; direct access to a
-- partition would skip it. ensure_call_log_partitions() revokes on the partitions it creates later.
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'voice_call_logs'::regclass LOOP
        EXECUTE format('REVOKE ALL ON TABLE %s FROM voice_app', part);
    END LOOP;
    -- The migration runner's bookkeeping is not the app's to change.
    IF to_regclass('public.schema_migrations') IS NOT NULL THEN
        REVOKE ALL ON TABLE schema_migrations FROM voice_app;
    END IF;
END
$$;

-- One policy per tenant table: rows of the current tenant only, for reads and writes.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'memberships', 'tenant_features', 'user_capabilities', 'domain_events', 'api_keys',
        'idempotency_keys', 'leads', 'campaigns', 'campaign_steps', 'campaign_leads',
        'voice_agent_voices', 'voice_agents', 'voice_agent_numbers', 'voice_user_profiles',
        'voice_permissions', 'voice_call_batches', 'voice_call_batch_entries', 'voice_call_logs',
        'voice_call_provider_ids', 'voice_call_analysis', 'billing_wallets', 'billing_ledger_transactions',
        'billing_usage_events', 'billing_feature_entitlements'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_tenant_id()) '
            'WITH CHECK (tenant_id = app_tenant_id())', t);
    END LOOP;
END
$$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants USING (id = app_tenant_id()) WITH CHECK (id = app_tenant_id());

-- Users are global: visible (and writable) when they belong to the current tenant. The membership
-- subquery is itself filtered by the memberships policy (current tenant only).
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_members ON users
    USING (
        primary_tenant_id = app_tenant_id()
        OR EXISTS (SELECT 1 FROM memberships m
                   WHERE m.user_id = users.id AND m.tenant_id = app_tenant_id() AND m.deleted_at IS NULL))
    WITH CHECK (
        primary_tenant_id = app_tenant_id()
        OR EXISTS (SELECT 1 FROM memberships m
                   WHERE m.user_id = users.id AND m.tenant_id = app_tenant_id() AND m.deleted_at IS NULL));

-- Global prices (tenant_id NULL) are readable by every tenant; a tenant writes only its own rows.
ALTER TABLE billing_pricing_catalog ENABLE ROW LEVEL SECURITY;
CREATE POLICY catalog_read ON billing_pricing_catalog FOR SELECT
    USING (tenant_id IS NULL OR tenant_id = app_tenant_id());
CREATE POLICY catalog_insert ON billing_pricing_catalog FOR INSERT
    WITH CHECK (tenant_id = app_tenant_id());
CREATE POLICY catalog_update ON billing_pricing_catalog FOR UPDATE
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
CREATE POLICY catalog_delete ON billing_pricing_catalog FOR DELETE
    USING (tenant_id = app_tenant_id());

-- webhook_replay_guard is global (no tenant_id): no RLS.

-- ---------------------------------------------------------------------------------------------
-- Cross-tenant entry points. Each answers one question for a caller that does not know the tenant
-- yet; they run as the owner (RLS does not apply) and return only what the caller needs.
-- ---------------------------------------------------------------------------------------------

-- The active API key with this SHA-256 hash: not revoked, deleted or expired, of a tenant that is
-- neither deleted nor suspended. Records last_used_at, at most once a minute per key.
CREATE FUNCTION auth_api_key(p_hash bytea)
RETURNS TABLE (key_id uuid, tenant_id uuid, user_id uuid, role text)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH k AS (
        SELECT a.id, a.tenant_id, a.user_id, a.role, a.last_used_at
        FROM api_keys a
        JOIN tenants t ON t.id = a.tenant_id
        WHERE a.key_hash = p_hash
          AND a.revoked_at IS NULL
          AND a.deleted_at IS NULL
          AND (a.expires_at IS NULL OR a.expires_at > now())
          AND t.deleted_at IS NULL
          AND t.status <> 'suspended'
    ), touched AS (
        UPDATE api_keys a SET last_used_at = now()
        FROM k
        WHERE a.id = k.id AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')
    )
    SELECT k.id, k.tenant_id, k.user_id, k.role FROM k
$$;

-- The user's role in the tenant (NULL when not an active member of a live tenant).
CREATE FUNCTION auth_membership(p_user_id uuid, p_tenant_id uuid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT m.role
    FROM memberships m
    JOIN users u ON u.id = m.user_id
    JOIN tenants t ON t.id = m.tenant_id
    WHERE m.user_id = p_user_id
      AND m.tenant_id = p_tenant_id
      AND m.deleted_at IS NULL
      AND u.deleted_at IS NULL
      AND u.is_active
      AND t.deleted_at IS NULL
      AND t.status <> 'suspended'
$$;

-- Which tenant owns the active number an inbound call arrived on (at most one row: see the unique
-- index voice_agent_numbers_active_e164_key).
CREATE FUNCTION route_inbound_number(p_e164 text)
RETURNS TABLE (tenant_id uuid, number_id uuid, provider text, status text, default_agent_id bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT n.tenant_id, n.id, n.provider, n.status, n.default_agent_id
    FROM voice_agent_numbers n
    JOIN tenants t ON t.id = n.tenant_id
    WHERE n.e164 = p_e164
      AND n.deleted_at IS NULL
      AND n.status = 'active'
      AND t.deleted_at IS NULL
      AND t.status <> 'suspended'
$$;

-- The call a provider webhook is about, by the provider's call id.
CREATE FUNCTION find_call_by_provider_id(p_provider text, p_call_id text)
RETURNS TABLE (tenant_id uuid, call_id uuid, call_created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT p.tenant_id, p.call_id, p.call_created_at
    FROM voice_call_provider_ids p
    WHERE p.provider = p_provider AND p.provider_call_id = p_call_id
$$;

REVOKE EXECUTE ON FUNCTION auth_api_key(bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auth_membership(uuid, uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION route_inbound_number(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION find_call_by_provider_id(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ensure_call_log_partitions(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_api_key(bytea) TO voice_app;
GRANT EXECUTE ON FUNCTION auth_membership(uuid, uuid) TO voice_app;
GRANT EXECUTE ON FUNCTION route_inbound_number(text) TO voice_app;
GRANT EXECUTE ON FUNCTION find_call_by_provider_id(text, text) TO voice_app;
GRANT EXECUTE ON FUNCTION ensure_call_log_partitions(int) TO voice_app;
