//! The check-set service: keeps the engine and the prober in line with the checks stored in
//! the database (`jetmon sites import` or the API while `jetmon up` runs). What the prober has
//! is kept as one hash per check, as the engine's tag: enough to notice changes; the specs
//! themselves are read a page at a time when they must be sent, so a million checks never sit
//! in memory at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use jetmon_control::engine::{Engine, EventKind, Input, OpenEvent};
use jetmon_control::ingest::Ingest;
use jetmon_control::store::{CHECKS_PAGE, Store, StoredCheck};
use jetmon_shared::frames::Command;

use super::Core;
use super::rings::Rings;

/// How often the check set is looked at for additions, changes and removals.
const CHECKS_EVERY: Duration = Duration::from_secs(5);

pub(super) struct CheckSet {
    fingerprint: (i64, i64),
    last_poll: Instant,
}

impl CheckSet {
    /// Rebuilds the engine from what is durable: every stored check with its open events.
    pub fn restore(
        rt: &tokio::runtime::Runtime,
        store: &Store,
        engine: &mut Engine,
        open: &[(u64, EventKind, OpenEvent)],
    ) -> Result<CheckSet> {
        let fingerprint = rt.block_on(store.checks_fingerprint())?;
        let mut open_by_check: HashMap<u64, Vec<_>> = HashMap::new();
        for (check, kind, event) in open {
            open_by_check
                .entry(*check)
                .or_default()
                .push((*kind, *event));
        }
        for_each_check_page(rt, store, |page| {
            for c in page {
                let (id, hash) = (c.spec.check_id, spec_hash(&c));
                let mine = open_by_check.remove(&c.engine.check_id).unwrap_or_default();
                engine.restore(c.engine, mine);
                engine.set_tag(id, hash);
            }
            Ok(())
        })?;
        Ok(CheckSet {
            fingerprint,
            last_poll: Instant::now(),
        })
    }

    /// Reloads the check set when the API nudged or the poll interval passed and the stored
    /// set changed: a page at a time, its commands sent before the next page is read.
    pub fn poll(&mut self, core: &mut Core, rings: &mut Rings, nudged: bool, now_us: u64) {
        if !nudged && self.last_poll.elapsed() < CHECKS_EVERY {
            return;
        }
        self.last_poll = Instant::now();
        // Who wants notices rides on the same cadence (a webhook change nudges too).
        match core.rt.block_on(core.store.subscriptions()) {
            Ok(s) if *core.subscriptions != s => core.subscriptions = std::sync::Arc::new(s),
            Ok(_) => {}
            Err(e) => eprintln!("jetmon: reloading webhooks failed (keeping the last): {e:#}"),
        }
        match core.rt.block_on(core.store.checks_fingerprint()) {
            Ok(now) if now != self.fingerprint => {
                self.fingerprint = now;
                let mut seen = Vec::with_capacity(core.ingest.engine.check_count());
                let mut n = 0;
                let (rt, store, ingest, commands) =
                    (&core.rt, &core.store, &mut core.ingest, &mut core.commands);
                let read = for_each_check_page(rt, store, |page| {
                    n += reconcile_page(page, &mut seen, ingest, now_us, commands);
                    rings.send_queued(commands)
                });
                match read {
                    Ok(()) => {
                        n += remove_gone(&seen, ingest, now_us, commands);
                        eprintln!(
                            "jetmon: check set changed: {n} check(s) added, changed or removed"
                        );
                    }
                    Err(e) => {
                        // Try again at the next poll.
                        self.fingerprint = (-1, -1);
                        eprintln!("jetmon: reloading checks failed: {e:#}");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("jetmon: reading the check set failed: {e:#}"),
        }
    }
}

/// Reads the stored check set a page at a time.
fn for_each_check_page(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    mut f: impl FnMut(Vec<StoredCheck>) -> Result<()>,
) -> Result<()> {
    let mut after = 0;
    loop {
        let page = rt.block_on(store.checks_page(after, CHECKS_PAGE))?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.spec.check_id;
        f(page)?;
    }
}

/// Sends the whole stored check set to the prober, a page at a time.
pub(super) fn send_all_checks(core: &Core, rings: &mut Rings) -> Result<()> {
    let mut sent = 0;
    for_each_check_page(&core.rt, &core.store, |page| {
        sent += page.len();
        rings.send_checks(&page)
    })?;
    if sent > 0 {
        eprintln!("jetmon: sent {sent} check(s) to the prober");
    }
    Ok(())
}

/// One page of the stored check set (pages come in id order, so `seen` stays sorted): brings
/// the engine and the prober (through `commands`) in line; returns how many checks changed.
fn reconcile_page(
    page: Vec<StoredCheck>,
    seen: &mut Vec<u64>,
    ingest: &mut Ingest,
    now_us: u64,
    commands: &mut Vec<Command>,
) -> usize {
    let mut changed = 0;
    for c in page {
        let id = c.spec.check_id;
        seen.push(id);
        let hash = spec_hash(&c);
        if ingest.engine.tag(id) != Some(hash) {
            changed += 1;
            ingest.apply(Input::Configure(c.engine), now_us, commands);
            ingest.engine.set_tag(id, hash);
            commands.push(Command::Upsert(Box::new(c.spec)));
        }
    }
    changed
}

/// Removes the checks the stored set no longer has (`seen` sorted).
fn remove_gone(
    seen: &[u64],
    ingest: &mut Ingest,
    now_us: u64,
    commands: &mut Vec<Command>,
) -> usize {
    let mut changed = 0;
    let gone: Vec<u64> = ingest
        .engine
        .check_ids()
        .filter(|id| seen.binary_search(id).is_err())
        .collect();
    for id in gone {
        changed += 1;
        ingest.apply(Input::Remove { check_id: id }, now_us, commands);
        commands.push(Command::Remove { check_id: id });
    }
    changed
}

/// A fingerprint of everything in a check's settings (collisions only cost a missed update
/// until the next change: 64 bits make that negligible).
fn spec_hash(c: &StoredCheck) -> u64 {
    use std::fmt::Write as _;
    use std::hash::Hasher;
    /// Feeds formatted text straight into the hasher: no string per check (a million of
    /// them at every reload of a large check set).
    struct Feed(std::collections::hash_map::DefaultHasher);
    impl std::fmt::Write for Feed {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.write(s.as_bytes());
            Ok(())
        }
    }
    let mut h = Feed(std::collections::hash_map::DefaultHasher::new());
    // The engine's part too: maintenance windows and `critical` live there.
    let _ = write!(h, "{:?}{:?}", c.spec, c.engine);
    h.0.finish()
}
