-- A queue table shaped like cogwheel's predictions (migrations/0001_initial.sql): status text
-- with a forward-only CHECK, jsonb input, timestamps, lease columns, and a partial index over
-- queued rows only, claimed FIFO by (created_at, id). bench/run.sh fills it with :rows rows.
CREATE TABLE bench_queue (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  status           text NOT NULL DEFAULT 'starting'
                   CHECK (status IN ('starting', 'processing', 'succeeded', 'failed')),
  input            jsonb,
  output           jsonb,
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  completed_at     timestamptz,
  lease_owner      text,
  lease_expires_at timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CHECK ((completed_at IS NOT NULL) = (status IN ('succeeded', 'failed')))
);
CREATE INDEX bench_queue_queued ON bench_queue (created_at, id) WHERE status = 'starting';
CREATE INDEX bench_queue_live ON bench_queue (lease_expires_at) WHERE status IN ('starting', 'processing');
INSERT INTO bench_queue (input) SELECT '{"prompt": "bench"}'::jsonb FROM generate_series(1, :rows);
VACUUM ANALYZE bench_queue;
