-- pgbench: one job's lifecycle in TWO transactions, as a worker does it: claim the oldest queued
-- row with FOR UPDATE SKIP LOCKED under a lease (commit), then mark it done (commit).
UPDATE bench_queue
   SET status = 'processing', started_at = now(), lease_owner = 'pgbench',
       lease_expires_at = now() + interval '30 seconds', updated_at = now()
 WHERE id = (SELECT id FROM bench_queue WHERE status = 'starting'
              ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id AS claimed \gset
UPDATE bench_queue
   SET status = 'succeeded', completed_at = now(), output = '{"ok": true}', lease_owner = NULL,
       lease_expires_at = NULL, updated_at = now()
 WHERE id = :claimed AND status = 'processing';
