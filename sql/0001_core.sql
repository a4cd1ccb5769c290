-- 0001_core: shared functions and the multi-tenant core (tenants, users, memberships, features,
-- capabilities, the domain-event outbox, API keys, idempotency keys, webhook replay guard).
-- Column names follow the seed ER diagram (seeds/003); extras beyond the seed say why.
-- Works on PostgreSQL 15+ (no PG18-only built-ins); gen_random_uuid() is core since PG13.

-- Keeps updated_at honest on every UPDATE, whatever the statement sets.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- RFC 9562 UUIDv7: 48-bit unix epoch milliseconds, version 7, variant 10, 74 random bits.
-- The random bits come from gen_random_uuid() (already variant 10); bytes 0-5 are replaced by the
-- timestamp and the version nibble is set to 7.
CREATE FUNCTION uuid_v7(p_at timestamptz) RETURNS uuid
LANGUAGE plpgsql VOLATILE PARALLEL SAFE AS $$
DECLARE
    b bytea := uuid_send(gen_random_uuid());
    ms bigint := floor(extract(epoch FROM p_at) * 1000)::bigint;
BEGIN
    b := overlay(b PLACING substring(int8send(ms) FROM 3 FOR 6) FROM 1 FOR 6);
    b := set_byte(b, 6, (get_byte(b, 6) & 15) | 112);
    RETURN encode(b, 'hex')::uuid;
END
$$;

CREATE FUNCTION uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT uuid_v7(clock_timestamp())
$$;

-- The millisecond timestamp of a UUIDv7 (NULL when the uuid is not version 7). IMMUTABLE so that
-- predicates such as created_at >= uuid_v7_time($1) prune partitions.
CREATE FUNCTION uuid_v7_time(p_id uuid) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN substr(p_id::text, 15, 1) = '7'
        THEN to_timestamp(('x' || substr(replace(p_id::text, '-', ''), 1, 12))::bit(48)::bigint / 1000.0)
    END
$$;

CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    slug        text NOT NULL CHECK (char_length(slug) BETWEEN 1 AND 200),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'trial', 'cancelled')),
    plan_tier   text NOT NULL DEFAULT 'free'
                CHECK (plan_tier IN ('free', 'starter', 'professional', 'enterprise')),
    email       text CHECK (char_length(email) <= 320),
    phone       text CHECK (char_length(phone) <= 32),
    website     text CHECK (char_length(website) <= 2048),
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX tenants_name_key ON tenants (name) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX tenants_slug_key ON tenants (slug) WHERE deleted_at IS NULL;
CREATE INDEX tenants_status_idx ON tenants (status);
CREATE INDEX tenants_created_at_idx ON tenants (created_at DESC);
CREATE TRIGGER tenants_set_updated_at BEFORE UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Users are global (one person, many tenants through memberships); authentication is external,
-- so password_hash is nullable.
CREATE TABLE users (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email               text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 320),
    password_hash       text,
    first_name          text CHECK (char_length(first_name) <= 200),
    last_name           text CHECK (char_length(last_name) <= 200),
    phone               text CHECK (char_length(phone) <= 32),
    avatar_url          text CHECK (char_length(avatar_url) <= 2048),
    primary_tenant_id   uuid REFERENCES tenants (id) ON DELETE SET NULL,
    is_active           boolean NOT NULL DEFAULT true,
    email_verified      boolean NOT NULL DEFAULT false,
    phone_verified      boolean NOT NULL DEFAULT false,
    last_login_at       timestamptz,
    password_changed_at timestamptz,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE deleted_at IS NULL;
CREATE INDEX users_primary_tenant_id_idx ON users (primary_tenant_id);
CREATE INDEX users_created_at_idx ON users (created_at DESC);
CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE memberships (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    invited_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX memberships_user_tenant_key ON memberships (user_id, tenant_id) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX memberships_one_owner_key ON memberships (tenant_id)
    WHERE role = 'owner' AND deleted_at IS NULL;
CREATE INDEX memberships_tenant_role_idx ON memberships (tenant_id, role);
CREATE TRIGGER memberships_set_updated_at BEFORE UPDATE ON memberships
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE tenant_features (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    feature_key text NOT NULL CHECK (char_length(feature_key) BETWEEN 1 AND 100),
    enabled     boolean NOT NULL DEFAULT true,
    config      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, feature_key)
);
CREATE TRIGGER tenant_features_set_updated_at BEFORE UPDATE ON tenant_features
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE user_capabilities (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    capability_key  text NOT NULL CHECK (char_length(capability_key) BETWEEN 1 AND 100),
    feature_key     text CHECK (char_length(feature_key) <= 100),
    enabled         boolean NOT NULL DEFAULT true,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, user_id, capability_key)
);
CREATE INDEX user_capabilities_user_id_idx ON user_capabilities (user_id);
CREATE TRIGGER user_capabilities_set_updated_at BEFORE UPDATE ON user_capabilities
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The outbox. seq (extra) is the pull cursor of GET /v1/events and the webhook delivery order:
-- uuids do not order. Identity values are handed out at INSERT, not at COMMIT, so a reader must not
-- assume that every seq below the highest one it has seen is already visible.
-- aggregate_id is a uuid as in the seed; aggregates with bigint ids (voice agents) put their id in
-- the payload and leave aggregate_id NULL.
CREATE TABLE domain_events (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_type      text NOT NULL CHECK (char_length(event_type) BETWEEN 1 AND 200),
    aggregate_type  text NOT NULL CHECK (char_length(aggregate_type) BETWEEN 1 AND 100),
    aggregate_id    uuid,
    payload         jsonb NOT NULL DEFAULT '{}',
    processed       boolean NOT NULL DEFAULT false,
    processed_at    timestamptz,
    retry_count     int NOT NULL DEFAULT 0,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domain_events_tenant_seq_idx ON domain_events (tenant_id, seq);
CREATE INDEX domain_events_unprocessed_idx ON domain_events (seq) WHERE NOT processed;

-- Not in the seed: the service's own API keys ("vsk_" + random). Only the SHA-256 of the key is
-- stored; key_prefix is what lists show.
CREATE TABLE api_keys (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id             uuid REFERENCES users (id) ON DELETE CASCADE,
    name                text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    role                text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    key_prefix          text NOT NULL CHECK (char_length(key_prefix) BETWEEN 1 AND 16),
    key_hash            bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    last_used_at        timestamptz,
    expires_at          timestamptz,
    revoked_at          timestamptz,
    created_by_key_id   uuid REFERENCES api_keys (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX api_keys_tenant_created_idx ON api_keys (tenant_id, created_at DESC, id DESC);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id) WHERE user_id IS NOT NULL;
CREATE TRIGGER api_keys_set_updated_at BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Not in the seed: Idempotency-Key handling for POST /v1/calls and POST /v1/batches. A row is
-- claimed before the work (status_code NULL = in progress) and completed with the response.
CREATE TABLE idempotency_keys (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key             text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    method          text NOT NULL CHECK (char_length(method) <= 16),
    path            text NOT NULL CHECK (char_length(path) <= 2048),
    request_hash    bytea NOT NULL,
    status_code     int CHECK (status_code BETWEEN 100 AND 599),
    response_body   bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key, method, path)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

-- Not in the seed: signed-webhook replay protection (e.g. Vonage JWT jti). Global, not a tenant
-- table (the tenant is unknown when the signature is checked), so it has no RLS; pruned by seen_at.
CREATE TABLE webhook_replay_guard (
    provider    text NOT NULL CHECK (char_length(provider) <= 50),
    jti         text NOT NULL CHECK (char_length(jti) <= 255),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, jti)
);
CREATE INDEX webhook_replay_guard_seen_at_idx ON webhook_replay_guard (seen_at);
