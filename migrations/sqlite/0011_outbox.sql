-- Notifications (docs/notifications.md): webhooks (a tenant's subscriptions; secrets sealed),
-- the outbox (one row per delivery, written in the transaction of its transition) and every
-- attempt made.
CREATE TABLE webhooks (
    id               INTEGER PRIMARY KEY,
    tenant_id        INTEGER NOT NULL,
    url              TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    event_types      TEXT NOT NULL DEFAULT '',   -- comma-separated; '' = every type
    site_ids         TEXT NOT NULL DEFAULT '',   -- comma-separated; '' = every site of the tenant
    states           TEXT NOT NULL DEFAULT '',   -- comma-separated state names; '' = all
    active           INTEGER NOT NULL DEFAULT 1,
    disabled_reason  TEXT,
    secret           TEXT NOT NULL,              -- sealed (jetmon-secrets)
    secret_preview   TEXT NOT NULL,
    previous_secret  TEXT,                       -- sealed; signs too until previous_until
    previous_until   INTEGER,
    max_in_flight    INTEGER NOT NULL DEFAULT 4,
    retry_ladder     TEXT NOT NULL DEFAULT '',   -- comma-separated seconds; '' = 1m,5m,30m,1h,6h
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks(tenant_id);

-- Migration 1 made a placeholder outbox that nothing ever wrote; this one replaces it.
DROP TABLE outbox;
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,           -- "<transition>.<kind letter><subscription>"
    kind             INTEGER NOT NULL,           -- 1 webhook, 2 WPCOM notice
    subscription_id  INTEGER NOT NULL,
    tenant_id        INTEGER NOT NULL,
    site_id          INTEGER NOT NULL,
    transition_id    INTEGER NOT NULL,           -- the order within (subscription, site)
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,              -- frozen at enqueue
    state            INTEGER NOT NULL DEFAULT 0, -- 0 pending, 1 delivered, 2 abandoned
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_at          INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    done_at          INTEGER
);
-- Claims read a subscription's due rows; the order check seeks the earlier pending rows of
-- one (subscription, site).
CREATE INDEX outbox_due ON outbox(state, kind, subscription_id, next_at);
CREATE INDEX outbox_order ON outbox(kind, subscription_id, site_id, state, transition_id);

CREATE TABLE delivery_attempts (
    id               INTEGER PRIMARY KEY,
    delivery_id      TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    at               INTEGER NOT NULL,
    duration_us      INTEGER NOT NULL,
    status           INTEGER,
    error            TEXT,
    excerpt          TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id);
