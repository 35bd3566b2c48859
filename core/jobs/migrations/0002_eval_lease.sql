-- tuneport store, schema 2: one process at a time fills in an evaluation run's answers.
-- Without it, three concurrent `tuneport eval --resume RUN` each asked (and paid for) every missing item.
-- A lease names its holder (a token unique to one process), where it runs (host, pid), since when, and its last
-- heartbeat; a lease whose process is gone (same host, pid dead) or whose heartbeat has stopped is taken over.
CREATE TABLE eval_leases (
    eval_run_id  TEXT PRIMARY KEY REFERENCES eval_runs (id) ON DELETE CASCADE,
    holder       TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    acquired_at  REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
