-- 0031_billing_reservations: wallet reservations for batch launches, and a transaction-id column on the outbox
-- for a gap-free pull cursor.

-- A batch launch reserves its estimated cost on the tenant wallet. billing_wallets.reserved_balance is the sum
-- of `remaining` over active reservations, kept in step in the same transaction as every change here. Each
-- call's debit releases its share (per_call, or the call's cost when per_call is NULL); the rest is released
-- when the batch ends. Not ledger rows: a reservation moves no money, it only lowers the available balance.
CREATE TABLE billing_wallet_reservations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    wallet_id       uuid NOT NULL,
    batch_id        uuid NOT NULL,
    amount          numeric(18, 6) NOT NULL CHECK (amount >= 0),
    remaining       numeric(18, 6) NOT NULL CHECK (remaining >= 0),
    per_call        numeric(18, 6) CHECK (per_call >= 0),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'released')),
    released_at     timestamptz,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, batch_id),
    CHECK (remaining <= amount),
    FOREIGN KEY (tenant_id, wallet_id) REFERENCES billing_wallets (tenant_id, id),
    -- Deferred: the batch launch may reserve before or after it inserts the batch row, in one transaction.
    FOREIGN KEY (tenant_id, batch_id) REFERENCES voice_call_batches (tenant_id, id) ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX billing_wallet_reservations_wallet_idx ON billing_wallet_reservations (wallet_id)
    WHERE status = 'active';
CREATE TRIGGER billing_wallet_reservations_set_updated_at BEFORE UPDATE ON billing_wallet_reservations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE billing_wallet_reservations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON billing_wallet_reservations
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());

-- Sequence values are taken at INSERT but become visible at COMMIT, so a reader paging by seq alone can step
-- past a lower seq that commits later and never see it. The pull API pages by (txid, seq) and returns only
-- rows of transactions older than every transaction still running (pg_snapshot_xmin): that set never grows
-- behind the cursor.
ALTER TABLE domain_events ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX domain_events_tenant_txid_seq_idx ON domain_events (tenant_id, txid, seq);
