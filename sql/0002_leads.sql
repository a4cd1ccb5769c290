-- 0002_leads: leads and campaigns (campaigns, campaign_steps, campaign_leads), as in the seed.
--
-- Tenant-consistent references: tables that other tenant tables point at carry UNIQUE (tenant_id, id),
-- and the references are composite (tenant_id, x_id). A row can then only point at a row of its own
-- tenant, even though foreign-key checks are not subject to row-level security.
-- Optional references use ON DELETE SET NULL (x_id) (PostgreSQL 15+), which clears only x_id.

-- Seed columns, except: deleted_at replaces is_deleted (soft deletes work the same way everywhere);
-- phone is E.164; timezone (IANA name) and do_not_call* are extra, for calling windows and opt-outs.
CREATE TABLE leads (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    assigned_user_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    first_name          text CHECK (char_length(first_name) <= 200),
    last_name           text CHECK (char_length(last_name) <= 200),
    email               text CHECK (char_length(email) <= 320),
    phone               text CHECK (phone ~ '^\+[1-9][0-9]{1,14}$'),
    company_name        text CHECK (char_length(company_name) <= 200),
    title               text CHECK (char_length(title) <= 200),
    linkedin_url        text CHECK (char_length(linkedin_url) <= 2048),
    stage               text CHECK (char_length(stage) <= 100),
    status              text CHECK (char_length(status) <= 100),
    priority            int,
    estimated_value     numeric(18, 6),
    currency            text CHECK (currency ~ '^[A-Z]{3}$'),
    custom_fields       jsonb NOT NULL DEFAULT '{}',
    notes               text CHECK (char_length(notes) <= 20000),
    is_archived         boolean NOT NULL DEFAULT false,
    last_activity_at    timestamptz,
    next_follow_up_at   timestamptz,
    timezone            text CHECK (char_length(timezone) <= 64),
    do_not_call         boolean NOT NULL DEFAULT false,
    do_not_call_at      timestamptz,
    do_not_call_reason  text CHECK (char_length(do_not_call_reason) <= 2000),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX leads_tenant_phone_key ON leads (tenant_id, phone)
    WHERE deleted_at IS NULL AND phone IS NOT NULL;
CREATE INDEX leads_tenant_created_idx ON leads (tenant_id, created_at DESC, id DESC);
CREATE INDEX leads_tenant_stage_idx ON leads (tenant_id, stage);
CREATE INDEX leads_tenant_status_idx ON leads (tenant_id, status);
CREATE INDEX leads_tenant_assigned_idx ON leads (tenant_id, assigned_user_id) WHERE assigned_user_id IS NOT NULL;
CREATE TRIGGER leads_set_updated_at BEFORE UPDATE ON leads
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE campaigns (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description         text CHECK (char_length(description) <= 2000),
    status              text NOT NULL DEFAULT 'draft'
                        CHECK (status IN ('draft', 'running', 'paused', 'completed', 'stopped', 'archived')),
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    updated_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    config              jsonb NOT NULL DEFAULT '{}',
    starts_at           timestamptz,
    ends_at             timestamptz,
    is_deleted          boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);
CREATE INDEX campaigns_tenant_status_idx ON campaigns (tenant_id, status);
CREATE INDEX campaigns_tenant_created_idx ON campaigns (tenant_id, created_at DESC, id DESC);
CREATE TRIGGER campaigns_set_updated_at BEFORE UPDATE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE campaign_steps (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    campaign_id uuid NOT NULL,
    type        text NOT NULL CHECK (char_length(type) BETWEEN 1 AND 100),
    "order"     int NOT NULL,
    title       text CHECK (char_length(title) <= 200),
    description text CHECK (char_length(description) <= 2000),
    config      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE
);
-- Not unique: reordering steps would otherwise need deferred constraints.
CREATE INDEX campaign_steps_campaign_order_idx ON campaign_steps (campaign_id, "order");
CREATE TRIGGER campaign_steps_set_updated_at BEFORE UPDATE ON campaign_steps
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- A snapshot of the lead at enrolment (the seed copies name/email/phone), linked to the lead.
CREATE TABLE campaign_leads (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    campaign_id         uuid NOT NULL,
    lead_id             uuid,
    first_name          text CHECK (char_length(first_name) <= 200),
    last_name           text CHECK (char_length(last_name) <= 200),
    email               text CHECK (char_length(email) <= 320),
    company_name        text CHECK (char_length(company_name) <= 200),
    title               text CHECK (char_length(title) <= 200),
    linkedin_url        text CHECK (char_length(linkedin_url) <= 2048),
    phone               text CHECK (char_length(phone) <= 32),
    lead_data           jsonb NOT NULL DEFAULT '{}',
    status              text NOT NULL DEFAULT 'pending' CHECK (char_length(status) <= 50),
    current_step_order  int NOT NULL DEFAULT 0,
    started_at          timestamptz,
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id) ON DELETE SET NULL (lead_id)
);
CREATE UNIQUE INDEX campaign_leads_campaign_lead_key ON campaign_leads (campaign_id, lead_id)
    WHERE lead_id IS NOT NULL;
CREATE INDEX campaign_leads_campaign_status_idx ON campaign_leads (campaign_id, status);
CREATE INDEX campaign_leads_campaign_created_idx ON campaign_leads (campaign_id, created_at DESC);
CREATE INDEX campaign_leads_tenant_lead_idx ON campaign_leads (tenant_id, lead_id) WHERE lead_id IS NOT NULL;
CREATE TRIGGER campaign_leads_set_updated_at BEFORE UPDATE ON campaign_leads
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
