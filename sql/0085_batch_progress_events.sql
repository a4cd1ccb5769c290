-- batch.progress events are rate-limited per batch, across every worker: the time of the last one is kept on the
-- batch row, and an UPDATE … WHERE progress_event_at is old enough … RETURNING decides, under the row lock, whether
-- this change gets an event (voice_service/batches/events.py).
ALTER TABLE voice_call_batches ADD COLUMN progress_event_at timestamptz;
