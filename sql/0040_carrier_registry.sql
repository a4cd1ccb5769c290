-- Telephony carriers are listed once, in providers/telephony/registry.py: adding one is a module plus one
-- registry line, with no schema change. The provider columns stop enumerating twilio/vonage/simulator and keep
-- the format a carrier name must have (the registry checks the same pattern). Every stored value already matches.
ALTER TABLE voice_agent_numbers DROP CONSTRAINT voice_agent_numbers_provider_check;
ALTER TABLE voice_agent_numbers ADD CONSTRAINT voice_agent_numbers_provider_check
    CHECK (provider ~ '^[a-z][a-z0-9_]{0,49}$');

ALTER TABLE voice_call_logs DROP CONSTRAINT voice_call_logs_provider_check;
ALTER TABLE voice_call_logs ADD CONSTRAINT voice_call_logs_provider_check
    CHECK (provider ~ '^[a-z][a-z0-9_]{0,49}$');

ALTER TABLE voice_call_provider_ids DROP CONSTRAINT voice_call_provider_ids_provider_check;
ALTER TABLE voice_call_provider_ids ADD CONSTRAINT voice_call_provider_ids_provider_check
    CHECK (provider ~ '^[a-z][a-z0-9_]{0,49}$');

-- Carriers retry a webhook that timed out or got a 429/5xx with the same signed token (Vonage: same jti). The
-- replay guard keeps a hash of the request each one-time id came on: the same request again is a retry and is
-- handled again (idempotently); the id on any other request is a replay and refused. Rows from before this
-- migration have no hash, so nothing matches them: they stay refused, as they were.
ALTER TABLE webhook_replay_guard ADD COLUMN request_hash bytea;
