-- 0037_api_key_roles: API keys resolve with their expiry and never above their user's membership role, and a
-- key can be bound to a user by email without telling the caller whether another tenant knows that email.
--
-- auth_api_key gains `expires_at`, so the service checks expiry on every request, including requests answered
-- from its in-process key cache. A key bound to a user resolves only while that user is an active member of the
-- key's tenant, with the lower of the key's role and the membership's role.

DROP FUNCTION auth_api_key(bytea);

CREATE FUNCTION auth_api_key(p_hash bytea)
RETURNS TABLE (key_id uuid, tenant_id uuid, user_id uuid, role text, expires_at timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH k AS (
        SELECT a.id, a.tenant_id, a.user_id, a.role AS key_role, m.role AS member_role, a.expires_at,
               a.last_used_at
        FROM api_keys a
        JOIN tenants t ON t.id = a.tenant_id
        LEFT JOIN memberships m
               ON m.user_id = a.user_id AND m.tenant_id = a.tenant_id AND m.deleted_at IS NULL
        LEFT JOIN users u ON u.id = a.user_id
        WHERE a.key_hash = p_hash
          AND a.revoked_at IS NULL
          AND a.deleted_at IS NULL
          AND (a.expires_at IS NULL OR a.expires_at > now())
          AND t.deleted_at IS NULL
          AND t.status <> 'suspended'
          AND (a.user_id IS NULL
               OR (m.id IS NOT NULL AND u.deleted_at IS NULL AND u.is_active))
    ), touched AS (
        UPDATE api_keys a SET last_used_at = now()
        FROM k
        WHERE a.id = k.id AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')
    )
    SELECT k.id, k.tenant_id, k.user_id,
           CASE WHEN k.member_role IS NOT NULL
                 AND array_position(ARRAY['viewer', 'member', 'admin', 'owner'], k.member_role)
                     < array_position(ARRAY['viewer', 'member', 'admin', 'owner'], k.key_role)
                THEN k.member_role ELSE k.key_role END,
           k.expires_at
    FROM k
$$;

REVOKE EXECUTE ON FUNCTION auth_api_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_api_key(bytea) TO voice_app;

-- The id of the live user with this email (case-insensitive), created (primary tenant: the current one) when
-- there is none. Users are global and RLS shows a tenant only its own members, so without this a tenant adding
-- an email another tenant already has would hit the unique index and learn that the email is taken. Both cases
-- now look the same to the caller: an id, which it binds to a membership in its own tenant.
CREATE FUNCTION user_for_email(p_email text) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    found uuid;
BEGIN
    IF app_tenant_id() IS NULL THEN
        RAISE EXCEPTION 'user_for_email needs app.tenant_id';
    END IF;
    SELECT id INTO found FROM users WHERE lower(email) = lower(p_email) AND deleted_at IS NULL;
    IF found IS NULL THEN
        INSERT INTO users (email, primary_tenant_id) VALUES (p_email, app_tenant_id())
        ON CONFLICT (lower(email)) WHERE deleted_at IS NULL DO NOTHING
        RETURNING id INTO found;
        IF found IS NULL THEN  -- inserted concurrently by another transaction
            SELECT id INTO found FROM users WHERE lower(email) = lower(p_email) AND deleted_at IS NULL;
        END IF;
    END IF;
    RETURN found;
END
$$;

REVOKE EXECUTE ON FUNCTION user_for_email(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION user_for_email(text) TO voice_app;
