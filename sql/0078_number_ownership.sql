-- 0078_number_ownership: a phone number belongs to one tenant until that tenant deletes it (issue #15 §3).
--
-- 0003 made an E.164 number unique among ACTIVE numbers only: tenant B set its number inactive, tenant A registered
-- the same number (and B could no longer reactivate its own), and inbound calls to it went to A. Now a number is
-- unique among all numbers not deleted, whatever their status: an inactive number stays reserved for its tenant.
--
-- Rows already held twice (the takeover above, or a number re-registered while another tenant kept it inactive):
-- the earliest registration keeps the number; each later one is released (soft-deleted, with the reason in its
-- metadata) so the new index can be built. Inbound routing (route_inbound_number) is unchanged: it already finds
-- at most the one active row.

WITH ranked AS (
    SELECT id, row_number() OVER (PARTITION BY e164 ORDER BY created_at, id) AS n
    FROM voice_agent_numbers
    WHERE deleted_at IS NULL
), released AS (
    UPDATE voice_agent_numbers v
    SET deleted_at = now(), status = 'inactive',
        metadata = v.metadata || jsonb_build_object(
            'released', 'registered while another registration of the number was still held (migration 0078)')
    FROM ranked r
    WHERE r.id = v.id AND r.n > 1
    RETURNING v.id
)
SELECT count(*) FROM released;

DROP INDEX voice_agent_numbers_active_e164_key;
CREATE UNIQUE INDEX voice_agent_numbers_e164_key ON voice_agent_numbers (e164) WHERE deleted_at IS NULL;
