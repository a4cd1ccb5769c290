-- 0070_unbilled_calls: find the final calls that were never billed, so a restart re-enqueues their billing.
--
-- A call is final as the post-call trigger sees it (voice_service/billing/pipeline.py on_call_progress): the
-- carrier's final status is in and its media ended, or it never had media (never answered, declined, cancelled,
-- failed). A terminal call more than three hours old is taken as final too (the longest call is two hours; its
-- finalize-timeout job would have billed it). Calls whose billing gave up (metadata.billing_error.gave_up) are
-- left out unless asked for. Runs from the workers across every tenant (SECURITY DEFINER: the app role is
-- RLS-scoped), a page at a time in (created_at, id) order.

CREATE INDEX voice_call_logs_unbilled_idx ON voice_call_logs (created_at, id) WHERE cost IS NULL;

CREATE FUNCTION unbilled_final_calls(
    p_settled_before timestamptz,
    p_include_given_up boolean,
    p_after_created_at timestamptz,
    p_after_id uuid,
    p_limit integer
)
RETURNS TABLE (tenant_id uuid, call_id uuid, call_created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT c.tenant_id, c.id, c.created_at
    FROM voice_call_logs c
    WHERE c.cost IS NULL
      AND (p_after_created_at IS NULL OR (c.created_at, c.id) > (p_after_created_at, p_after_id))
      AND NOT coalesce(c.metadata -> 'billing' ? 'usage_event_id', false)
      AND (p_include_given_up OR coalesce((c.metadata -> 'billing_error' ->> 'gave_up')::boolean, false) = false)
      AND (
            (c.provider_final_at IS NOT NULL AND c.provider_final_at < p_settled_before
             AND (c.media_ended_at IS NOT NULL OR c.started_at IS NULL
                  OR c.status IN ('declined', 'cancelled', 'failed')))
         OR (c.status IN ('ended', 'declined', 'cancelled', 'failed') AND c.created_at < now() - interval '3 hours')
      )
    ORDER BY c.created_at, c.id
    LIMIT p_limit
$$;
REVOKE EXECUTE ON FUNCTION unbilled_final_calls(timestamptz, boolean, timestamptz, uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION unbilled_final_calls(timestamptz, boolean, timestamptz, uuid, integer) TO voice_app;
