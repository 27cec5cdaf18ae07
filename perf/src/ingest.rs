//! P7: control's ingest on one core — result frames from a real shared-memory ring, verified
//! decode, the event engine, batches into SQLite — with the same library calls `jetmon up`
//! makes (`Ingest`, `Store::apply`) and the same policy: commit the ring only after the batch
//! is durable, healthy-only reads released at once, positions saved every 5 s.
//!
//! A producer thread plays the prober: `checks` checks, each reporting in turn; a small
//! fraction of checks flip between failing and passing, which opens and closes events (the
//! transitions whose durability latency is measured: frame pushed → its batch committed).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use jetmon_control::engine::{CheckConfig, Engine, EventIds};
use jetmon_control::ingest::Ingest;
use jetmon_control::store::{Batch, Store};
use jetmon_shared::check::{CheckSpec, CheckType, ProbeOrigin};
use jetmon_shared::frames::{
    FrameEncoder, KIND_CHECK_RESULT, ProbeResult, ResultExtras, decode_result,
};
use jetmon_shared::outcome::Outcome;
use jetmon_shared::ring::{PushError, RingFile, monotonic_us};

/// `jetmon up`'s tick.
const TICK: Duration = Duration::from_millis(25);

pub struct IngestArgs {
    pub checks: u32,
    pub duration: Duration,
    /// One check in this many flips (fails for a while, then recovers).
    pub flip_every: u32,
    /// Frames offered per second; 0 = as fast as ingest takes them (throughput).
    pub rate: u64,
    pub dir: std::path::PathBuf,
}

pub fn run(args: &IngestArgs) -> Result<String> {
    std::fs::create_dir_all(&args.dir)?;
    let db = args.dir.join("ingest.db");
    let _ = std::fs::remove_file(&db);
    let ring_path = args.dir.join("ingest-results-0");
    let _ = std::fs::remove_file(&ring_path);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("sqlite:{}", db.display());
    let store = rt.block_on(Store::open(&url, "bench"))?;
    // Sites and checks in the database, as `jetmon up` would load them.
    let mut engine = Engine::new(EventIds { next: 1, stride: 1 }, 0);
    rt.block_on(async {
        for k in 0..args.checks {
            let site = store.add_site(&format!("bench {k}")).await?;
            let mut spec = CheckSpec::new(0, 0, CheckType::Http, "http://127.0.0.1/");
            spec.retries = 0;
            let id = store.add_check(site, &spec, true).await?;
            engine.restore(
                CheckConfig {
                    check_id: id,
                    site_id: site,
                    interval_ms: 60_000,
                    retries: 0,
                    retry_spacing_ms: 10_000,
                    critical: true,
                    paused: false,
                    maintenance: Vec::new(),
                    thresholds: Default::default(),
                },
                Vec::new(),
            );
        }
        anyhow::Ok(())
    })?;
    let ring = RingFile::open_or_create(&ring_path, 64 << 20)?;
    let mut consumer = ring.consumer()?;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = stop.clone();
        let ring_path = ring_path.clone();
        let checks = u64::from(args.checks);
        let flip_every = u64::from(args.flip_every.max(1));
        let rate = args.rate;
        std::thread::spawn(move || -> Result<u64> {
            pin(0);
            let mut producer = RingFile::open(&ring_path)?.producer()?;
            let mut encoder = FrameEncoder::new();
            let mut n: u64 = 0;
            let began = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if rate > 0 && n.is_multiple_of(64) {
                    let due = Duration::from_secs_f64(n as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(began.elapsed()) {
                        producer.flush();
                        std::thread::sleep(wait);
                    }
                }
                let check = n % checks + 1;
                let round = n / checks;
                // Flipping checks fail on odd rounds: one open and one close per two rounds.
                let failing = check.is_multiple_of(flip_every) && round % 2 == 1;
                let r = ProbeResult {
                    check_id: check,
                    site_id: check,
                    seq: producer.frames_pushed(),
                    scheduled_at_us: monotonic_us(),
                    started_at_us: monotonic_us(),
                    outcome: if failing {
                        Outcome::HttpStatus
                    } else {
                        Outcome::Ok
                    },
                    http_status: if failing { 500 } else { 200 },
                    origin: ProbeOrigin::Scheduled,
                    ..ProbeResult::default()
                };
                let bytes = encoder.result(&r, &ResultExtras::default());
                loop {
                    match producer.try_push(KIND_CHECK_RESULT, bytes) {
                        Ok(()) => break,
                        Err(PushError::Full) => {
                            producer.flush();
                            if stop.load(Ordering::Relaxed) {
                                return Ok(n);
                            }
                            std::thread::sleep(Duration::from_micros(50));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                n += 1;
                if n.is_multiple_of(64) {
                    producer.flush();
                }
            }
            producer.flush();
            Ok(n)
        })
    };

    // Ingest (this thread) on core 1, the producer (playing the prober) on core 0.
    pin(1);
    let mut ingest = Ingest::new(engine, Default::default());
    // Results are spooled for the hourly statistics, as in `jetmon up`.
    let spool_dir = args.dir.join("spool");
    let _ = std::fs::remove_dir_all(&spool_dir);
    ingest.spool = Some(jetmon_control::stats::spool::Spool::open(&spool_dir)?.0);
    let mut durable = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2)?;
    let mut commands = Vec::new();
    let (mut frames, mut statements, mut batches) = (0u64, 0u64, 0u64);
    let (mut healthy_frames, mut fixed_statements) = (0u64, 0u64);
    let mut last_positions = Instant::now();
    let mut last_checked = jetmon_control::ingest::LastChecked::default();
    let cpu0 = thread_cpu();
    let start = Instant::now();
    // Ticks as in `jetmon up`: read what is there (bounded), store, commit.
    while start.elapsed() < args.duration {
        let tick = Instant::now();
        let mut oldest_failure_pushed: Option<u64> = None;
        let now_us = unix_us();
        let mut drained = false;
        for _ in 0..50_000 {
            let Some(record) = consumer.pop()? else {
                drained = true;
                break;
            };
            if record.kind != KIND_CHECK_RESULT {
                continue;
            }
            let frame = decode_result(record.payload).context("decoding a bench frame")?;
            frames += 1;
            if frame.result.outcome == Outcome::Ok {
                healthy_frames += 1;
            }
            if frame.result.outcome != Outcome::Ok && oldest_failure_pushed.is_none() {
                oldest_failure_pushed = Some(frame.result.started_at_us);
            }
            ingest.result(0, &frame.result, now_us, &mut commands);
        }
        if let Some(s) = &mut ingest.spool {
            s.sync()?;
        }
        commands.clear();
        let batch = ingest.take_batch();
        let changes = !batch.transitions.is_empty()
            || !batch.projections.is_empty()
            || !batch.failures.is_empty();
        if changes || last_positions.elapsed() >= Duration::from_secs(5) {
            statements += statements_of(&batch);
            // What a batch costs whatever it holds: begin, commit, the ring positions.
            fixed_statements += (batch.positions.len() + 2) as u64;
            rt.block_on(store.apply(&batch))?;
            batches += 1;
            last_positions = Instant::now();
            if let Some(pushed) = oldest_failure_pushed.filter(|_| changes) {
                let _ = durable.record(monotonic_us().saturating_sub(pushed).max(1));
            }
        }
        consumer.commit();
        // Sites' last_checked_at, in batches, as in `jetmon up`.
        if let Some(step) = last_checked.step(&ingest.engine, monotonic_us()) {
            if !step.is_empty() {
                statements += 1;
                fixed_statements += 1;
            }
            rt.block_on(store.set_last_checked(step))?;
            last_checked.done();
        }
        // The supervisor ticks every 25 ms; with a backlog (a read that hit its bound) it goes
        // again at once.
        if tick.elapsed() < TICK && drained {
            std::thread::sleep(TICK - tick.elapsed());
        }
    }
    let elapsed = start.elapsed();
    let cpu = thread_cpu().saturating_sub(cpu0);
    stop.store(true, Ordering::Relaxed);
    let pushed = producer
        .join()
        .map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    let transitions = rt.block_on(store.transition_count())?;
    rt.block_on(store.close());
    Ok(format!(
        "RESULT scenario=ingest frames_per_s={:.0} statements_per_1000_checks={:.3} \
         healthy_statements_per_1000_checks={:.4} \
         transition_durable_p50_ms={:.1} transition_durable_p99_ms={:.1} transitions={transitions} \
         batches={batches} cpu_us_per_frame={:.2} frames={frames} pushed={pushed} checks={} rate={} duration_s={}",
        frames as f64 / elapsed.as_secs_f64(),
        statements as f64 * 1000.0 / frames.max(1) as f64,
        fixed_statements as f64 * 1000.0 / healthy_frames.max(1) as f64,
        durable.value_at_quantile(0.5) as f64 / 1000.0,
        durable.value_at_quantile(0.99) as f64 / 1000.0,
        cpu.as_secs_f64() * 1e6 / frames.max(1) as f64,
        args.checks,
        args.rate,
        args.duration.as_secs(),
    ))
}

/// SQL statements a batch costs (what `Store::apply` runs): two per transition (event row
/// and transition row), one per projection, position and kept failure, plus begin/commit.
fn statements_of(b: &Batch) -> u64 {
    (2 * b.transitions.len() + b.projections.len() + b.positions.len() + b.failures.len() + 2)
        as u64
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Pins the calling thread to one CPU (best effort).
fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0, …) affects the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
