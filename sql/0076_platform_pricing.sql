-- 0076_platform_pricing: prices are the platform's (issue #15 §1).
--
-- A tenant admin could insert its own catalog rows (0005's catalog_insert policy) with unit_price 0 and an
-- effective_from in the past, and so make its usage free, calls already made included. Now:
--   * the app role only reads the catalog (global rows and its tenant's): its insert/update/delete privileges
--     and policies are gone;
--   * the platform (the billing system, PLATFORM_ADMIN_TOKEN) writes through catalog_add_price() and
--     catalog_end_price(), which refuse to run inside a tenant's transaction (no tenant request reaches them) and
--     never let a price take effect in the past: a correction opens a new row from now on and closes the row it
--     replaces at that instant, as the catalog's own corrections do (0035). Calls already billed, and calls
--     that started before the change, keep their price.

DROP POLICY catalog_insert ON billing_pricing_catalog;
DROP POLICY catalog_update ON billing_pricing_catalog;
DROP POLICY catalog_delete ON billing_pricing_catalog;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON billing_pricing_catalog FROM voice_app;

CREATE FUNCTION catalog_platform_only() RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF app_tenant_id() IS NOT NULL THEN
        RAISE EXCEPTION 'prices are set by the platform, never inside a tenant''s transaction';
    END IF;
END
$$;

-- A new price (tenant NULL = global), returned whole (the caller, outside any tenant, cannot read a tenant row) in force from p_effective_from (NULL = now; up to a minute in the past is
-- taken as now, for clock skew; earlier is refused). The open row it replaces (same scope, category, provider,
-- model, unit, direction, country and currency), if it took effect before, ends where the new one starts.
CREATE FUNCTION catalog_add_price(
    p_tenant_id uuid, p_category text, p_provider text, p_model text, p_unit text, p_unit_price numeric,
    p_description text, p_effective_from timestamptz, p_effective_to timestamptz, p_metadata jsonb
) RETURNS billing_pricing_catalog
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_from timestamptz := coalesce(p_effective_from, now());
    v_row billing_pricing_catalog%ROWTYPE;
BEGIN
    PERFORM catalog_platform_only();
    IF v_from < now() - interval '1 minute' THEN
        RAISE EXCEPTION 'a price cannot take effect in the past (effective_from %, now %)', v_from, now();
    END IF;
    v_from := greatest(v_from, now());
    UPDATE billing_pricing_catalog c SET effective_to = v_from
    WHERE c.tenant_id IS NOT DISTINCT FROM p_tenant_id AND c.category = p_category AND c.provider = p_provider
      AND c.model IS NOT DISTINCT FROM p_model AND c.unit = p_unit AND c.is_active
      AND c.metadata ->> 'direction' IS NOT DISTINCT FROM coalesce(p_metadata, '{}') ->> 'direction'
      AND c.metadata ->> 'country' IS NOT DISTINCT FROM coalesce(p_metadata, '{}') ->> 'country'
      AND coalesce(c.metadata ->> 'currency', 'USD') = coalesce(p_metadata ->> 'currency', 'USD')
      AND c.effective_from < v_from AND (c.effective_to IS NULL OR c.effective_to > v_from);
    INSERT INTO billing_pricing_catalog (tenant_id, category, provider, model, unit, unit_price, description,
                                         effective_from, effective_to, metadata)
    VALUES (p_tenant_id, p_category, p_provider, p_model, p_unit, p_unit_price, p_description, v_from,
            p_effective_to, coalesce(p_metadata, '{}'))
    RETURNING * INTO v_row;
    RETURN v_row;
END
$$;

-- End a price from now on: a row in force gets effective_to = now (what happened before keeps it); a row not in
-- force yet is withdrawn (is_active false: nothing was ever priced with it). False when there is no such row.
CREATE FUNCTION catalog_end_price(p_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_row billing_pricing_catalog%ROWTYPE;
BEGIN
    PERFORM catalog_platform_only();
    SELECT * INTO v_row FROM billing_pricing_catalog WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF v_row.effective_from > now() THEN
        UPDATE billing_pricing_catalog SET is_active = false WHERE id = p_id;
    ELSIF v_row.effective_to IS NULL OR v_row.effective_to > now() THEN
        UPDATE billing_pricing_catalog SET effective_to = now() WHERE id = p_id;
    END IF;
    RETURN true;
END
$$;

REVOKE EXECUTE ON FUNCTION catalog_platform_only() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION catalog_add_price(uuid, text, text, text, text, numeric, text, timestamptz, timestamptz,
                                             jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION catalog_end_price(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION catalog_add_price(uuid, text, text, text, text, numeric, text, timestamptz, timestamptz,
                                            jsonb) TO voice_app;
GRANT EXECUTE ON FUNCTION catalog_end_price(uuid) TO voice_app;
