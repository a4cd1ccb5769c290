-- 0050_recordings: call recordings. The files live in the recordings storage (RECORDINGS_URL); the call log's
-- recording_url (seed column) says where the API serves one, metadata.recording / recording_error say what
-- was stored or why not. Here: the tenant's retention setting, the narrow cross-tenant read the purge job
-- starts from, and an index for finding a tenant's oldest recordings.

CREATE TABLE recording_settings (
    tenant_id       uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    -- Recordings older than this many days (from the call's creation) are deleted; NULL keeps them.
    retention_days  integer CHECK (retention_days BETWEEN 1 AND 36500),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER recording_settings_set_updated_at BEFORE UPDATE ON recording_settings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
ALTER TABLE recording_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON recording_settings
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON recording_settings TO voice_app;

-- The tenants that set a retention period (the purge job then works inside each tenant's transaction).
CREATE FUNCTION recording_retention_tenants()
RETURNS TABLE (tenant_id uuid, retention_days integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT s.tenant_id, s.retention_days FROM recording_settings s
    JOIN tenants t ON t.id = s.tenant_id AND t.deleted_at IS NULL
    WHERE s.retention_days IS NOT NULL
$$;
REVOKE EXECUTE ON FUNCTION recording_retention_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION recording_retention_tenants() TO voice_app;

-- Only calls that still have a recording: the purge reads a tenant's oldest of them.
CREATE INDEX voice_call_logs_recording_idx ON voice_call_logs (tenant_id, created_at)
    WHERE recording_url IS NOT NULL;
