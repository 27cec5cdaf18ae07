-- Statistics after rollup: one row per check per day (hourly rows older than the hourly
-- retention are merged into these), same columns as check_hourly. Encoding of the blobs:
-- docs/statistics.md.
CREATE TABLE check_daily (
    check_id     INTEGER NOT NULL,
    day          INTEGER NOT NULL,                 -- Unix seconds / 86400
    ok_count     INTEGER NOT NULL,
    fail_count   INTEGER NOT NULL,
    outcomes     BLOB NOT NULL,
    total_hist   BLOB,
    dns_hist     BLOB,
    connect_hist BLOB,
    tls_hist     BLOB,
    ttfb_hist    BLOB,
    PRIMARY KEY (check_id, day)
) WITHOUT ROWID;

-- Spool parts already flushed into check_hourly (written in the same transaction as their
-- rows), so a flush interrupted by a crash is never counted twice. Pruned after 7 days.
CREATE TABLE stats_flushed (
    spool_part   TEXT PRIMARY KEY,
    flushed_at   INTEGER NOT NULL
);
