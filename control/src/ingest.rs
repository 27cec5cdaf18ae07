//! Ingest: result frames from the rings → the event engine → batches for the store. Frames
//! are input, not trusted memory: each is decoded with the verifier and rejected (counted)
//! when invalid. Exactly-once across control crashes: the store keeps, per shard, the next
//! result sequence number it has not applied (in the same transaction as the batch), and a
//! replayed frame below it is skipped.

use std::collections::HashMap;

use jetmon_shared::frames::{Command, ProbeResult, ResultExtras};

use crate::engine::{Effect, Engine, Input, ResultIn};
use crate::stats::spool::Spool;
use crate::store::Batch;

/// Counters for status lines and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    pub results: u64,
    pub duplicates: u64,
    pub transitions: u64,
    pub rechecks: u64,
}

pub struct Ingest {
    pub engine: Engine,
    /// Per shard: the next result seq not yet applied.
    next_seq: HashMap<u16, u64>,
    batch: Batch,
    touched: Vec<u16>,
    effects: Vec<Effect>,
    pub stats: IngestStats,
    /// Where results wait for the hourly statistics (none in tests that do not need it).
    pub spool: Option<Spool>,
    /// Seems Down events to put to the verifliers: (check, event).
    pub verify: Vec<(u64, u64)>,
}

impl Ingest {
    /// `positions` are the durable per-shard positions from the store.
    pub fn new(engine: Engine, positions: HashMap<u16, u64>) -> Ingest {
        Ingest {
            engine,
            next_seq: positions,
            batch: Batch::default(),
            touched: Vec::new(),
            effects: Vec::new(),
            stats: IngestStats::default(),
            spool: None,
            verify: Vec::new(),
        }
    }

    /// A shard's ring was recreated (its counters restarted): forget its position.
    pub fn reset_shard(&mut self, shard: u16) {
        self.next_seq.insert(shard, 0);
        if let Some(s) = &mut self.spool {
            s.reset_shard(shard);
        }
    }

    pub fn position(&self, shard: u16) -> u64 {
        self.next_seq.get(&shard).copied().unwrap_or(0)
    }

    /// Applies one result; re-check commands the engine asked for go to `commands`.
    pub fn result(
        &mut self,
        shard: u16,
        r: &ProbeResult,
        now_us: u64,
        commands: &mut Vec<Command>,
    ) {
        self.frame(shard, r, &ResultExtras::default(), now_us, commands);
    }

    /// Applies one result with its frame's variable parts (note, redirect chain), kept with
    /// the result when it is a failure or an advisory.
    pub fn frame(
        &mut self,
        shard: u16,
        r: &ProbeResult,
        extras: &ResultExtras<'_>,
        now_us: u64,
        commands: &mut Vec<Command>,
    ) {
        // The spool keeps its own position (it may be ahead of the store's after a crash).
        if let Some(s) = &mut self.spool {
            s.record(shard, r);
        }
        let next = self.next_seq.entry(shard).or_insert(0);
        if r.seq < *next {
            self.stats.duplicates += 1;
            return; // already durable: a replay after a control crash
        }
        *next = r.seq + 1;
        if !self.touched.contains(&shard) {
            self.touched.push(shard);
        }
        self.stats.results += 1;
        // Failures and advisories are kept raw (7 days) with their words; healthy results only
        // as statistics.
        if r.outcome != jetmon_shared::outcome::Outcome::Ok
            || r.flags & jetmon_shared::frames::FLAG_REDIRECT_ALERT != 0
        {
            self.batch.failures.push(crate::store::Failure {
                check_id: r.check_id,
                at_us: r.started_at_us,
                outcome: r.outcome.code(),
                detail: r.detail,
                http_status: r.http_status,
                total_us: r.phases.total_us,
                vantage_id: r.vantage_id,
                flags: r.flags,
                note: extras.note.map(str::to_owned),
                redirect_chain: extras
                    .redirect_chain
                    .iter()
                    .map(|h| (h.status, h.url.to_owned()))
                    .collect(),
            });
        }
        self.apply(
            Input::Result(ResultIn {
                check_id: r.check_id,
                outcome: r.outcome,
                at_us: r.started_at_us,
                origin: r.origin,
                cert_not_after_s: r.cert_not_after_s,
                ttfb_us: r.phases.ttfb_us,
                total_us: r.phases.total_us,
                flags: r.flags,
            }),
            now_us,
            commands,
        );
    }

    /// Transitions made and not yet taken in a batch.
    pub fn pending_transitions(&self) -> usize {
        self.batch.transitions.len()
    }

    /// Applies any other input (configuration, ticks, synthetic results).
    pub fn apply(&mut self, input: Input, now_us: u64, commands: &mut Vec<Command>) {
        self.effects.clear();
        self.engine.apply(input, now_us, &mut self.effects);
        for e in self.effects.drain(..) {
            match e {
                Effect::Transition(t) => {
                    self.stats.transitions += 1;
                    self.batch.transitions.push(t);
                }
                Effect::Projection(p) => {
                    // Only the latest projection of a site matters in a batch.
                    self.batch.projections.retain(|q| q.site_id != p.site_id);
                    self.batch.projections.push(p);
                }
                Effect::Recheck {
                    check_id,
                    count,
                    spacing_ms,
                } => {
                    self.stats.rechecks += 1;
                    commands.push(Command::Recheck {
                        check_id,
                        request_id: 0,
                        count,
                        spacing_ms,
                    });
                }
                // With no verifliers configured the engine confirms locally and never asks.
                Effect::Verify { check_id, event_id } => self.verify.push((check_id, event_id)),
            }
        }
    }

    /// The batch so far, with the positions of the shards it read from.
    pub fn take_batch(&mut self) -> Batch {
        let mut b = std::mem::take(&mut self.batch);
        for shard in self.touched.drain(..) {
            b.positions
                .push((shard, self.next_seq.get(&shard).copied().unwrap_or(0)));
        }
        b
    }
}

/// `last_checked_at` of sites, kept in batches (states-and-events.md): every
/// [`LAST_CHECKED_EVERY_US`] the engine's checks are walked, [`LAST_CHECKED_STEP`] per call,
/// and the sites with newer results are written one statement per step (at a million checks,
/// ~0.5 statements per 1,000 checks; the check time itself lives in the engine, not in a
/// table of its own).
#[derive(Debug, Default)]
pub struct LastChecked {
    /// Results after this are newer than what the store has.
    since_us: u64,
    /// When the walk in progress began (becomes `since_us` when it ends).
    pass_started_us: u64,
    /// Position of the walk; None when no walk is in progress.
    pos: Option<usize>,
    buf: Vec<(u64, u64)>,
}

pub const LAST_CHECKED_EVERY_US: u64 = 60_000_000;
pub const LAST_CHECKED_STEP: usize = 10_000;
/// Longer than a probe's timeout plus its trip through the ring.
const LAST_CHECKED_LOOKBACK_US: u64 = 90_000_000;

impl LastChecked {
    /// The first walk 10 s after `now_us` (results have come in by then), then every minute.
    pub fn starting(now_us: u64) -> LastChecked {
        LastChecked {
            pass_started_us: (now_us + 10_000_000).saturating_sub(LAST_CHECKED_EVERY_US),
            ..LastChecked::default()
        }
    }

    /// The next step's (site, time) pairs, when a step is due; call [`LastChecked::done`]
    /// once they are stored. Sites appear once per step, with their latest time.
    pub fn step(&mut self, engine: &Engine, now_us: u64) -> Option<&[(u64, u64)]> {
        let from = match self.pos {
            Some(p) => p,
            None if now_us >= self.pass_started_us + LAST_CHECKED_EVERY_US => {
                self.pass_started_us = now_us;
                0
            }
            None => return None,
        };
        self.buf.clear();
        let next = engine.checked_since(self.since_us, from, LAST_CHECKED_STEP, &mut self.buf);
        self.pos = Some(next);
        self.buf.sort_unstable();
        self.buf.dedup_by(|later, earlier| {
            // Same site: keep the latest time (sorted by time within a site).
            if later.0 == earlier.0 {
                earlier.1 = earlier.1.max(later.1);
                true
            } else {
                false
            }
        });
        Some(&self.buf)
    }

    /// The step's pairs are durable (or given up on): move on.
    pub fn done(&mut self) {
        if self.pos == Some(0) {
            self.pos = None;
            // A result ingested after its check was visited may have started before the walk
            // began (times are probe starts): look that far back again next time.
            self.since_us = self
                .pass_started_us
                .saturating_sub(LAST_CHECKED_LOOKBACK_US);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CheckConfig, EventIds};
    use jetmon_shared::check::ProbeOrigin;
    use jetmon_shared::outcome::Outcome;

    const S: u64 = 1_000_000;

    #[test]
    fn last_checked_walks_the_checks_in_steps_and_only_writes_news() {
        let mut e = Engine::new(EventIds { next: 1, stride: 1 }, 0);
        let mut fx = Vec::new();
        for id in 1..=25_000u64 {
            e.restore(
                CheckConfig {
                    check_id: id,
                    site_id: id.div_ceil(2),
                    interval_ms: 300_000,
                    retries: 0,
                    retry_spacing_ms: 0,
                    critical: true,
                    paused: false,
                    maintenance: Vec::new(),
                    thresholds: Default::default(),
                },
                Vec::new(),
            );
            let at_us = 1_000 * S + id;
            let r = ResultIn {
                check_id: id,
                outcome: Outcome::Ok,
                at_us,
                origin: ProbeOrigin::Scheduled,
                cert_not_after_s: 0,
                ttfb_us: 0,
                total_us: 0,
                flags: 0,
            };
            e.apply(Input::Result(r), at_us, &mut fx);
        }
        let walk = |lc: &mut LastChecked, now_us: u64| {
            let (mut steps, mut seen) = (0, std::collections::BTreeMap::new());
            while let Some(step) = lc.step(&e, now_us) {
                steps += 1;
                for &(site, t) in step {
                    let latest = seen.entry(site).or_insert(0);
                    *latest = t.max(*latest);
                }
                lc.done();
                assert!(steps < 10, "the walk does not end");
            }
            (steps, seen)
        };
        let mut lc = LastChecked::starting(1_000 * S);
        assert_eq!(walk(&mut lc, 1_005 * S).0, 0, "not before 10 s");
        let (steps, seen) = walk(&mut lc, 1_010 * S);
        assert_eq!(steps, 3, "25,000 checks, 10,000 a step");
        assert_eq!(seen.len(), 12_500);
        assert_eq!(
            seen.get(&7),
            Some(&(1_000 * S + 14)),
            "a site's latest check"
        );
        assert_eq!(walk(&mut lc, 1_060 * S).0, 0, "once a minute");
        // The next walk looks back 90 s before the previous one began (results ingested
        // after their check was visited), the one after that finds nothing new.
        assert_eq!(walk(&mut lc, 1_200 * S).1.len(), 12_500);
        let (steps, seen) = walk(&mut lc, 1_300 * S);
        assert_eq!((steps, seen.len()), (3, 0));
    }
}
