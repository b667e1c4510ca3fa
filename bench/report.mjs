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
const creates = num(f.creates);
const webhooks = f.webhooks_delivered === '1';
// End to end: with webhooks, first create sent -> last `completed` webhook received; without
// (a cogwheel before the delivery service), first create -> last completion in the database.
const e2eOf = (p) => num(webhooks ? f[`${p}peak_e2e_rate`] : f[`${p}peak_db_rate`]);
const e2e = e2eOf('');
const ratioOf = (mine) => (x) => (mine && num(x) ? fmt(mine / num(x), 2) : 'n/a');
const ratio = ratioOf(creates);      // creates against enqueues and the INSERT limit
const ratioE2e = ratioOf(e2e);       // end to end against working jobs and the lifecycle limits
const NOHOOKS = 'not measured: this cogwheel has no webhook delivery (no --webhook-allow)';

const rows = [];
const section = (title) => rows.push([`**${title}**`, '', '', '']);
const row = (what, figure, r = '', target = '') => rows.push([what, figure, r, target]);

section(`1. The machine's limits: pgbench, ${f.conns} clients, -j 2, ${f.secs} s each`);
const limit = (key, what, unit, r, target = '') =>
  row(what, num(f[key]) !== null ? `${fmt(f[key])} ${unit}` : failed('limits'), r(f[key]), target);
limit('pgbench_insert', 'single-row INSERT, one durable commit each', 'tx/s', ratio, 'creates ≥ 0.7×');
if (f.wide) {
  limit('pgbench_insert_wide', `the same with ${f.wide} clients`, 'tx/s', ratioOf(num(f.wide_creates)),
    `creates at ${f.wide} connections ≥ 0.7×`);
}
limit('pgbench_claim_1tx', `claim (FOR UPDATE SKIP LOCKED) and mark done, 1 transaction per job (queue of ${fmt(f.queue_rows ?? 0)} rows)`, 'jobs/s', ratioE2e);
limit('pgbench_claim_2tx', 'claim under a lease (commit), then mark done (commit): 2 transactions per job', 'jobs/s', ratioE2e);

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
    const rate = d.finished ? d.perSecond : d.done / d.seconds;
    row(`${label}: work ${fmt(d.jobs)} no-op jobs`,
      d.finished ? `${fmt(d.seconds, 1)} s (${fmt(d.perSecond)} jobs/s)`
        : `not done within the ${fmt(d.seconds, 0)} s bound: ${fmt(d.done)} of ${fmt(d.jobs)} (${fmt(rate, 1)} jobs/s)`,
      `${ratioE2e(rate)} (end to end)`, 'cogwheel end to end faster');
  }
}

// The cogwheel rows of one suite: '' (section 3) or 'q_' (section 5, compared with section 3).
const ms = (x) => (num(x) !== null ? `${fmt(x, 2)} ms` : 'n/a');
const change = (p, now, before) => (p && num(now) !== null && num(before) ? `${num(now) >= num(before) ? '+' : ''}${fmt(100 * (num(now) - num(before)) / num(before), 1)}%` : '');
const cogwheelRows = (p) => {
  const stepName = p ? 'cogwheel_queued' : 'cogwheel';
  const g = (k) => f[`${p}${k}`];
  const vs = (k) => change(p, g(k), f[k]);
  const createsRow = (k, c) => {
    const n = num(g(`${k}creates`));
    row(`POST /v1/predictions, wrk -t2 -c${c}, ${f.secs} s, keep-alive`,
      n !== null ? `${fmt(n)} creates/s (p50 ${g(`${k}creates_p50`)}, p99 ${g(`${k}creates_p99`)}; ${fmt(g(`${k}not_created`) ?? 0)} non-201)` : failed(stepName),
      p ? vs(`${k}creates`) : (n !== null ? '1.00' : 'n/a'), p ? 'within 10%' : '≥ 10,000/s');
  };
  createsRow('', f.conns);
  if (f.wide) createsRow('wide_', f.wide);
  const pe = e2eOf(p);
  if (pe === null) {
    row('end-to-end predictions/s', failed(stepName), '', p ? 'within 10%' : '≥ 2,000/s, above every peer');
  } else {
    const hooks = webhooks
      ? `start + completed webhooks to 4 receiver ports, signatures verified: ${fmt(g('peak_bad_signatures') ?? 0)} bad, ${fmt(g('peak_unsigned') ?? 0)} unsigned; ${fmt(g('peak_missing_completed') ?? 0)} completed and ${fmt(g('peak_missing_start') ?? 0)} start webhooks missing; first create to last completed webhook`
      : 'no webhooks (this cogwheel does not deliver them): first create to last completion in the database';
    row(`end-to-end predictions/s, 0-ms fake model, loadgen ${f.conns} connections closed loop, ${f.secs} s`,
      `${fmt(pe)} predictions/s (${fmt(g('peak_created') ?? 0)} created at ${fmt(g('peak_create_rate') ?? 0)}/s, ${fmt(g('peak_succeeded') ?? 0)} succeeded; ${hooks})`,
      p ? vs(webhooks ? 'peak_e2e_rate' : 'peak_db_rate') : '1.00', p ? 'within 10%' : '≥ 2,000/s, above every peer');
  }
  const half = `at ${fmt(g('half_rate') ?? 0)}/s (half of peak, 16 connections, fixed rate; ${fmt(g('half_create_to_container_n') ?? 0)} predictions)`;
  row(`create sent → container received, p50 / p99, ${half}`,
    num(g('half_create_to_container_p99_ms')) !== null ? `${ms(g('half_create_to_container_p50_ms'))} / ${ms(g('half_create_to_container_p99_ms'))} (max ${ms(g('half_create_to_container_max_ms'))})` : failed(stepName),
    p ? vs('half_create_to_container_p99_ms') : '', p ? 'within 10%' : '< 2 ms / < 10 ms');
  row('container terminal update → webhook received, p50 / p99, same load',
    !webhooks ? NOHOOKS : num(g('half_terminal_to_webhook_p99_ms')) !== null
      ? `${ms(g('half_terminal_to_webhook_p50_ms'))} / ${ms(g('half_terminal_to_webhook_p99_ms'))} (max ${ms(g('half_terminal_to_webhook_max_ms'))}; ${fmt(g('half_terminal_to_webhook_n') ?? 0)} deliveries; ${fmt(g('half_missing_completed') ?? 0)} missing)` : failed(stepName),
    p ? vs('half_terminal_to_webhook_p99_ms') : '', p ? 'within 10%' : 'p99 < 10 ms');
  row('webhook deliveries/s at peak (start + completed, 4 healthy ports)',
    !webhooks ? NOHOOKS : num(g('peak_rate')) !== null ? `${fmt(g('peak_rate'))}/s (${fmt(g('peak_received') ?? 0)} in ${fmt(g('peak_seconds') ?? 0, 1)} s, first to last; ${fmt(g('peak_duplicates') ?? 0)} repeated)` : failed(stepName),
    p ? vs('peak_rate') : '', p ? 'within 10%' : '');
  row(`webhook deliveries/s with 10% slow endpoints (${fmt(g('slow_created') ?? 0)} predictions round-robin over 20 ports; ports ${g('slow_slow_ports') ?? '?'} answer after 2 s)`,
    !webhooks ? NOHOOKS : num(g('slow_rate')) !== null ? `${fmt(g('slow_rate'))}/s (${fmt(g('slow_healthy_received') ?? 0)} to healthy ports, ${fmt(g('slow_slow_received') ?? 0)} to slow ones, in ${fmt(g('slow_seconds') ?? 0, 1)} s; ${fmt(g('slow_bad_signatures') ?? 0)} bad signatures)` : failed(stepName),
    p ? vs('slow_rate') : '', '');
  row(`… the same at the half rate (${fmt(g('slowhalf_create_rate') ?? 0)}/s, ${fmt(g('slowhalf_created') ?? 0)} predictions): deliveries/s; the healthy endpoints' terminal update → webhook received, p50 / p99`,
    !webhooks ? NOHOOKS : num(g('slowhalf_healthy_terminal_to_webhook_p99_ms')) !== null ? `${fmt(g('slowhalf_rate') ?? 0)}/s; ${ms(g('slowhalf_healthy_terminal_to_webhook_p50_ms'))} / ${ms(g('slowhalf_healthy_terminal_to_webhook_p99_ms'))} (${fmt(g('slowhalf_healthy_terminal_to_webhook_n') ?? 0)} deliveries; ${fmt(g('slowhalf_bad_signatures') ?? 0)} bad signatures)` : failed(stepName),
    p ? vs('slowhalf_healthy_terminal_to_webhook_p99_ms') : '', p ? 'within 10%' : 'p99 < 10 ms');
  row('… at peak, the healthy endpoints\' terminal update → webhook received, p50 / p99',
    !webhooks ? NOHOOKS : num(g('slow_healthy_terminal_to_webhook_p99_ms')) !== null ? `${ms(g('slow_healthy_terminal_to_webhook_p50_ms'))} / ${ms(g('slow_healthy_terminal_to_webhook_p99_ms'))} (${fmt(g('slow_healthy_terminal_to_webhook_n') ?? 0)} deliveries; slow ports' p50 ${ms(g('slow_slow_terminal_to_webhook_p50_ms'))} over ${fmt(g('slow_slow_terminal_to_webhook_n') ?? 0)})` : failed(stepName),
    p ? vs('slow_healthy_terminal_to_webhook_p99_ms') : '', p ? 'within 10%' : '');
};

section('3. cogwheel (fake Cog containers: ' + `${f.e2e_containers ?? 4} × ${f.e2e_slots ?? 32} slots)`);
cogwheelRows('');

section('4. Ratios (third column above: cogwheel creates/s ÷ the figure for enqueues and the INSERT, cogwheel end to end ÷ the figure for working jobs and the lifecycle scripts; above 1: cogwheel does more)');
const best = (pick) => peers.map((p) => ({ p, v: pick(p) })).filter((x) => num(x.v) !== null)
  .sort((a, b) => b.v - a.v)[0];
row('cogwheel creates/s ÷ pgbench single-row INSERT', ratio(f.pgbench_insert), '', '≥ 0.7');
if (f.wide) {
  row(`the same with ${f.wide} connections and ${f.wide} clients`,
    ratioOf(num(f.wide_creates))(f.pgbench_insert_wide), '', '≥ 0.7');
}
row('cogwheel end to end ÷ pgbench claim and mark done (1 transaction)', ratioE2e(f.pgbench_claim_1tx));
row('cogwheel end to end ÷ pgbench claim, then mark done (2 transactions)', ratioE2e(f.pgbench_claim_2tx));
for (const [what, pick] of [['one-job-per-call enqueue', (p) => p.single.perSecond],
  ['batched enqueue', (p) => p.batched.perSecond]]) {
  const b = best(pick);
  row(`cogwheel creates/s ÷ the fastest peer ${what}${b ? ` (${b.p.peer}, ${b.p.mode})` : ''}`, b ? ratio(b.v) : 'n/a');
}
for (const [step, name] of peerSteps) {
  const ps = peers.filter((x) => x.peer === name);
  const b = ps.map((p) => ({ p, v: p.drain.finished ? p.drain.perSecond : p.drain.done / p.drain.seconds }))
    .sort((a, c) => c.v - a.v)[0];
  row(`cogwheel end to end ÷ ${name} working no-op jobs, its best setting${b ? ` (${b.p.mode}: ${fmt(b.v)} jobs/s)` : ''}`,
    b ? ratioE2e(b.v) : failed(`${step}_tuned`), '', '> 1');
}

section(`5. The same with ${fmt(f.queued ?? 0)} predictions queued (another version, no containers; filled by SQL in ${f.queued_fill_seconds ?? '?'} s; ${fmt(f.queued_rows ?? 0)} queued at the start, ${fmt(f.queued_rows_end ?? 0)} of them still queued at the end); third column: change from section 3`);
cogwheelRows('q_');

section('6. cogwheel memory (/proc/PID/status of `cogwheel serve`; its containers are processes of their own)');
const mb = (kb, step) => (num(kb) !== null ? `${fmt(num(kb) / 1024, 1)} MB` : failed(step));
row(`resident idle (VmRSS, ${f.mode === 'smoke' ? 1 : 2} s after the containers were READY)`, mb(f.rss_idle_kb, 'cogwheel'), '', '< 64 MB');
row('resident at peak (VmHWM after creates, end to end and webhooks)', mb(f.hwm_kb, 'cogwheel'), '', '< 256 MB');
row(`resident idle, ${fmt(f.queued ?? 0)} queued`, mb(f.q_rss_idle_kb, 'cogwheel_queued'), change('q', f.q_rss_idle_kb, f.rss_idle_kb), '< 64 MB');
row(`resident at peak, ${fmt(f.queued ?? 0)} queued`, mb(f.q_hwm_kb, 'cogwheel_queued'), change('q', f.q_hwm_kb, f.hwm_kb), '< 256 MB');

const table = ['| measurement | figure | cogwheel ÷ figure (see 4) | target |', '| --- | --- | --- | --- |',
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

Where each process ran: all on this one machine, on loopback, sharing its ${f.nproc} cores, none
pinned (the CPUs each process was allowed, from /proc/PID/status Cpus_allowed_list: PostgreSQL
${f.cpus_postgres ?? '?'}, the benchmark scripts and the load generators they start ${f.cpus_bench ?? '?'},
\`cogwheel serve\` ${f.cpus_cogwheel ?? '?'}, its fake Cog containers ${f.cpus_containers ?? '?'}, the webhook
receiver ${f.cpus_receiver ?? '?'}): the PostgreSQL server (one durable throwaway cluster on a Unix socket,
fsync and synchronous_commit on); pgbench (-j 2 threads) for the limits; for cogwheel, at the same
time, \`cogwheel serve\` (2 I/O threads), ${f.e2e_containers ?? 4} fake Cog containers (processes it starts), the
load generator (\`wrk -t2\` for creates, \`cogwheel_loadgen\` with one thread per connection for the
end-to-end phases) and \`cogwheel_webhook_receiver\` (2 threads); one Node process per peer step that
enqueues and then works its own jobs. So cogwheel's end-to-end figures carry the load generator,
the containers and the receiver on the same two cores, which the peers' no-op workers do not have.
The steps ran one after the other, never two at a time. The step times below give how busy the CPU
was over the second before each step, while the benchmark itself was idle: more than a few percent
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
