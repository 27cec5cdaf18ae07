//! P9: statistics storage at density, with the library calls `jetmon up` makes: results into
//! the spool (`Spool::record`/`sync`/`seal`), the sealed hour flushed into SQLite
//! (`flush_sealed`), then the daily rollup (`Store::rollup`).
//!
//! The results are synthetic, with a spread wider than the loopback fleet's (which would make
//! the histograms look smaller than real sites would): per check a base time of 20–400 ms,
//! each sample × e^N(0, 0.25); DNS measured on 1 sample in 10 (cached otherwise); connect
//! ≈ base/5, TLS ≈ base/3 on half the checks, TTFB ≈ base/2; 1% of samples fail.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use jetmon_control::stats::flush::{flush_sealed, rollup};
use jetmon_control::stats::spool::Spool;
use jetmon_control::store::{Period, Store};
use jetmon_shared::check::{CheckSpec, CheckType, ProbeOrigin};
use jetmon_shared::frames::ProbeResult;
use jetmon_shared::outcome::Outcome;

pub struct StatsArgs {
    pub checks: u32,
    /// Results per check in the hour (12 = a 300 s interval).
    pub per_hour: u32,
    /// Checks given a whole day of hourly rows for the rollup measurement.
    pub rollup_checks: u32,
    pub dir: PathBuf,
}

/// A small deterministic generator (xorshift), so runs compare.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn result(rng: &mut Rng, check: u64, seq: u64, at_us: u64) -> ProbeResult {
    let mut base_rng = Rng(check.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let base = 20_000.0 + base_rng.unit() * 380_000.0;
    let https = check.is_multiple_of(2);
    let total = base * (0.25 * rng.normal()).exp();
    let mut r = ProbeResult {
        check_id: check,
        seq,
        started_at_us: at_us,
        origin: ProbeOrigin::Scheduled,
        outcome: if rng.unit() < 0.01 {
            Outcome::HttpStatus
        } else {
            Outcome::Ok
        },
        ..ProbeResult::default()
    };
    let p = &mut r.phases;
    p.total_us = total as u32;
    p.dns_us = if rng.unit() < 0.1 {
        (1_000.0 + rng.unit() * 29_000.0) as u32
    } else {
        0
    };
    p.connect_us = (total / 5.0) as u32;
    p.tls_us = if https { (total / 3.0) as u32 } else { 0 };
    p.ttfb_us = (total / 2.0) as u32;
    r
}

/// Spools `hours` hours of results for checks `1..=checks`, seals them and flushes them;
/// returns (spool seconds, flush seconds, rows flushed).
fn spool_and_flush(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    dir: &Path,
    checks: u32,
    per_hour: u32,
    first_hour: u64,
    hours: u64,
) -> Result<(f64, f64, u64)> {
    let _ = std::fs::remove_dir_all(dir);
    let (mut spool, _) = Spool::open(dir)?;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut seq = 0u64;
    let began = Instant::now();
    let spacing_us = 3_600_000_000 / u64::from(per_hour);
    for hour in first_hour..first_hour + hours {
        for round in 0..u64::from(per_hour) {
            for check in 1..=u64::from(checks) {
                let at = hour * 3_600_000_000 + round * spacing_us + check % spacing_us;
                spool.record(0, &result(&mut rng, check, seq, at));
                seq += 1;
                if seq.is_multiple_of(20_000) {
                    spool.sync()?;
                }
            }
        }
    }
    let sealed = spool.seal(u64::MAX, true)?;
    let spooled = began.elapsed().as_secs_f64();
    let began = Instant::now();
    let mut rows = 0;
    for d in &sealed {
        rows += rt.block_on(flush_sealed(store, d))?.rows;
    }
    Ok((spooled, began.elapsed().as_secs_f64(), rows))
}

pub fn run(args: &StatsArgs) -> Result<String> {
    std::fs::create_dir_all(&args.dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The hour of a million checks.
    let db = args.dir.join("hourly.db");
    for f in [
        &db,
        &db.with_extension("db-wal"),
        &db.with_extension("db-shm"),
    ] {
        let _ = std::fs::remove_file(f);
    }
    let store = rt.block_on(Store::open(&format!("sqlite:{}", db.display()), "bench"))?;
    let size0 = file_size(&db);
    let hour = 500_000; // any hour: the statistics do not look at the clock
    let (spool_s, flush_s, rows) = spool_and_flush(
        &rt,
        &store,
        &args.dir.join("spool"),
        args.checks,
        args.per_hour,
        hour,
        1,
    )?;
    let (n, blob_bytes) = rt.block_on(store.stats_size(Period::Hour))?;
    rt.block_on(store.close());
    let db_bytes = file_size(&db).saturating_sub(size0);
    let results = u64::from(args.checks) * u64::from(args.per_hour);
    eprintln!(
        "stats: {results} results spooled in {spool_s:.1} s, {rows} rows flushed in {flush_s:.1} s"
    );

    // A day of hourly rows for `rollup_checks` checks, then the rollup.
    let db2 = args.dir.join("rollup.db");
    for f in [
        &db2,
        &db2.with_extension("db-wal"),
        &db2.with_extension("db-shm"),
    ] {
        let _ = std::fs::remove_file(f);
    }
    let store = rt.block_on(Store::open(&format!("sqlite:{}", db2.display()), "bench"))?;
    rt.block_on(async {
        let spec = CheckSpec::new(0, 0, CheckType::Http, "http://127.0.0.1/");
        let rows: Vec<(String, CheckSpec)> = (0..args.rollup_checks)
            .map(|k| (format!("rollup {k}"), spec.clone()))
            .collect();
        for chunk in rows.chunks(5_000) {
            store.add_sites_with_checks(chunk).await?;
        }
        anyhow::Ok(())
    })?;
    let day = 20_000;
    let (_, day_flush_s, hourly_rows) = spool_and_flush(
        &rt,
        &store,
        &args.dir.join("spool-day"),
        args.rollup_checks,
        args.per_hour,
        day * 24,
        24,
    )?;
    let began = Instant::now();
    let r = rt.block_on(rollup(&store, (day + 15) * 86_400, 14, 400))?;
    let rollup_s = began.elapsed().as_secs_f64();
    let (daily_rows, daily_bytes) = rt.block_on(store.stats_size(Period::Day))?;
    rt.block_on(store.close());
    Ok(format!(
        "RESULT scenario=stats stats_bytes_per_check_hour={:.1} db_bytes_per_check_hour={:.1} \
         spool_bytes_per_result={} spool_results_per_s={:.0} flush_rows_per_s={:.0} \
         rollup_hourly_rows_per_s={:.0} daily_bytes_per_check_day={:.1} checks={} per_hour={} \
         rollup_checks={} hourly_rows_rolled={} daily_rows={daily_rows} day_flush_s={day_flush_s:.1}",
        blob_bytes as f64 / n.max(1) as f64,
        db_bytes as f64 / n.max(1) as f64,
        jetmon_control::stats::spool::RECORD,
        results as f64 / spool_s,
        rows as f64 / flush_s,
        r.hourly_rows_merged as f64 / rollup_s,
        daily_bytes as f64 / daily_rows.max(1) as f64,
        args.checks,
        args.per_hour,
        args.rollup_checks,
        hourly_rows.min(r.hourly_rows_merged),
    ))
}

/// The database's size on disk, WAL included.
fn file_size(db: &Path) -> u64 {
    [db.to_path_buf(), db.with_extension("db-wal")]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}
