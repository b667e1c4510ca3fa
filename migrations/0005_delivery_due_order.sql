-- 0005_delivery_due_order: due deliveries in the claim's order (next_attempt_at, id).
--
-- The claim reads candidates ORDER BY next_attempt_at, id LIMIT n. With indexes on
-- next_attempt_at alone PostgreSQL read every due row, checked each one's order and sorted them
-- all before the limit: 50-230 ms a claim once slow endpoints held thousands of due deliveries
-- (bench/README.md, "Stale plans on growing tables"). In this order the scan stops after n.
CREATE INDEX webhook_deliveries_fresh_due_order ON webhook_deliveries (next_attempt_at, id)
  WHERE state = 'pending' AND attempts = 0;
CREATE INDEX webhook_deliveries_retry_due_order ON webhook_deliveries (next_attempt_at, id)
  WHERE state = 'pending' AND attempts > 0;
DROP INDEX webhook_deliveries_fresh_due;
DROP INDEX webhook_deliveries_retry_due;
