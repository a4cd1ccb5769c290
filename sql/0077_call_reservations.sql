-- 0077_call_reservations: a single call holds its estimated cost on the wallet, as a batch does (issue #15 §2).
--
-- With the wallet at 0, a one-entry batch was refused with 402 but POST /v1/calls placed the call, and an inbound
-- call was answered whatever the balance. Now every call placed or answered outside a batch reserves its estimate
-- when it is created (402 / the carrier's polite rejection when the wallet cannot cover it, under
-- ENFORCE_WALLET_BALANCE); the call's debit settles it: the reservation is released when the call is billed.
-- A reservation is a batch's (batch_id) or one call's (call_id), never both.

ALTER TABLE billing_wallet_reservations ALTER COLUMN batch_id DROP NOT NULL;
ALTER TABLE billing_wallet_reservations
    ADD COLUMN call_id uuid,
    ADD CONSTRAINT billing_wallet_reservations_one_holder CHECK ((batch_id IS NULL) <> (call_id IS NULL));
-- One reservation per call. No foreign key: voice_call_logs is partitioned (its key includes created_at), and the
-- reservation is written in the call row's own transaction.
CREATE UNIQUE INDEX billing_wallet_reservations_call_key ON billing_wallet_reservations (tenant_id, call_id)
    WHERE call_id IS NOT NULL;
