// Renders bench/run.sh's figures as one Markdown table on stdout and, given a second argument,
// writes the full report (machine, processes, commands, table, peer settings) to that file.
//   node bench/report.mjs WORK_DIR [RESULTS.md]
import { readFileSync, writeFileSync } from 'node:fs';

const [work, out] = process.argv.slice(2);
const f = Object.fromEntries(readFileSync(`${work}/figures.env`, 'utf8').split('\n').filter(Boolean)
  .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
const peers = readFileSync(`${work}/peers.jsonl`, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const commands = readFileSync(`${work}/commands.txt`, 'utf8').trim();

const num = (x) => (x === undefined || x === '' || x === null || Number.isNaN(Number(x)) ? null : Number(x));
const fmt = (x, digits = 0) => Number(x).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const failed = (step) => f[`step_${step}_failed`] ? `not measured (step ${step} failed: ${f[`step_${step}_failed`]})` : 'not measured';
const creates = num(f.cogwheel_creates);
const ratio = (x) => (creates && num(x) ? fmt(creates / num(x), 2) : 'n/a');
const PENDING = 'pending: needs dispatch/webhooks';

const rows = [];
const section = (title) => rows.push([`**${title}**`, '', '', '']);
const row = (what, figure, r = '', target = '') => rows.push([what, figure, r, target]);

section(`1. The machine's limits: pgbench, ${f.conns} clients, -j 2, ${f.secs} s each`);
const limit = (key, what, unit, target = '') =>
  row(what, num(f[key]) !== null ? `${fmt(f[key])} ${unit}` : failed('limits'), ratio(f[key]), target);
limit('pgbench_insert', 'single-row INSERT, one durable commit each', 'tx/s', 'cogwheel ≥ 0.7×');
limit('pgbench_claim_1tx', `claim (FOR UPDATE SKIP LOCKED) and mark done, 1 transaction per job (queue of ${fmt(f.queue_rows ?? 0)} rows)`, 'jobs/s');
limit('pgbench_claim_2tx', 'claim under a lease (commit), then mark done (commit): 2 transactions per job', 'jobs/s');

section(`2. Peers, each in its own database on the same server; ${fmt(f.jobs)} no-op jobs`);
const peerSteps = [['graphile', 'graphile-worker'], ['pgboss', 'pg-boss']];
for (const [step, name] of peerSteps) {
  for (const mode of ['defaults', 'tuned']) {
    const p = peers.find((x) => x.peer === name && x.mode === mode);
    const label = `${name}${p ? ' ' + p.version : ''}, ${mode === 'tuned' ? 'high-throughput settings' : 'defaults'}`;
    if (!p) { row(`${label}`, failed(`${step}_${mode}`)); continue; }
    const single = step === 'graphile' ? 'addJob' : 'send';
    const batched = step === 'graphile' ? 'addJobs' : 'insert';
    const err = (x) => (x.failed ? ` (${fmt(x.failed)} failed: ${x.error})` : '');
    row(`${label}: enqueue one job per call (${single}, ${f.conns} in flight)`,
      `${fmt(p.single.perSecond)} jobs/s${err(p.single)}`, ratio(p.single.perSecond));
    row(`${label}: enqueue ${fmt(p.batched.batch)} jobs per call (${batched}, ${p.batched.callers} in flight)`,
      `${fmt(p.batched.perSecond)} jobs/s${err(p.batched)}`, ratio(p.batched.perSecond));
    const d = p.drain;
    row(`${label}: work ${fmt(d.jobs)} no-op jobs`,
      d.finished ? `${fmt(d.seconds, 1)} s (${fmt(d.perSecond)} jobs/s)`
        : `not done within the ${fmt(d.seconds, 0)} s bound: ${fmt(d.done)} of ${fmt(d.jobs)} (${fmt(d.done / d.seconds, 1)} jobs/s)`,
      'pending (end to end)', 'cogwheel end to end faster');
  }
}

section('3. cogwheel');
row(`POST /v1/predictions, wrk -t2 -c${f.conns}, ${f.secs} s, keep-alive`,
  creates !== null ? `${fmt(creates)} creates/s (p50 ${f.cogwheel_p50}, p99 ${f.cogwheel_p99}; ${fmt(f.cogwheel_not_created ?? 0)} non-201; ${fmt(f.cogwheel_rows ?? 0)} rows)` : failed('cogwheel'),
  creates !== null ? '1.00' : 'n/a', '≥ 10,000/s');
row('end-to-end predictions/s (0-ms model, start + completed webhooks verified)', PENDING, '', '≥ 2,000/s, above every peer');
row('create → container, p50 / p99 at half of peak', PENDING, '', '< 2 ms / < 10 ms');
row('container terminal update → webhook received, p50 / p99', PENDING, '', 'p99 < 10 ms');
row('webhook deliveries/s', PENDING);

section('4. Ratios (the third column above is cogwheel creates/s ÷ that row\'s figure; above 1: cogwheel takes more)');
const best = (pick) => peers.map((p) => ({ p, v: pick(p) })).filter((x) => num(x.v) !== null)
  .sort((a, b) => b.v - a.v)[0];
row('cogwheel creates/s ÷ pgbench single-row INSERT', ratio(f.pgbench_insert), '', '≥ 0.7');
for (const [what, pick] of [['one-job-per-call enqueue', (p) => p.single.perSecond],
  ['batched enqueue', (p) => p.batched.perSecond]]) {
  const b = best(pick);
  row(`cogwheel creates/s ÷ the fastest peer ${what}${b ? ` (${b.p.peer}, ${b.p.mode})` : ''}`, b ? ratio(b.v) : 'n/a');
}
const bw = best((p) => (p.drain.finished ? p.drain.perSecond : null));
row(`cogwheel end to end ÷ the fastest peer working no-op jobs${bw ? ` (${bw.p.peer}, ${bw.p.mode}: ${fmt(bw.v)} jobs/s)` : ''}`, PENDING, '', '> 1');

section('5. The same with 1,000,000 predictions queued');
row('creates/s, end to end, latencies, memory', PENDING, '', 'each within 10% of the above');

section('6. cogwheel memory (/proc/PID/status)');
const mb = (kb) => (num(kb) !== null ? `${fmt(num(kb) / 1024, 1)} MB` : failed('cogwheel'));
row('resident idle (VmRSS, 2 s after /ready)', mb(f.cogwheel_rss_idle_kb), '', '< 64 MB');
row('resident at peak (VmHWM after the create load)', mb(f.cogwheel_hwm_kb), '', '< 256 MB');

const table = ['| measurement | figure | cogwheel creates/s ÷ figure | target |', '| --- | --- | --- | --- |',
  ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

const machine = `${f.nproc} cores (${f.cpu}), ${f.mem_gb} GB memory, ${f.kernel}; PostgreSQL ${f.pg_version} (${f.pg_settings}); Node ${f.node_version}; pgbench ${f.pgbench_version}; wrk ${f.wrk_version}; cogwheel at ${f.commit}, ${f.cogwheel_build ?? 'not built'}`;
console.log(`\nmachine: ${machine}\n`);
console.log(table);
const stepTimes = Object.entries(f).filter(([k]) => /^step_.*_seconds$/.test(k))
  .map(([k, v]) => { const n = k.replace(/^step_|_seconds$/g, ''); return `${n} ${v} s (machine ${f[`step_${n}_busy`]}% busy before)`; }).join(', ');
console.log(`\n${f.mode} run: ${f.total_seconds} s in all (${stepTimes})${f.failed_steps ? `; FAILED: ${f.failed_steps}` : ''}`);

if (out) {
  const settings = peers.map((p) => `- ${p.peer} ${p.version}, ${p.mode}: ${Object.keys(p.settings).length ? '`' + JSON.stringify(p.settings) + '`' : 'library defaults'}`).join('\n');
  writeFileSync(out, `# Peer comparison: results

Generated by \`bash bench/run.sh\` (${f.mode} run, ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}); re-running it
regenerates this file. How to read it: [README.md](README.md).

## Machine

${machine}.

Where each process ran: all on this one machine, on loopback, sharing its ${f.nproc} cores (no
pinning): the PostgreSQL server (one durable throwaway cluster on a Unix socket, fsync and
synchronous_commit on); pgbench (-j 2 threads) for the limits; \`cogwheel serve\` and \`wrk -t2\`
for the creates; one Node process per peer step that enqueues and then works its own jobs. The
steps ran one after the other, never two at a time. The step times below give how busy the CPU was
over the second before each step, while the benchmark itself was idle: more than a few percent
means something outside the benchmark was competing for the same cores.

## Table

${table}

${f.mode} run: ${f.total_seconds} s in all (${stepTimes})${f.failed_steps ? `; FAILED: ${f.failed_steps}` : ''}.

## Peer settings

${settings}

The single-enqueue jobs go to a task/queue no worker runs and are deleted before the batched
jobs are enqueued; the batched jobs are the ones worked. A drain ends when the peer's own tables
hold none of those jobs unfinished (graphile-worker deletes completed jobs; pg-boss: no job of
the queue in created, retry or active) or at its time bound.

## Commands

\`\`\`sh
${commands}
\`\`\`

## Raw peer figures

\`\`\`json
${peers.map((p) => JSON.stringify(p)).join('\n')}
\`\`\`
`);
}
