// cogwheel's webhooks checked with the official clients: standardwebhooks' Webhook.verify and
// replicate's validateWebhook, against a receiver in this process on 127.0.0.1.
// Run by tests/e2e/js_webhooks_test.cpp, which starts cogwheel (model acme/fake on the fake Cog
// container, --webhook-allow 127.0.0.1) and passes:
//   COGWHEEL_BASE_URL (…/v1), COGWHEEL_API_URL (without /v1), COGWHEEL_TOKEN, COGWHEEL_VERSION
// The tests run in order and share the tenant: the rotation test comes last.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { randomBytes } from "node:crypto";
import Replicate, { validateWebhook } from "replicate";
import { Webhook, WebhookVerificationError } from "standardwebhooks";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run through ctest (tests/e2e/js_webhooks_test.cpp)`);
  return v;
};
const token = env("COGWHEEL_TOKEN");
const apiUrl = env("COGWHEEL_API_URL").replace(/\/+$/, "");
const replicate = new Replicate({ auth: token, baseUrl: env("COGWHEEL_BASE_URL") });
const version = env("COGWHEEL_VERSION");

const DEADLINE_MS = 20_000;
const terminal = new Set(["succeeded", "failed", "canceled", "aborted"]);

// The receiver: every request, its raw body as a string, answered 200.
const received = [];
const receiver = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    received.push({
      method: req.method,
      path: req.url,
      headers: req.headers,
      body: Buffer.concat(chunks).toString("utf8"),
      at: Date.now(),
    });
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
  });
});
let hookBase;
before(async () => {
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  hookBase = `http://127.0.0.1:${receiver.address().port}`;
});
after(async () => {
  receiver.closeAllConnections?.();
  await new Promise((resolve) => receiver.close(resolve));
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Polls `probe` until it returns something truthy, at most DEADLINE_MS.
async function waitFor(what, probe, { timeout = DEADLINE_MS, interval = 50 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(interval);
  }
}

async function api(method, path) {
  const res = await fetch(`${apiUrl}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}` },
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function deliveries(id) {
  const r = await api("GET", `/v1/predictions/${id}/webhooks`);
  assert.equal(r.status, 200, `GET /v1/predictions/${id}/webhooks: ${JSON.stringify(r.body)}`);
  return r.body.results;
}

const hits = (path) => received.filter((r) => r.path === path);
const statusOf = (r) => JSON.parse(r.body).status;

// Creates a prediction with a webhook to `path` on the receiver, waits until its completed
// delivery arrived and every delivery of it is settled (no longer pending), then a little more
// for strays. Returns { prediction, hooks (arrival order), deliveries, url }.
async function runWithWebhook(path, input, filter) {
  const url = `${hookBase}${path}`;
  const params = { version, input, webhook: url };
  if (filter) params.webhook_events_filter = filter;
  const created = await replicate.predictions.create(params);
  await waitFor(`the completed webhook of ${created.id} at ${path}`, () =>
    hits(path).some((r) => terminal.has(statusOf(r))),
  );
  const settled = await waitFor(`the deliveries of ${created.id} to settle`, async () => {
    const ds = await deliveries(created.id);
    return ds.length > 0 && ds.every((d) => d.state !== "pending") ? ds : null;
  }, { interval: 100 });
  await sleep(300);  // anything still on its way
  return { prediction: created, hooks: hits(path), deliveries: settled, url };
}

// Both clients' checks of one request against `secret`; throws if either rejects it.
async function assertVerifies(r, secret, label = "") {
  const payload = new Webhook(secret).verify(r.body, r.headers);
  assert.deepEqual(payload, JSON.parse(r.body), `${label} standardwebhooks payload`);
  assert.equal(await validateWebhook({ headers: r.headers, body: r.body }, secret), true,
    `${label} validateWebhook(request, secret)`);
  assert.equal(await validateWebhook({
    id: r.headers["webhook-id"],
    timestamp: r.headers["webhook-timestamp"],
    signature: r.headers["webhook-signature"],
    body: r.body,
    secret,
  }), true, `${label} validateWebhook({id, timestamp, signature, body, secret})`);
}

async function assertRejected(body, headers, secret, label) {
  assert.throws(() => new Webhook(secret).verify(body, headers), WebhookVerificationError,
    `${label}: standardwebhooks accepted it`);
  assert.equal(await validateWebhook({ headers, body }, secret), false,
    `${label}: validateWebhook accepted it`);
}

// The shape every delivery request has, whatever the event.
function assertWellFormed(r, prediction, url) {
  assert.equal(r.method, "POST");
  assert.match(r.headers["content-type"] ?? "", /^application\/json/);
  assert.match(r.headers["webhook-id"], /^msg_[A-Za-z0-9_-]+$/);
  assert.match(r.headers["webhook-timestamp"], /^\d+$/);
  const skew = Math.abs(Number(r.headers["webhook-timestamp"]) - Math.floor(r.at / 1000));
  assert.ok(skew <= 60, `webhook-timestamp ${r.headers["webhook-timestamp"]} is ${skew} s off`);
  for (const s of r.headers["webhook-signature"].split(" ")) {
    assert.match(s, /^v1,[A-Za-z0-9+/]+=*$/, `signature entry ${s}`);
  }
  const body = JSON.parse(r.body);
  assert.equal(body.id, prediction.id);
  assert.equal(body.version, version);
  assert.equal(body.webhook, url);
}

// The distinct messages (a retry repeats its webhook-id and its body), in arrival order.
function messages(hooks) {
  const byId = new Map();
  for (const r of hooks) {
    const id = r.headers["webhook-id"];
    if (byId.has(id)) {
      assert.equal(r.body, byId.get(id).body, `a retry of ${id} carries another body`);
    } else {
      byId.set(id, r);
    }
  }
  return [...byId.values()];
}

function eventOf(ds, r) {
  const d = ds.find((x) => x.id === r.headers["webhook-id"]);
  assert.ok(d, `webhook-id ${r.headers["webhook-id"]} is not among the prediction's deliveries`);
  return d.event;
}

let secretAtStart;
let stash;  // a completed delivery request, for the negative checks

test("filtered start and completed webhooks verify with both clients", { timeout: 60_000 }, async () => {
  secretAtStart = (await replicate.webhooks.default.secret.get()).key;
  assert.match(secretAtStart, /^whsec_[A-Za-z0-9+/]+=*$/);

  const { prediction, hooks, deliveries: ds, url } =
    await runWithWebhook("/hook/filtered", { prompt: "hi" }, ["start", "completed"]);
  assert.ok(hooks.length >= 2, `expected start and completed, got ${hooks.length} request(s)`);
  for (const r of hooks) {
    assertWellFormed(r, prediction, url);
    assert.equal(r.headers["webhook-signature"].split(" ").length, 1, "one signature, no rotation");
    await assertVerifies(r, secretAtStart, eventOf(ds, r));
    assert.deepEqual(JSON.parse(r.body).webhook_events_filter, ["start", "completed"]);
  }

  // No event outside the filter, queued or sent.
  for (const d of ds) assert.ok(["start", "completed"].includes(d.event), `delivery event ${d.event}`);
  const msgs = messages(hooks);
  const events = msgs.map((r) => eventOf(ds, r));
  assert.deepEqual(events, ["start", "completed"], "one start then one completed");
  const [start, completed] = msgs;
  assert.notEqual(start.headers["webhook-id"], completed.headers["webhook-id"]);
  assert.ok(["starting", "processing"].includes(statusOf(start)), `start body: ${start.body}`);

  const final = JSON.parse(completed.body);
  assert.equal(final.status, "succeeded");
  assert.equal(final.output, "hi");
  assert.deepEqual(final, await replicate.predictions.get(prediction.id),
    "the completed body is the prediction as GET returns it");

  for (const d of ds) {
    assert.equal(d.url, url);
    assert.equal(d.state, "delivered", `delivery ${d.id} (${d.event}): ${JSON.stringify(d)}`);
    assert.ok(d.attempts >= 1);
    assert.equal(d.attempt_log.at(-1).status_code, 200);
  }
  stash = completed;
});

test("a streaming prediction without filter: start first, completed last, all verifiable", { timeout: 60_000 }, async (t) => {
  const { prediction, hooks, deliveries: ds, url } =
    await runWithWebhook("/hook/stream", { outputs: 3, interval_ms: 30 });
  const msgs = messages(hooks);
  for (const r of hooks) {
    assertWellFormed(r, prediction, url);
    await assertVerifies(r, secretAtStart, eventOf(ds, r));
  }
  const events = msgs.map((r) => eventOf(ds, r));
  t.diagnostic(`received: ${events.join(", ")}; recorded: ${ds.map((d) => `${d.event}=${d.state}`).join(", ")}`);
  assert.equal(events[0], "start", `events in arrival order: ${events}`);
  assert.equal(events.at(-1), "completed", `events in arrival order: ${events}`);
  assert.equal(events.filter((e) => e === "completed").length, 1, `events: ${events}`);
  for (const e of events.slice(1, -1)) assert.ok(["output", "logs"].includes(e), `events: ${events}`);
  assert.equal(new Set(msgs.map((r) => r.headers["webhook-id"])).size, msgs.length);

  const final = JSON.parse(msgs.at(-1).body);
  assert.equal(final.status, "succeeded");
  assert.deepEqual(final.output, ["out-0", "out-1", "out-2"]);
  assert.deepEqual(final, await replicate.predictions.get(prediction.id));
  // Every output snapshot is a prefix of the final output.
  for (const r of msgs.slice(1, -1)) {
    const out = JSON.parse(r.body).output ?? [];
    assert.deepEqual(out, final.output.slice(0, out.length), `output snapshot ${r.body}`);
  }
  // What was not sent was superseded by completed; everything sent is recorded delivered.
  const sent = new Set(msgs.map((r) => r.headers["webhook-id"]));
  for (const d of ds) {
    if (sent.has(d.id)) assert.equal(d.state, "delivered", JSON.stringify(d));
    else assert.equal(d.state, "superseded", `unsent delivery ${JSON.stringify(d)}`);
  }
});

// Slow enough that the fake container reports outputs in between (it throttles to 500 ms).
test("a slow stream: output webhooks arrive in order between start and completed", { timeout: 60_000 }, async (t) => {
  const { prediction, hooks, deliveries: ds, url } =
    await runWithWebhook("/hook/slow", { outputs: 4, interval_ms: 700 });
  const msgs = messages(hooks);
  for (const r of hooks) {
    assertWellFormed(r, prediction, url);
    await assertVerifies(r, secretAtStart, eventOf(ds, r));
  }
  const events = msgs.map((r) => eventOf(ds, r));
  t.diagnostic(`received: ${events.join(", ")}; recorded: ${ds.map((d) => `${d.event}=${d.state}`).join(", ")}`);
  assert.equal(events[0], "start", `events: ${events}`);
  assert.equal(events.at(-1), "completed", `events: ${events}`);
  assert.ok(events.includes("output"), `no output webhook in ${events}`);
  const final = JSON.parse(msgs.at(-1).body);
  assert.deepEqual(final.output, ["out-0", "out-1", "out-2", "out-3"]);
  assert.deepEqual(final, await replicate.predictions.get(prediction.id));
  let previous = 0;
  for (const r of msgs.slice(1, -1)) {
    const body = JSON.parse(r.body);
    assert.equal(body.status, "processing", `an output snapshot: ${r.body}`);
    const out = body.output ?? [];
    assert.deepEqual(out, final.output.slice(0, out.length), `output snapshot ${r.body}`);
    assert.ok(out.length >= previous, "snapshots arrive in order");
    previous = out.length;
  }
});

test("a tampered body, id or timestamp, or another secret, fails verification", async () => {
  assert.ok(stash, "needs the completed request of the first test");
  const { body, headers } = stash;
  await assertVerifies(stash, secretAtStart, "untampered");
  const tampered = body.replace('"succeeded"', '"failed"');
  assert.notEqual(tampered, body);
  await assertRejected(tampered, headers, secretAtStart, "tampered body");
  await assertRejected(body + " ", headers, secretAtStart, "body with a trailing space");
  await assertRejected(body, { ...headers, "webhook-id": headers["webhook-id"] + "x" },
    secretAtStart, "another webhook-id");
  await assertRejected(body,
    { ...headers, "webhook-timestamp": String(Number(headers["webhook-timestamp"]) - 1) },
    secretAtStart, "another webhook-timestamp");
  const stranger = "whsec_" + randomBytes(32).toString("base64");
  await assertRejected(body, headers, stranger, "an unrelated secret");
});

test("after a rotation, deliveries carry two signatures: the old and the new secret", { timeout: 60_000 }, async () => {
  const old = (await replicate.webhooks.default.secret.get()).key;
  assert.equal(old, secretAtStart);
  const rotated = await api("POST", "/v1/webhooks/default/secret/rotate");
  assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
  const fresh = rotated.body.key;
  assert.match(fresh, /^whsec_[A-Za-z0-9+/]+=*$/);
  assert.notEqual(fresh, old);
  const expires = Date.parse(rotated.body.previous_key_expires_at);
  assert.ok(Number.isFinite(expires), `previous_key_expires_at ${rotated.body.previous_key_expires_at}`);
  const hours = (expires - Date.now()) / 3_600_000;
  assert.ok(hours > 23.5 && hours <= 24.1, `the old key expires in ${hours} h, not 24 h`);
  const now = await replicate.webhooks.default.secret.get();
  assert.equal(now.key, fresh, "GET secret shows the rotation at once");

  const { prediction, hooks, deliveries: ds, url } =
    await runWithWebhook("/hook/rotated", { prompt: "rotated" }, ["start", "completed"]);
  const msgs = messages(hooks);
  assert.deepEqual(msgs.map((r) => eventOf(ds, r)), ["start", "completed"]);
  const stranger = "whsec_" + randomBytes(32).toString("base64");
  for (const r of hooks) {
    assertWellFormed(r, prediction, url);
    const entries = r.headers["webhook-signature"].split(" ");
    assert.equal(entries.length, 2, `two signatures during the overlap: ${r.headers["webhook-signature"]}`);
    assert.notEqual(entries[0], entries[1]);
    await assertVerifies(r, old, "old secret");
    await assertVerifies(r, fresh, "new secret");
    await assertRejected(r.body, r.headers, stranger, "an unrelated secret");
    await assertRejected(r.body.replace('"rotated"', '"rotatex"'), r.headers, old, "tampered, old secret");
    await assertRejected(r.body.replace('"rotated"', '"rotatex"'), r.headers, fresh, "tampered, new secret");
    // Each entry alone matches exactly one of the two secrets.
    for (const e of entries) {
      const alone = { ...r.headers, "webhook-signature": e };
      const ok = [old, fresh].filter((s) => {
        try { new Webhook(s).verify(r.body, alone); return true; } catch { return false; }
      });
      assert.equal(ok.length, 1, `signature ${e} matches ${ok.length} of the two secrets`);
    }
  }
  const final = JSON.parse(msgs.at(-1).body);
  assert.equal(final.status, "succeeded");
  assert.equal(final.output, "rotated");
  assert.deepEqual(final, await replicate.predictions.get(prediction.id));
});
