-- Statistics after rollup: one row per check per day (hourly rows older than the hourly
-- retention are merged into these), same columns as check_hourly. Encoding of the blobs:
-- docs/statistics.md.
CREATE TABLE check_daily (
    check_id     BIGINT NOT NULL,
    day          BIGINT NOT NULL,                 -- Unix seconds / 86400
    ok_count     BIGINT NOT NULL,
    fail_count   BIGINT NOT NULL,
    outcomes     BYTEA NOT NULL,
    total_hist   BYTEA,
    dns_hist     BYTEA,
    connect_hist BYTEA,
    tls_hist     BYTEA,
    ttfb_hist    BYTEA,
    PRIMARY KEY (check_id, day)
);

-- Spool parts already flushed into check_hourly (written in the same transaction as their
-- rows), so a flush interrupted by a crash is never counted twice. Pruned after 7 days.
CREATE TABLE stats_flushed (
    spool_part   TEXT PRIMARY KEY,
    flushed_at   BIGINT NOT NULL
);
