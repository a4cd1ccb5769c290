-- 0003_voice: voices, agents, numbers, user profiles, permissions, batches, the partitioned call log,
-- the provider-call-id lookup and call analyses.
-- References between tenant tables are composite (tenant_id, x_id), as explained in 0002_leads.sql.

-- Seed columns + name (for lists) and deleted_at (soft delete).
CREATE TABLE voice_agent_voices (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                text CHECK (char_length(name) <= 200),
    provider            text NOT NULL CHECK (provider IN ('openai', 'elevenlabs', 'cartesia', 'deepgram', 'google')),
    provider_voice_id   text NOT NULL CHECK (char_length(provider_voice_id) BETWEEN 1 AND 200),
    description         text CHECK (char_length(description) <= 2000),
    gender              text CHECK (char_length(gender) <= 50),
    accent              text CHECK (char_length(accent) <= 100),
    language            text CHECK (char_length(language) <= 35),
    voice_sample_url    text CHECK (char_length(voice_sample_url) <= 2048),
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    UNIQUE (tenant_id, id)
);
CREATE INDEX voice_agent_voices_tenant_provider_idx ON voice_agent_voices (tenant_id, provider);
CREATE INDEX voice_agent_voices_tenant_language_idx ON voice_agent_voices (tenant_id, language);
CREATE TRIGGER voice_agent_voices_set_updated_at BEFORE UPDATE ON voice_agent_voices
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- bigint identity id as in the seed. Extra: analysis_schema (JSON Schema of the lead fields the
-- post-call analysis extracts; {} = none), config (turn-taking, silence, transfer and goal settings),
-- metadata, deleted_at.
CREATE TABLE voice_agents (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                    text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    agent_instructions      text CHECK (char_length(agent_instructions) <= 20000),
    system_instructions     text CHECK (char_length(system_instructions) <= 20000),
    outbound_starter_prompt text CHECK (char_length(outbound_starter_prompt) <= 20000),
    inbound_starter_prompt  text CHECK (char_length(inbound_starter_prompt) <= 20000),
    voice_id                uuid,
    gender                  text CHECK (char_length(gender) <= 50),
    language                text CHECK (char_length(language) <= 35),
    analysis_schema         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(analysis_schema) = 'object'),
    config                  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, voice_id) REFERENCES voice_agent_voices (tenant_id, id) ON DELETE SET NULL (voice_id)
);
CREATE INDEX voice_agents_tenant_created_idx ON voice_agents (tenant_id, created_at DESC, id DESC);
CREATE INDEX voice_agents_tenant_voice_idx ON voice_agents (tenant_id, voice_id) WHERE voice_id IS NOT NULL;
CREATE TRIGGER voice_agents_set_updated_at BEFORE UPDATE ON voice_agents
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Seed columns (country_code digits as text, base_number = national number) + e164, the exact form
-- inbound routing looks up (a bigint drops the leading zero of e.g. Italian numbers), + deleted_at.
CREATE TABLE voice_agent_numbers (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    country_code        text NOT NULL CHECK (country_code ~ '^[1-9][0-9]{0,2}$'),
    base_number         bigint NOT NULL CHECK (base_number > 0),
    e164                text NOT NULL CHECK (e164 ~ '^\+[1-9][0-9]{1,14}$'),
    provider            text NOT NULL CHECK (provider IN ('twilio', 'vonage', 'simulator')),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'suspended')),
    default_agent_id    bigint,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    UNIQUE (tenant_id, id),
    -- e164 = '+' || country_code || [leading zeros] || base_number
    CHECK (starts_with(e164, '+' || country_code) AND right(e164, char_length(base_number::text)) = base_number::text),
    FOREIGN KEY (tenant_id, default_agent_id) REFERENCES voice_agents (tenant_id, id)
        ON DELETE SET NULL (default_agent_id)
);
-- Unique indexes are not filtered by RLS: a number active in one tenant cannot become active in
-- another (the second INSERT gets unique_violation, which the API reports as 409).
CREATE UNIQUE INDEX voice_agent_numbers_active_e164_key ON voice_agent_numbers (e164)
    WHERE deleted_at IS NULL AND status = 'active';
CREATE UNIQUE INDEX voice_agent_numbers_tenant_e164_key ON voice_agent_numbers (tenant_id, e164)
    WHERE deleted_at IS NULL;
CREATE INDEX voice_agent_numbers_tenant_provider_idx ON voice_agent_numbers (tenant_id, provider);
CREATE INDEX voice_agent_numbers_tenant_status_idx ON voice_agent_numbers (tenant_id, status);
CREATE INDEX voice_agent_numbers_tenant_agent_idx ON voice_agent_numbers (tenant_id, default_agent_id)
    WHERE default_agent_id IS NOT NULL;
CREATE TRIGGER voice_agent_numbers_set_updated_at BEFORE UPDATE ON voice_agent_numbers
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE voice_user_profiles (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    default_agent_id    bigint,
    default_number_id   uuid,
    preferences         jsonb NOT NULL DEFAULT '{}',
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, user_id),
    FOREIGN KEY (tenant_id, default_agent_id) REFERENCES voice_agents (tenant_id, id)
        ON DELETE SET NULL (default_agent_id),
    FOREIGN KEY (tenant_id, default_number_id) REFERENCES voice_agent_numbers (tenant_id, id)
        ON DELETE SET NULL (default_number_id)
);
CREATE INDEX voice_user_profiles_user_id_idx ON voice_user_profiles (user_id);
CREATE TRIGGER voice_user_profiles_set_updated_at BEFORE UPDATE ON voice_user_profiles
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One row grants a user one number, one voice, or a number+voice pair.
CREATE TABLE voice_permissions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    number_id   uuid,
    voice_id    uuid,
    is_active   boolean NOT NULL DEFAULT true,
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (number_id IS NOT NULL OR voice_id IS NOT NULL),
    FOREIGN KEY (tenant_id, number_id) REFERENCES voice_agent_numbers (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, voice_id) REFERENCES voice_agent_voices (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX voice_permissions_grant_key ON voice_permissions (tenant_id, user_id, number_id, voice_id)
    NULLS NOT DISTINCT;
CREATE INDEX voice_permissions_user_id_idx ON voice_permissions (user_id);
CREATE INDEX voice_permissions_tenant_number_idx ON voice_permissions (tenant_id, number_id)
    WHERE number_id IS NOT NULL;
CREATE INDEX voice_permissions_tenant_voice_idx ON voice_permissions (tenant_id, voice_id)
    WHERE voice_id IS NOT NULL;
CREATE TRIGGER voice_permissions_set_updated_at BEFORE UPDATE ON voice_permissions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Seed columns + name, deleted_at, from_number_ids (numbers the batch rotates through; an array
-- cannot carry a foreign key, the API validates it). Schedule, calling window and retry settings
-- live in metadata.
CREATE TABLE voice_call_batches (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                    text CHECK (char_length(name) <= 200),
    initiated_by_user_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    agent_id                bigint NOT NULL,
    voice_id                uuid,
    from_number_id          uuid,
    from_number_ids         uuid[] NOT NULL DEFAULT '{}',
    job_id                  text CHECK (char_length(job_id) <= 200),
    status                  text NOT NULL DEFAULT 'scheduled'
                            CHECK (status IN ('scheduled', 'running', 'paused', 'completed', 'cancelled')),
    total_calls             int NOT NULL DEFAULT 0 CHECK (total_calls >= 0),
    completed_calls         int NOT NULL DEFAULT 0 CHECK (completed_calls >= 0),
    failed_calls            int NOT NULL DEFAULT 0 CHECK (failed_calls >= 0),
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES voice_agents (tenant_id, id),
    FOREIGN KEY (tenant_id, voice_id) REFERENCES voice_agent_voices (tenant_id, id) ON DELETE SET NULL (voice_id),
    FOREIGN KEY (tenant_id, from_number_id) REFERENCES voice_agent_numbers (tenant_id, id)
        ON DELETE SET NULL (from_number_id)
);
CREATE INDEX voice_call_batches_tenant_created_idx ON voice_call_batches (tenant_id, created_at DESC, id DESC);
CREATE INDEX voice_call_batches_tenant_status_idx ON voice_call_batches (tenant_id, status);
CREATE INDEX voice_call_batches_tenant_agent_idx ON voice_call_batches (tenant_id, agent_id);
CREATE TRIGGER voice_call_batches_set_updated_at BEFORE UPDATE ON voice_call_batches
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Seed columns + phone (the E.164 number dialled, copied from the lead or given directly),
-- variables (per-entry prompt variables), attempts / next_attempt_at (retries), last_call_id
-- (the latest call; a UUIDv7, so uuid_v7_time(last_call_id) locates its partition; no foreign key
-- because the call log's key includes created_at).
CREATE TABLE voice_call_batch_entries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    batch_id        uuid NOT NULL,
    lead_id         uuid,
    phone           text CHECK (phone ~ '^\+[1-9][0-9]{1,14}$'),
    variables       jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'dialing', 'in_progress', 'retrying', 'completed', 'failed',
                                      'skipped', 'cancelled')),
    error_message   text,
    attempts        int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_call_id    uuid,
    next_attempt_at timestamptz,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, batch_id) REFERENCES voice_call_batches (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id) ON DELETE SET NULL (lead_id)
);
CREATE INDEX voice_call_batch_entries_batch_created_idx ON voice_call_batch_entries (batch_id, created_at, id);
CREATE INDEX voice_call_batch_entries_batch_status_idx ON voice_call_batch_entries (batch_id, status);
CREATE INDEX voice_call_batch_entries_due_idx ON voice_call_batch_entries (batch_id, next_attempt_at)
    WHERE status IN ('queued', 'retrying');
CREATE INDEX voice_call_batch_entries_tenant_lead_idx ON voice_call_batch_entries (tenant_id, lead_id)
    WHERE lead_id IS NOT NULL;
CREATE TRIGGER voice_call_batch_entries_set_updated_at BEFORE UPDATE ON voice_call_batch_entries
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Range-partitioned by month on created_at; the primary key must include the partition key.
-- id defaults to uuid_v7(now()): the id's timestamp is created_at truncated to the millisecond, so a
-- lookup by id alone prunes to one partition with
--     WHERE id = $1 AND created_at >= uuid_v7_time($1) AND created_at < uuid_v7_time($1) + interval '1 ms'
-- (that holds for ids made by this default; an id given explicitly must be made the same way).
-- Extra columns: voice_id, to_e164/from_e164 (as dialled/presented; inbound callers can be
-- anonymous or non-E.164), provider/provider_call_id, batch_id/batch_entry_id, attempt,
-- answered_by (human/machine detection), media_ended_at and provider_final_at (the two ends of a
-- call: the media stream closing and the provider's final status), status_sequence (the last provider
-- status sequence applied, so a late or repeated webhook cannot move the status backwards).
-- voice_id, campaign_step_id and batch_entry_id carry no foreign key: each foreign key on this table
-- needs an index on every partition to keep deletes of the parent rows cheap, and these rows are
-- only soft-deleted (hard-deleted only together with their tenant, which removes the calls too).
CREATE TABLE voice_call_logs (
    id                      uuid NOT NULL DEFAULT uuid_v7(now()),
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    initiated_by_user_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    lead_id                 uuid,
    agent_id                bigint,
    voice_id                uuid,
    from_number_id          uuid,
    to_country_code         text CHECK (char_length(to_country_code) <= 3),
    to_base_number          bigint,
    to_e164                 text CHECK (char_length(to_e164) <= 64),
    from_e164               text CHECK (char_length(from_e164) <= 64),
    campaign_id             uuid,
    campaign_lead_id        uuid,
    campaign_step_id        uuid,
    batch_id                uuid,
    batch_entry_id          uuid,
    provider                text CHECK (provider IN ('twilio', 'vonage', 'simulator')),
    provider_call_id        text CHECK (char_length(provider_call_id) <= 200),
    attempt                 int NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    answered_by             text CHECK (char_length(answered_by) <= 50),
    status                  text NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'ringing', 'ongoing', 'ended', 'declined', 'cancelled',
                                              'failed')),
    direction               text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    started_at              timestamptz,
    ended_at                timestamptz,
    duration_seconds        int CHECK (duration_seconds >= 0),
    media_ended_at          timestamptz,
    provider_final_at       timestamptz,
    status_sequence         int NOT NULL DEFAULT -1,
    recording_url           text CHECK (char_length(recording_url) <= 2048),
    transcripts             jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(transcripts) = 'array'),
    cost                    numeric(18, 6),
    currency                text CHECK (currency ~ '^[A-Z]{3}$'),
    cost_breakdown          jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(cost_breakdown) = 'array'),
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at),
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id) ON DELETE SET NULL (lead_id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES voice_agents (tenant_id, id) ON DELETE SET NULL (agent_id),
    FOREIGN KEY (tenant_id, from_number_id) REFERENCES voice_agent_numbers (tenant_id, id)
        ON DELETE SET NULL (from_number_id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id) ON DELETE SET NULL (campaign_id),
    FOREIGN KEY (tenant_id, campaign_lead_id) REFERENCES campaign_leads (tenant_id, id)
        ON DELETE SET NULL (campaign_lead_id),
    FOREIGN KEY (tenant_id, batch_id) REFERENCES voice_call_batches (tenant_id, id) ON DELETE SET NULL (batch_id)
) PARTITION BY RANGE (created_at);

CREATE TABLE voice_call_logs_default PARTITION OF voice_call_logs DEFAULT;

CREATE INDEX voice_call_logs_tenant_created_idx ON voice_call_logs (tenant_id, created_at DESC, id DESC);
CREATE INDEX voice_call_logs_tenant_agent_idx ON voice_call_logs (tenant_id, agent_id);
CREATE INDEX voice_call_logs_tenant_status_idx ON voice_call_logs (tenant_id, status);
CREATE INDEX voice_call_logs_tenant_direction_idx ON voice_call_logs (tenant_id, direction);
CREATE INDEX voice_call_logs_provider_call_idx ON voice_call_logs (provider, provider_call_id);
-- Indexes behind the foreign keys (sparse columns: partial).
CREATE INDEX voice_call_logs_tenant_lead_idx ON voice_call_logs (tenant_id, lead_id) WHERE lead_id IS NOT NULL;
CREATE INDEX voice_call_logs_tenant_from_number_idx ON voice_call_logs (tenant_id, from_number_id)
    WHERE from_number_id IS NOT NULL;
CREATE INDEX voice_call_logs_tenant_campaign_idx ON voice_call_logs (tenant_id, campaign_id)
    WHERE campaign_id IS NOT NULL;
CREATE INDEX voice_call_logs_tenant_campaign_lead_idx ON voice_call_logs (tenant_id, campaign_lead_id)
    WHERE campaign_lead_id IS NOT NULL;
CREATE INDEX voice_call_logs_tenant_batch_idx ON voice_call_logs (tenant_id, batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX voice_call_logs_initiated_by_idx ON voice_call_logs (initiated_by_user_id)
    WHERE initiated_by_user_id IS NOT NULL;
CREATE TRIGGER voice_call_logs_set_updated_at BEFORE UPDATE ON voice_call_logs
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Webhooks carry only the provider's call id: this small table finds the call (and its tenant and
-- partition) without probing every partition. Written in the same transaction as the call log row.
CREATE TABLE voice_call_provider_ids (
    provider            text NOT NULL CHECK (provider IN ('twilio', 'vonage', 'simulator')),
    provider_call_id    text NOT NULL CHECK (char_length(provider_call_id) BETWEEN 1 AND 200),
    call_id             uuid NOT NULL,
    call_created_at     timestamptz NOT NULL,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, provider_call_id),
    CONSTRAINT voice_call_provider_ids_call_fk FOREIGN KEY (call_id, call_created_at)
        REFERENCES voice_call_logs (id, created_at)
);
CREATE INDEX voice_call_provider_ids_call_idx ON voice_call_provider_ids (call_id, call_created_at);
CREATE INDEX voice_call_provider_ids_tenant_idx ON voice_call_provider_ids (tenant_id);

-- Seed columns + call_created_at (the call log's key includes its partition key), status, error,
-- model, success_evaluation, updated_at (the analysis is filled in, and can be re-run).
CREATE TABLE voice_call_analysis (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    call_log_id         uuid NOT NULL UNIQUE,
    call_created_at     timestamptz NOT NULL,
    lead_id             uuid,
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed', 'failed')),
    summary             text,
    sentiment           text CHECK (char_length(sentiment) <= 50),
    lead_category       text CHECK (char_length(lead_category) <= 100),
    lead_extraction     jsonb NOT NULL DEFAULT '{}',
    success_evaluation  jsonb NOT NULL DEFAULT '{}',
    error               text,
    model               text CHECK (char_length(model) <= 200),
    cost                numeric(18, 6),
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT voice_call_analysis_call_fk FOREIGN KEY (call_log_id, call_created_at)
        REFERENCES voice_call_logs (id, created_at),
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id) ON DELETE SET NULL (lead_id)
);
CREATE INDEX voice_call_analysis_tenant_created_idx ON voice_call_analysis (tenant_id, created_at DESC);
CREATE INDEX voice_call_analysis_tenant_lead_idx ON voice_call_analysis (tenant_id, lead_id)
    WHERE lead_id IS NOT NULL;
CREATE TRIGGER voice_call_analysis_set_updated_at BEFORE UPDATE ON voice_call_analysis
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Creates the monthly partitions voice_call_logs_yYYYYmMM (UTC months) from last month to
-- months_ahead months ahead, skipping those that exist (by name); returns the names it created.
--
-- Rows already in the default partition for a month being created (the job did not run in time,
-- or a created_at far ahead) are moved into the new partition with the same id and created_at:
-- PostgreSQL refuses to create a partition while the default holds rows of its range, and leaving
-- them would let the default grow for good. Foreign keys to a partitioned table are checked per
-- partition (a deferred check still fails once the row has left the default), so the rows that
-- reference the moving calls (voice_call_analysis, voice_call_provider_ids, and any later table
-- found in pg_constraint) are parked in temp tables and put back after the calls. When such a
-- referencing table is itself referenced by a foreign key (parking its rows could cascade), the
-- month is skipped with a WARNING instead: its rows stay in the default partition, still correct.
--
-- Serialised with an advisory lock. SECURITY DEFINER so the app role, which cannot create tables,
-- can run it from a periodic job. CREATE TABLE ... PARTITION OF takes an ACCESS EXCLUSIVE lock on
-- the parent and the default partition, only while a partition is being created.
CREATE FUNCTION ensure_call_log_partitions(months_ahead int) RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    this_month  timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
    lo          timestamptz;
    hi          timestamptz;
    part        text;
    created     text[] := '{}';
    refs        text[];
    fk          record;
    moving      boolean;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 120, got %', months_ahead;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('ensure_call_log_partitions'));
    FOR i IN -1 .. months_ahead LOOP
        lo := (this_month + make_interval(months => i)) AT TIME ZONE 'UTC';
        hi := (this_month + make_interval(months => i + 1)) AT TIME ZONE 'UTC';
        part := format('voice_call_logs_y%sm%s', to_char(lo AT TIME ZONE 'UTC', 'YYYY'),
                       to_char(lo AT TIME ZONE 'UTC', 'MM'));
        CONTINUE WHEN to_regclass(format('public.%I', part)) IS NOT NULL;

        -- Same lock order as CREATE TABLE ... PARTITION OF (parent, then default partition).
        LOCK TABLE ONLY voice_call_logs IN ACCESS EXCLUSIVE MODE;
        LOCK TABLE voice_call_logs_default IN ACCESS EXCLUSIVE MODE;
        moving := EXISTS (SELECT 1 FROM voice_call_logs_default WHERE created_at >= lo AND created_at < hi);
        IF moving THEN
            -- Top-level foreign keys pointing at the call log: referencing table, its columns and the
            -- call log's columns, in constraint order.
            SELECT array_agg(c.conrelid::regclass::text ORDER BY c.oid) INTO refs
            FROM pg_constraint c
            WHERE c.contype = 'f' AND c.confrelid = 'voice_call_logs'::regclass AND c.conparentid = 0;
            IF EXISTS (SELECT 1 FROM pg_constraint c
                       WHERE c.contype = 'f' AND c.confrelid::regclass::text = ANY (refs)) THEN
                RAISE WARNING 'ensure_call_log_partitions: % not created: the default partition holds rows '
                              'for it and the tables referencing them are themselves referenced', part;
                CONTINUE;
            END IF;
            -- Dynamic SQL for the temp tables, so that no cached plan outlives them.
            EXECUTE 'CREATE TEMP TABLE voice_call_logs_moving ON COMMIT DROP AS '
                    'SELECT * FROM voice_call_logs WHERE created_at >= $1 AND created_at < $2' USING lo, hi;
            FOR fk IN
                SELECT row_number() OVER (ORDER BY c.oid) AS n, c.conrelid::regclass::text AS rel,
                       (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
                        FROM unnest(c.conkey) WITH ORDINALITY k (attnum, ord)
                        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS cols,
                       (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
                        FROM unnest(c.confkey) WITH ORDINALITY k (attnum, ord)
                        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum) AS refcols
                FROM pg_constraint c
                WHERE c.contype = 'f' AND c.confrelid = 'voice_call_logs'::regclass AND c.conparentid = 0
            LOOP
                EXECUTE format('CREATE TEMP TABLE voice_call_logs_parked_%s ON COMMIT DROP AS '
                               'WITH d AS (DELETE FROM %s WHERE (%s) IN (SELECT %s FROM voice_call_logs_moving) '
                               'RETURNING *) SELECT * FROM d', fk.n, fk.rel, fk.cols, fk.refcols);
            END LOOP;
            DELETE FROM voice_call_logs_default WHERE created_at >= lo AND created_at < hi;
        END IF;

        EXECUTE format('CREATE TABLE public.%I PARTITION OF voice_call_logs FOR VALUES FROM (%L) TO (%L)',
                       part, to_char(lo AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00"'),
                       to_char(hi AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00"'));

        IF moving THEN
            EXECUTE 'INSERT INTO voice_call_logs SELECT * FROM voice_call_logs_moving';
            EXECUTE 'DROP TABLE voice_call_logs_moving';
            FOR n IN 1 .. coalesce(array_length(refs, 1), 0) LOOP
                EXECUTE format('INSERT INTO %s OVERRIDING SYSTEM VALUE SELECT * FROM voice_call_logs_parked_%s',
                               refs[n], n);
                EXECUTE format('DROP TABLE voice_call_logs_parked_%s', n);
            END LOOP;
        END IF;

        -- The app reads partitions only through the parent, where RLS applies; a grant on the
        -- partition itself (from ALTER DEFAULT PRIVILEGES) would bypass it.
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voice_app') THEN
            EXECUTE format('REVOKE ALL ON TABLE public.%I FROM voice_app', part);
        END IF;
        created := created || part;
    END LOOP;
    RETURN created;
END
$$;

SELECT ensure_call_log_partitions(3);
