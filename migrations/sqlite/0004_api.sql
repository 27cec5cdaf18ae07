-- REST API (docs/api.md): what a site is to its owner (main URL, tags, active), durable
-- idempotency keys, rate-limit buckets that survive restarts, and the request audit log.
ALTER TABLE sites ADD COLUMN url TEXT NOT NULL DEFAULT '';
ALTER TABLE sites ADD COLUMN tags TEXT NOT NULL DEFAULT '';       -- ",a,b," (filter: LIKE '%,a,%')
ALTER TABLE sites ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
ALTER TABLE checks ADD COLUMN name TEXT NOT NULL DEFAULT '';
CREATE INDEX events_time ON events(started_at);

CREATE TABLE idempotency_keys (
    key_id      INTEGER NOT NULL,
    idem_key    TEXT NOT NULL,
    body_hash   BLOB NOT NULL,
    state       INTEGER NOT NULL,                  -- 0 in flight, 1 done
    status      INTEGER NOT NULL DEFAULT 0,
    response    TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);
CREATE INDEX idempotency_created ON idempotency_keys(created_at);

CREATE TABLE rate_limits (
    key_id      INTEGER NOT NULL,
    bucket      INTEGER NOT NULL,                  -- 0 general, 1 expensive
    tokens_milli INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (key_id, bucket)
);

CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    key_id       INTEGER NOT NULL,
    method       TEXT NOT NULL,
    route        TEXT NOT NULL,
    status       INTEGER NOT NULL,
    duration_us  INTEGER NOT NULL,
    request_id   TEXT NOT NULL,
    at           INTEGER NOT NULL
);
CREATE INDEX audit_at ON audit_log(at);
