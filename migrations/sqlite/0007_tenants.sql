-- Tenants (docs/tenants.md): every site belongs to one; keys are operator, tenant or gateway
-- keys; rate limits and idempotency keys are per (tenant, key). Existing sites move to tenant 1
-- ("default") and existing keys become operator keys, so nothing that worked stops working.
CREATE TABLE tenants (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL,
    active          INTEGER NOT NULL DEFAULT 1,
    deactivated_at  INTEGER
);
INSERT INTO tenants (id, name, created_at, active)
    VALUES (1, 'default', CAST(strftime('%s', 'now') AS INTEGER) * 1000000, 1);

-- SQLite cannot add a REFERENCES column with a non-NULL default; the store checks the tenant.
ALTER TABLE sites ADD COLUMN tenant_id INTEGER NOT NULL DEFAULT 1;
CREATE INDEX sites_tenant ON sites (tenant_id, id);
-- Jetmon v1 ids are unique per tenant: one tenant's ids never collide with another's.
DROP INDEX sites_blog_id;
CREATE UNIQUE INDEX sites_blog_id ON sites (tenant_id, blog_id) WHERE blog_id IS NOT NULL;

ALTER TABLE api_keys ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;   -- 0 operator, 1 tenant, 2 gateway
ALTER TABLE api_keys ADD COLUMN tenant_id INTEGER;                 -- tenant keys only
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE rate_limits_t (
    tenant_id    INTEGER NOT NULL,                 -- 0: no tenant (operator keys)
    key_id       INTEGER NOT NULL,
    bucket       INTEGER NOT NULL,
    tokens_milli INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key_id, bucket)
);
INSERT INTO rate_limits_t SELECT 0, key_id, bucket, tokens_milli, updated_at FROM rate_limits;
DROP TABLE rate_limits;
ALTER TABLE rate_limits_t RENAME TO rate_limits;

CREATE TABLE idempotency_keys_t (
    tenant_id   INTEGER NOT NULL,
    key_id      INTEGER NOT NULL,
    idem_key    TEXT NOT NULL,
    body_hash   BLOB NOT NULL,
    state       INTEGER NOT NULL,
    status      INTEGER NOT NULL DEFAULT 0,
    response    TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key_id, idem_key)
);
INSERT INTO idempotency_keys_t
    SELECT 0, key_id, idem_key, body_hash, state, status, response, created_at FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_t RENAME TO idempotency_keys;
CREATE INDEX idempotency_created ON idempotency_keys (created_at);

-- Who a request acted for (a gateway key acts for many tenants); 0: no tenant.
ALTER TABLE audit_log ADD COLUMN tenant_id INTEGER NOT NULL DEFAULT 0;
