// The official `replicate` npm client against a running cogwheel, with only its base URL changed.
// Run by tests/e2e/js_client_test.cpp, which starts cogwheel and passes:
//   COGWHEEL_BASE_URL (…/v1), COGWHEEL_TOKEN, COGWHEEL_OTHER_TOKEN, COGWHEEL_VERSION,
//   COGWHEEL_MODEL (owner/name), COGWHEEL_DEPLOYMENT (owner/name)
import { test } from "node:test";
import assert from "node:assert/strict";
import Replicate from "replicate";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run through ctest (tests/e2e/js_client_test.cpp)`);
  return v;
};
const baseUrl = env("COGWHEEL_BASE_URL");
const replicate = new Replicate({ auth: env("COGWHEEL_TOKEN"), baseUrl });
const other = new Replicate({ auth: env("COGWHEEL_OTHER_TOKEN"), baseUrl });
const version = env("COGWHEEL_VERSION");
const [depOwner, depName] = env("COGWHEEL_DEPLOYMENT").split("/");

const fields = [
  "completed_at", "created_at", "data_removed", "deadline", "deployment", "error", "error_code",
  "id", "input", "logs", "metrics", "model", "output", "source", "started_at", "status", "urls",
  "version", "webhook", "webhook_events_filter",
];

test("predictions.create by version returns a starting prediction", async () => {
  const p = await replicate.predictions.create({ version, input: { prompt: "hi" } });
  assert.deepEqual(Object.keys(p).sort(), fields);
  assert.match(p.id, /^[0-9a-hjkmnp-tv-z]{26}$/);
  assert.equal(p.status, "starting");
  assert.equal(p.version, version);
  assert.equal(p.model, env("COGWHEEL_MODEL"));
  assert.deepEqual(p.input, { prompt: "hi" });
  assert.match(p.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.equal(p.urls.get, `${baseUrl}/predictions/${p.id}`);
});

test("predictions.create by model and through a deployment", async () => {
  const byModel = await replicate.predictions.create({ model: env("COGWHEEL_MODEL"), input: {} });
  assert.equal(byModel.version, version);
  const byDeployment = await replicate.deployments.predictions.create(depOwner, depName, {
    input: { n: 1 },
  });
  assert.equal(byDeployment.deployment, env("COGWHEEL_DEPLOYMENT"));
});

test("predictions.get, list with paginate, and cancel", async () => {
  const created = await replicate.predictions.create({
    version, input: { x: 1 }, webhook: "https://example.com/hook", webhook_events_filter: ["completed"],
  });
  const got = await replicate.predictions.get(created.id);
  assert.equal(got.id, created.id);
  assert.deepEqual(got.webhook_events_filter, ["completed"]);

  const seen = [];
  for await (const page of replicate.paginate(replicate.predictions.list)) {
    seen.push(...page.map((p) => p.id));
    if (seen.length > 500) break;
  }
  assert.ok(seen.includes(created.id));

  const canceled = await replicate.predictions.cancel(created.id);
  assert.equal(canceled.status, "canceled");
  assert.ok(canceled.completed_at);
});

test("another tenant cannot see the prediction", async () => {
  const p = await replicate.predictions.create({ version, input: {} });
  await assert.rejects(other.predictions.get(p.id), (err) => err.response?.status === 404);
});

test("the default webhook secret is a whsec_ key", async () => {
  const secret = await replicate.webhooks.default.secret.get();
  assert.match(secret.key, /^whsec_[A-Za-z0-9+/]+=*$/);
});

test("wait: an unfinished prediction comes back after the wait", async () => {
  const started = Date.now();
  const p = await replicate.predictions.create({ version, input: {}, wait: 1 });
  assert.equal(p.status, "starting");
  assert.ok(Date.now() - started >= 900, "the create was held for the wait");
});

test("bad input is a 422 ApiError that names the field", async () => {
  await assert.rejects(
    replicate.predictions.create({ version, input: "not an object" }),
    (err) => err.response?.status === 422 && /input/.test(err.message),
  );
  await assert.rejects(
    replicate.predictions.create({ version: "f".repeat(64), input: {} }),
    (err) => err.response?.status === 422,
  );
});

test("a wrong token is a 401", async () => {
  const stranger = new Replicate({ auth: "cw_not_a_real_token", baseUrl });
  await assert.rejects(stranger.predictions.list(), (err) => err.response?.status === 401);
});
