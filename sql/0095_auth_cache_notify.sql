-- 0095_auth_cache_notify: every change that can take an API key's access away (or lower its role) is announced on
-- the `voice_auth` channel when its transaction commits, so that every service instance drops the keys it had
-- resolved and cached (voice_service/auth.py KeyCache): revocation, deletion, a new role or expiry of the key; a
-- membership's role changed or removed (a user's key is capped by it); a tenant suspended or deleted; a user
-- deactivated or deleted. Payload: `key:<api key id>`, `tenant:<tenant id>`, or `all`.
-- `last_used_at` (touched by auth_api_key once a minute) announces nothing.

CREATE FUNCTION notify_auth_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'api_keys' THEN
        PERFORM pg_notify('voice_auth', 'key:' || OLD.id::text);
    ELSIF TG_TABLE_NAME = 'memberships' THEN
        PERFORM pg_notify('voice_auth', 'tenant:' || OLD.tenant_id::text);
    ELSIF TG_TABLE_NAME = 'tenants' THEN
        PERFORM pg_notify('voice_auth', 'tenant:' || OLD.id::text);
    ELSE
        PERFORM pg_notify('voice_auth', 'all');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_auth_notify_update AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
          OR OLD.role IS DISTINCT FROM NEW.role OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.user_id IS DISTINCT FROM NEW.user_id OR OLD.key_hash IS DISTINCT FROM NEW.key_hash
          OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION notify_auth_change();
CREATE TRIGGER api_keys_auth_notify_delete AFTER DELETE ON api_keys FOR EACH ROW
    EXECUTE FUNCTION notify_auth_change();

CREATE TRIGGER memberships_auth_notify_update AFTER UPDATE ON memberships FOR EACH ROW
    WHEN (OLD.role IS DISTINCT FROM NEW.role OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
          OR OLD.user_id IS DISTINCT FROM NEW.user_id OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION notify_auth_change();
CREATE TRIGGER memberships_auth_notify_delete AFTER DELETE ON memberships FOR EACH ROW
    EXECUTE FUNCTION notify_auth_change();

CREATE TRIGGER tenants_auth_notify_update AFTER UPDATE ON tenants FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION notify_auth_change();
CREATE TRIGGER tenants_auth_notify_delete AFTER DELETE ON tenants FOR EACH ROW
    EXECUTE FUNCTION notify_auth_change();

CREATE TRIGGER users_auth_notify_update AFTER UPDATE ON users FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION notify_auth_change();
CREATE TRIGGER users_auth_notify_delete AFTER DELETE ON users FOR EACH ROW
    EXECUTE FUNCTION notify_auth_change();
