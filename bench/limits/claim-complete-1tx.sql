-- pgbench: one job's lifecycle in ONE transaction: claim the oldest queued row with
-- FOR UPDATE SKIP LOCKED and mark it done in the same statement (one commit per job).
UPDATE bench_queue
   SET status = 'succeeded', started_at = now(), completed_at = now(), output = '{"ok": true}',
       updated_at = now()
 WHERE id = (SELECT id FROM bench_queue WHERE status = 'starting'
              ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id AS claimed \gset
