//! Flushing sealed spool hours into the store, and the daily rollup — on a thread of their
//! own (with its own database pool), so a million rows an hour never delay the ingest batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use jetmon_store::{Rollup, Store};

use crate::{read_part, sealed_parts};

/// Parts (one transaction each) and rows a flush wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub parts: u64,
    pub rows: u64,
    /// Parts the store had already (a flush interrupted after its commit).
    pub parts_seen_before: u64,
}

/// Flushes one sealed hour directory, part by part, then removes it.
pub async fn flush_sealed(store: &Store, sealed: &Path) -> Result<Flushed> {
    let (hour, parts) = sealed_parts(sealed)?;
    let name = sealed
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".sealed"))
        .context("not a sealed spool directory")?
        .to_owned();
    let mut out = Flushed::default();
    for part in parts {
        let rows = read_part(&part, hour)?;
        let file = part.file_name().and_then(|n| n.to_str()).unwrap_or("part");
        if store.put_hourly(&rows, &format!("{name}/{file}")).await? {
            out.parts += 1;
            out.rows += rows.len() as u64;
        } else {
            out.parts_seen_before += 1;
        }
        std::fs::remove_file(&part).with_context(|| format!("removing {}", part.display()))?;
    }
    std::fs::remove_dir_all(sealed).with_context(|| format!("removing {}", sealed.display()))?;
    Ok(out)
}

/// Runs the rollup for `now_s`: hourly rows of days older than `hourly_days` become daily rows,
/// daily rows older than `daily_days` go.
pub async fn rollup(
    store: &Store,
    now_s: u64,
    hourly_days: u32,
    daily_days: u32,
) -> Result<Rollup> {
    let today = now_s / 86_400;
    store
        .rollup(
            today.saturating_sub(u64::from(hourly_days)),
            today.saturating_sub(u64::from(daily_days)),
            500,
        )
        .await
}

/// Counters the flusher shares with the metrics.
#[derive(Debug, Default)]
pub struct FlushCounters {
    pub rows: AtomicU64,
    pub parts: AtomicU64,
    pub errors: AtomicU64,
    pub queued: AtomicU64,
    pub rolled_up_rows: AtomicU64,
}

/// The background flusher: give it sealed directories; it retries while the database is away.
pub struct Flusher {
    pub tx: Sender<PathBuf>,
    pub counters: Arc<FlushCounters>,
}

const RETRY_EVERY: Duration = Duration::from_secs(30);
const ROLLUP_EVERY: Duration = Duration::from_secs(3600);

impl Flusher {
    /// Starts the thread with `backlog` (sealed directories found at start).
    pub fn start(
        database_url: String,
        host: String,
        backlog: Vec<PathBuf>,
        hourly_days: u32,
        daily_days: u32,
    ) -> Result<Flusher> {
        let (tx, rx) = std::sync::mpsc::channel();
        let counters = Arc::new(FlushCounters::default());
        let c = counters.clone();
        std::thread::Builder::new()
            .name("stats-flush".into())
            .spawn(move || {
                run(
                    &database_url,
                    &host,
                    backlog,
                    rx,
                    &c,
                    (hourly_days, daily_days),
                )
            })
            .context("starting the statistics flusher")?;
        Ok(Flusher { tx, counters })
    }
}

fn run(
    url: &str,
    host: &str,
    mut queue: Vec<PathBuf>,
    rx: Receiver<PathBuf>,
    c: &FlushCounters,
    (hourly_days, daily_days): (u32, u32),
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jetmon: statistics flusher cannot start a runtime: {e}");
            return;
        }
    };
    let mut store: Option<Store> = None;
    let mut last_rollup: Option<Instant> = None;
    let mut last_error: Option<Instant> = None;
    loop {
        let failed = match &store {
            Some(s) => step(
                &rt,
                s,
                &mut queue,
                c,
                &mut last_rollup,
                (hourly_days, daily_days),
            )
            .map_err(|e| note_error(c, &mut last_error, &e))
            .is_err(),
            None => match rt.block_on(Store::open(url, host)) {
                Ok(s) => {
                    store = Some(s);
                    continue;
                }
                Err(e) => {
                    note_error(c, &mut last_error, &format!("{e:#}"));
                    true
                }
            },
        };
        if !failed {
            last_error = None;
        }
        c.queued.store(queue.len() as u64, Ordering::Relaxed);
        // Wait for the next sealed hour, a retry or the next rollup.
        let wait = if failed { RETRY_EVERY } else { ROLLUP_EVERY };
        match rx.recv_timeout(wait) {
            Ok(dir) => {
                queue.push(dir);
                queue.extend(rx.try_iter());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Flushes the queue, then rolls up when due; the first error stops the step.
fn step(
    rt: &tokio::runtime::Runtime,
    s: &Store,
    queue: &mut Vec<PathBuf>,
    c: &FlushCounters,
    last_rollup: &mut Option<Instant>,
    (hourly_days, daily_days): (u32, u32),
) -> Result<(), String> {
    while let Some(dir) = queue.first().cloned() {
        let f = rt
            .block_on(flush_sealed(s, &dir))
            .map_err(|e| format!("{}: {e:#}", dir.display()))?;
        c.rows.fetch_add(f.rows, Ordering::Relaxed);
        c.parts.fetch_add(f.parts, Ordering::Relaxed);
        queue.remove(0);
        // An hour's flush frees a few MB in this thread's malloc arena; give them back.
        // SAFETY: malloc_trim only releases free memory; it has no preconditions.
        unsafe { libc::malloc_trim(0) };
    }
    if last_rollup.is_none_or(|t| t.elapsed() >= ROLLUP_EVERY) {
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let r = rt
            .block_on(rollup(s, now_s, hourly_days, daily_days))
            .map_err(|e| format!("rollup: {e:#}"))?;
        *last_rollup = Some(Instant::now());
        c.rolled_up_rows
            .fetch_add(r.hourly_rows_merged, Ordering::Relaxed);
    }
    Ok(())
}

fn note_error(c: &FlushCounters, last: &mut Option<Instant>, what: &str) {
    c.errors.fetch_add(1, Ordering::Relaxed);
    if last.is_none_or(|t| t.elapsed() >= RETRY_EVERY) {
        eprintln!("jetmon: flushing statistics failed (will retry, spooled data is kept): {what}");
    }
    *last = Some(Instant::now());
}
