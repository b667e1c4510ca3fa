-- 0002_dispatch: what the dispatcher looks up besides the queue itself.

-- A process's live dispatched work: lease renewal, cancels to forward, recovery after a crash.
CREATE INDEX predictions_dispatched ON predictions (lease_owner, container_id)
  WHERE dispatched_at IS NOT NULL AND status IN ('starting', 'processing');
-- Cancels the API asked for that a container still has to hear.
CREATE INDEX predictions_cancel_pending ON predictions (cancel_requested_at)
  WHERE cancel_requested_at IS NOT NULL AND status IN ('starting', 'processing');
