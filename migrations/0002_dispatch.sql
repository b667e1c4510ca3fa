-- 0002_dispatch: what the dispatcher looks up besides the queue itself.

-- A process's live dispatched work: lease renewal, cancels to forward, recovery after a crash.
CREATE INDEX predictions_dispatched ON predictions (lease_owner, container_id)
  WHERE dispatched_at IS NOT NULL AND status IN ('starting', 'processing');
-- Cancels the API asked for that a container still has to hear.
CREATE INDEX predictions_cancel_pending ON predictions (cancel_requested_at)
  WHERE cancel_requested_at IS NOT NULL AND status IN ('starting', 'processing');

-- Secrets the service makes for itself once and every process shares: the bearer token model
-- containers present with their updates, and the key of signed file URLs. Kept across restarts,
-- so that a container started before a restart can still report, and a file URL still works.
CREATE TABLE service_secrets (
  name       text PRIMARY KEY CHECK (name ~ '^[a-z_]+$'),
  value      text NOT NULL CHECK (length(value) >= 32),
  created_at timestamptz NOT NULL DEFAULT now()
);
