//! Statistics rows: hourly rows flushed from the spool, daily rows after rollup
//! (docs/statistics.md). Rows are written as multi-row upserts that *merge* with a row already
//! there (late results of a flushed hour, a flush run by hand), never replace it.

use anyhow::{Context, Result};
use sqlx::{Any, Row, Transaction};

use super::{Store, i, u};
use jetmon_engine::stats::{Hist, PeriodStats};

/// Rows per multi-row statement (10 parameters each). Kept small: sqlx's SQLite driver looks
/// each `$N` up among all of a statement's parameters, so binding costs grow with the square
/// of the parameter count (at 500 rows that lookup was 43% of a flush's CPU).
const ROWS_PER_STATEMENT: usize = 50;
/// How long flushed spool part names are remembered.
const FLUSHED_RETENTION_S: u64 = 7 * 86_400;

/// Which statistics table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
}

impl Period {
    fn table(self) -> &'static str {
        match self {
            Period::Hour => "check_hourly",
            Period::Day => "check_daily",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }
}

/// What a rollup did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    pub hourly_rows_merged: u64,
    pub daily_rows_written: u64,
    pub daily_rows_expired: u64,
}

/// Placeholders `$from, $from+1, …` for `n` values.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|k| format!("${k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `Store::period_stats_snapshot` read.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub hourly: Vec<PeriodStats>,
    pub daily: Vec<PeriodStats>,
    /// The asked-for spool parts that were already flushed (names without the host).
    pub flushed: std::collections::HashSet<String>,
}

async fn period_rows(
    c: &mut sqlx::AnyConnection,
    p: Period,
    check_ids: &[u64],
    from: u64,
    to: u64,
) -> Result<Vec<PeriodStats>> {
    if check_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {} FROM {} WHERE {c} >= $1 AND {c} < $2 AND check_id IN ({}) ORDER BY {c}",
        columns(p),
        p.table(),
        placeholders(3, check_ids.len()),
        c = p.column()
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(i(from))
        .bind(i(to));
    for id in check_ids {
        q = q.bind(i(*id));
    }
    let rows = q.fetch_all(&mut *c).await.context("reading statistics")?;
    rows.iter().map(stats_of).collect()
}

fn stats_of(row: &sqlx::any::AnyRow) -> Result<PeriodStats> {
    let n = |k: usize| -> Result<u64> { Ok(u(row.try_get::<i64, _>(k)?)) };
    let blob = |k: usize| -> Result<Hist> {
        match row.try_get::<Option<Vec<u8>>, _>(k)? {
            Some(b) => Ok(Hist::decode(&b)?),
            None => Ok(Hist::default()),
        }
    };
    let outcomes: Vec<u8> = row.try_get(4)?;
    Ok(PeriodStats {
        check_id: n(0)?,
        period: n(1)?,
        ok_count: n(2)?,
        fail_count: n(3)?,
        outcomes: PeriodStats::decode_outcomes(&outcomes)?,
        hists: [blob(5)?, blob(6)?, blob(7)?, blob(8)?, blob(9)?],
    })
}

const COLUMNS: &str = "check_id, {p}, ok_count, fail_count, outcomes, total_hist, dns_hist, connect_hist, tls_hist, ttfb_hist";

fn columns(p: Period) -> String {
    COLUMNS.replace("{p}", p.column())
}

impl Store {
    /// Writes one flushed spool part's hourly rows, unless that part was flushed before;
    /// returns whether it wrote. Rows and the part's name go in one transaction.
    pub async fn put_hourly(&self, rows: &[PeriodStats], spool_part: &str) -> Result<bool> {
        let name = format!("{}/{spool_part}", self.host);
        let (_turn, mut tx) = self.write_tx().await?;
        super::write_first(&mut tx).await?;
        let seen = sqlx::query("SELECT 1 FROM stats_flushed WHERE spool_part = $1")
            .bind(&name)
            .fetch_optional(&mut *tx)
            .await
            .context("reading flushed spool parts")?;
        if seen.is_some() {
            return Ok(false);
        }
        merge_rows(&mut tx, Period::Hour, rows.to_vec()).await?;
        sqlx::query("INSERT INTO stats_flushed (spool_part, flushed_at) VALUES ($1, $2)")
            .bind(&name)
            .bind(i(unix_s()))
            .execute(&mut *tx)
            .await
            .context("recording a flushed spool part")?;
        tx.commit().await.context("committing statistics")?;
        Ok(true)
    }

    /// Merges rows into a statistics table directly (benchmarks and imports; control itself
    /// writes hourly rows through `put_hourly` and daily rows through the rollup).
    pub async fn put_period(&self, p: Period, rows: Vec<PeriodStats>) -> Result<()> {
        let (_turn, mut tx) = self.write_tx().await?;
        super::write_first(&mut tx).await?;
        merge_rows(&mut tx, p, rows).await?;
        tx.commit().await.context("committing statistics")?;
        Ok(())
    }

    /// A check's rows with `from <= period < to`, oldest first.
    pub async fn period_stats(
        &self,
        p: Period,
        check_id: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<PeriodStats>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE check_id = $1 AND {c} >= $2 AND {c} < $3 ORDER BY {c}",
            columns(p),
            p.table(),
            c = p.column()
        );
        // Every dynamic statement here is built from constants and placeholders only.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i(check_id))
            .bind(i(from))
            .bind(i(to))
            .fetch_all(&self.pool)
            .await
            .context("reading statistics")?;
        rows.iter().map(stats_of).collect()
    }

    /// The rows of several checks with `from <= period < to` (one query), by period.
    pub async fn period_stats_of(
        &self,
        p: Period,
        check_ids: &[u64],
        from: u64,
        to: u64,
    ) -> Result<Vec<PeriodStats>> {
        let mut c = self.pool.acquire().await.context("reading statistics")?;
        period_rows(&mut c, p, check_ids, from, to).await
    }

    /// Hourly rows (hours `[from_h, to_h)`), daily rows (days `[from_d, to_d)`) and which of
    /// the spool parts `parts` were already flushed, all from one snapshot of the database:
    /// a part flushed while this runs is either in the rows and the flushed set, or in
    /// neither, so the caller adds the parts still in the spool and counts nothing twice.
    pub async fn period_stats_snapshot(
        &self,
        check_ids: &[u64],
        hours: (u64, u64),
        days: (u64, u64),
        parts: &[String],
    ) -> Result<Snapshot> {
        let (_turn, mut tx) = self.write_tx().await?;
        if self.backend == super::Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await
                .context("taking a snapshot")?;
        }
        // SQLite: a deferred transaction reads one snapshot from its first SELECT on.
        let mut flushed = std::collections::HashSet::new();
        for chunk in parts.chunks(200) {
            let names: Vec<String> = chunk.iter().map(|p| format!("{}/{p}", self.host)).collect();
            let sql = format!(
                "SELECT spool_part FROM stats_flushed WHERE spool_part IN ({})",
                placeholders(1, names.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for n in &names {
                q = q.bind(n.clone());
            }
            for r in q
                .fetch_all(&mut *tx)
                .await
                .context("reading flushed parts")?
            {
                let name: String = r.try_get(0)?;
                let bare = name
                    .strip_prefix(&format!("{}/", self.host))
                    .unwrap_or(&name)
                    .to_owned();
                flushed.insert(bare);
            }
        }
        let hourly = period_rows(&mut tx, Period::Hour, check_ids, hours.0, hours.1).await?;
        let daily = period_rows(&mut tx, Period::Day, check_ids, days.0, days.1).await?;
        tx.commit().await.context("ending a snapshot")?;
        Ok(Snapshot {
            hourly,
            daily,
            flushed,
        })
    }

    /// (rows, bytes of outcome and histogram blobs) in a statistics table.
    pub async fn stats_size(&self, p: Period) -> Result<(u64, u64)> {
        let sql = format!(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(outcomes) + COALESCE(LENGTH(total_hist), 0) + \
             COALESCE(LENGTH(dns_hist), 0) + COALESCE(LENGTH(connect_hist), 0) + \
             COALESCE(LENGTH(tls_hist), 0) + COALESCE(LENGTH(ttfb_hist), 0)), 0) FROM {}",
            p.table()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .context("measuring statistics")?;
        // SUM is NUMERIC on PostgreSQL; read it as text there.
        let bytes = match row.try_get::<i64, _>(1) {
            Ok(v) => u(v),
            Err(_) => row
                .try_get::<String, _>(1)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        };
        Ok((u(row.try_get::<i64, _>(0)?), bytes))
    }

    /// Merges hourly rows of days before `hourly_before_day` into daily rows, deletes daily
    /// rows of days before `daily_before_day`, and forgets flushed spool parts older than a
    /// week. Works through the checks `chunk` at a time, one transaction each, so the ingest
    /// writer is never held back for long; each transaction is complete on its own (daily
    /// rows written and their hourly rows deleted together), so an interrupted rollup simply
    /// resumes.
    pub async fn rollup(
        &self,
        hourly_before_day: u64,
        daily_before_day: u64,
        chunk: usize,
    ) -> Result<Rollup> {
        let mut report = Rollup::default();
        let before_hour = hourly_before_day * 24;
        let mut after = 0u64;
        loop {
            // The configured checks, in id order (a check's statistics go with the check).
            let ids: Vec<u64> =
                sqlx::query("SELECT id FROM checks WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(i(after))
                    .bind(chunk as i64)
                    .fetch_all(&self.pool)
                    .await
                    .context("listing checks with statistics")?
                    .iter()
                    .map(|r| r.try_get::<i64, _>(0).map(u))
                    .collect::<Result<_, _>>()?;
            let Some(&last) = ids.last() else { break };
            after = last;
            let list = placeholders(2, ids.len());
            let (_turn, mut tx) = self.write_tx().await?;
            super::write_first(&mut tx).await?;
            let sql = format!(
                "SELECT {} FROM check_hourly WHERE hour < $1 AND check_id IN ({list}) \
                 ORDER BY check_id, hour",
                columns(Period::Hour)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(i(before_hour));
            for id in &ids {
                q = q.bind(i(*id));
            }
            let hourly = q
                .fetch_all(&mut *tx)
                .await
                .context("reading hourly statistics")?;
            if hourly.is_empty() {
                continue;
            }
            report.hourly_rows_merged += hourly.len() as u64;
            let mut days: Vec<PeriodStats> = Vec::new();
            for row in &hourly {
                let mut s = stats_of(row)?;
                s.period /= 24;
                match days
                    .last_mut()
                    .filter(|d| d.check_id == s.check_id && d.period == s.period)
                {
                    Some(d) => d.merge(&s),
                    None => days.push(s),
                }
            }
            report.daily_rows_written += days.len() as u64;
            merge_rows(&mut tx, Period::Day, days).await?;
            let sql = format!("DELETE FROM check_hourly WHERE hour < $1 AND check_id IN ({list})");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(i(before_hour));
            for id in &ids {
                q = q.bind(i(*id));
            }
            q.execute(&mut *tx)
                .await
                .context("deleting rolled-up hourly statistics")?;
            tx.commit().await.context("committing a rollup chunk")?;
        }
        report.daily_rows_expired = sqlx::query("DELETE FROM check_daily WHERE day < $1")
            .bind(i(daily_before_day))
            .execute(&self.pool)
            .await
            .context("expiring daily statistics")?
            .rows_affected();
        sqlx::query("DELETE FROM stats_flushed WHERE flushed_at < $1")
            .bind(i(unix_s().saturating_sub(FLUSHED_RETENTION_S)))
            .execute(&self.pool)
            .await
            .context("forgetting old spool parts")?;
        Ok(report)
    }
}

/// Upserts rows, adding to any row already stored for the same check and period.
async fn merge_rows(
    tx: &mut Transaction<'static, Any>,
    p: Period,
    mut rows: Vec<PeriodStats>,
) -> Result<()> {
    for chunk in rows.chunks_mut(ROWS_PER_STATEMENT) {
        let (lo, hi) = chunk.iter().fold((u64::MAX, 0), |(lo, hi), r| {
            (lo.min(r.period), hi.max(r.period))
        });
        let sql = format!(
            "SELECT {} FROM {} WHERE {c} >= $1 AND {c} <= $2 AND check_id IN ({})",
            columns(p),
            p.table(),
            placeholders(3, chunk.len()),
            c = p.column()
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i(lo))
            .bind(i(hi));
        for r in chunk.iter() {
            q = q.bind(i(r.check_id));
        }
        for old in q.fetch_all(&mut **tx).await.context("reading statistics")? {
            let old = stats_of(&old)?;
            if let Some(r) = chunk
                .iter_mut()
                .find(|r| r.check_id == old.check_id && r.period == old.period)
            {
                r.merge(&old);
            }
        }
        let values = (0..chunk.len())
            .map(|k| format!("({})", placeholders(k * 10 + 1, 10)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {values} ON CONFLICT (check_id, {c}) DO UPDATE SET \
             ok_count = excluded.ok_count, fail_count = excluded.fail_count, \
             outcomes = excluded.outcomes, total_hist = excluded.total_hist, \
             dns_hist = excluded.dns_hist, connect_hist = excluded.connect_hist, \
             tls_hist = excluded.tls_hist, ttfb_hist = excluded.ttfb_hist",
            p.table(),
            columns(p),
            c = p.column()
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk.iter() {
            q = q
                .bind(i(r.check_id))
                .bind(i(r.period))
                .bind(i(r.ok_count))
                .bind(i(r.fail_count))
                .bind(r.encode_outcomes());
            for h in &r.hists {
                q = q.bind(h.encode());
            }
        }
        q.execute(&mut **tx).await.context("writing statistics")?;
    }
    Ok(())
}

fn unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
