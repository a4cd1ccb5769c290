-- 0062_console_call_filters: the console's call list filtered by the analysis (sentiment, lead category), newest
-- first. The analysis row carries its call's created_at, so each index gives the calls in the list's order and a
-- page is read without visiting the calls the filter leaves out.
CREATE INDEX voice_call_analysis_tenant_sentiment_idx
    ON voice_call_analysis (tenant_id, sentiment, call_created_at DESC, call_log_id DESC);
CREATE INDEX voice_call_analysis_tenant_category_idx
    ON voice_call_analysis (tenant_id, lead_category, call_created_at DESC, call_log_id DESC);
