//! The batch writer: makes the engine's effects durable (`Store::apply`) and only then lets
//! the rings release what was read. While the database is away the batch waits here and the
//! rings back up (then the prober); nothing is lost. Batches are numbered (stored with the
//! ring positions) so that a batch whose commit outcome was lost with its connection is
//! recognised as stored, not written twice. Also the store's upkeep between batches:
//! `last_checked_at` and the pruning of old failures.

use std::time::{Duration, Instant};

use anyhow::Result;
use jetmon_control::ingest::LastChecked;
use jetmon_control::metrics::Shared;
use jetmon_control::store::Batch;

use super::rings::Rings;
use super::{Core, STATUS_EVERY, unix_us};

/// The `ingest_positions` row holding the number of the last stored batch (not a shard).
pub(super) const BATCH_SHARD: u16 = u16::MAX;
/// How long the database may refuse a batch (answering, with an error) before control starts
/// over from what the database holds.
const REFUSED_RESTART_AFTER: Duration = Duration::from_secs(30);
/// Ingest positions are saved at least this often even when only healthy results came.
const POSITIONS_EVERY: Duration = Duration::from_secs(5);
/// How often raw failures past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub(super) struct Writer {
    pending: Option<Batch>,
    batch_no: u64,
    last_positions: Instant,
    last_error: Option<Instant>,
    refused_since: Option<Instant>,
    /// Batches made durable, and those that failed (retried).
    pub batches: u64,
    pub store_errors: u64,
    /// Time to make a batch durable, µs.
    pub batch_us: hdrhistogram::Histogram<u64>,
    last_checked: LastChecked,
    last_prune: Instant,
}

impl Writer {
    /// `batch_no`: the number of the last stored batch.
    pub fn new(batch_no: u64) -> Writer {
        Writer {
            pending: None,
            batch_no,
            last_positions: Instant::now(),
            last_error: None,
            refused_since: None,
            batches: 0,
            store_errors: 0,
            batch_us: hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 2)
                .expect("constant histogram bounds are valid"),
            last_checked: LastChecked::starting(unix_us()),
            last_prune: Instant::now(),
        }
    }

    /// No batch waits for the database.
    pub fn idle(&self) -> bool {
        self.pending.is_none()
    }

    /// Takes the engine's effects since the last tick: a batch to store when anything durable
    /// came of them (or positions are due), else the rings are released at once.
    pub fn stage(&mut self, core: &mut Core, rings: &mut Rings) {
        let mut batch = core.ingest.take_batch();
        let changes = !batch.transitions.is_empty()
            || !batch.projections.is_empty()
            || !batch.failures.is_empty();
        if changes
            || (!batch.positions.is_empty() && self.last_positions.elapsed() >= POSITIONS_EVERY)
        {
            self.batch_no += 1;
            batch.positions.push((BATCH_SHARD, self.batch_no));
            batch.subscriptions = core.subscriptions.clone();
            self.pending = Some(batch);
        } else {
            // Healthy results only: nothing durable came of them, release them.
            rings.commit();
        }
    }

    /// Tries to store the waiting batch. Errors only when the database refuses the same batch
    /// for too long: the caller then restarts control from what the database holds.
    pub fn write(&mut self, core: &Core, rings: &mut Rings, ready: &Shared) -> Result<()> {
        let Some(batch) = &self.pending else {
            return Ok(());
        };
        let began = Instant::now();
        // After a failure the batch may have committed anyway (the connection died after
        // COMMIT reached the server): its number in the store says so.
        let stored = match self.last_error {
            Some(_) => match core.rt.block_on(core.store.positions()) {
                Ok(p) if p.get(&BATCH_SHARD).is_some_and(|n| *n >= self.batch_no) => Ok(()),
                Ok(_) => core.rt.block_on(core.store.apply(batch)),
                Err(e) => Err(e),
            },
            None => core.rt.block_on(core.store.apply(batch)),
        };
        let _ = self
            .batch_us
            .record(began.elapsed().as_micros().max(1) as u64);
        match stored {
            Ok(()) => {
                self.batches += 1;
                self.refused_since = None;
                if let Ok(mut r) = ready.not_ready.lock() {
                    *r = None;
                }
                self.pending = None;
                self.last_positions = Instant::now();
                self.last_error = None;
                rings.commit();
                Ok(())
            }
            Err(e) => self.failed(e, ready),
        }
    }

    fn failed(&mut self, e: anyhow::Error, ready: &Shared) -> Result<()> {
        self.store_errors += 1;
        // The public reason is a code; the error chain (which may name hosts and users) goes
        // only to the log, below.
        if let Ok(mut r) = ready.not_ready.lock() {
            *r = Some("database_unavailable".to_owned());
        }
        // A database that answers but refuses the batch (a constraint) no longer holds what
        // this control believes it committed — e.g. it lost acknowledged commits in a crash.
        // Retrying cannot help: start over from what the database holds (the prober keeps
        // running and is adopted).
        if refused(&e) {
            let since = *self.refused_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= REFUSED_RESTART_AFTER {
                anyhow::bail!(
                    "the database has refused the same batch for {}s ({e:#}); it no longer holds \
                     what was committed to it",
                    REFUSED_RESTART_AFTER.as_secs()
                );
            }
        } else {
            self.refused_since = None;
        }
        if self.last_error.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
            eprintln!("jetmon: storing a batch failed (will retry, nothing is lost): {e:#}");
            self.last_error = Some(Instant::now());
        }
        Ok(())
    }

    /// Between batches: `last_checked_at` a step at a time, and old failures pruned hourly.
    pub fn upkeep(&mut self, core: &Core, now_us: u64) {
        if !self.idle() {
            return;
        }
        if let Some(step) = self.last_checked.step(&core.ingest.engine, now_us) {
            if let Err(e) = core.rt.block_on(core.store.set_last_checked(step)) {
                // Advisory: the next walk writes newer times anyway.
                if self.last_error.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
                    eprintln!("jetmon: updating last_checked_at failed: {e:#}");
                    self.last_error = Some(Instant::now());
                }
            }
            self.last_checked.done();
        }
        if self.last_prune.elapsed() >= PRUNE_EVERY {
            self.last_prune = Instant::now();
            if let Err(e) = core.rt.block_on(core.store.prune_failures(now_us)) {
                eprintln!("jetmon: pruning old failures failed: {e:#}");
            }
        }
    }

    /// At shutdown: what is waiting and what the engine produced since, in one last batch.
    pub fn finish(&mut self, core: &mut Core, rings: &mut Rings) {
        let mut batch = self.pending.take().unwrap_or_default();
        merge(&mut batch, core.ingest.take_batch());
        batch.subscriptions = core.subscriptions.clone();
        if let Err(e) = core.rt.block_on(core.store.apply(&batch)) {
            eprintln!("jetmon: could not store the last batch: {e:#}");
        } else {
            rings.commit();
        }
    }
}

/// Whether the database answered and refused (as opposed to being unreachable).
fn refused(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<sqlx::Error>())
        .any(|e| matches!(e, sqlx::Error::Database(_)))
}

fn merge(into: &mut Batch, more: Batch) {
    into.transitions.extend(more.transitions);
    into.failures.extend(more.failures);
    for p in more.projections {
        into.projections.retain(|q| q.site_id != p.site_id);
        into.projections.push(p);
    }
    for (shard, pos) in more.positions {
        into.positions.retain(|(s, _)| *s != shard);
        into.positions.push((shard, pos));
    }
}
