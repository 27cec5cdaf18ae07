//! `jetmon up`: builds the services and runs them, one tick at a time, on one thread.
//!
//! Each service owns its state and its shutdown:
//! - [`rings::Rings`] — the shared-memory rings per shard; reads results into the engine,
//!   routes commands to shards, releases ring space only when told.
//! - [`prober::ProberService`] — the `jetmon-prober` child: start, adoption, restart with
//!   back-off, drain.
//! - [`writer::Writer`] — batches the engine's effects into the store, then lets the rings go;
//!   the store's upkeep between batches.
//! - [`checks::CheckSet`] — keeps the engine and the prober in line with the stored checks.
//! - [`stats::StatsService`] — seals the statistics spool's hours for the flusher thread.
//! - [`api::ApiService`] — the REST API's thread, and the commands it asks of the engine.
//! - the verifier (`jetmon_control::verify`, its own thread) — rounds to the verifliers.
//! - [`notify`] — the deliverer (`jetmon-deliver`, its own thread), nudged after each batch.
//!
//! [`Core`] is what they share: the engine (inside `Ingest`), the store and the queue of
//! commands for the prober. The loop below is the only place that knows the order they run in:
//! read → API commands → verdicts → engine tick → stage → write → upkeep and reload → send →
//! watch the prober → metrics. On SIGTERM or Ctrl-C the prober drains, what it finished is
//! stored, and control exits.

mod api;
mod checks;
mod metrics;
mod notify;
mod prober;
mod rings;
mod stats;
mod writer;

use std::path::Path;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jetmon_control::demo;
use jetmon_control::engine::{Engine, EventIds, Input};
use jetmon_control::ingest::Ingest;
use jetmon_control::metrics::Shared;
use jetmon_control::store::Store;
use jetmon_control::verify::Verifier;
use jetmon_shared::config::Config;
use jetmon_shared::frames::Command;
use jetmon_shared::shutdown;

use self::api::ApiService;
use self::checks::CheckSet;
use self::prober::ProberService;
use self::rings::Rings;
use self::stats::StatsService;
use self::writer::{BATCH_SHARD, Writer};

/// A prober whose heartbeat is older than this is presumed hung and restarted.
const PROBER_STALE_AFTER: Duration = Duration::from_secs(2);
const STATUS_EVERY: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(25);
/// How often the engine's clock advances (silent checks become Unknown).
const ENGINE_TICK: Duration = Duration::from_secs(1);
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// What the services share: the engine (inside `Ingest`), the store and its runtime, and the
/// commands queued for the prober this tick.
pub(super) struct Core {
    pub rt: tokio::runtime::Runtime,
    pub store: Store,
    pub ingest: Ingest,
    pub commands: Vec<Command>,
    /// Who wants notices (active webhooks), written with each batch's transitions.
    pub subscriptions: std::sync::Arc<Vec<jetmon_outbox::Subscription>>,
}

pub fn up(
    config: &Config,
    config_path: Option<&Path>,
    demo: bool,
    duration: Option<Duration>,
) -> Result<()> {
    limit_malloc_arenas();
    shutdown::install();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shard_count = config.prober.effective_shards(cores);
    let mut rings = Rings::open(&config.prober, shard_count, config.control.buckets)?;
    let mut prober = ProberService::new(config, config_path, shard_count, demo)?;
    eprintln!(
        "jetmon: {shard_count} shard(s), rings in {}, prober {}",
        config.prober.ring_dir.display(),
        prober.binary().display()
    );
    let host = hostname();
    let (mut core, mut checks, batch_no) = Core::open(config, &host, demo)?;
    let stats = StatsService::start(&config.control, &host, &mut core.ingest)?;
    let verifier = start_verifier(config, &host)?;
    // Loading a large check set leaves freed row buffers in the allocator's arenas; hand them
    // back to the kernel once (a steady-state control does not churn like this).
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe { libc::malloc_trim(0) };
    rings.check_positions(&mut core.ingest);
    let metrics_text = Shared::default();
    let mut api = ApiService::start(
        config,
        &host,
        metrics_text.clone(),
        stats.spool_dir.clone(),
        demo,
    )?;
    eprintln!(
        "jetmon: metrics on http://{0}/metrics, API on http://{0}/api/v1",
        api.addr
    );
    let deliverer = notify::start_deliverer(config, &host, demo)?;
    let mut writer = Writer::new(batch_no);
    prober.adopt(&core, &mut rings)?;
    let started = Instant::now();
    let (mut last_engine_tick, mut last_metrics, mut last_status) =
        (Instant::now(), Instant::now(), Instant::now());
    loop {
        if shutdown::requested() || duration.is_some_and(|d| started.elapsed() >= d) {
            let drained = prober.drain(&mut rings);
            // What the prober finished while draining is stored before we go.
            rings.read(
                &mut core.ingest,
                unix_us(),
                &mut core.commands,
                &mut api.triggers,
            )?;
            writer.finish(&mut core, &mut rings);
            core.rt.block_on(core.store.close());
            return drained;
        }
        let now_us = unix_us();
        rings.heartbeat();
        if writer.idle() {
            let drained = rings.read(
                &mut core.ingest,
                now_us,
                &mut core.commands,
                &mut api.triggers,
            )?;
            api.run(&mut core, prober.is_up(), now_us);
            if let Some(v) = &verifier {
                verify(v, &mut core, now_us);
            }
            // The clock advances only once the backlog is read: after the database was away,
            // checks whose results are still in the ring are late, not silent.
            if drained && last_engine_tick.elapsed() >= ENGINE_TICK {
                last_engine_tick = Instant::now();
                core.ingest.apply(Input::Tick, now_us, &mut core.commands);
                stats.seal(&mut core.ingest, now_us);
            }
            writer.stage(&mut core, &mut rings);
        }
        let batches = writer.batches;
        if let Err(e) = writer.write(&core, &mut rings, &metrics_text) {
            eprintln!("jetmon: {e:#} — restarting from what it holds");
            core.rt.block_on(core.store.close());
            return Err(reexec());
        }
        if writer.batches != batches {
            // The batch may have written notices: deliver them now, not at the next look.
            deliverer.nudge();
        }
        writer.upkeep(&core, now_us);
        if writer.idle() {
            checks.poll(&mut core, &mut rings, api.nudged(), now_us);
        }
        rings.send_queued(&mut core.commands)?;
        prober.watch(&mut core, &mut rings, now_us)?;
        if last_metrics.elapsed() >= METRICS_EVERY {
            last_metrics = Instant::now();
            let mut text = metrics::render(
                &rings,
                &core.ingest,
                &writer,
                &stats.flusher.counters,
                &prober,
            );
            if let Some(v) = &verifier {
                text.push_str(&v.metrics());
            }
            text.push_str(&deliverer.metrics());
            if let Ok(mut t) = metrics_text.text.lock() {
                *t = text;
            }
        }
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = Instant::now();
            rings.status(&core.ingest);
        }
        std::thread::sleep(TICK);
    }
}

impl Core {
    /// Opens the store (migrating it), adds the demo sites when asked, and rebuilds the engine
    /// from what is durable. Returns the number of the last stored batch too.
    fn open(config: &Config, host: &str, demo: bool) -> Result<(Core, CheckSet, u64)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the store's runtime")?;
        let store = rt
            .block_on(jetmon_control::secrets::open_store(&config.control, host))?
            .with_operator_subscriptions(notify::operator_subscriptions(config)?);
        eprintln!(
            "jetmon: database {}",
            jetmon_control::store::redact(&config.control.database_url)
        );
        if demo {
            let addr = demo::start()?;
            let added = rt.block_on(add_demo_sites(&store))?;
            eprintln!(
                "jetmon: demo fleet on http://{addr}/ ({} demo sites{}); watch them with `jetmon sites list`",
                demo::SITES.len(),
                if added { ", added to the database" } else { "" }
            );
            let hook = rt
                .block_on(notify::demo_webhook(&store, added))
                .unwrap_or_else(|e| {
                    // Not fatal: with PostgreSQL and no secret key there is nothing to sign with.
                    eprintln!("jetmon: no demo webhook: {e:#}");
                    false
                });
            if hook {
                eprintln!(
                    "jetmon: demo webhook: every notice goes to {0}, which checks its signatures \
                     and prints it here; the latest: curl {0}",
                    demo::hook_url()
                );
            }
        }
        let open = rt.block_on(store.open_events())?;
        let max_event = rt.block_on(store.max_event_id())?;
        let mut engine = Engine::new(
            EventIds {
                next: max_event + 1,
                stride: 1,
            },
            config.control.verifliers.len(),
        );
        let checks = CheckSet::restore(&rt, &store, &mut engine, &open)?;
        let positions = rt.block_on(store.positions())?;
        let batch_no = positions.get(&BATCH_SHARD).copied().unwrap_or(0);
        let ingest = Ingest::new(engine, positions);
        eprintln!(
            "jetmon: {} check(s), {} open event(s) restored",
            ingest.engine.check_count(),
            open.len()
        );
        let subscriptions = std::sync::Arc::new(rt.block_on(store.subscriptions())?);
        let core = Core {
            rt,
            store,
            ingest,
            commands: Vec::new(),
            subscriptions,
        };
        Ok((core, checks, batch_no))
    }
}

/// The verification client, when verifliers are configured.
fn start_verifier(config: &Config, host: &str) -> Result<Option<Verifier>> {
    let verifier = Verifier::start(&config.control, host)?;
    if verifier.is_some() {
        let c = &config.control;
        let names: Vec<&str> = c.verifliers.iter().map(|v| v.name.as_str()).collect();
        eprintln!(
            "jetmon: outages confirmed by verifliers ({}), quorum {} (floor {})",
            names.join(", "),
            c.detection.veriflier_quorum,
            c.detection.veriflier_quorum_floor
        );
    }
    Ok(verifier)
}

/// Seems Down escalations to the verifier; its verdicts into the engine.
fn verify(v: &Verifier, core: &mut Core, now_us: u64) {
    for (check_id, event_id) in core.ingest.verify.drain(..) {
        v.ask(check_id, event_id);
    }
    for verdict in v.verdicts() {
        core.ingest
            .apply(Input::Verified(verdict), now_us, &mut core.commands);
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
