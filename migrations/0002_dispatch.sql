-- 0002_dispatch: what the dispatcher, the reaper and retention need besides the queue itself.
-- (Every index here is written by state changes; each one is there for a lookup that needs it.)

-- Cancels the API asked for that a container still has to hear.
CREATE INDEX predictions_cancel_pending ON predictions (cancel_requested_at)
  WHERE cancel_requested_at IS NOT NULL AND status IN ('starting', 'processing');

-- Timeouts, fixed when a prediction is created (from its deployment, its version or the service
-- defaults): it must start by start_by, and once running it may run run_timeout_ms, until run_by.
ALTER TABLE predictions
  ADD COLUMN start_by       timestamptz,
  ADD COLUMN run_timeout_ms bigint CHECK (run_timeout_ms > 0),
  ADD COLUMN run_by         timestamptz,
  ADD CONSTRAINT predictions_run_by_when_started CHECK (run_by IS NULL OR started_at IS NOT NULL);
-- The reaper's lookups: due start timeouts and due run timeouts (the created_at index of 0001 is
-- not what it needs), and lapsed leases over leased rows only (a create then writes one index
-- entry less).
DROP INDEX predictions_live_created;
DROP INDEX predictions_live_lease;
CREATE INDEX predictions_live_lease ON predictions (lease_expires_at)
  WHERE lease_expires_at IS NOT NULL AND status IN ('starting', 'processing');
CREATE INDEX predictions_start_due ON predictions (start_by) WHERE status = 'starting';
CREATE INDEX predictions_run_due ON predictions (run_by) WHERE status = 'processing';
-- Retention, in one index: terminal rows whose data is still there, oldest first (data removal),
-- and all terminal rows by age (row deletion, once per value of data_removed).
DROP INDEX predictions_completed;
CREATE INDEX predictions_retention ON predictions (data_removed, completed_at)
  WHERE completed_at IS NOT NULL;

-- No foreign keys from predictions to api_tokens and versions: every create would check both
-- with a KEY SHARE lock on the tenant's token row, which concurrent create batches of one tenant
-- contend on (MultiXacts), for no protection that matters: tokens are revoked, never deleted;
-- versions are never deleted; the API resolves both before it inserts.
ALTER TABLE predictions DROP CONSTRAINT predictions_token_id_fkey,
                        DROP CONSTRAINT predictions_version_id_fkey;

-- Secrets the service makes for itself once and every process shares: the bearer token model
-- containers present with their updates, and the key of signed file URLs. Kept across restarts,
-- so that a container started before a restart can still report, and a file URL still works.
CREATE TABLE service_secrets (
  name       text PRIMARY KEY CHECK (name ~ '^[a-z_]+$'),
  value      text NOT NULL CHECK (length(value) >= 32),
  created_at timestamptz NOT NULL DEFAULT now()
);
