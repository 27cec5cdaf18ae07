//! The statistics service: the spool of the hour's results (written by ingest, inside
//! `Ingest`), sealed when an hour is over and handed to the flusher thread (`jetmon_spool`),
//! which writes hourly rows and runs the daily rollup with its own database pool.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use jetmon_control::ingest::Ingest;
use jetmon_control::stats::flush::Flusher;
use jetmon_control::stats::spool::Spool;
use jetmon_shared::config::ControlConfig;

use super::unix_us;

pub(super) struct StatsService {
    pub flusher: Flusher,
    pub spool_dir: PathBuf,
}

impl StatsService {
    /// Opens the spool into `ingest`; sealed hours a previous run left are flushed first.
    pub fn start(config: &ControlConfig, host: &str, ingest: &mut Ingest) -> Result<StatsService> {
        let spool_dir = config.spool_dir();
        let (spool, backlog) = Spool::open(&spool_dir)?;
        if !backlog.is_empty() {
            eprintln!(
                "jetmon: {} spooled hour(s) of statistics to flush from {}",
                backlog.len(),
                spool_dir.display()
            );
        }
        ingest.spool = Some(spool);
        let flusher = Flusher::start(
            config.database_url.clone(),
            host.to_owned(),
            backlog,
            config.stats_hourly_days,
            config.stats_daily_days,
        )?;
        Ok(StatsService { flusher, spool_dir })
    }

    /// Seals the spool's finished hours and hands them to the flusher.
    pub fn seal(&self, ingest: &mut Ingest, now_us: u64) {
        let Some(spool) = &mut ingest.spool else {
            return;
        };
        match spool.seal(now_us, false) {
            Ok(dirs) => {
                for d in dirs {
                    let _ = self.flusher.tx.send(d);
                }
            }
            Err(e) => warn_spool(&e),
        }
    }
}

/// Spool trouble is reported at most once a minute: statistics never stop monitoring.
pub(super) fn warn_spool(e: &anyhow::Error) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = unix_us() / 1_000_000;
    if now >= LAST.load(Ordering::Relaxed) + 60 {
        LAST.store(now, Ordering::Relaxed);
        eprintln!("jetmon: statistics spool: {e:#} (results are missing from statistics)");
    }
}
