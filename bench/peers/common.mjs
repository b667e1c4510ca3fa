// Shared by the peer benchmarks: argument parsing and bounded load loops. Every loop stops at a
// job count or a deadline, whichever comes first.

export function parseArgs(argv) {
  const opts = {
    url: process.env.DATABASE_URL,
    mode: 'defaults',        // defaults | tuned
    jobs: 100000,            // no-op jobs enqueued in batches, then worked
    batch: 1000,             // jobs per batched enqueue call
    batchCallers: 4,         // batched enqueue calls in flight
    callers: 64,             // single enqueue calls in flight (wrk runs 64 connections against cogwheel)
    singleSecs: 10,          // single-enqueue window
    singleMax: 200000,       // single-enqueue job bound
    batchSecs: 120,          // batched-enqueue bound
    drainSecs: 120,          // bound on working the jobs
  };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(key in opts)) throw new Error(`unknown option ${argv[i]}`);
    opts[key] = typeof opts[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!opts.url) throw new Error('--url or DATABASE_URL is required');
  if (!['defaults', 'tuned'].includes(opts.mode)) throw new Error('--mode is defaults or tuned');
  return opts;
}

export const now = () => performance.now() / 1000;

// `callers` loops each awaiting fn(i) one call at a time, until `max` calls started or `secs` ran out.
export async function singleLoop({ callers, max, secs, fn }) {
  let started = 0, ok = 0, failed = 0, firstError = null;
  const t0 = now(), deadline = t0 + secs;
  const loop = async () => {
    while (started < max && now() < deadline) {
      const i = started++;
      try { await fn(i); ok++; } catch (err) { failed++; firstError ??= String(err?.message ?? err); }
    }
  };
  await Promise.all(Array.from({ length: callers }, loop));
  const seconds = now() - t0;
  return { ok, failed, seconds, perSecond: ok / seconds, firstError };
}

// Enqueues `total` jobs as calls of `batch` jobs each, `callers` calls in flight, bounded by `secs`.
export async function batchLoop({ total, batch, callers, secs, fn }) {
  let next = 0, ok = 0, failed = 0, firstError = null;
  const t0 = now(), deadline = t0 + secs;
  const loop = async () => {
    while (next < total && now() < deadline) {
      const start = next, size = Math.min(batch, total - start);
      next += size;
      try { await fn(start, size); ok += size; } catch (err) { failed += size; firstError ??= String(err?.message ?? err); }
    }
  };
  await Promise.all(Array.from({ length: callers }, loop));
  const seconds = now() - t0;
  return { ok, failed, seconds, perSecond: ok / seconds, firstError };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls check() (which resolves to true when done) every `everyMs` until done or the deadline.
export async function waitUntil(check, deadline, everyMs) {
  while (now() < deadline) {
    if (await check()) return true;
    await sleep(everyMs);
  }
  return check();
}

export function round(x, digits = 0) {
  if (x === null || x === undefined || !Number.isFinite(x)) return null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function emit(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
}
