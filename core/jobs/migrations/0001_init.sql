-- tuneport store, schema 1.
-- Times are unix seconds (INTEGER), like OpenAI's objects; heartbeat_at is REAL for sub-second liveness checks.
-- JSON columns hold compact JSON text. Provenance: tuneport_version + created_at everywhere, and the dataset
-- sha256 / spec hash wherever a row was produced from a dataset or a spec.

-- One row per applied migration (PRAGMA user_version is the authority; this is the audit trail).
CREATE TABLE schema_migrations (
    version          INTEGER PRIMARY KEY,
    name             TEXT NOT NULL,
    tuneport_version TEXT NOT NULL,
    applied_at       INTEGER NOT NULL
);

CREATE TABLE datasets (
    sha256           TEXT PRIMARY KEY,
    path             TEXT NOT NULL,
    size_bytes       INTEGER NOT NULL,
    n_examples       INTEGER,
    stats            TEXT,                      -- JSON
    validated_at     INTEGER,
    tuneport_version TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- Files uploaded to a provider, so the same bytes are never uploaded twice.
CREATE TABLE files (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    provider         TEXT NOT NULL,
    provider_file_id TEXT NOT NULL,
    dataset_sha256   TEXT NOT NULL,
    purpose          TEXT NOT NULL,
    size_bytes       INTEGER,
    filename         TEXT,
    tuneport_version TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    UNIQUE (provider, provider_file_id)
);
CREATE INDEX files_by_sha256 ON files (provider, dataset_sha256, purpose);

CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    backend           TEXT NOT NULL,
    status            TEXT NOT NULL,
    model             TEXT,
    fine_tuned_model  TEXT,
    spec              TEXT,                     -- JSON
    spec_hash         TEXT,
    dataset_sha256    TEXT,
    training_file     TEXT,
    validation_file   TEXT,
    method            TEXT,                     -- JSON
    hyperparameters   TEXT,                     -- JSON
    seed              INTEGER,
    suffix            TEXT,
    result_files      TEXT,                     -- JSON
    error             TEXT,                     -- JSON
    trained_tokens    INTEGER,
    estimated_finish  INTEGER,
    metadata          TEXT,                     -- JSON
    outputs           TEXT,                     -- JSON: adapter dir, checkpoints dir (local jobs)
    pid               INTEGER,
    heartbeat_at      REAL,
    tuneport_version  TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    finished_at       INTEGER
);
CREATE INDEX jobs_by_created ON jobs (created_at, id);
CREATE INDEX jobs_by_status ON jobs (backend, status);

-- Append-only; id is the order (AUTOINCREMENT: never reused, so `after=id` paging is stable).
CREATE TABLE events (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id            TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    provider_event_id TEXT,
    created_at        INTEGER NOT NULL,
    level             TEXT NOT NULL CHECK (level IN ('info', 'warn', 'error')),
    message           TEXT NOT NULL,
    type              TEXT NOT NULL CHECK (type IN ('message', 'metrics')),
    data              TEXT,                     -- JSON
    UNIQUE (job_id, provider_event_id)
);
CREATE INDEX events_by_job ON events (job_id, id);

CREATE TABLE checkpoints (
    id                          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id                      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step                        INTEGER NOT NULL,
    metrics                     TEXT,           -- JSON
    path                        TEXT,
    fine_tuned_model_checkpoint TEXT,
    provider_checkpoint_id      TEXT,
    created_at                  INTEGER NOT NULL,
    UNIQUE (job_id, step)
);

CREATE TABLE endpoints (
    name             TEXT PRIMARY KEY,
    base_url         TEXT NOT NULL,
    model            TEXT NOT NULL,
    api_key_env      TEXT,                      -- the NAME of an environment variable, never a secret
    kind             TEXT NOT NULL,
    job_id           TEXT REFERENCES jobs (id) ON DELETE SET NULL,
    extra            TEXT,                      -- JSON
    tuneport_version TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE eval_runs (
    id               TEXT PRIMARY KEY,
    name             TEXT,
    status           TEXT NOT NULL,
    config           TEXT,                      -- JSON
    spec_hash        TEXT,
    dataset_sha256   TEXT,
    endpoints        TEXT,                      -- JSON list of endpoint names
    summary          TEXT,                      -- JSON
    metadata         TEXT,                      -- JSON
    tuneport_version TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);

CREATE TABLE responses (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    eval_run_id       TEXT NOT NULL REFERENCES eval_runs (id) ON DELETE CASCADE,
    endpoint          TEXT NOT NULL,
    item_index        INTEGER NOT NULL,
    sample            INTEGER NOT NULL DEFAULT 0,
    cache_key         TEXT,
    request           TEXT,                     -- JSON
    response          TEXT,                     -- JSON
    latency_ms        REAL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    error             TEXT,                     -- JSON
    created_at        INTEGER NOT NULL,
    UNIQUE (eval_run_id, endpoint, item_index, sample)
);
CREATE INDEX responses_by_cache_key ON responses (cache_key);

CREATE TABLE costs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT NOT NULL,
    amount           TEXT NOT NULL,             -- exact decimal as text, e.g. '12.3400'
    currency         TEXT NOT NULL,
    job_id           TEXT REFERENCES jobs (id) ON DELETE SET NULL,
    eval_run_id      TEXT REFERENCES eval_runs (id) ON DELETE SET NULL,
    dataset_sha256   TEXT,
    spec_hash        TEXT,
    inputs           TEXT,                      -- JSON, with `source` and `as_of` of every price used
    tuneport_version TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX costs_by_job ON costs (job_id);
