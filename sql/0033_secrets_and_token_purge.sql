-- 0033_secrets_and_token_purge: webhook signing secrets encrypted at rest, and the purge of spent media tokens.

-- secret_ciphertext: 'v1:' + base64(nonce + AES-256-GCM ciphertext) of the whsec_… secret (see
-- voice_service/events/secretbox.py). New endpoints store only the ciphertext; rows made before this migration
-- keep the plaintext `secret` until their first delivery encrypts it and clears the column.
ALTER TABLE webhook_endpoints
    ADD COLUMN secret_ciphertext text CHECK (secret_ciphertext ~ '^v[0-9]+:' AND char_length(secret_ciphertext) <= 1000);
ALTER TABLE webhook_endpoints ALTER COLUMN secret DROP NOT NULL;
ALTER TABLE webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_secret_present CHECK (secret IS NOT NULL OR secret_ciphertext IS NOT NULL);

-- Deletes media tokens that can no longer be claimed: expired, or used, more than p_grace ago. Runs from
-- the workers' maintenance loop across every tenant (SECURITY DEFINER: the app role is RLS-scoped).
CREATE FUNCTION purge_media_tokens(p_grace interval)
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH gone AS (
        DELETE FROM voice_call_media_tokens
        WHERE expires_at < now() - p_grace
           OR used_at < now() - p_grace
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;
REVOKE EXECUTE ON FUNCTION purge_media_tokens(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_media_tokens(interval) TO voice_app;
CREATE INDEX voice_call_media_tokens_used_idx ON voice_call_media_tokens (used_at) WHERE used_at IS NOT NULL;
