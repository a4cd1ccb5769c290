-- Google Cloud Text-to-Speech rows of the default GLOBAL price catalog. GENERATED from
-- analysis/catalog_default.py (GOOGLE_TTS_PRICES):
--   .venv/bin/python -m analysis.catalog_default 0034 > sql/0034_google_tts_pricing.sql
-- Do not edit by hand; tests/unit/test_tts_google.py checks the two match.
INSERT INTO billing_pricing_catalog
    (id, tenant_id, category, provider, model, unit, unit_price, description, effective_from, effective_to,
     is_active, metadata)
VALUES
    ('19708fb9-8a8a-528e-bb99-101ea8bcba2d', NULL, 'tts', 'google', '*-Standard-*', 'character', 0.000004, 'Google Cloud Text-to-Speech Standard voices, $4.00 per 1M characters after the monthly free tier, list price as of 2025 (https://cloud.google.com/text-to-speech/pricing). Approximate, verify.', '2025-01-01T00:00:00+00:00', NULL, TRUE, '{}'::jsonb),
    ('f34d5476-d106-5d01-9c01-0b6766e07c4d', NULL, 'tts', 'google', '*-Wavenet-*', 'character', 0.000004, 'Google Cloud Text-to-Speech WaveNet voices, $4.00 per 1M characters after the monthly free tier, list price as of 2025 (https://cloud.google.com/text-to-speech/pricing). WaveNet was $16 per 1M before Google cut it. Approximate, verify.', '2025-01-01T00:00:00+00:00', NULL, TRUE, '{}'::jsonb),
    ('b09c4d99-1a34-5ca2-a441-82ce9d0f3eed', NULL, 'tts', 'google', '*-Neural2-*', 'character', 0.000016, 'Google Cloud Text-to-Speech Neural2 voices, $16.00 per 1M characters after the monthly free tier, list price as of 2025 (https://cloud.google.com/text-to-speech/pricing). Approximate, verify.', '2025-01-01T00:00:00+00:00', NULL, TRUE, '{}'::jsonb),
    ('ed7cb478-3d25-57b7-b233-f3c81bfbb1bd', NULL, 'tts', 'google', '*-Chirp3-HD-*', 'character', 0.00003, 'Google Cloud Text-to-Speech Chirp 3: HD voices, $30.00 per 1M characters after the monthly free tier, list price as of 2025 (https://cloud.google.com/text-to-speech/pricing). Approximate, verify.', '2025-01-01T00:00:00+00:00', NULL, TRUE, '{}'::jsonb),
    ('9b921c51-4048-521e-83f4-8ce34d7e7b84', NULL, 'tts', 'google', '*-Studio-*', 'character', 0.00016, 'Google Cloud Text-to-Speech Studio voices, $160.00 per 1M characters after the monthly free tier, list price as of 2025 (https://cloud.google.com/text-to-speech/pricing). Approximate, verify.', '2025-01-01T00:00:00+00:00', NULL, TRUE, '{}'::jsonb),
    ('f1c08144-9ac9-53de-bccb-023826a65f4e', NULL, 'tts', 'google', '*', 'character', 0.000016, 'Google Cloud Text-to-Speech voice of an unrecognised tier (Polyglot, News, Casual, Chirp HD, or no voice name recorded), $16.00 per 1M characters after the monthly free tier, list price as of 2025 (https://cloud.google.com/text-to-speech/pricing). Priced as Neural2, the common middle tier. Approximate, verify.', '2025-01-01T00:00:00+00:00', NULL, TRUE, '{}'::jsonb);
