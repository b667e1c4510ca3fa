// graphile-worker (version pinned in bench/package.json) on the database named by --url, in its
// own schema: single enqueue (addJob), batched enqueue (addJobs), then the time to work the
// batched jobs with a no-op task. Prints one JSON line. Options: see common.mjs.
//   node bench/peers/graphile.mjs --url postgresql://... --mode defaults|tuned [--jobs 100000] ...
import { createRequire } from 'node:module';
import { makeWorkerUtils, run, Logger } from 'graphile-worker';
import { parseArgs, singleLoop, batchLoop, waitUntil, now, round, emit } from './common.mjs';

const opts = parseArgs(process.argv);
const version = createRequire(import.meta.url)('graphile-worker/package.json').version;
const schema = 'graphile_worker';

// Worker logs one info line per completed job; a service would not print 100,000 lines to a
// terminal, so both modes keep warnings and errors only (on stderr).
const logger = new Logger(() => (level, message) => {
  if (level === 'error' || level === 'warning') process.stderr.write(`graphile-worker ${level}: ${message}\n`);
});

// Defaults: concurrency 1, pool 10, database time, one job fetched and completed per round trip.
// Tuned: the configuration of https://worker.graphile.org/docs/performance (concurrentJobs 24,
// maxPoolSize 25, localQueue 500, completeJobBatchDelay 0, failJobBatchDelay 0) plus useNodeTime.
const settings = opts.mode === 'tuned'
  ? { concurrency: 24, maxPoolSize: 25, useNodeTime: true,
      preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } } }
  : {};
const shared = { connectionString: opts.url, schema, logger, ...settings };

const utils = await makeWorkerUtils({ ...shared });
await utils.migrate();
const query = (sql, args) => utils.withPgClient((c) => c.query(sql, args));

// 1. Single enqueue: one addJob per call, `callers` in flight, for a task no worker runs.
const single = await singleLoop({
  callers: opts.callers, max: opts.singleMax, secs: opts.singleSecs,
  fn: (i) => utils.addJob('enqueue_only', { i }),
});
await query(`DELETE FROM ${schema}._private_jobs`);
await query(`VACUUM ANALYZE ${schema}._private_jobs`);

// 2. Batched enqueue: addJobs, `batch` jobs per call; these are the jobs worked in step 3.
const batched = await batchLoop({
  total: opts.jobs, batch: opts.batch, callers: opts.batchCallers, secs: opts.batchSecs,
  fn: (start, size) => utils.addJobs(Array.from({ length: size }, (_, k) => ({ identifier: 'noop', payload: { i: start + k } }))),
});

// 3. Work them: a no-op task; done when the jobs table is empty (completed jobs are deleted).
const target = batched.ok;
const remaining = async () => Number((await query(`SELECT count(*) AS n FROM ${schema}._private_jobs`)).rows[0].n);
let handled = 0;
const t0 = now();
const deadline = t0 + opts.drainSecs;
const runner = await run({ ...shared, noHandleSignals: true, taskList: { noop: async () => { handled++; } } });
await waitUntil(() => handled >= target, deadline, 5);
const finished = await waitUntil(async () => (await remaining()) === 0, deadline, 5);
const drainSeconds = now() - t0;
const left = finished ? 0 : await remaining();
await runner.stop();
await utils.release();

const { preset, ...flat } = settings;
emit({
  peer: 'graphile-worker', version, mode: opts.mode,
  settings: { ...flat, ...(preset?.worker ?? {}) },
  single: { jobs: single.ok, failed: single.failed, seconds: round(single.seconds, 2), perSecond: round(single.perSecond), error: single.firstError },
  batched: { jobs: batched.ok, failed: batched.failed, batch: opts.batch, callers: opts.batchCallers, seconds: round(batched.seconds, 2), perSecond: round(batched.perSecond), error: batched.firstError },
  drain: { jobs: target, done: target - left, finished, seconds: round(drainSeconds, 2), perSecond: round((target - left) / drainSeconds) },
});
process.exit(0);
