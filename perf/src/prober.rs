//! A `jetmon-prober` under test: its config, rings and process, with the control side played
//! by the benchmark (push commands, count and decode result frames) and its CPU and memory
//! read from /proc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jetmon_shared::check::CheckSpec;
use jetmon_shared::frames::{
    Command, FrameEncoder, KIND_CHECK_RESULT, KIND_COMMAND, KIND_SHARD_STATS, ProbeResult,
    ShardStats, decode_result, decode_stats,
};
use jetmon_shared::ring::{Consumer, Producer, PushError, RingFile};

/// The default command ring size (prober.command_ring_bytes), so memory figures are those of
/// a default deployment.
const COMMAND_RING_BYTES: usize = 16 << 20;

/// Resident memory of a process, split the way /proc reports it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rss {
    pub total: u64,
    pub peak: u64,
    /// Private memory (heap, stacks). The rest of `total` is file-backed: the rings' tmpfs
    /// pages (shared with control) and the executable.
    pub anon: u64,
}

pub struct ProberUnderTest {
    dir: PathBuf,
    child: Child,
    commands: Producer,
    results: Consumer,
    encoder: FrameEncoder,
    pub last_stats: Option<ShardStats>,
}

impl ProberUnderTest {
    /// Starts the release prober with one shard pinned to `cpu`, rings in a fresh directory.
    pub fn start(
        prober_bin: &Path,
        cpu: usize,
        result_ring_bytes: usize,
    ) -> Result<ProberUnderTest> {
        let dir = std::env::temp_dir().join(format!("jetmon-perf-prober-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let cfg = dir.join("jetmon.toml");
        // The fleet's CA, for HTTPS benchmarks.
        let fleet_ca = PathBuf::from(
            std::env::var("JETMON_FLEET_DIR").unwrap_or_else(|_| "/tmp/jetmon-fleet".into()),
        )
        .join("tls/ca.pem");
        let ca = if fleet_ca.exists() {
            format!("tls_extra_ca_file = {:?}\n", fleet_ca.display().to_string())
        } else {
            String::new()
        };
        std::fs::write(
            &cfg,
            format!(
                "[prober]\nshards = 1\nplacement = \"pinned\"\ncpus = [{cpu}]\nring_dir = {dir:?}\n\
                 result_ring_bytes = {result_ring_bytes}\ncommand_ring_bytes = {COMMAND_RING_BYTES}\n\
                 allow_cidrs = [\"127.0.0.0/8\"]\nresolvers = [\"127.0.0.1:18053\"]\nresolver_canary = \"fleet.test\"\n{ca}",
            ),
        )?;
        let commands =
            RingFile::open_or_create(&dir.join("jetmon-commands-0"), COMMAND_RING_BYTES)?
                .producer()?;
        let results = RingFile::open_or_create(&dir.join("jetmon-results-0"), result_ring_bytes)?
            .consumer()?;
        let log = std::fs::File::create(dir.join("prober.log"))?;
        let child = Process::new(prober_bin)
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", prober_bin.display()))?;
        Ok(ProberUnderTest {
            dir,
            child,
            commands,
            results,
            encoder: FrameEncoder::new(),
            last_stats: None,
        })
    }

    /// Sends a command, waiting (bounded) while the command ring is full. Results are drained
    /// meanwhile so the prober never stalls on us.
    pub fn send(
        &mut self,
        command: &Command,
        on_result: &mut impl FnMut(&ProbeResult),
    ) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let bytes = self.encoder.command(command);
            match self.commands.try_push(KIND_COMMAND, bytes) {
                Ok(()) => return Ok(()),
                Err(PushError::Full) if Instant::now() < deadline => {
                    self.commands.flush();
                    self.drain(on_result)?;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => bail!("sending a command: {e}"),
            }
        }
    }

    pub fn upsert(
        &mut self,
        spec: CheckSpec,
        on_result: &mut impl FnMut(&ProbeResult),
    ) -> Result<()> {
        self.send(&Command::Upsert(Box::new(spec)), on_result)
    }

    pub fn flush(&mut self) {
        self.commands.flush();
    }

    /// Reads every available frame; results go to `on_result`, stats are kept.
    pub fn drain(&mut self, on_result: &mut impl FnMut(&ProbeResult)) -> Result<usize> {
        let mut n = 0;
        while let Some(r) = self.results.pop()? {
            match r.kind {
                KIND_CHECK_RESULT => {
                    on_result(&decode_result(r.payload)?.result);
                    n += 1;
                }
                KIND_SHARD_STATS => self.last_stats = Some(decode_stats(r.payload)?),
                k => bail!("unexpected record kind {k}"),
            }
        }
        self.results.commit();
        Ok(n)
    }

    /// Waits for frames for up to `d`, handling them.
    pub fn pump(&mut self, d: Duration, on_result: &mut impl FnMut(&ProbeResult)) -> Result<()> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait()? {
                bail!("the prober exited ({status}): {}", self.log());
            }
            let left = end.saturating_duration_since(Instant::now());
            if self
                .results
                .wait_batch(16 * 1024, left.min(Duration::from_millis(50)))
            {
                self.drain(on_result)?;
            }
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prober.log")).unwrap_or_default()
    }

    /// (user, system) CPU time of the prober so far.
    pub fn cpu(&self) -> Result<(Duration, Duration)> {
        process_cpu(self.child.id())
    }

    /// Resident memory in bytes.
    pub fn rss(&self) -> Result<Rss> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Ok(Rss {
            total: kb("VmRSS:"),
            peak: kb("VmHWM:"),
            anon: kb("RssAnon:"),
        })
    }
}

impl Drop for ProberUnderTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// utime and stime of a process (all its threads) from /proc/PID/stat.
pub fn process_cpu(pid: u32) -> Result<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is [0], utime [11], stime [12] (man 5 proc).
    let ticks =
        |i: usize| -> Result<u64> { Ok(fields.get(i).context("short /proc stat")?.parse()?) };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let to_d = |t: u64| Duration::from_micros(t * 1_000_000 / hz);
    Ok((to_d(ticks(11)?), to_d(ticks(12)?)))
}
