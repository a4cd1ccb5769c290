-- Web calls: a browser (or any WebSocket client) talks to an agent with no carrier in between. Their call log
-- rows have direction 'web' and no provider (so no telephony leg, no telephony cost, no provider call id); the
-- single-use token of their socket is an ordinary row of voice_call_media_tokens with a short expiry.
ALTER TABLE voice_call_logs DROP CONSTRAINT voice_call_logs_direction_check;
ALTER TABLE voice_call_logs ADD CONSTRAINT voice_call_logs_direction_check
    CHECK (direction IN ('inbound', 'outbound', 'web'));
ALTER TABLE voice_call_logs ADD CONSTRAINT voice_call_logs_web_has_no_carrier
    CHECK (direction <> 'web' OR (provider IS NULL AND provider_call_id IS NULL));
