-- 0011_call_media: one-time media tokens and the call lookups the telephony webhooks need before the
-- tenant is known.
--
-- A call's media socket (Twilio <Stream>, Vonage websocket endpoint) carries our call id and a one-time
-- token in its first message. Only the token's SHA-256 is stored; claiming it marks it used in the same
-- statement, so a second socket with the same token is refused (policy violation) whatever the timing.

CREATE TABLE voice_call_media_tokens (
    call_id             uuid NOT NULL PRIMARY KEY,
    call_created_at     timestamptz NOT NULL,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_hash          bytea NOT NULL CHECK (octet_length(token_hash) = 32),
    expires_at          timestamptz NOT NULL,
    used_at             timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT voice_call_media_tokens_call_fk FOREIGN KEY (call_id, call_created_at)
        REFERENCES voice_call_logs (id, created_at)
);
CREATE INDEX voice_call_media_tokens_call_idx ON voice_call_media_tokens (call_id, call_created_at);
CREATE INDEX voice_call_media_tokens_tenant_idx ON voice_call_media_tokens (tenant_id);
CREATE INDEX voice_call_media_tokens_expires_idx ON voice_call_media_tokens (expires_at);

ALTER TABLE voice_call_media_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON voice_call_media_tokens
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON voice_call_media_tokens TO voice_app;

-- Consumes the token of a call's media socket: the call's tenant and partition key when the token
-- matches, is unused and unexpired; no row otherwise (wrong, reused or expired token look the same).
CREATE FUNCTION claim_media_token(p_call_id uuid, p_token_hash bytea)
RETURNS TABLE (tenant_id uuid, call_created_at timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE voice_call_media_tokens t
    SET used_at = now()
    WHERE t.call_id = p_call_id
      AND t.token_hash = p_token_hash
      AND t.used_at IS NULL
      AND t.expires_at > now()
    RETURNING t.tenant_id, t.call_created_at
$$;

-- The call a signed status webhook names by our id (the ?call_id= we put in the callback URL): its
-- tenant, partition key and provider. Status callbacks can arrive before place_call has stored the
-- provider's call id, so find_call_by_provider_id() alone cannot find them.
CREATE FUNCTION find_call_by_id(p_call_id uuid)
RETURNS TABLE (tenant_id uuid, call_id uuid, call_created_at timestamptz, provider text, provider_call_id text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT c.tenant_id, c.id, c.created_at, c.provider, c.provider_call_id
    FROM voice_call_logs c
    WHERE c.id = p_call_id
      AND c.created_at >= uuid_v7_time(p_call_id)
      AND c.created_at < uuid_v7_time(p_call_id) + interval '1 millisecond'
$$;

REVOKE EXECUTE ON FUNCTION claim_media_token(uuid, bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION find_call_by_id(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_media_token(uuid, bytea) TO voice_app;
GRANT EXECUTE ON FUNCTION find_call_by_id(uuid) TO voice_app;
