-- 0003_webhook_delivery: what the webhook dispatcher needs besides the outbox of 0001.

-- The endpoint ("https://host:port" as written in the URL) a delivery goes to: the key of the
-- per-endpoint concurrency limit. When an output or logs delivery was first due: the next one of
-- the same prediction is due at least the throttle interval later.
ALTER TABLE webhook_deliveries
  ADD COLUMN endpoint text GENERATED ALWAYS AS (lower(substring(url FROM '^https?://[^/?#]*')))
    STORED,
  ADD COLUMN due_at timestamptz NOT NULL DEFAULT now();

-- A prediction's deliveries go out in order: a pending delivery waits for the prediction's
-- earlier pending ones. The lookup, and the throttle's and the supersede's, over pending rows only.
CREATE INDEX webhook_deliveries_pending_prediction ON webhook_deliveries (prediction_id, id)
  WHERE state = 'pending';

-- Due deliveries, fresh ones apart from retries: a backlog of retries (a dead endpoint) is never
-- in the way of claiming fresh deliveries.
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_fresh_due ON webhook_deliveries (next_attempt_at)
  WHERE state = 'pending' AND attempts = 0;
CREATE INDEX webhook_deliveries_retry_due ON webhook_deliveries (next_attempt_at)
  WHERE state = 'pending' AND attempts > 0;
