//! `jetmon-perf`: the programs behind `perf/bench`. Each scenario runs end to end, bounded in
//! time, prints one `RESULT scenario=… key=value …` line and can append it to perf/RESULTS.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use jetmon_shared::frames::{
    FrameEncoder, KIND_CHECK_RESULT, ProbeResult, ResultExtras, decode_result,
};
use jetmon_shared::ring::{Consumer, PushError, RingFile, monotonic_us};

mod api;
mod density;
mod detection;
mod http;
mod ingest;
mod notify;
mod prober;
mod product;
mod record;
mod stats;
mod veriflier;

#[derive(Parser)]
#[command(
    name = "jetmon-perf",
    version,
    about = "Jetmon's end-to-end benchmarks (see perf/README.md)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Shared-memory ring between two processes: full path (flatbuffers encode, push, pop,
    /// copy out, verified decode) and the bare ring (128-byte records), plus wake-up latency.
    Ring {
        /// Frames per measured run of the full path.
        #[arg(long, default_value_t = 20_000_000)]
        frames: u64,
        /// Records per measured run of the bare ring.
        #[arg(long, default_value_t = 50_000_000)]
        bare_frames: u64,
        /// Measured runs of each; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Ring data bytes (a power of two).
        #[arg(long, default_value_t = 64 << 20)]
        ring_bytes: usize,
        /// Append the RESULT line to this markdown file.
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// P1: checks/s of the prober on one pinned core vs wrk on the same core, new connection
    /// per request, against the running fleet (nginx on the other core).
    Http {
        #[arg(long, default_value_t = 10)]
        duration_s: u64,
        #[arg(long, default_value_t = 3)]
        warmup_s: u64,
        /// Checks configured (every one every second: more than one core can do).
        #[arg(long, default_value_t = 40_000)]
        checks: u32,
        /// Fleet sites the checks are spread over.
        #[arg(long, default_value_t = 64)]
        sites: u32,
        #[arg(long, default_value_t = 18080)]
        port: u16,
        /// The core the prober (and wrk) run on.
        #[arg(long, default_value_t = 0)]
        cpu: usize,
        #[arg(long, default_value_t = 256)]
        wrk_connections: u32,
        /// HTTPS with a full handshake per check (P2), to site-N.fleet.test on --tls-port.
        #[arg(long)]
        tls: bool,
        #[arg(long, default_value_t = 18443)]
        tls_port: u16,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// P3/P4 (prober side): N checks at a 300 s interval for a bounded window: missed checks,
    /// start lateness, RSS and CPU per check.
    Density {
        #[arg(long, default_value_t = 1_000_000)]
        checks: u32,
        #[arg(long, default_value_t = 300)]
        interval_s: u64,
        /// Measured window (checks scheduled in it must all start).
        #[arg(long, default_value_t = 120)]
        duration_s: u64,
        #[arg(long, default_value_t = 5000)]
        sites: u32,
        #[arg(long, default_value_t = 18080)]
        port: u16,
        #[arg(long, default_value_t = 0)]
        cpu: usize,
        /// 1% of sites answer 500, 1% are 2 s slow, 1% hang until the timeout.
        #[arg(long)]
        mix: bool,
        /// The fleet control script (for --mix).
        #[arg(long, default_value = "perf/fleet")]
        fleet_script: PathBuf,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// P7: control's ingest on one core: ring → verified decode → event engine → SQLite
    /// batches, with a few checks flipping (events opening and closing).
    Ingest {
        /// Checks reporting in turn (all in the database, one site each).
        #[arg(long, default_value_t = 10_000)]
        checks: u32,
        #[arg(long, default_value_t = 20)]
        duration_s: u64,
        /// One check in this many flips between failing and passing.
        #[arg(long, default_value_t = 100)]
        flip_every: u32,
        /// Frames offered per second (0 = as fast as ingest takes them). The durability
        /// latency means something only below capacity.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Where the database and the ring live (a fresh one each run).
        #[arg(long, default_value = "/tmp/jetmon-perf-ingest")]
        dir: PathBuf,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// P5: detection end to end: `jetmon up` watching fleet sites, some flipped to 500 and
    /// back; time to Seems Down, to Down and to recovery, and false downs.
    Detection {
        #[arg(long, default_value_t = 1000)]
        sites: u32,
        #[arg(long, default_value_t = 50)]
        flipped: u32,
        #[arg(long, default_value_t = 30)]
        interval_s: u32,
        #[arg(long, default_value_t = 18080)]
        port: u16,
        #[arg(long, default_value = "perf/fleet")]
        fleet_script: PathBuf,
        #[arg(long, default_value = "/tmp/jetmon-perf-detection")]
        dir: PathBuf,
        /// Real verifliers on loopback (quorum 2); 0 = local confirmation only.
        #[arg(long, default_value_t = 0)]
        verifliers: u32,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// The whole product at density (`jetmon up`: control + prober + SQLite): memory of both
    /// processes, missed checks and lateness after a window.
    Product {
        #[arg(long, default_value_t = 1_000_000)]
        checks: u32,
        /// Fleet sites the checks are spread over.
        #[arg(long, default_value_t = 5000)]
        sites: u32,
        #[arg(long, default_value_t = 300)]
        interval_s: u32,
        #[arg(long, default_value_t = 150)]
        duration_s: u64,
        #[arg(long, default_value_t = 18080)]
        port: u16,
        #[arg(long, default_value = "/tmp/jetmon-perf-product")]
        dir: PathBuf,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// P10: a hosting provider's outage — N sites turn to HTTP 500 at once, 3 webhooks (one
    /// hanging): deliveries/s, latency from durable to receipt, lost, duplicates.
    Notify {
        #[arg(long, default_value_t = 10_000)]
        sites: u32,
        /// The sites' check interval (the outage is seen over one interval).
        #[arg(long, default_value_t = 30)]
        interval_s: u32,
        /// Give up waiting for the deliveries after this long.
        #[arg(long, default_value_t = 240)]
        timeout_s: u64,
        #[arg(long, default_value = "/tmp/jetmon-perf-notify")]
        dir: PathBuf,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// P9: statistics storage — an hour of results for `checks` checks through the spool
    /// and the flush into SQLite (bytes per check-hour), then a day of hourly rows for
    /// `rollup_checks` checks rolled up into daily rows.
    /// P8: `GET /sites/{id}/sla?window=30d` on 10,000 sites × 30 days of history in SQLite:
    /// p50/p99 at one connection, requests/s under wrk (server on core 0, client on core 1).
    Api {
        #[arg(long, default_value_t = 10_000)]
        sites: u32,
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Requests timed over one keep-alive connection.
        #[arg(long, default_value_t = 5_000)]
        requests: u32,
        #[arg(long, default_value_t = 10)]
        wrk_seconds: u32,
        #[arg(long, default_value_t = 8)]
        wrk_connections: u32,
        #[arg(long, default_value = "/tmp/jetmon-perf-api")]
        dir: PathBuf,
        /// Reuse the history an earlier run of the same size left in --dir.
        #[arg(long)]
        reuse: bool,
        /// Sites are spread over this many tenants and read through a gateway key naming
        /// each site's tenant (0: one operator key, no tenants).
        #[arg(long, default_value_t = 100)]
        tenants: u32,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    Stats {
        #[arg(long, default_value_t = 1_000_000)]
        checks: u32,
        /// Results per check per hour (12 = a 300 s interval).
        #[arg(long, default_value_t = 12)]
        per_hour: u32,
        #[arg(long, default_value_t = 100_000)]
        rollup_checks: u32,
        #[arg(long, default_value = "/tmp/jetmon-perf-stats")]
        dir: PathBuf,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Checks/s one veriflier sustains on one core (batches over gRPC) vs the prober on the
    /// same core and fleet.
    Veriflier {
        #[arg(long, default_value_t = 10)]
        duration_s: u64,
        #[arg(long, default_value_t = 3)]
        warmup_s: u64,
        #[arg(long, default_value_t = 20_000)]
        checks: u32,
        #[arg(long, default_value_t = 64)]
        sites: u32,
        #[arg(long, default_value_t = 18080)]
        port: u16,
        #[arg(long, default_value_t = 0)]
        cpu: usize,
        /// Checks per gRPC call.
        #[arg(long, default_value_t = 500)]
        batch: u32,
        /// Calls in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: u32,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// (internal) The producing process of `ring`.
    #[command(hide = true)]
    RingPeer {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        frames: u64,
        #[arg(long, value_enum)]
        mode: Mode,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Mode {
    Full,
    Bare,
    Wake,
}

/// A child (`jetmon up`, a veriflier) stopped when dropped: SIGTERM for a clean drain, SIGKILL
/// after 15 s.
pub(crate) struct Terminate(pub std::process::Child);

impl Drop for Terminate {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every run must finish within this, or the bench fails rather than hang.
const RUN_DEADLINE: Duration = Duration::from_secs(120);
const BARE_RECORD_BYTES: usize = 128;
/// What control's ingest asks of `wait_batch`.
const CONSUMER_BATCH_BYTES: u64 = 16 * 1024;
const WAKE_SAMPLES: u64 = 500;
const WAKE_GAP: Duration = Duration::from_millis(2);

fn main() -> Result<()> {
    match Cli::parse().scenario {
        Scenario::Ring {
            frames,
            bare_frames,
            runs,
            ring_bytes,
            record,
        } => ring_bench(
            frames,
            bare_frames,
            runs.max(1),
            ring_bytes,
            record.as_deref(),
        ),
        Scenario::RingPeer { path, frames, mode } => ring_peer(&path, frames, mode),
        Scenario::Detection {
            sites,
            flipped,
            interval_s,
            port,
            fleet_script,
            dir,
            verifliers,
            record,
        } => {
            let jetmon = std::env::current_exe()?.with_file_name("jetmon");
            let line = detection::run(
                &detection::DetectionArgs {
                    sites,
                    flipped,
                    interval_s,
                    port,
                    fleet_script,
                    dir,
                    verifliers,
                },
                &jetmon,
                &prober_binary()?,
            )?;
            finish("detection", &line, record.as_deref())
        }
        Scenario::Product {
            checks,
            sites,
            interval_s,
            duration_s,
            port,
            dir,
            record,
        } => {
            let jetmon = std::env::current_exe()?.with_file_name("jetmon");
            let line = product::run(
                &product::ProductArgs {
                    checks,
                    sites,
                    interval_s,
                    duration: Duration::from_secs(duration_s),
                    port,
                    dir,
                },
                &jetmon,
                &prober_binary()?,
            )?;
            finish("product", &line, record.as_deref())
        }
        Scenario::Veriflier {
            duration_s,
            warmup_s,
            checks,
            sites,
            port,
            cpu,
            batch,
            concurrency,
            record,
        } => {
            let args = veriflier::VeriflierArgs {
                http: http::HttpArgs {
                    duration: Duration::from_secs(duration_s),
                    warmup: Duration::from_secs(warmup_s),
                    checks,
                    sites,
                    port,
                    cpu,
                    wrk_connections: 0,
                    tls: None,
                },
                batch: batch.clamp(1, 500),
                concurrency: concurrency.max(1),
            };
            let veriflier_bin = std::env::current_exe()?.with_file_name("jetmon-veriflier");
            let line = veriflier::run(&args, &prober_binary()?, &veriflier_bin)?;
            finish("veriflier", &line, record.as_deref())
        }
        Scenario::Notify {
            sites,
            interval_s,
            timeout_s,
            dir,
            record,
        } => {
            let jetmon = std::env::current_exe()?.with_file_name("jetmon");
            let line = notify::run(
                &notify::NotifyArgs {
                    sites,
                    interval_s,
                    dir,
                    timeout: Duration::from_secs(timeout_s),
                },
                &jetmon,
                &prober_binary()?,
            )?;
            finish("notify", &line, record.as_deref())
        }
        Scenario::Api {
            sites,
            days,
            requests,
            wrk_seconds,
            wrk_connections,
            dir,
            reuse,
            tenants,
            record,
        } => {
            let line = api::run(&api::ApiArgs {
                sites,
                days: days.clamp(15, 400),
                requests,
                wrk_seconds,
                wrk_connections,
                dir,
                reuse,
                tenants,
            })?;
            finish("api", &line, record.as_deref())
        }
        Scenario::Stats {
            checks,
            per_hour,
            rollup_checks,
            dir,
            record,
        } => {
            let line = stats::run(&stats::StatsArgs {
                checks,
                per_hour: per_hour.max(1),
                rollup_checks,
                dir,
            })?;
            finish("stats", &line, record.as_deref())
        }
        Scenario::Ingest {
            checks,
            duration_s,
            flip_every,
            rate,
            dir,
            record,
        } => {
            let line = ingest::run(&ingest::IngestArgs {
                checks,
                duration: Duration::from_secs(duration_s),
                flip_every,
                rate,
                dir,
            })?;
            finish("ingest", &line, record.as_deref())
        }
        Scenario::Http {
            duration_s,
            warmup_s,
            checks,
            sites,
            port,
            cpu,
            wrk_connections,
            tls,
            tls_port,
            record,
        } => {
            let args = http::HttpArgs {
                tls: tls.then_some(tls_port),
                duration: Duration::from_secs(duration_s),
                warmup: Duration::from_secs(warmup_s),
                checks,
                sites,
                port,
                cpu,
                wrk_connections,
            };
            let line = http::run(&args, &prober_binary()?)?;
            finish(if tls { "tls" } else { "http" }, &line, record.as_deref())
        }
        Scenario::Density {
            checks,
            interval_s,
            duration_s,
            sites,
            port,
            cpu,
            mix,
            fleet_script,
            record,
        } => {
            let args = density::DensityArgs {
                checks,
                interval: Duration::from_secs(interval_s),
                duration: Duration::from_secs(duration_s),
                sites,
                port,
                cpu,
                mix,
                fleet_script,
            };
            let line = density::run(&args, &prober_binary()?)?;
            finish("density", &line, record.as_deref())
        }
    }
}

fn finish(scenario: &str, line: &str, record: Option<&Path>) -> Result<()> {
    println!("{line}");
    if let Some(path) = record {
        record::append(path, scenario, line)?;
    }
    Ok(())
}

/// `jetmon-prober` beside this executable (perf/bench builds both in release).
fn prober_binary() -> Result<PathBuf> {
    let p = std::env::current_exe()?.with_file_name("jetmon-prober");
    if !p.exists() {
        bail!(
            "{} not found: build it with cargo build --release -p jetmon-prober",
            p.display()
        );
    }
    Ok(p)
}

/// The address of fleet site `n` (1-based), as perf/fleet assigns them.
pub fn fleet_addr(n: u32) -> String {
    format!("127.0.{}.{}", (n - 1) / 250 + 1, (n - 1) % 250 + 1)
}

fn ring_bench(
    frames: u64,
    bare_frames: u64,
    runs: usize,
    ring_bytes: usize,
    record: Option<&Path>,
) -> Result<()> {
    let dir = tempdir_in_shm()?;
    let mut full = Vec::new();
    let mut bare = Vec::new();
    for run in 0..runs {
        let f = ring_run(&dir, run, frames, Mode::Full, ring_bytes)?;
        eprintln!("run {run}: full path {:.1} M frames/s", f.per_s / 1e6);
        full.push(f);
        let b = ring_run(&dir, run, bare_frames, Mode::Bare, ring_bytes)?;
        eprintln!("run {run}: bare ring {:.1} M frames/s", b.per_s / 1e6);
        bare.push(b);
    }
    let wake = ring_run(&dir, runs, WAKE_SAMPLES, Mode::Wake, ring_bytes)?;
    let _ = std::fs::remove_dir_all(&dir);
    let median = |runs: &mut Vec<RunOutcome>| {
        runs.sort_by(|a, b| a.per_s.total_cmp(&b.per_s));
        runs[runs.len() / 2].clone()
    };
    let (f, b) = (median(&mut full), median(&mut bare));
    let lost = f.lost + b.lost + wake.lost;
    let line = format!(
        "RESULT scenario=ring frames_per_s={:.0} lost={lost} frame_bytes={} bare_frames_per_s={:.0} \
         bare_record_bytes={BARE_RECORD_BYTES} wake_p50_us={} wake_p99_us={} wake_max_us={} \
         consumer_cpu_ns_per_frame={:.1} runs={runs} frames={frames}",
        f.per_s,
        f.frame_bytes,
        b.per_s,
        wake.latencies_us.percentile(50.0),
        wake.latencies_us.percentile(99.0),
        wake.latencies_us.percentile(100.0),
        f.consumer_cpu_ns_per_frame,
    );
    println!("{line}");
    if let Some(path) = record {
        record::append(path, "ring", &line)?;
    }
    if lost != 0 {
        bail!("{lost} frames lost or out of order");
    }
    Ok(())
}

#[derive(Clone)]
struct RunOutcome {
    per_s: f64,
    lost: u64,
    frame_bytes: usize,
    consumer_cpu_ns_per_frame: f64,
    latencies_us: Samples,
}

#[derive(Clone, Default)]
struct Samples(Vec<u64>);

impl Samples {
    fn percentile(&self, p: f64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        let mut v = self.0.clone();
        v.sort_unstable();
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[idx.min(v.len() - 1)]
    }
}

fn ring_run(
    dir: &Path,
    run: usize,
    frames: u64,
    mode: Mode,
    ring_bytes: usize,
) -> Result<RunOutcome> {
    let path = dir.join(format!("ring-{mode:?}-{run}"));
    RingFile::open_or_create(&path, ring_bytes)?;
    let mut consumer = RingFile::open(&path)?.consumer()?;
    let child = spawn_peer(&path, frames, mode)?;
    let outcome = consume(&mut consumer, frames, mode);
    let status = wait_child(child)?;
    drop(consumer);
    let _ = std::fs::remove_file(&path);
    let outcome = outcome?;
    if !status.success() {
        bail!("producer process failed: {status}");
    }
    Ok(outcome)
}

fn consume(c: &mut Consumer, frames: u64, mode: Mode) -> Result<RunOutcome> {
    let mut next = 0u64;
    let mut lost = 0u64;
    let mut frame_bytes = 0;
    let mut copy = [0u8; 512];
    let mut latencies = Vec::new();
    // Wait for the first frame before starting the clock: process start-up is not the ring.
    let waiting = Instant::now();
    while !c.wait(Duration::from_millis(100)) {
        if waiting.elapsed() > RUN_DEADLINE {
            bail!("the producer sent nothing within {RUN_DEADLINE:?}");
        }
    }
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    while next < frames {
        if start.elapsed() > RUN_DEADLINE {
            bail!("run did not finish within {RUN_DEADLINE:?} ({next} of {frames} frames)");
        }
        if !c.wait_batch(CONSUMER_BATCH_BYTES, Duration::from_millis(100)) {
            continue;
        }
        while let Some(r) = c.pop()? {
            match mode {
                Mode::Full => {
                    // Control copies a frame out of shared memory before parsing it.
                    let len = r.payload.len().min(copy.len());
                    copy[..len].copy_from_slice(&r.payload[..len]);
                    frame_bytes = len;
                    match decode_result(&copy[..len]) {
                        Ok(f) if f.result.seq == next => {}
                        _ => lost += 1,
                    }
                }
                Mode::Bare => {
                    frame_bytes = r.payload.len();
                    let seq = u64::from_le_bytes(r.payload[..8].try_into()?);
                    if seq != next {
                        lost += 1;
                    }
                }
                Mode::Wake => {
                    let sent = u64::from_le_bytes(r.payload[..8].try_into()?);
                    latencies.push(monotonic_us().saturating_sub(sent));
                }
            }
            next += 1;
        }
        c.commit();
    }
    let elapsed = start.elapsed();
    let cpu_ns = thread_cpu_ns().saturating_sub(cpu_start);
    if c.pop()?.is_some() {
        lost += 1; // more frames than were sent
    }
    Ok(RunOutcome {
        per_s: frames as f64 / elapsed.as_secs_f64(),
        lost,
        frame_bytes,
        consumer_cpu_ns_per_frame: cpu_ns as f64 / frames as f64,
        latencies_us: Samples(latencies),
    })
}

fn ring_peer(path: &Path, frames: u64, mode: Mode) -> Result<()> {
    let mut p = RingFile::open(path)?.producer()?;
    let start = Instant::now();
    let push = |p: &mut jetmon_shared::ring::Producer, payload: &[u8]| -> Result<()> {
        loop {
            match p.try_push(KIND_CHECK_RESULT, payload) {
                Ok(()) => return Ok(()),
                Err(PushError::Full) => {
                    if start.elapsed() > RUN_DEADLINE {
                        bail!("ring stayed full past the deadline");
                    }
                    std::hint::spin_loop();
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    match mode {
        Mode::Full => {
            let mut enc = FrameEncoder::new();
            let mut r = ProbeResult {
                check_id: 1,
                site_id: 1,
                http_status: 200,
                ..ProbeResult::default()
            };
            let extras = ResultExtras::default();
            for seq in 0..frames {
                r.seq = seq;
                r.check_id = seq & 0xF_FFFF;
                r.phases.total_us = (seq & 0xFFFF) as u32;
                let bytes = enc.result(&r, &extras);
                push(&mut p, bytes)?;
            }
        }
        Mode::Bare => {
            let mut payload = [0u8; BARE_RECORD_BYTES];
            for seq in 0..frames {
                payload[..8].copy_from_slice(&seq.to_le_bytes());
                push(&mut p, &payload)?;
            }
        }
        Mode::Wake => {
            // One frame at a time with the consumer asleep in between.
            for _ in 0..frames {
                std::thread::sleep(WAKE_GAP);
                push(&mut p, &monotonic_us().to_le_bytes())?;
                p.flush();
            }
        }
    }
    p.flush();
    Ok(())
}

fn spawn_peer(path: &Path, frames: u64, mode: Mode) -> Result<Child> {
    let mode = match mode {
        Mode::Full => "full",
        Mode::Bare => "bare",
        Mode::Wake => "wake",
    };
    Command::new(std::env::current_exe()?)
        .arg("ring-peer")
        .arg("--path")
        .arg(path)
        .args(["--frames", &frames.to_string(), "--mode", mode])
        .stdin(Stdio::null())
        .spawn()
        .context("spawning the producer process")
}

fn wait_child(mut child: Child) -> Result<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            bail!("producer did not exit");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn tempdir_in_shm() -> Result<PathBuf> {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("jetmon-perf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
