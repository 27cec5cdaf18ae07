//! `jetmon up`: owns the rings, starts `jetmon-prober` as a child and keeps it alive.
//!
//! The prober is restarted with exponential back-off when it exits or when its heartbeat in
//! the ring header goes stale (a hung process is killed first). A prober still running from a
//! previous control (control was killed, the prober kept probing) is adopted, not duplicated.
//! Control is the source of truth for checks: after every prober start or adoption it sends
//! the whole check set again (upserts are idempotent), so a command ring without a live
//! consumer holds nothing worth keeping and is recreated at start — which also discards a
//! stale `Drain` that would stop the next prober. On SIGTERM or Ctrl-C every shard gets a
//! `Drain` and the prober a bounded time to exit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jetmon_control::demo;
use jetmon_control::engine::{Engine, EventIds, Input, ResultIn};
use jetmon_control::ingest::{Ingest, LastChecked};
use jetmon_control::metrics;
use jetmon_control::stats::flush::{FlushCounters, Flusher};
use jetmon_control::stats::spool::Spool;
use jetmon_control::store::{Batch, CHECKS_PAGE, Store};
use jetmon_control::verify::Verifier;
use jetmon_shared::check::{bucket_of, shard_of_bucket};
use jetmon_shared::config::Config;
use jetmon_shared::frames::{
    Command, FrameEncoder, KIND_CHECK_RESULT, KIND_COMMAND, KIND_SHARD_STATS, ShardStats,
    decode_result, decode_stats,
};
use jetmon_shared::outcome::Outcome;
use jetmon_shared::ring::{Consumer, Producer, PushError, RingFile};
use jetmon_shared::shutdown;

/// How long the database may refuse a batch (answering, with an error) before control starts
/// over from what the database holds.
const REFUSED_RESTART_AFTER: Duration = Duration::from_secs(30);
/// The `ingest_positions` row holding the number of the last stored batch (not a shard).
const BATCH_SHARD: u16 = u16::MAX;
/// A prober whose heartbeat is older than this is presumed hung and restarted.
const PROBER_STALE_AFTER: Duration = Duration::from_secs(2);
const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a draining prober may take before it is killed.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
const STATUS_EVERY: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(25);
/// Records read per shard per tick at most (a batch stays small enough to commit quickly).
const MAX_RECORDS_PER_TICK: usize = 50_000;
/// How often the engine's clock advances (silent checks become Unknown).
const ENGINE_TICK: Duration = Duration::from_secs(1);
/// Ingest positions are saved at least this often even when only healthy results came.
const POSITIONS_EVERY: Duration = Duration::from_secs(5);
/// How often the check set is looked at for additions, changes and removals
/// (`jetmon sites import` while `jetmon up` runs).
const CHECKS_EVERY: Duration = Duration::from_secs(5);
/// How often raw failures past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

struct ShardRings {
    commands: Producer,
    results: Consumer,
    /// Result frames received (and released) since start.
    results_seen: u64,
    /// Frames rejected as invalid.
    rejected: u64,
    /// The shard's latest counters.
    stats: Option<ShardStats>,
}

/// The prober this control is responsible for.
enum Prober {
    None,
    /// Our child, started at the instant.
    Child(Child, Instant),
    /// A prober left running by a previous control.
    Adopted(u32, Instant),
}

pub fn up(
    config: &Config,
    config_path: Option<&Path>,
    demo: bool,
    duration: Option<Duration>,
) -> Result<()> {
    limit_malloc_arenas();
    shutdown::install();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let p = &config.prober;
    let shard_count = p.effective_shards(cores);
    let mut shards = (0..shard_count)
        .map(|i| -> Result<ShardRings> {
            let path = p.command_ring_path(i);
            if RingFile::open(&path).is_ok_and(|r| !consumer_alive(&r)) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("resetting {}", path.display()))?;
            }
            let commands = RingFile::open_or_create(&path, p.command_ring_bytes)
                .and_then(RingFile::producer)?;
            let results = RingFile::open_or_create(&p.result_ring_path(i), p.result_ring_bytes)
                .and_then(RingFile::consumer)?;
            Ok(ShardRings {
                commands,
                results,
                results_seen: 0,
                rejected: 0,
                stats: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let prober = prober_binary(config)?;
    eprintln!(
        "jetmon: {shard_count} shard(s), rings in {}, prober {}",
        p.ring_dir.display(),
        prober.display()
    );
    let mut encoder = FrameEncoder::new();
    // The store: migrate, then rebuild the engine from what is durable.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the store's runtime")?;
    let host = hostname();
    let store = rt.block_on(Store::open(&config.control.database_url, &host))?;
    eprintln!(
        "jetmon: database {}",
        crate_redact(&config.control.database_url)
    );
    if demo {
        let addr = demo::start()?;
        let added = rt.block_on(add_demo_sites(&store))?;
        eprintln!(
            "jetmon: demo fleet on http://{addr}/ ({} demo sites{}); watch them with `jetmon sites list`",
            demo::SITES.len(),
            if added { ", added to the database" } else { "" }
        );
    }
    let open = rt.block_on(store.open_events())?;
    let max_event = rt.block_on(store.max_event_id())?;
    let verifier = Verifier::start(&config.control, &host)?;
    if verifier.is_some() {
        eprintln!(
            "jetmon: outages confirmed by verifliers ({}), quorum {} (floor {})",
            config
                .control
                .verifliers
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            config.control.detection.veriflier_quorum,
            config.control.detection.veriflier_quorum_floor
        );
    }
    let mut engine = Engine::new(
        EventIds {
            next: max_event + 1,
            stride: 1,
        },
        config.control.verifliers.len(),
    );
    // What the prober has is kept as one hash per check, as the engine's tag: enough to
    // notice changes (the specs themselves are read from the database, a page at a time,
    // when they must be sent).
    let mut fingerprint = rt.block_on(store.checks_fingerprint())?;
    let mut last_checks_poll = Instant::now();
    let mut last_prune = Instant::now();
    let mut open_by_check: HashMap<u64, Vec<_>> = HashMap::new();
    for (check, kind, event) in &open {
        open_by_check
            .entry(*check)
            .or_default()
            .push((*kind, *event));
    }
    for_each_check_page(&rt, &store, |page| {
        for c in page {
            let (id, hash) = (c.spec.check_id, spec_hash(&c));
            let mine = open_by_check.remove(&c.engine.check_id).unwrap_or_default();
            engine.restore(c.engine, mine);
            engine.set_tag(id, hash);
        }
        Ok(())
    })?;
    let positions = rt.block_on(store.positions())?;
    // Batches are numbered (stored with the ring positions) so that a batch whose commit
    // outcome was lost with its connection is recognised as stored, not written again.
    let mut batch_no = positions.get(&BATCH_SHARD).copied().unwrap_or(0);
    let mut ingest = Ingest::new(engine, positions);
    // Results wait on disk for the hourly statistics; sealed hours a previous run left are
    // flushed first.
    let spool_dir = config.control.spool_dir();
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
        config.control.database_url.clone(),
        host.clone(),
        backlog,
        config.control.stats_hourly_days,
        config.control.stats_daily_days,
    )?;
    // Loading a large check set leaves freed row buffers in the allocator's arenas; hand them
    // back to the kernel once (a steady-state control does not churn like this).
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe { libc::malloc_trim(0) };
    for (i, s) in shards.iter().enumerate() {
        let published = s.results.ring().stats().frames_published;
        if ingest.position(i as u16) > published {
            eprintln!(
                "jetmon: shard {i}: the result ring is newer than the stored position; starting it afresh"
            );
            ingest.reset_shard(i as u16);
        }
    }
    eprintln!(
        "jetmon: {} check(s), {} open event(s) restored",
        ingest.engine.check_count(),
        open.len()
    );
    // The REST API and /metrics, /ready, /health share control.api_listen.
    let metrics_text = metrics::Shared::default();
    let (link, api) = jetmon_control::api::link();
    let mut allow = config.prober.allow_list();
    if demo {
        // The demo fleet is on loopback; the prober allows it in demo mode too.
        allow.extend("127.0.0.0/8".parse::<jetmon_shared::cidr::Cidr>());
    }
    let metrics_addr = jetmon_control::api::start(jetmon_control::api::Options {
        listen: config.control.api_listen.clone(),
        database_url: config.control.database_url.clone(),
        host: host.clone(),
        metrics: metrics_text.clone(),
        safety: jetmon_prober::proto::safety::ProbeSafety::new(allow),
        link,
        rate_per_minute: config.control.api_rate_per_minute,
        expensive_per_minute: config.control.api_expensive_per_minute,
        spool_dir: Some(spool_dir.clone()),
    })?;
    let mut triggers = Triggers::default();
    eprintln!(
        "jetmon: metrics on http://{metrics_addr}/metrics, API on http://{metrics_addr}/api/v1"
    );
    let mut counters = Counters::new();
    let mut last_metrics = Instant::now();
    let mut pending: Option<Batch> = None;
    let mut last_engine_tick = Instant::now();
    let mut last_positions = Instant::now();
    let mut last_store_error: Option<Instant> = None;
    let mut commands: Vec<Command> = Vec::new();
    let mut last_checked = LastChecked::starting(unix_us());
    let mut refused_since: Option<Instant> = None;
    let started = Instant::now();
    let mut backoff = RESTART_BACKOFF_MIN;
    let mut prober_state = match shards.first().map(|s| s.results.producer_status()) {
        Some(peer) if peer.alive && peer.heartbeat_age < PROBER_STALE_AFTER => {
            eprintln!(
                "jetmon: adopting prober pid {} left running by a previous jetmon",
                peer.pid
            );
            send_all_checks(
                &rt,
                &store,
                &mut shards,
                &mut encoder,
                config.control.buckets,
            )?;
            Prober::Adopted(peer.pid, Instant::now())
        }
        _ => Prober::None,
    };
    let mut next_start = Instant::now();
    let mut last_status = Instant::now();
    loop {
        let stop = shutdown::requested() || duration.is_some_and(|d| started.elapsed() >= d);
        if stop {
            let drained = drain(prober_state, &mut shards, &mut encoder);
            // What the prober finished while draining is stored before we go.
            let now_us = unix_us();
            read_results(
                &mut shards,
                &mut ingest,
                now_us,
                &mut commands,
                &mut triggers,
            )?;
            let mut batch = pending.take().unwrap_or_default();
            merge(&mut batch, ingest.take_batch());
            if let Err(e) = rt.block_on(store.apply(&batch)) {
                eprintln!("jetmon: could not store the last batch: {e:#}");
            } else {
                for s in &mut shards {
                    s.results.commit();
                }
            }
            rt.block_on(store.close());
            return drained;
        }
        let now_us = unix_us();
        for s in &mut shards {
            s.results.heartbeat();
        }
        if pending.is_none() {
            let drained = read_results(
                &mut shards,
                &mut ingest,
                now_us,
                &mut commands,
                &mut triggers,
            )?;
            let prober_up = !matches!(prober_state, Prober::None);
            api_commands(
                &api,
                &mut ingest,
                &mut triggers,
                prober_up,
                now_us,
                &mut commands,
            );
            if let Some(v) = &verifier {
                for (check_id, event_id) in ingest.verify.drain(..) {
                    v.ask(check_id, event_id);
                }
                for verdict in v.verdicts() {
                    ingest.apply(Input::Verified(verdict), now_us, &mut commands);
                }
            }
            // The clock advances only once the backlog is read: after the database was away,
            // checks whose results are still in the ring are late, not silent.
            if drained && last_engine_tick.elapsed() >= ENGINE_TICK {
                last_engine_tick = Instant::now();
                ingest.apply(Input::Tick, now_us, &mut commands);
                seal_spool(&mut ingest, &flusher, now_us, false);
            }
            let batch = ingest.take_batch();
            let changes = !batch.transitions.is_empty()
                || !batch.projections.is_empty()
                || !batch.failures.is_empty();
            if changes
                || (!batch.positions.is_empty() && last_positions.elapsed() >= POSITIONS_EVERY)
            {
                batch_no += 1;
                let mut batch = batch;
                batch.positions.push((BATCH_SHARD, batch_no));
                pending = Some(batch);
            } else {
                // Healthy results only: nothing durable came of them, release them.
                for s in &mut shards {
                    s.results.commit();
                }
            }
        }
        // The ring's read position advances only once the batch is durable; while the
        // database is away, the batch waits here and the rings back up (then the prober).
        if let Some(batch) = &pending {
            let began = Instant::now();
            // After a failure the batch may have committed anyway (the connection died after
            // COMMIT reached the server): its number in the store says so, and it is not
            // written twice.
            let stored = match last_store_error {
                Some(_) => match rt.block_on(store.positions()) {
                    Ok(p) if p.get(&BATCH_SHARD).is_some_and(|n| *n >= batch_no) => Ok(()),
                    Ok(_) => rt.block_on(store.apply(batch)),
                    Err(e) => Err(e),
                },
                None => rt.block_on(store.apply(batch)),
            };
            let _ = counters
                .batch_us
                .record(began.elapsed().as_micros().max(1) as u64);
            match stored {
                Ok(()) => {
                    counters.batches += 1;
                    refused_since = None;
                    if let Ok(mut r) = metrics_text.not_ready.lock() {
                        *r = None;
                    }
                    pending = None;
                    last_positions = Instant::now();
                    last_store_error = None;
                    for s in &mut shards {
                        s.results.commit();
                    }
                }
                Err(e) => {
                    counters.store_errors += 1;
                    if let Ok(mut r) = metrics_text.not_ready.lock() {
                        *r = Some(format!("database unavailable: {e:#}"));
                    }
                    // A database that answers but refuses the batch (a constraint) no longer
                    // holds what this control believes it committed — e.g. it lost
                    // acknowledged commits in a crash. Retrying cannot help: start over from
                    // what the database holds (the prober keeps running and is adopted).
                    if refused(&e) {
                        let since = *refused_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= REFUSED_RESTART_AFTER {
                            eprintln!(
                                "jetmon: the database has refused the same batch for {}s ({e:#}); \
                                 it no longer holds what was committed to it — restarting from \
                                 what it holds",
                                REFUSED_RESTART_AFTER.as_secs()
                            );
                            rt.block_on(store.close());
                            return Err(reexec());
                        }
                    } else {
                        refused_since = None;
                    }
                    if last_store_error.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
                        eprintln!(
                            "jetmon: storing a batch failed (will retry, nothing is lost): {e:#}"
                        );
                        last_store_error = Some(Instant::now());
                    }
                }
            }
        }
        if pending.is_none()
            && let Some(step) = last_checked.step(&ingest.engine, now_us)
        {
            if let Err(e) = rt.block_on(store.set_last_checked(step)) {
                // Advisory: the next walk writes newer times anyway.
                if last_store_error.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
                    eprintln!("jetmon: updating last_checked_at failed: {e:#}");
                    last_store_error = Some(Instant::now());
                }
            }
            last_checked.done();
        }
        if last_prune.elapsed() >= PRUNE_EVERY && pending.is_none() {
            last_prune = Instant::now();
            if let Err(e) = rt.block_on(store.prune_failures(now_us)) {
                eprintln!("jetmon: pruning old failures failed: {e:#}");
            }
        }
        if pending.is_none() && (api.take_nudge() || last_checks_poll.elapsed() >= CHECKS_EVERY) {
            last_checks_poll = Instant::now();
            match rt.block_on(store.checks_fingerprint()) {
                Ok(now) if now != fingerprint => {
                    fingerprint = now;
                    // A page at a time, its commands sent before the next page is read.
                    let mut seen = Vec::with_capacity(ingest.engine.check_count());
                    let mut n = 0;
                    let read = for_each_check_page(&rt, &store, |page| {
                        n += reconcile_page(page, &mut seen, &mut ingest, now_us, &mut commands);
                        send_commands(
                            &mut commands,
                            &mut shards,
                            &mut encoder,
                            config.control.buckets,
                        )
                    });
                    match read {
                        Ok(()) => {
                            n += remove_gone(&seen, &mut ingest, now_us, &mut commands);
                            eprintln!(
                                "jetmon: check set changed: {n} check(s) added, changed or removed"
                            );
                        }
                        Err(e) => {
                            // Try again at the next poll.
                            fingerprint = (-1, -1);
                            eprintln!("jetmon: reloading checks failed: {e:#}");
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("jetmon: reading the check set failed: {e:#}"),
            }
        }
        send_commands(
            &mut commands,
            &mut shards,
            &mut encoder,
            config.control.buckets,
        )?;
        let stale = shards
            .iter()
            .any(|s| s.results.producer_status().heartbeat_age > PROBER_STALE_AFTER);
        let gone = match &mut prober_state {
            Prober::None => None,
            Prober::Child(c, since) => match c.try_wait()? {
                Some(status) => Some((format!("prober exited ({status})"), *since)),
                None if since.elapsed() > PROBER_STALE_AFTER && stale => {
                    let _ = c.kill();
                    let _ = c.wait();
                    Some(("prober heartbeat stale; killed it".to_owned(), *since))
                }
                None => None,
            },
            Prober::Adopted(pid, since) => {
                let dead = !jetmon_shared::ring::process_alive(*pid);
                (dead || stale).then(|| {
                    if !dead {
                        kill(*pid);
                    }
                    (format!("adopted prober pid {pid} is gone"), *since)
                })
            }
        };
        if let Some((why, since)) = gone {
            // A long healthy run resets the back-off.
            if since.elapsed() > RESTART_BACKOFF_MAX {
                backoff = RESTART_BACKOFF_MIN;
            }
            eprintln!("jetmon: {why}; restarting in {backoff:?}");
            counters.prober_restarts += 1;
            // Checks due while no prober runs cannot be judged: Unknown, never Down.
            let ids: Vec<u64> = ingest.engine.check_ids().collect();
            for check_id in ids {
                ingest.apply(
                    Input::Result(ResultIn {
                        check_id,
                        outcome: Outcome::ProberRestart,
                        at_us: now_us,
                        origin: jetmon_shared::check::ProbeOrigin::Scheduled,
                        cert_not_after_s: 0,
                        ttfb_us: 0,
                        total_us: 0,
                        flags: 0,
                    }),
                    now_us,
                    &mut commands,
                );
            }
            next_start = Instant::now() + backoff;
            backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
            prober_state = Prober::None;
        }
        if matches!(prober_state, Prober::None) && Instant::now() >= next_start {
            let c = spawn(&prober, config_path, shard_count, demo)?;
            eprintln!("jetmon: started prober pid {}", c.id());
            send_all_checks(
                &rt,
                &store,
                &mut shards,
                &mut encoder,
                config.control.buckets,
            )?;
            prober_state = Prober::Child(c, Instant::now());
        }
        if last_metrics.elapsed() >= Duration::from_secs(1) {
            last_metrics = Instant::now();
            let prober_pid = match &prober_state {
                Prober::Child(c, _) => c.id(),
                Prober::Adopted(pid, _) => *pid,
                Prober::None => 0,
            };
            let mut text = render_metrics(
                &shards,
                &ingest,
                &counters,
                &flusher.counters,
                prober_pid,
                pending.is_some(),
            );
            if let Some(v) = &verifier {
                text.push_str(&v.metrics());
            }
            if let Ok(mut t) = metrics_text.text.lock() {
                *t = text;
            }
        }
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = Instant::now();
            status(&shards, &ingest);
        }
        std::thread::sleep(TICK);
    }
}

/// glibc gives each thread that allocates its own arena (up to 8 per core), and each keeps
/// what its thread freed. Control has a handful of threads (loop, API workers, flusher,
/// verifier) and allocates little after loading the check set: two arenas are plenty and
/// save ~20 MB of RSS at a million checks (perf/bench product, measured side by side). An
/// operator's MALLOC_ARENA_MAX wins. Called before any thread starts.
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator tuning; no thread allocates concurrently yet.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    }
}

fn consumer_alive(ring: &RingFile) -> bool {
    let s = ring.stats();
    s.consumer_pid != 0
        && jetmon_shared::ring::process_alive(s.consumer_pid)
        && s.consumer_heartbeat_age
            .is_some_and(|a| a < PROBER_STALE_AFTER)
}

/// Reads the stored check set a page at a time (a million checks never sit in memory at once).
fn for_each_check_page(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    mut f: impl FnMut(Vec<jetmon_control::store::StoredCheck>) -> Result<()>,
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
fn send_all_checks(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    shards: &mut [ShardRings],
    encoder: &mut FrameEncoder,
    buckets: u16,
) -> Result<()> {
    let mut sent = 0;
    for_each_check_page(rt, store, |page| {
        sent += page.len();
        send_checks(shards, encoder, &page, buckets)
    })?;
    if sent > 0 {
        eprintln!("jetmon: sent {sent} check(s) to the prober");
    }
    Ok(())
}

fn send_checks(
    shards: &mut [ShardRings],
    encoder: &mut FrameEncoder,
    checks: &[jetmon_control::store::StoredCheck],
    buckets: u16,
) -> Result<()> {
    let count = shards.len() as u16;
    for spec in checks.iter().map(|c| &c.spec) {
        // bucket = stable_hash(check_id) % buckets; a bucket belongs to one shard.
        let shard = shard_of_bucket(bucket_of(spec.check_id, buckets), count) as usize;
        send(
            &mut shards[shard].commands,
            encoder,
            &Command::Upsert(Box::new(spec.clone())),
        )?;
    }
    Ok(())
}

fn kill(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: plain kill(2) on a pid we were told is our prober.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Counters only the supervisor sees (the rest come from the shards' stats and the rings).
struct Counters {
    batches: u64,
    store_errors: u64,
    prober_restarts: u64,
    /// Time to make a batch durable, µs.
    batch_us: hdrhistogram::Histogram<u64>,
}

impl Counters {
    fn new() -> Counters {
        Counters {
            batches: 0,
            store_errors: 0,
            prober_restarts: 0,
            batch_us: hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 2)
                .expect("constant histogram bounds are valid"),
        }
    }
}

/// A per-shard metric family: name, type, help, how to read it.
type PerShard = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardRings) -> f64,
);

fn render_metrics(
    shards: &[ShardRings],
    ingest: &Ingest,
    c: &Counters,
    flush: &FlushCounters,
    prober_pid: u32,
    store_waiting: bool,
) -> String {
    let mut t = metrics::Text::default();
    t.family(
        "jetmon_checks_completed_total",
        "counter",
        "Probes completed, by shard and outcome (since the prober started).",
    );
    for (i, s) in shards.iter().enumerate() {
        let shard = i.to_string();
        for (outcome, n) in s.stats.iter().flat_map(|st| st.completed.iter()) {
            t.sample(
                "jetmon_checks_completed_total",
                &[("shard", &shard), ("outcome", outcome.name())],
                *n as f64,
            );
        }
    }
    let per_shard: [PerShard; 7] = [
        (
            "jetmon_checks_configured",
            "gauge",
            "Checks configured on the shard.",
            |s| s.stats.as_ref().map_or(0.0, |x| x.checks as f64),
        ),
        (
            "jetmon_checks_in_flight",
            "gauge",
            "Probes running now.",
            |s| s.stats.as_ref().map_or(0.0, |x| f64::from(x.in_flight)),
        ),
        (
            "jetmon_check_start_lateness_p99_seconds",
            "gauge",
            "p99 of how late probes started, over the last second.",
            |s| {
                s.stats
                    .as_ref()
                    .map_or(0.0, |x| x.lateness_p99_us as f64 / 1e6)
            },
        ),
        (
            "jetmon_checks_missed_total",
            "counter",
            "Checks whose time passed without a start.",
            |s| s.stats.as_ref().map_or(0.0, |x| x.missed as f64),
        ),
        (
            "jetmon_result_ring_used_bytes",
            "gauge",
            "Result ring bytes not yet released by control.",
            |s| s.results.ring().stats().used_bytes as f64,
        ),
        (
            "jetmon_result_ring_stalls_total",
            "counter",
            "Times the prober found the result ring full.",
            |s| s.results.ring().stats().producer_stalls as f64,
        ),
        (
            "jetmon_frames_rejected_total",
            "counter",
            "Frames control refused as invalid.",
            |s| s.rejected as f64,
        ),
    ];
    for (name, kind, help, f) in per_shard {
        t.family(name, kind, help);
        for (i, s) in shards.iter().enumerate() {
            t.sample(name, &[("shard", &i.to_string())], f(s));
        }
    }
    let st = ingest.stats;
    let sp = ingest.spool.as_ref().map(|s| s.stats).unwrap_or_default();
    for (name, kind, help, v) in [
        (
            "jetmon_frames_ingested_total",
            "counter",
            "Result frames applied to the event engine.",
            st.results as f64,
        ),
        (
            "jetmon_ingest_replays_skipped_total",
            "counter",
            "Frames skipped as already durable (replays after a restart).",
            st.duplicates as f64,
        ),
        (
            "jetmon_transitions_total",
            "counter",
            "Transitions produced (and written).",
            st.transitions as f64,
        ),
        (
            "jetmon_rechecks_requested_total",
            "counter",
            "Fast re-check rounds asked of the prober.",
            st.rechecks as f64,
        ),
        (
            "jetmon_db_batches_total",
            "counter",
            "Batches made durable.",
            c.batches as f64,
        ),
        (
            "jetmon_db_errors_total",
            "counter",
            "Batches that failed to store (retried).",
            c.store_errors as f64,
        ),
        (
            "jetmon_db_waiting",
            "gauge",
            "1 while a batch waits for the database.",
            if store_waiting { 1.0 } else { 0.0 },
        ),
        (
            "jetmon_prober_restarts_total",
            "counter",
            "Times the prober was restarted.",
            c.prober_restarts as f64,
        ),
        (
            "jetmon_stats_spooled_total",
            "counter",
            "Results written to the statistics spool.",
            sp.recorded as f64,
        ),
        (
            "jetmon_stats_spool_errors_total",
            "counter",
            "Spool writes that failed (those results are missing from statistics).",
            sp.write_errors as f64,
        ),
        (
            "jetmon_stats_rows_flushed_total",
            "counter",
            "Hourly statistics rows written.",
            flush.rows.load(Ordering::Relaxed) as f64,
        ),
        (
            "jetmon_stats_flush_errors_total",
            "counter",
            "Statistics flushes or rollups that failed (retried).",
            flush.errors.load(Ordering::Relaxed) as f64,
        ),
        (
            "jetmon_stats_flush_queue",
            "gauge",
            "Sealed hours waiting to be flushed.",
            flush.queued.load(Ordering::Relaxed) as f64,
        ),
        (
            "jetmon_stats_rolled_up_rows_total",
            "counter",
            "Hourly rows merged into daily rows.",
            flush.rolled_up_rows.load(Ordering::Relaxed) as f64,
        ),
    ] {
        t.family(name, kind, help);
        t.sample(name, &[], v);
    }
    t.family(
        "jetmon_db_batch_seconds",
        "summary",
        "Time to make a batch durable.",
    );
    for q in ["0.5", "0.99", "1"] {
        let v = c.batch_us.value_at_quantile(q.parse().unwrap_or(1.0)) as f64 / 1e6;
        t.sample("jetmon_db_batch_seconds", &[("quantile", q)], v);
    }
    t.sample(
        "jetmon_db_batch_seconds_count",
        &[],
        c.batch_us.len() as f64,
    );
    t.family(
        "jetmon_process_resident_bytes",
        "gauge",
        "Resident memory of control and the prober.",
    );
    t.sample(
        "jetmon_process_resident_bytes",
        &[("process", "control")],
        metrics::rss_bytes(std::process::id()) as f64,
    );
    if prober_pid != 0 {
        t.sample(
            "jetmon_process_resident_bytes",
            &[("process", "prober")],
            metrics::rss_bytes(prober_pid) as f64,
        );
    }
    t.finish()
}

/// Brings the engine and the prober (through `commands`) in line with the stored check set;
/// returns how many checks changed.
/// One page of the stored check set (pages come in id order, so `seen` stays sorted).
fn reconcile_page(
    page: Vec<jetmon_control::store::StoredCheck>,
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

/// Sends queued commands to the shards owning their checks.
fn send_commands(
    commands: &mut Vec<Command>,
    shards: &mut [ShardRings],
    encoder: &mut FrameEncoder,
    buckets: u16,
) -> Result<()> {
    let count = shards.len() as u16;
    for command in commands.drain(..) {
        let check_id = match &command {
            Command::Recheck { check_id, .. } => *check_id,
            Command::Upsert(spec) => spec.check_id,
            Command::Remove { check_id } => *check_id,
            Command::TriggerNow { check_id, .. } => *check_id,
            _ => continue,
        };
        let shard = shard_of_bucket(bucket_of(check_id, buckets), count) as usize;
        if let Some(s) = shards.get_mut(shard) {
            send(&mut s.commands, encoder, &command)?;
        }
    }
    Ok(())
}

/// A fingerprint of everything in a check's settings (collisions only cost a missed update
/// until the next change: 64 bits make that negligible).
fn spec_hash(c: &jetmon_control::store::StoredCheck) -> u64 {
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

/// Whether the database answered and refused (as opposed to being unreachable).
fn refused(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<sqlx::Error>())
        .any(|e| matches!(e, sqlx::Error::Database(_)))
}

/// Replaces this process with a fresh `jetmon` with the same arguments (same pid: the prober
/// stays our child and is adopted); returns only when that failed.
fn reexec() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let err = match std::env::current_exe() {
        Ok(exe) => Process::new(exe).args(args).exec(),
        Err(e) => e,
    };
    anyhow::anyhow!("restarting jetmon failed: {err}")
}

/// Seals the spool's finished hours (all of them when `all`) and hands them to the flusher.
fn seal_spool(ingest: &mut Ingest, flusher: &Flusher, now_us: u64, all: bool) {
    let Some(spool) = &mut ingest.spool else {
        return;
    };
    match spool.seal(now_us, all) {
        Ok(dirs) => {
            for d in dirs {
                let _ = flusher.tx.send(d);
            }
        }
        Err(e) => warn_spool(&e),
    }
}

/// Spool trouble is reported at most once a minute: statistics never stop monitoring.
fn warn_spool(e: &anyhow::Error) {
    use std::sync::atomic::AtomicU64;
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = unix_us() / 1_000_000;
    if now >= LAST.load(Ordering::Relaxed) + 60 {
        LAST.store(now, Ordering::Relaxed);
        eprintln!("jetmon: statistics spool: {e:#} (results are missing from statistics)");
    }
}

/// Reads what the shards produced (bounded per tick) into the engine.
/// Returns whether every ring was read to its end (no backlog left).
fn read_results(
    shards: &mut [ShardRings],
    ingest: &mut Ingest,
    now_us: u64,
    commands: &mut Vec<Command>,
    triggers: &mut Triggers,
) -> Result<bool> {
    let mut drained = true;
    for (i, s) in shards.iter_mut().enumerate() {
        for n in 0..=MAX_RECORDS_PER_TICK {
            if n == MAX_RECORDS_PER_TICK {
                drained = false;
                break;
            }
            let Some(record) = s.results.pop()? else {
                break;
            };
            match record.kind {
                KIND_CHECK_RESULT => match decode_result(record.payload) {
                    Ok(frame) => {
                        s.results_seen += 1;
                        if frame.result.request_id != 0 {
                            triggers.result(&frame);
                        }
                        ingest.frame(i as u16, &frame.result, &frame.extras, now_us, commands);
                    }
                    Err(_) => s.rejected += 1,
                },
                KIND_SHARD_STATS => {
                    if let Ok(stats) = decode_stats(record.payload) {
                        s.stats = Some(stats);
                    }
                }
                _ => s.rejected += 1,
            }
        }
    }
    // Spooled before the rings are committed (the spool's positions make replays harmless).
    if let Some(spool) = &mut ingest.spool
        && let Err(e) = spool.sync()
    {
        warn_spool(&e);
    }
    Ok(drained)
}

/// Trigger-now requests from the API waiting for their results, by request id.
#[derive(Default)]
struct Triggers {
    next: u64,
    waiting: HashMap<u64, Trigger>,
}

struct Trigger {
    left: Vec<u64>,
    got: Vec<jetmon_control::api::Probed>,
    reply: tokio::sync::oneshot::Sender<Option<Vec<jetmon_control::api::Probed>>>,
    since: Instant,
}

impl Triggers {
    fn result(&mut self, frame: &jetmon_shared::frames::ResultFrame<'_>) {
        let r = &frame.result;
        let Some(t) = self.waiting.get_mut(&r.request_id) else {
            return;
        };
        if let Some(k) = t.left.iter().position(|c| *c == r.check_id) {
            t.left.swap_remove(k);
            t.got.push(jetmon_control::api::Probed::from_frame(frame));
        }
        if t.left.is_empty()
            && let Some(t) = self.waiting.remove(&r.request_id)
        {
            let _ = t.reply.send(Some(t.got));
        }
    }
}

/// Runs what the API asked of the engine and the prober.
fn api_commands(
    api: &jetmon_control::api::LinkEnd,
    ingest: &mut Ingest,
    triggers: &mut Triggers,
    prober_up: bool,
    now_us: u64,
    commands: &mut Vec<Command>,
) {
    // Callers gave up long ago: forget them.
    triggers
        .waiting
        .retain(|_, t| t.since.elapsed() < Duration::from_secs(180) && !t.reply.is_closed());
    while let Ok(c) = api.commands.try_recv() {
        match c {
            jetmon_control::api::Command::Close {
                check_id,
                event_id,
                source,
                note,
                reply,
            } => {
                let before = ingest.pending_transitions();
                ingest.apply(
                    Input::Close {
                        check_id,
                        event_id,
                        source: jetmon_control::engine::Source::Operator(source),
                        note: note.map(String::into_boxed_str),
                    },
                    now_us,
                    commands,
                );
                let _ = reply.send(ingest.pending_transitions() > before);
            }
            jetmon_control::api::Command::Trigger { check_ids, reply } => {
                if !prober_up {
                    let _ = reply.send(None);
                    continue;
                }
                triggers.next += 1;
                let request_id = triggers.next;
                let mut left = Vec::with_capacity(check_ids.len());
                for check_id in check_ids {
                    if ingest.engine.tag(check_id).is_some() {
                        commands.push(Command::TriggerNow {
                            check_id,
                            request_id,
                        });
                        left.push(check_id);
                    }
                }
                if left.is_empty() {
                    let _ = reply.send(Some(Vec::new()));
                    continue;
                }
                triggers.waiting.insert(
                    request_id,
                    Trigger {
                        left,
                        got: Vec::new(),
                        reply,
                        since: Instant::now(),
                    },
                );
            }
        }
    }
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

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn crate_redact(url: &str) -> String {
    jetmon_control::store::redact(url)
}

/// Adds the demo sites and their checks unless they are already in the database.
async fn add_demo_sites(store: &Store) -> Result<bool> {
    let existing = store.sites().await?;
    if existing.iter().any(|s| s.name.starts_with("demo: ")) {
        return Ok(false);
    }
    for (name, path) in demo::SITES {
        let site = store.add_site(name).await?;
        store.add_check(site, &demo::check_for(path), true).await?;
    }
    Ok(true)
}

fn status(shards: &[ShardRings], ingest: &Ingest) {
    for (i, s) in shards.iter().enumerate() {
        let peer = s.results.producer_status();
        let commands = s.commands.ring().stats();
        let (checks, in_flight, ok) = s.stats.as_ref().map_or((0, 0, 0), |st| {
            let ok = st
                .completed
                .iter()
                .find(|(o, _)| *o == Outcome::Ok)
                .map_or(0, |(_, n)| *n);
            (st.checks, st.in_flight, ok)
        });
        eprintln!(
            "jetmon: shard {i}: prober pid {} {}, heartbeat {:.1}s ago, commands {}/{} applied, \
             {checks} checks, {in_flight} in flight, {} results ({ok} ok since the prober started)",
            peer.pid,
            if peer.alive { "alive" } else { "not running" },
            peer.heartbeat_age.as_secs_f64(),
            commands.frames_committed,
            commands.frames_published,
            s.results_seen,
        );
    }
    let st = ingest.stats;
    eprintln!(
        "jetmon: ingest: {} results applied, {} replays skipped, {} transitions, {} re-checks asked",
        st.results, st.duplicates, st.transitions, st.rechecks
    );
}

fn drain(prober: Prober, shards: &mut [ShardRings], encoder: &mut FrameEncoder) -> Result<()> {
    if matches!(prober, Prober::None) {
        return Ok(());
    }
    eprintln!("jetmon: stopping: draining the prober");
    for s in shards.iter_mut() {
        send(
            &mut s.commands,
            encoder,
            &Command::Drain {
                deadline_ms: DRAIN_DEADLINE.as_millis() as u32,
            },
        )?;
    }
    let asked = Instant::now();
    match prober {
        Prober::None => {}
        Prober::Child(mut c, _) => {
            while asked.elapsed() < DRAIN_DEADLINE {
                if let Some(status) = c.try_wait()? {
                    eprintln!("jetmon: prober stopped ({status})");
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("jetmon: prober did not drain within {DRAIN_DEADLINE:?}; killing it");
            let _ = c.kill();
            let _ = c.wait();
        }
        Prober::Adopted(pid, _) => {
            while asked.elapsed() < DRAIN_DEADLINE {
                if !jetmon_shared::ring::process_alive(pid) {
                    eprintln!("jetmon: prober stopped");
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("jetmon: prober did not drain within {DRAIN_DEADLINE:?}; killing it");
            kill(pid);
        }
    }
    Ok(())
}

fn send(ring: &mut Producer, encoder: &mut FrameEncoder, command: &Command) -> Result<()> {
    let bytes = encoder.command(command);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ring.try_push(KIND_COMMAND, bytes) {
            Ok(()) => {
                ring.flush();
                return Ok(());
            }
            Err(PushError::Full) if Instant::now() < deadline => std::thread::sleep(TICK),
            Err(e) => return Err(e).context("sending a command to the prober"),
        }
    }
}

fn spawn(prober: &Path, config_path: Option<&Path>, shards: u16, demo: bool) -> Result<Child> {
    let mut cmd = Process::new(prober);
    cmd.args(["--shards", &shards.to_string()])
        .stdin(Stdio::null());
    if demo {
        // The demo's sites live on loopback, which probe safety refuses unless allowed.
        cmd.args(["--allow-cidr", "127.0.0.0/8"]);
    }
    if let Some(path) = config_path {
        cmd.arg("--config").arg(path);
    }
    cmd.spawn()
        .with_context(|| format!("starting {}", prober.display()))
}

/// `control.prober_binary`, else `jetmon-prober` beside this executable.
fn prober_binary(config: &Config) -> Result<PathBuf> {
    if let Some(p) = &config.control.prober_binary {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().context("locating the jetmon executable")?;
    let sibling = me.with_file_name("jetmon-prober");
    if sibling.exists() {
        Ok(sibling)
    } else {
        anyhow::bail!(
            "{} not found; build the workspace (cargo build --release) or set control.prober_binary",
            sibling.display()
        )
    }
}
