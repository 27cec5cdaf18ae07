//! The veriflier's probe engine: one prober shard embedded in this process — the same code as
//! `jetmon-prober`, on its own glommio executor thread — so a veriflier's outcome codes and
//! phase timings are the prober's by construction. The tonic side hands checks to a driver
//! thread over a channel; the driver speaks to the shard through a private pair of rings
//! (upsert + trigger-now, result, remove), the way control speaks to a prober. The ring files
//! are unlinked as soon as both sides have mapped them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jetmon_shared::check::CheckSpec;
use jetmon_shared::config::{Placement, ProberConfig};
use jetmon_shared::frames::{
    Command, FrameEncoder, KIND_CHECK_RESULT, KIND_COMMAND, ProbeResult, decode_result,
};
use jetmon_shared::outcome::Outcome;
use jetmon_shared::ring::{PushError, RingFile};
use tokio::sync::oneshot;

/// A result not back by the check's own timeout plus this is answered `local_resource`
/// (monitor-side: control counts it as an abstention).
const GRACE: Duration = Duration::from_secs(5);
const RING_BYTES: usize = 1 << 20;

struct Job {
    spec: CheckSpec,
    reply: oneshot::Sender<ProbeResult>,
}

/// Load counters, shared with the service.
#[derive(Debug, Default)]
pub struct Load {
    pub in_flight: AtomicU32,
    pub total: AtomicU64,
}

/// Handle to the embedded engine.
#[derive(Clone)]
pub struct Engine {
    tx: Sender<Job>,
    pub load: Arc<Load>,
}

/// Removes the private ring directory (also when starting fails half-way).
struct RingDir(PathBuf);

impl Drop for RingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Engine {
    /// Starts the shard and its driver. `config` is the `[prober]` section (resolvers, TLS
    /// roots, probe safety and its allow-list, io_memory, user agent).
    pub fn start(
        config: &ProberConfig,
        extra_allow: &[jetmon_shared::cidr::Cidr],
    ) -> Result<Engine> {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("jetmon-veriflier-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = RingDir(dir);
        let mut config = config.clone();
        config.ring_dir = dir.0.clone();
        config.ring_prefix = "veriflier".to_owned();
        // A veriflier shares small boxes with other work: no pinning.
        config.placement = Placement::Unbound;
        jetmon_prober::exec::check_memlock(config.io_memory_bytes, 1)?;
        let (tls, _) = jetmon_prober::tls::client_config(config.tls_extra_ca_file.as_deref())
            .map_err(|e| anyhow::anyhow!("prober.tls_extra_ca_file: {e}"))?;
        let commands_path = config.command_ring_path(0);
        let results_path = config.result_ring_path(0);
        let producer = RingFile::open_or_create(&commands_path, RING_BYTES)?.producer()?;
        let consumer = RingFile::open_or_create(&results_path, RING_BYTES)?.consumer()?;
        let shard_commands = RingFile::open(&commands_path)?.consumer()?;
        let shard_results = RingFile::open(&results_path)?.producer()?;
        // All four ends are mapped: the files can go now, so nothing is left behind however
        // the process ends (kill -9 included).
        drop(dir);
        let hosts = Arc::new(jetmon_prober::target::HostsFile::system());
        let handle = jetmon_prober::exec::spawn_shard(
            0,
            &config,
            1,
            &jetmon_prober::proto::safety::ExtraAllow {
                cidrs: extra_allow.to_vec(),
                sockets: Vec::new(),
            },
            tls,
            hosts,
            shard_commands,
            shard_results,
            true,
        )?;
        let (tx, rx) = std::sync::mpsc::channel();
        let load = Arc::new(Load::default());
        let l = load.clone();
        std::thread::Builder::new()
            .name("veriflier-driver".into())
            .spawn(move || {
                drive(rx, producer, consumer, &l);
                let _ = handle.join();
            })
            .context("starting the probe driver")?;
        Ok(Engine { tx, load })
    }

    /// Runs `spec` once; the result comes on the returned channel (its `check_id` is the
    /// caller's).
    pub fn submit(&self, spec: CheckSpec) -> oneshot::Receiver<ProbeResult> {
        let (reply, rx) = oneshot::channel();
        self.load.in_flight.fetch_add(1, Ordering::Relaxed);
        self.load.total.fetch_add(1, Ordering::Relaxed);
        // If the driver is gone the sender is dropped and the caller sees the channel closed.
        let _ = self.tx.send(Job { spec, reply });
        rx
    }
}

struct Pending {
    check_id: u64,
    reply: oneshot::Sender<ProbeResult>,
    deadline: Instant,
    started_at_us: u64,
}

fn drive(
    rx: Receiver<Job>,
    mut commands: jetmon_shared::ring::Producer,
    mut results: jetmon_shared::ring::Consumer,
    load: &Load,
) {
    let mut encoder = FrameEncoder::new();
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut queued: std::collections::VecDeque<Job> = Default::default();
    let mut next_id = 1u64;
    let mut disconnected = false;
    loop {
        commands.heartbeat();
        results.heartbeat();
        // New work (block briefly when idle).
        let wait = if pending.is_empty() && queued.is_empty() {
            Duration::from_millis(50)
        } else {
            Duration::ZERO
        };
        match rx.recv_timeout(wait) {
            Ok(job) => {
                queued.push_back(job);
                queued.extend(rx.try_iter());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => disconnected = true,
        }
        if disconnected && pending.is_empty() && queued.is_empty() {
            let _ = commands.try_push(
                KIND_COMMAND,
                encoder.command(&Command::Drain { deadline_ms: 1000 }),
            );
            commands.flush();
            return;
        }
        // Hand queued checks to the shard while its command ring has room.
        while let Some(job) = queued.pop_front() {
            let id = next_id;
            let check_id = job.spec.check_id;
            let timeout = Duration::from_millis(u64::from(job.spec.timeout_ms));
            let mut spec = job.spec.clone();
            spec.check_id = id;
            spec.site_id = id;
            spec.interval_ms = 86_400_000; // runs when triggered, not on a schedule
            spec.paused = false;
            let upsert = Command::Upsert(Box::new(spec));
            let trigger = Command::TriggerNow {
                check_id: id,
                request_id: id,
            };
            if push(&mut commands, &mut encoder, &upsert).is_err()
                || push(&mut commands, &mut encoder, &trigger).is_err()
            {
                queued.push_front(job);
                break;
            }
            next_id += 1;
            pending.insert(
                id,
                Pending {
                    check_id,
                    reply: job.reply,
                    deadline: Instant::now() + timeout + GRACE,
                    started_at_us: unix_us(),
                },
            );
        }
        commands.flush();
        // Results.
        let mut done: Vec<u64> = Vec::new();
        while let Ok(Some(record)) = results.pop() {
            if record.kind != KIND_CHECK_RESULT {
                continue;
            }
            let Ok(frame) = decode_result(record.payload) else {
                continue;
            };
            let mut r = frame.result;
            if let Some(p) = pending.remove(&r.request_id) {
                done.push(r.request_id);
                r.check_id = p.check_id;
                r.site_id = 0;
                let _ = p.reply.send(r);
                load.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
        results.commit();
        // Checks whose result never came.
        let now = Instant::now();
        let late: Vec<u64> = pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(p) = pending.remove(&id) {
                let r = ProbeResult {
                    check_id: p.check_id,
                    started_at_us: p.started_at_us,
                    outcome: Outcome::LocalResource,
                    ..ProbeResult::default()
                };
                let _ = p.reply.send(r);
                load.in_flight.fetch_sub(1, Ordering::Relaxed);
                done.push(id);
            }
        }
        for id in done {
            let _ = push(
                &mut commands,
                &mut encoder,
                &Command::Remove { check_id: id },
            );
        }
        commands.flush();
        if !pending.is_empty() {
            results.wait(Duration::from_millis(2));
        }
    }
}

fn push(
    ring: &mut jetmon_shared::ring::Producer,
    encoder: &mut FrameEncoder,
    command: &Command,
) -> Result<(), PushError> {
    ring.try_push(KIND_COMMAND, encoder.command(command))
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
