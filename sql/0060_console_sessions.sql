-- 0060_console_sessions: server-side sessions of the operator console (/console).
--
-- The browser holds only a random session token in an HttpOnly cookie; this table holds its SHA-256, never the
-- token, and never the API key or platform token the user signed in with (only which key or user it was). The
-- role is not copied here: every request reads it again from the key or the membership, so revoking a key,
-- expiring it or changing a member's role takes effect on the console's next request.

CREATE TABLE console_sessions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash      bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('api_key', 'jwt')),
    api_key_id      uuid REFERENCES api_keys (id) ON DELETE CASCADE,
    user_id         uuid REFERENCES users (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    -- The absolute end (sign-in + CONSOLE_SESSION_MAX_HOURS, or a platform token's own expiry if sooner);
    -- the idle end (last_seen_at + CONSOLE_SESSION_IDLE_MINUTES) is checked on each request.
    expires_at      timestamptz NOT NULL,
    user_agent      text CHECK (char_length(user_agent) <= 500),
    CHECK ((kind = 'api_key') = (api_key_id IS NOT NULL)),
    CHECK (kind <> 'jwt' OR user_id IS NOT NULL),
    CHECK (expires_at > created_at)
);
CREATE INDEX console_sessions_tenant_expiry_idx ON console_sessions (tenant_id, expires_at);
CREATE INDEX console_sessions_api_key_idx ON console_sessions (api_key_id) WHERE api_key_id IS NOT NULL;
CREATE INDEX console_sessions_user_idx ON console_sessions (user_id) WHERE user_id IS NOT NULL;

ALTER TABLE console_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON console_sessions
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());

-- The session behind a cookie, before the tenant is known (hence SECURITY DEFINER, like auth_api_key): alive only
-- while neither end has passed, its tenant is live, and its credential still is (the key not revoked, deleted or
-- expired; the user still an active member). Returns the role in force now and a label for the page header.
-- last_seen_at moves at most every 15 seconds, so a page's parallel requests do not each write the row.
CREATE FUNCTION console_session_resolve(p_hash bytea, p_idle_seconds int)
RETURNS TABLE (session_id uuid, tenant_id uuid, kind text, role text, user_id uuid, key_id uuid,
               label text, expires_at timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH s AS (
        SELECT c.id, c.tenant_id, c.kind, c.user_id, c.api_key_id, c.expires_at, c.last_seen_at,
               CASE c.kind
                   WHEN 'api_key' THEN k.role
                   ELSE auth_membership(c.user_id, c.tenant_id)
               END AS role,
               CASE c.kind
                   WHEN 'api_key' THEN k.name || ' (' || k.key_prefix || '…)'
                   ELSE (SELECT u.email FROM users u WHERE u.id = c.user_id)
               END AS label
        FROM console_sessions c
        JOIN tenants t ON t.id = c.tenant_id
        LEFT JOIN api_keys k ON k.id = c.api_key_id
                            AND k.tenant_id = c.tenant_id
                            AND k.revoked_at IS NULL
                            AND k.deleted_at IS NULL
                            AND (k.expires_at IS NULL OR k.expires_at > now())
        WHERE c.token_hash = p_hash
          AND c.expires_at > now()
          AND c.last_seen_at > now() - make_interval(secs => p_idle_seconds)
          AND t.deleted_at IS NULL
          AND t.status <> 'suspended'
    ), touched AS (
        UPDATE console_sessions c SET last_seen_at = now()
        FROM s
        WHERE c.id = s.id AND s.role IS NOT NULL AND s.last_seen_at < now() - interval '15 seconds'
    )
    SELECT s.id, s.tenant_id, s.kind, s.role, s.user_id, s.api_key_id, s.label, s.expires_at
    FROM s
    WHERE s.role IS NOT NULL
$$;

-- Sign-out by cookie, whether or not the session is still alive (knowing the token is the right to end it).
CREATE FUNCTION console_session_end(p_hash bytea) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DELETE FROM console_sessions WHERE token_hash = p_hash
$$;

REVOKE EXECUTE ON FUNCTION console_session_resolve(bytea, int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION console_session_end(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION console_session_resolve(bytea, int) TO voice_app;
GRANT EXECUTE ON FUNCTION console_session_end(bytea) TO voice_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON console_sessions TO voice_app;
