-- 0020_batch_dispatch: what the batch dispatcher reads on every claim, kept in typed columns rather than in
-- metadata (0003 planned metadata; the claim transaction filters and sorts on these), the per-status entry
-- counters maintained by a statement-level trigger, and the global pacing rows behind calls-per-second limits.
--
-- Limits are enforced in the database so that they hold across every worker process:
--   * per batch: the claim transaction locks the batch row (SELECT … FOR UPDATE) and compares
--     in_progress_calls (entries dialing or talking) with max_concurrency;
--   * per tenant: the claim transaction takes a transaction-level advisory lock on the tenant and sums
--     in_progress_calls over the tenant's batches (plus live calls outside batches);
--   * per from-number / provider account: dispatch_pacing holds the next free start time, updated in the
--     claim transaction (row lock).

ALTER TABLE voice_call_batches
    ADD COLUMN start_at           timestamptz,
    -- Entries whose lead has no usable time zone are evaluated in this one.
    ADD COLUMN timezone           text NOT NULL DEFAULT 'UTC' CHECK (char_length(timezone) BETWEEN 1 AND 64),
    -- {"days": ["mon", …], "start": "HH:MM", "end": "HH:MM"} in each lead's local time; NULL = any time.
    ADD COLUMN calling_window     jsonb CHECK (calling_window IS NULL OR jsonb_typeof(calling_window) = 'object'),
    -- NULL = no per-batch limit (the tenant cap still applies).
    ADD COLUMN max_concurrency    int CHECK (max_concurrency > 0),
    -- Per from-number; NULL = the provider's default.
    ADD COLUMN calls_per_second   numeric(8, 3) CHECK (calls_per_second > 0),
    -- {"max_attempts": n, "retry_on": [...], "backoff_seconds": [...]}
    ADD COLUMN retry_policy       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(retry_policy) = 'object'),
    ADD COLUMN variables          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(variables) = 'object'),
    -- The distinct time zones of the entries: the window is evaluated once per zone, not per entry.
    ADD COLUMN timezones          text[] NOT NULL DEFAULT '{}',
    -- Counters besides the seed's total_calls/completed_calls/failed_calls; together they add up to total_calls.
    -- in_progress_calls counts entries dialing or talking: the live calls the concurrency limits count.
    ADD COLUMN queued_calls       int NOT NULL DEFAULT 0 CHECK (queued_calls >= 0),
    ADD COLUMN in_progress_calls  int NOT NULL DEFAULT 0 CHECK (in_progress_calls >= 0),
    ADD COLUMN retrying_calls     int NOT NULL DEFAULT 0 CHECK (retrying_calls >= 0),
    ADD COLUMN skipped_calls      int NOT NULL DEFAULT 0 CHECK (skipped_calls >= 0),
    ADD COLUMN cancelled_calls    int NOT NULL DEFAULT 0 CHECK (cancelled_calls >= 0),
    -- Round-robin position over from_number_ids, and the next entry position (appends continue from it).
    ADD COLUMN rotation           bigint NOT NULL DEFAULT 0,
    ADD COLUMN next_position      int NOT NULL DEFAULT 0,
    -- The earliest delayed dispatch job already enqueued (so waiting ticks do not multiply).
    ADD COLUMN wake_at            timestamptz,
    -- When a dispatch tick last looked for claims left behind by a dead process (at most every few seconds).
    ADD COLUMN swept_at           timestamptz,
    ADD COLUMN started_at         timestamptz,
    ADD COLUMN completed_at       timestamptz;

-- position: order of the entry in the request(s); timezone: IANA zone the calling window is evaluated in;
-- outcome: the latest attempt's result (answered, voicemail, no_answer, busy, failed, cancelled,
-- dispatch_interrupted) or, for a skipped entry, why (invalid_phone, duplicate, do_not_call, lead_not_found,
-- no_phone); claimed_at/claimed_by: when and by which dispatcher process (its advisory-lock lease) the
-- current attempt was claimed, so a claim left behind by a killed process can be recognised.
ALTER TABLE voice_call_batch_entries
    ADD COLUMN position    int NOT NULL DEFAULT 0,
    ADD COLUMN timezone    text NOT NULL DEFAULT 'UTC' CHECK (char_length(timezone) BETWEEN 1 AND 64),
    ADD COLUMN outcome     text CHECK (char_length(outcome) <= 50),
    ADD COLUMN claimed_at  timestamptz,
    ADD COLUMN claimed_by  int;

-- Redundant, and it costs a check per inserted entry (10,000 per launch): the (tenant_id, batch_id) reference
-- already implies the tenant, and deleting the tenant deletes its batches and so their entries.
ALTER TABLE voice_call_batch_entries DROP CONSTRAINT voice_call_batch_entries_tenant_id_fkey;

-- The claim scans due entries in (next_attempt_at, position) order; listing pages by position, optionally per
-- status; recovery looks at the dialing ones.
DROP INDEX voice_call_batch_entries_due_idx;
DROP INDEX voice_call_batch_entries_batch_status_idx;
DROP INDEX voice_call_batch_entries_batch_created_idx;
CREATE INDEX voice_call_batch_entries_claim_idx ON voice_call_batch_entries (batch_id, next_attempt_at, position)
    WHERE status IN ('queued', 'retrying');
CREATE INDEX voice_call_batch_entries_batch_position_idx ON voice_call_batch_entries (batch_id, position);
CREATE INDEX voice_call_batch_entries_batch_status_idx ON voice_call_batch_entries (batch_id, status, position);

-- Counters follow the entries: one aggregate per statement (a 10,000-row insert updates the batch row once).
-- Runs as the invoking role, so row-level security applies to the batch row as to the entries.
CREATE FUNCTION voice_call_batch_entries_count_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE voice_call_batches b
    SET total_calls       = b.total_calls + d.total,
        queued_calls      = b.queued_calls + d.queued,
        in_progress_calls = b.in_progress_calls + d.in_progress,
        retrying_calls    = b.retrying_calls + d.retrying,
        completed_calls   = b.completed_calls + d.completed,
        failed_calls      = b.failed_calls + d.failed,
        skipped_calls     = b.skipped_calls + d.skipped,
        cancelled_calls   = b.cancelled_calls + d.cancelled
    FROM (
        SELECT batch_id,
               count(*) AS total,
               count(*) FILTER (WHERE status = 'queued') AS queued,
               count(*) FILTER (WHERE status IN ('dialing', 'in_progress')) AS in_progress,
               count(*) FILTER (WHERE status = 'retrying') AS retrying,
               count(*) FILTER (WHERE status = 'completed') AS completed,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'skipped') AS skipped,
               count(*) FILTER (WHERE status = 'cancelled') AS cancelled
        FROM new_rows GROUP BY batch_id
    ) d
    WHERE b.id = d.batch_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION voice_call_batch_entries_count_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE voice_call_batches b
    SET queued_calls      = b.queued_calls + d.queued,
        in_progress_calls = b.in_progress_calls + d.in_progress,
        retrying_calls    = b.retrying_calls + d.retrying,
        completed_calls   = b.completed_calls + d.completed,
        failed_calls      = b.failed_calls + d.failed,
        skipped_calls     = b.skipped_calls + d.skipped,
        cancelled_calls   = b.cancelled_calls + d.cancelled
    FROM (
        SELECT batch_id,
               sum(n) FILTER (WHERE status = 'queued') AS queued,
               sum(n) FILTER (WHERE status IN ('dialing', 'in_progress')) AS in_progress,
               sum(n) FILTER (WHERE status = 'retrying') AS retrying,
               sum(n) FILTER (WHERE status = 'completed') AS completed,
               sum(n) FILTER (WHERE status = 'failed') AS failed,
               sum(n) FILTER (WHERE status = 'skipped') AS skipped,
               sum(n) FILTER (WHERE status = 'cancelled') AS cancelled
        FROM (
            SELECT batch_id, status, 1 AS n FROM new_rows
            UNION ALL
            SELECT batch_id, status, -1 AS n FROM old_rows
        ) x
        GROUP BY batch_id
    ) d0
    CROSS JOIN LATERAL (
        SELECT coalesce(d0.queued, 0) AS queued, coalesce(d0.in_progress, 0) AS in_progress,
               coalesce(d0.retrying, 0) AS retrying, coalesce(d0.completed, 0) AS completed,
               coalesce(d0.failed, 0) AS failed, coalesce(d0.skipped, 0) AS skipped,
               coalesce(d0.cancelled, 0) AS cancelled
    ) d
    WHERE b.id = d0.batch_id
      AND (d.queued, d.in_progress, d.retrying, d.completed, d.failed, d.skipped, d.cancelled)
          IS DISTINCT FROM (0, 0, 0, 0, 0, 0, 0);
    RETURN NULL;
END
$$;

CREATE TRIGGER voice_call_batch_entries_count_insert AFTER INSERT ON voice_call_batch_entries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION voice_call_batch_entries_count_insert();
CREATE TRIGGER voice_call_batch_entries_count_update AFTER UPDATE ON voice_call_batch_entries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION voice_call_batch_entries_count_update();

-- The tenant cap counts live calls outside batches (inbound, one-off) on every claim; this keeps that count
-- independent of how many batch calls are live.
CREATE INDEX voice_call_logs_tenant_live_single_idx ON voice_call_logs (tenant_id, created_at)
    WHERE batch_id IS NULL AND status IN ('pending', 'ringing', 'ongoing');

-- Calls-per-second pacing: the earliest time the next call may start, per key ('number:<uuid>' for a
-- from-number, 'account:<provider>' for a provider account shared by every tenant). Global (no tenant data,
-- no row-level security); written only by the dispatcher's claim transaction.
CREATE TABLE dispatch_pacing (
    key             text PRIMARY KEY CHECK (char_length(key) BETWEEN 1 AND 200),
    next_slot_at    timestamptz,  -- NULL: free now
    updated_at      timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON dispatch_pacing TO voice_app;
REVOKE DELETE ON dispatch_pacing FROM voice_app;
