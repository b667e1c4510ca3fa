-- 0004_key_collation: the text keys of predictions compare bytewise.
--
-- Prediction ids, version ids and idempotency keys are opaque ASCII keys: nothing sorts them for
-- a reader, so language-aware collation buys nothing and costs a strcoll() call in every
-- comparison of every index insert and lookup (the primary key, predictions_queued,
-- predictions_tenant_created, predictions_idempotency). Under the "C" collation PostgreSQL
-- compares them with memcmp. The order of these ASCII characters is the same in both, so listing
-- and claim orders do not change. Each index on these columns is rebuilt; the table is not
-- rewritten.

-- The delivery rows' key must compare like the key it references.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_prediction_id_fkey;

ALTER TABLE predictions
  ALTER COLUMN id TYPE text COLLATE "C",
  ALTER COLUMN version_id TYPE text COLLATE "C",
  ALTER COLUMN idempotency_key TYPE text COLLATE "C";

ALTER TABLE webhook_deliveries
  ALTER COLUMN prediction_id TYPE text COLLATE "C";

ALTER TABLE webhook_deliveries
  ADD CONSTRAINT webhook_deliveries_prediction_id_fkey
    FOREIGN KEY (prediction_id) REFERENCES predictions (id) ON DELETE CASCADE;
