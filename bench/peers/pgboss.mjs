// pg-boss (version pinned in bench/package.json) on the database named by --url, in its own
// schema: single enqueue (send), batched enqueue (insert), then the time to work the batched jobs
// with a no-op handler. Prints one JSON line. Options: see common.mjs.
//   node bench/peers/pgboss.mjs --url postgresql://... --mode defaults|tuned [--jobs 100000] ...
import { createRequire } from 'node:module';
import PgBoss from 'pg-boss';
import { parseArgs, singleLoop, batchLoop, waitUntil, now, round, emit } from './common.mjs';

const opts = parseArgs(process.argv);
const version = createRequire(import.meta.url)('pg-boss/package.json').version;

// v10 has no teamSize/teamConcurrency: each work() call adds one polling worker, which fetches
// `batchSize` jobs, awaits the handler with the whole array, completes them all, then waits out
// the rest of its polling interval (minimum 0.5 s) unless notified.
// Defaults: pool 10, one worker, batchSize 1, polling every 2 s.
// Tuned: the minimum polling interval, large batches, several workers, a larger pool.
const tuned = opts.mode === 'tuned';
const workers = tuned ? 4 : 1;
const workOptions = tuned ? { batchSize: 1000, pollingIntervalSeconds: 0.5 } : {};
const max = tuned ? 20 : undefined;

const boss = new PgBoss({ connectionString: opts.url, schema: 'pgboss', ...(max ? { max } : {}) });
let bossError = null;
boss.on('error', (err) => { bossError ??= String(err?.message ?? err); process.stderr.write(`pg-boss error: ${err?.message ?? err}\n`); });
await boss.start();
await boss.createQueue('enqueue_only');
await boss.createQueue('noop');

// 1. Single enqueue: one send per call, `callers` in flight, to a queue no worker watches.
const single = await singleLoop({
  callers: opts.callers, max: opts.singleMax, secs: opts.singleSecs,
  fn: (i) => boss.send('enqueue_only', { i }),
});
await boss.purgeQueue('enqueue_only'); // deleteQueue refuses a queue that still holds jobs
await boss.deleteQueue('enqueue_only');

// 2. Batched enqueue: insert, `batch` jobs per call; these are the jobs worked in step 3.
const batched = await batchLoop({
  total: opts.jobs, batch: opts.batch, callers: opts.batchCallers, secs: opts.batchSecs,
  fn: (start, size) => boss.insert(Array.from({ length: size }, (_, k) => ({ name: 'noop', data: { i: start + k } }))),
});

// 3. Work them: a no-op handler; done when no job of the queue is created, retry or active.
const target = batched.ok;
const remaining = () => boss.getQueueSize('noop', { before: 'completed' });
let handled = 0;
const t0 = now();
const deadline = t0 + opts.drainSecs;
for (let w = 0; w < workers; w++) {
  await boss.work('noop', workOptions, async (jobs) => { handled += jobs.length; });
}
await waitUntil(() => handled >= target, deadline, 5);
const finished = await waitUntil(async () => (await remaining()) === 0, deadline, 5);
const drainSeconds = now() - t0;
const left = finished ? 0 : await remaining();
await boss.offWork('noop');
await boss.stop({ graceful: false, wait: false });

emit({
  peer: 'pg-boss', version, mode: opts.mode,
  settings: { workers, ...workOptions, ...(max ? { max } : {}) },
  single: { jobs: single.ok, failed: single.failed, seconds: round(single.seconds, 2), perSecond: round(single.perSecond), error: single.firstError },
  batched: { jobs: batched.ok, failed: batched.failed, batch: opts.batch, callers: opts.batchCallers, seconds: round(batched.seconds, 2), perSecond: round(batched.perSecond), error: batched.firstError },
  drain: { jobs: target, done: target - left, finished, seconds: round(drainSeconds, 2), perSecond: round((target - left) / drainSeconds) },
  error: bossError,
});
process.exit(0);
