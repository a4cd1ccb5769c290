-- 0080_live_control: single-use tokens for the live-listen WebSocket (GET /v1/calls/{id}/listen?token=…).
-- Browsers cannot set headers on a WebSocket, so POST /v1/calls/{id}/listen-token mints a short-lived token the
-- page puts in the URL. Only its SHA-256 is stored; the socket may land on any instance, hence the database.
-- (The commands themselves travel by LISTEN/NOTIFY and need no table.)

CREATE TABLE call_listen_tokens (
    token_hash      bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    call_id         uuid NOT NULL,
    -- Who minted it (the audit trail of who listened): an API key, a user, or both.
    api_key_id      uuid,
    user_id         uuid,
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_listen_tokens_tenant_idx ON call_listen_tokens (tenant_id, expires_at);
ALTER TABLE call_listen_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON call_listen_tokens
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON call_listen_tokens TO voice_app;

-- Consumes a listen token for the call it was minted for: its tenant and minter when it matches, is unused and
-- unexpired; no row otherwise (wrong, reused, expired, or another call's token look the same). SECURITY DEFINER:
-- the tenant is not known until the token is.
CREATE FUNCTION claim_listen_token(p_call_id uuid, p_token_hash bytea)
RETURNS TABLE (tenant_id uuid, api_key_id uuid, user_id uuid)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE call_listen_tokens t
    SET used_at = now()
    WHERE t.token_hash = p_token_hash
      AND t.call_id = p_call_id
      AND t.used_at IS NULL
      AND t.expires_at > now()
    RETURNING t.tenant_id, t.api_key_id, t.user_id
$$;
REVOKE EXECUTE ON FUNCTION claim_listen_token(uuid, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_listen_token(uuid, bytea) TO voice_app;
