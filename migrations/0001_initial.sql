-- 0001_initial: the schema the whole scheduler works on.
-- Never edit this file once landed: add a new numbered migration instead.

-- API tokens: one per tenant. Only a SHA-256 of the token is stored.
CREATE TABLE api_tokens (
  id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name                    text NOT NULL CHECK (name <> '' AND length(name) <= 200),
  token_sha256            bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
  token_hint              text NOT NULL,  -- the first characters, to tell tokens apart in listings
  webhook_secret          text NOT NULL CHECK (webhook_secret ~ '^whsec_[A-Za-z0-9+/=]+$'),
  previous_webhook_secret text CHECK (previous_webhook_secret ~ '^whsec_[A-Za-z0-9+/=]+$'),
  previous_secret_until   timestamptz,
  created_at              timestamptz NOT NULL DEFAULT now(),
  revoked_at              timestamptz,
  CHECK ((previous_webhook_secret IS NULL) = (previous_secret_until IS NULL))
);

-- Models, versions and deployments, loaded from the config file at start.
CREATE TABLE models (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner       text NOT NULL CHECK (owner ~ '^[A-Za-z0-9][A-Za-z0-9_.-]*$'),
  name        text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]*$'),
  description text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (owner, name)
);

CREATE TABLE versions (
  id               text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
  model_id         bigint NOT NULL REFERENCES models (id),
  runtime          jsonb NOT NULL DEFAULT '{}'::jsonb,  -- how its containers are obtained
  start_timeout_ms bigint CHECK (start_timeout_ms > 0),  -- null: the service default
  run_timeout_ms   bigint CHECK (run_timeout_ms > 0),
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX versions_model ON versions (model_id, created_at DESC);
-- The version a model's predictions run when none is named.
ALTER TABLE models ADD COLUMN latest_version_id text REFERENCES versions (id);

CREATE TABLE deployments (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner            text NOT NULL CHECK (owner ~ '^[A-Za-z0-9][A-Za-z0-9_.-]*$'),
  name             text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]*$'),
  version_id       text NOT NULL REFERENCES versions (id),
  min_instances    integer NOT NULL DEFAULT 0 CHECK (min_instances >= 0),
  max_instances    integer NOT NULL DEFAULT 1 CHECK (max_instances >= min_instances),
  start_timeout_ms bigint CHECK (start_timeout_ms > 0),
  run_timeout_ms   bigint CHECK (run_timeout_ms > 0),
  require_webhook  boolean NOT NULL DEFAULT false,
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (owner, name)
);

-- Predictions: the queue and the record. Status moves forward only (see the trigger below).
-- The inner phases of `starting` are columns: queued (dispatched_at IS NULL) and dispatched.
CREATE TABLE predictions (
  id                    text PRIMARY KEY CHECK (id ~ '^[0-9a-hjkmnp-tv-z]{26}$'),
  token_id              bigint NOT NULL REFERENCES api_tokens (id),
  model                 text NOT NULL,  -- owner/name
  version_id            text NOT NULL REFERENCES versions (id),
  deployment            text,           -- owner/name when created through a deployment
  source                text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'web')),
  status                text NOT NULL DEFAULT 'starting'
                        CHECK (status IN ('starting', 'processing', 'succeeded', 'failed',
                                          'canceled', 'aborted')),
  input                 jsonb,
  output                jsonb,
  logs                  text NOT NULL DEFAULT '',
  error                 text,
  error_code            text CHECK (error_code ~ '^E[0-9]{4}$'),
  metrics               jsonb,
  data_removed          boolean NOT NULL DEFAULT false,
  created_at            timestamptz NOT NULL DEFAULT now(),
  started_at            timestamptz,
  completed_at          timestamptz,
  deadline              timestamptz,
  webhook               text CHECK (webhook ~ '^https?://'),
  webhook_events_filter text[] CHECK (webhook_events_filter <@ ARRAY['start', 'output', 'logs',
                                                                      'completed']),
  idempotency_key       text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  idempotency_sha256    bytea,
  -- dispatch
  dispatched_at         timestamptz,
  container_id          text,
  attempt               integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
  lease_owner           text,
  lease_expires_at      timestamptz,
  cancel_requested_at   timestamptz,
  updated_at            timestamptz NOT NULL DEFAULT now(),

  -- completed_at is set exactly when the status is terminal.
  CONSTRAINT predictions_completed_iff_terminal CHECK (
    (completed_at IS NOT NULL) = (status IN ('succeeded', 'failed', 'canceled', 'aborted'))),
  -- started_at is set once running; never for work that did not start.
  CONSTRAINT predictions_started_when_running CHECK (
    (status <> 'processing' OR started_at IS NOT NULL)
    AND (status NOT IN ('starting', 'aborted') OR started_at IS NULL)),
  CONSTRAINT predictions_succeeded_started CHECK (status <> 'succeeded' OR started_at IS NOT NULL),
  -- a failed prediction carries its code and message; no other status has an error code.
  CONSTRAINT predictions_failed_has_error CHECK (
    (status = 'failed') = (error_code IS NOT NULL)
    AND (status <> 'failed' OR error LIKE error_code || ':%')),
  CONSTRAINT predictions_time_order CHECK (
    (started_at IS NULL OR started_at >= created_at)
    AND (completed_at IS NULL OR completed_at >= coalesce(started_at, created_at))),
  -- a dispatched prediction names its container.
  CONSTRAINT predictions_dispatched_container CHECK (dispatched_at IS NULL OR container_id IS NOT NULL),
  CONSTRAINT predictions_running_dispatched CHECK (status <> 'processing' OR dispatched_at IS NOT NULL),
  CONSTRAINT predictions_lease_pair CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
  -- an events filter needs a webhook (E4875).
  CONSTRAINT predictions_filter_needs_webhook CHECK (webhook_events_filter IS NULL OR webhook IS NOT NULL),
  CONSTRAINT predictions_idempotency_pair CHECK ((idempotency_key IS NULL) = (idempotency_sha256 IS NULL)),
  CONSTRAINT predictions_removed_data CHECK (NOT data_removed OR (input IS NULL AND output IS NULL))
);

-- Claiming: FIFO within a version, over queued work only.
CREATE INDEX predictions_queued ON predictions (version_id, created_at, id)
  WHERE status = 'starting' AND dispatched_at IS NULL;
-- Listing a tenant's predictions, newest first, with a (created_at, id) cursor.
CREATE INDEX predictions_tenant_created ON predictions (token_id, created_at DESC, id DESC);
-- The reaper: live work by lease and by age.
CREATE INDEX predictions_live_lease ON predictions (lease_expires_at)
  WHERE status IN ('starting', 'processing');
CREATE INDEX predictions_live_created ON predictions (status, created_at)
  WHERE status IN ('starting', 'processing');
CREATE INDEX predictions_deadline ON predictions (deadline)
  WHERE deadline IS NOT NULL AND status IN ('starting', 'processing');
-- Retention: terminal rows by completion.
CREATE INDEX predictions_completed ON predictions (completed_at) WHERE completed_at IS NOT NULL;
CREATE UNIQUE INDEX predictions_idempotency ON predictions (token_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- Forward-only status: a terminal state is final, and processing never returns to starting.
CREATE FUNCTION predictions_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status IN ('succeeded', 'failed', 'canceled', 'aborted') THEN
    RAISE EXCEPTION 'prediction % is % and cannot become %', OLD.id, OLD.status, NEW.status
      USING ERRCODE = 'check_violation';
  END IF;
  IF OLD.status = 'processing' AND NEW.status = 'starting' THEN
    RAISE EXCEPTION 'prediction % is processing and cannot return to starting', OLD.id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER predictions_forward_only BEFORE UPDATE OF status ON predictions
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION predictions_forward_only();

-- The webhook outbox: one row per event, written in the transaction that caused it.
CREATE TABLE webhook_deliveries (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_id       text NOT NULL UNIQUE CHECK (message_id ~ '^msg_[0-9A-Za-z]+$'),
  prediction_id    text NOT NULL REFERENCES predictions (id) ON DELETE CASCADE,
  token_id         bigint NOT NULL REFERENCES api_tokens (id),
  event            text NOT NULL CHECK (event IN ('start', 'output', 'logs', 'completed')),
  url              text NOT NULL CHECK (url ~ '^https?://'),
  payload          text NOT NULL,  -- the exact bytes sent and signed
  state            text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'delivered', 'failed', 'dropped', 'superseded',
                                    'disabled')),
  attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  lease_owner      text,
  lease_expires_at timestamptz,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz,
  CONSTRAINT webhook_deliveries_finished CHECK ((state = 'pending') = (finished_at IS NULL)),
  CONSTRAINT webhook_deliveries_lease_pair CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
  WHERE state = 'pending';
CREATE INDEX webhook_deliveries_prediction ON webhook_deliveries (prediction_id, id);

-- Every delivery attempt, for the record and for GET /v1/predictions/{id}/webhooks.
CREATE TABLE webhook_attempts (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  delivery_id      bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
  attempt          integer NOT NULL CHECK (attempt >= 1),
  started_at       timestamptz NOT NULL,
  latency_ms       double precision CHECK (latency_ms >= 0),
  status_code      integer CHECK (status_code BETWEEN 100 AND 599),
  error            text,
  response_excerpt text,
  UNIQUE (delivery_id, attempt)
);

-- Webhook URLs a tenant's receiver retired with 410 Gone.
CREATE TABLE webhook_disabled_urls (
  token_id    bigint NOT NULL REFERENCES api_tokens (id),
  url         text NOT NULL,
  disabled_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (token_id, url)
);

-- Leader leases for maintenance loops that must run in one process at a time.
CREATE TABLE leader_leases (
  name       text PRIMARY KEY,
  owner      text NOT NULL,
  expires_at timestamptz NOT NULL
);
