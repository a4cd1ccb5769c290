-- 0004_billing: pricing catalog, wallets, the append-only ledger, usage events, entitlements.
-- Money is numeric(18,6), never float, except catalog unit prices (numeric(24,12), see below).

-- tenant_id NULL = a global price; a tenant's own row overrides the global one. Effective-dated.
-- unit_price is numeric(24,12), not (18,6): per-token prices such as 0.00000015 need more than six
-- decimals.
CREATE TABLE billing_pricing_catalog (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid REFERENCES tenants (id) ON DELETE CASCADE,
    category        text NOT NULL
                    CHECK (category IN ('llm', 'stt', 'tts', 'telephony', 'enrichment', 'vm_infrastructure')),
    provider        text NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 100),
    model           text CHECK (char_length(model) <= 200),
    unit            text NOT NULL CHECK (unit IN ('record', 'token', 'second', 'minute', 'character', 'message')),
    unit_price      numeric(24, 12) NOT NULL CHECK (unit_price >= 0),
    description     text CHECK (char_length(description) <= 2000),
    effective_from  timestamptz NOT NULL DEFAULT now(),
    effective_to    timestamptz,
    is_active       boolean NOT NULL DEFAULT true,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (effective_to IS NULL OR effective_to > effective_from)
);
CREATE INDEX billing_pricing_catalog_lookup_idx
    ON billing_pricing_catalog (category, provider, model, unit, effective_from DESC);
CREATE INDEX billing_pricing_catalog_tenant_idx ON billing_pricing_catalog (tenant_id) WHERE tenant_id IS NOT NULL;
CREATE TRIGGER billing_pricing_catalog_set_updated_at BEFORE UPDATE ON billing_pricing_catalog
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One tenant wallet (user_id NULL) and optional per-user wallets. current_balance may go negative
-- (calls are billed after they end); reserved_balance may not.
CREATE TABLE billing_wallets (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id                 uuid REFERENCES users (id) ON DELETE CASCADE,
    current_balance         numeric(18, 6) NOT NULL DEFAULT 0,
    reserved_balance        numeric(18, 6) NOT NULL DEFAULT 0 CHECK (reserved_balance >= 0),
    currency                text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    status                  text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'closed')),
    low_balance_threshold   numeric(18, 6),
    low_balance_notified_at timestamptz,
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX billing_wallets_tenant_key ON billing_wallets (tenant_id) WHERE user_id IS NULL;
CREATE UNIQUE INDEX billing_wallets_tenant_user_key ON billing_wallets (tenant_id, user_id)
    WHERE user_id IS NOT NULL;
CREATE TRIGGER billing_wallets_set_updated_at BEFORE UPDATE ON billing_wallets
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The immutable ledger: the source of truth for balances (balance_before/after snapshots).
-- reference_id points at the usage event / invoice / payment named by reference_type (no foreign
-- key: polymorphic). created_by has no ON DELETE action: a ledger row is never updated.
CREATE TABLE billing_ledger_transactions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    wallet_id           uuid NOT NULL,
    transaction_type    text NOT NULL
                        CHECK (transaction_type IN ('topup', 'debit', 'credit', 'adjustment', 'reservation',
                                                    'release')),
    amount              numeric(18, 6) NOT NULL,
    balance_before      numeric(18, 6) NOT NULL,
    balance_after       numeric(18, 6) NOT NULL,
    reference_type      text CHECK (reference_type IN ('usage_event', 'invoice', 'manual', 'stripe_payment')),
    reference_id        uuid,
    idempotency_key     text NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    created_by          uuid REFERENCES users (id),
    description         text CHECK (char_length(description) <= 2000),
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, idempotency_key),
    FOREIGN KEY (tenant_id, wallet_id) REFERENCES billing_wallets (tenant_id, id)
);
CREATE INDEX billing_ledger_transactions_tenant_created_idx
    ON billing_ledger_transactions (tenant_id, created_at DESC);
CREATE INDEX billing_ledger_transactions_wallet_idx ON billing_ledger_transactions (wallet_id, created_at DESC);
CREATE INDEX billing_ledger_transactions_reference_idx ON billing_ledger_transactions (reference_id)
    WHERE reference_id IS NOT NULL;

-- Append-only. The one exception is the cascade from deleting the tenant itself (by then the tenant
-- row is gone), so a tenant can still be purged.
-- SECURITY DEFINER so the tenant lookup is not filtered by row-level security.
CREATE FUNCTION billing_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM tenants WHERE id = OLD.tenant_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'billing_ledger_transactions is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Post a compensating transaction (credit or adjustment) instead.';
END
$$;
CREATE TRIGGER billing_ledger_transactions_append_only BEFORE UPDATE OR DELETE ON billing_ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_append_only();

-- One usage event per billable use (a call: idempotency_key 'voice_call:<call id>'), itemised in
-- usage_items [{category, provider, model, unit, quantity, unit_price, cost}, ...].
CREATE TABLE billing_usage_events (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id                 uuid REFERENCES users (id) ON DELETE SET NULL,
    feature_key             text NOT NULL CHECK (char_length(feature_key) BETWEEN 1 AND 100),
    usage_items             jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(usage_items) = 'array'),
    total_quantity          numeric(18, 6) NOT NULL DEFAULT 0,
    total_cost              numeric(18, 6) NOT NULL DEFAULT 0,
    currency                text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    status                  text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'charged', 'voided', 'failed')),
    ledger_transaction_id   uuid REFERENCES billing_ledger_transactions (id),
    charged_at              timestamptz,
    idempotency_key         text NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    external_reference_id   text CHECK (char_length(external_reference_id) <= 255),
    error_message           text,
    retry_count             int NOT NULL DEFAULT 0,
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX billing_usage_events_tenant_created_idx ON billing_usage_events (tenant_id, created_at DESC, id DESC);
CREATE INDEX billing_usage_events_tenant_feature_idx ON billing_usage_events (tenant_id, feature_key);
CREATE INDEX billing_usage_events_tenant_status_idx ON billing_usage_events (tenant_id, status);
CREATE INDEX billing_usage_events_user_idx ON billing_usage_events (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX billing_usage_events_ledger_idx ON billing_usage_events (ledger_transaction_id)
    WHERE ledger_transaction_id IS NOT NULL;
CREATE TRIGGER billing_usage_events_set_updated_at BEFORE UPDATE ON billing_usage_events
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE billing_feature_entitlements (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    feature_key     text NOT NULL CHECK (char_length(feature_key) BETWEEN 1 AND 100),
    enabled         boolean NOT NULL DEFAULT true,
    monthly_quota   numeric(18, 6),
    daily_quota     numeric(18, 6),
    allow_overages  boolean NOT NULL DEFAULT false,
    overage_rate    numeric(18, 6),
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, feature_key)
);
CREATE TRIGGER billing_feature_entitlements_set_updated_at BEFORE UPDATE ON billing_feature_entitlements
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
