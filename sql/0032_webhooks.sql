-- 0032_webhooks: push delivery of outbox events (Standard Webhooks), with a delivery log.

-- event_types: the event types the endpoint receives ('{}' = every type). The secret (whsec_…) signs every
-- delivery; it is returned once, when the endpoint is created. consecutive_failures counts failed attempts
-- since the last success; at the limit the endpoint is disabled (status 'disabled', disabled_reason).
CREATE TABLE webhook_endpoints (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                     text NOT NULL CHECK (url ~ '^https?://' AND char_length(url) <= 2048),
    description             text CHECK (char_length(description) <= 2000),
    event_types             text[] NOT NULL DEFAULT '{}',
    secret                  text NOT NULL CHECK (char_length(secret) BETWEEN 10 AND 200),
    status                  text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    consecutive_failures    int NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    disabled_at             timestamptz,
    disabled_reason         text CHECK (char_length(disabled_reason) <= 2000),
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    UNIQUE (tenant_id, id)
);
CREATE INDEX webhook_endpoints_tenant_created_idx ON webhook_endpoints (tenant_id, created_at DESC, id DESC);
CREATE INDEX webhook_endpoints_tenant_active_idx ON webhook_endpoints (tenant_id)
    WHERE status = 'active' AND deleted_at IS NULL;
CREATE TRIGGER webhook_endpoints_set_updated_at BEFORE UPDATE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One row per (event, endpoint): created in the transaction that writes the event; status pending until a
-- 2xx (succeeded), the attempts run out (failed) or the endpoint is disabled or deleted (abandoned).
CREATE TABLE webhook_deliveries (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    endpoint_id         uuid NOT NULL,
    event_id            uuid NOT NULL REFERENCES domain_events (id) ON DELETE CASCADE,
    event_type          text NOT NULL,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'succeeded', 'failed', 'abandoned')),
    attempts            int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_status_code    int,
    last_error          text,
    delivered_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id),
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_tenant_created_idx ON webhook_deliveries (tenant_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_endpoint_pending_idx ON webhook_deliveries (endpoint_id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);
CREATE TRIGGER webhook_deliveries_set_updated_at BEFORE UPDATE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The delivery log: one row per HTTP attempt (append-only).
CREATE TABLE webhook_delivery_attempts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    delivery_id     uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt         int NOT NULL CHECK (attempt >= 1),
    status_code     int,
    error           text CHECK (char_length(error) <= 2000),
    response_body   text CHECK (char_length(response_body) <= 2000),
    duration_ms     int,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (delivery_id, attempt)
);
CREATE INDEX webhook_delivery_attempts_tenant_idx ON webhook_delivery_attempts (tenant_id, created_at DESC);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['webhook_endpoints', 'webhook_deliveries', 'webhook_delivery_attempts'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_tenant_id()) '
            'WITH CHECK (tenant_id = app_tenant_id())', t);
    END LOOP;
END
$$;
