-- Jetmon schema, SQLite. Times are Unix microseconds (INTEGER); ids are INTEGER.
-- Events are the truth; `sites` carries a projection written in the same transaction.

CREATE TABLE sites (
    id                     INTEGER PRIMARY KEY,
    blog_id                INTEGER,                 -- Jetmon v1 id, for back-compat
    name                   TEXT NOT NULL DEFAULT '',
    created_at             INTEGER NOT NULL,
    current_state          INTEGER NOT NULL DEFAULT 0,
    current_severity       INTEGER NOT NULL DEFAULT 0,
    active_event_id        INTEGER,
    active_event_count     INTEGER NOT NULL DEFAULT 0,
    site_status            INTEGER NOT NULL DEFAULT 1, -- legacy: 1 running, 0 seems down, 2 down
    last_checked_at        INTEGER,
    last_status_change_at  INTEGER,
    ssl_expiry_at          INTEGER
);

CREATE TABLE endpoints (
    id        INTEGER PRIMARY KEY,
    site_id   INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    url       TEXT NOT NULL,
    critical  INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX endpoints_site ON endpoints(site_id);

CREATE TABLE checks (
    id                INTEGER PRIMARY KEY,
    site_id           INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    endpoint_id       INTEGER REFERENCES endpoints(id) ON DELETE CASCADE,
    check_type        INTEGER NOT NULL,            -- shared::check::CheckType code
    target            TEXT NOT NULL,
    interval_ms       INTEGER NOT NULL,
    timeout_ms        INTEGER NOT NULL,
    retries           INTEGER NOT NULL,
    retry_spacing_ms  INTEGER NOT NULL,
    critical          INTEGER NOT NULL DEFAULT 1,
    paused            INTEGER NOT NULL DEFAULT 0,
    settings          TEXT NOT NULL DEFAULT '{}',  -- the rest of CheckSpec, JSON
    generation        INTEGER NOT NULL DEFAULT 1,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX checks_site ON checks(site_id);

CREATE TABLE events (
    id                 INTEGER PRIMARY KEY,
    site_id            INTEGER NOT NULL,
    check_id           INTEGER NOT NULL,
    kind               INTEGER NOT NULL,           -- engine::EventKind
    state              INTEGER NOT NULL,
    severity           INTEGER NOT NULL,
    started_at         INTEGER NOT NULL,
    ended_at           INTEGER,
    resolution_reason  INTEGER,
    cause_event_id     INTEGER REFERENCES events(id)
);
-- At most one open event per identity.
CREATE UNIQUE INDEX events_open_identity ON events(site_id, check_id, kind) WHERE ended_at IS NULL;
CREATE INDEX events_site_time ON events(site_id, started_at);

CREATE TABLE transitions (
    id               INTEGER PRIMARY KEY,
    event_id         INTEGER NOT NULL REFERENCES events(id),
    site_id          INTEGER NOT NULL,
    state_before     INTEGER,                      -- NULL: the event opened
    severity_before  INTEGER,
    state_after      INTEGER,                      -- NULL: the event closed
    severity_after   INTEGER,
    reason           INTEGER NOT NULL,
    source           TEXT NOT NULL,
    metadata         TEXT NOT NULL DEFAULT '{}',
    at               INTEGER NOT NULL
);
CREATE INDEX transitions_event ON transitions(event_id);
CREATE INDEX transitions_site_time ON transitions(site_id, at);

-- Per check per hour: histograms (sparse log-linear, docs/statistics.md) of total time and each phase, and
-- counts by outcome. Written when the hour is flushed, in multi-row batches.
CREATE TABLE check_hourly (
    check_id     INTEGER NOT NULL,
    hour         INTEGER NOT NULL,                 -- Unix seconds / 3600
    ok_count     INTEGER NOT NULL,
    fail_count   INTEGER NOT NULL,
    outcomes     BLOB NOT NULL,                    -- (code, count) varint pairs
    total_hist   BLOB,
    dns_hist     BLOB,
    connect_hist BLOB,
    tls_hist     BLOB,
    ttfb_hist    BLOB,
    PRIMARY KEY (check_id, hour)
) WITHOUT ROWID;

-- Recent raw results of failures (not of healthy checks), for "why is it down".
CREATE TABLE recent_failures (
    check_id     INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    outcome      INTEGER NOT NULL,
    detail       INTEGER NOT NULL,
    http_status  INTEGER NOT NULL,
    total_us     INTEGER NOT NULL,
    vantage_id   INTEGER NOT NULL,
    PRIMARY KEY (check_id, at)
) WITHOUT ROWID;

CREATE TABLE maintenance_windows (
    id          INTEGER PRIMARY KEY,
    site_id     INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    check_id    INTEGER,                           -- NULL: the whole site
    from_at     INTEGER,                           -- one-off
    to_at       INTEGER,
    weekly_start_s     INTEGER,                    -- weekly: seconds after Monday 00:00 UTC
    weekly_duration_s  INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX maintenance_site ON maintenance_windows(site_id);

-- Where ingest stopped, per shard: the ring position that is durable (replays start here).
CREATE TABLE ingest_positions (
    shard       INTEGER PRIMARY KEY,
    position    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Fleet mode (later): hosts and bucket leases with fencing epochs.
CREATE TABLE hosts (
    id            TEXT PRIMARY KEY,
    heartbeat_at  INTEGER NOT NULL
);
CREATE TABLE bucket_leases (
    bucket      INTEGER PRIMARY KEY,
    host_id     TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  BLOB NOT NULL UNIQUE,              -- SHA-256 of the token; the token is never stored
    scopes      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);

-- Transactional outbox for notifications (later issues).
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    delivered_at  INTEGER
);
