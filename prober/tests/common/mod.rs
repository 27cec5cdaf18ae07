//! What the engine tests share: the local fleet (real nginx, started by `.ci/test` or
//! `perf/fleet start`) and a stand-in for control that owns a prober's rings.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod hostile;

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use jetmon_shared::check::{CheckSpec, CheckType};
use jetmon_shared::frames::{
    Command, FrameEncoder, KIND_CHECK_RESULT, KIND_COMMAND, KIND_SHARD_STATS, ProbeResult,
    ShardStats, decode_result, decode_stats,
};
use jetmon_shared::ring::{Consumer, Producer, RingFile};

pub const BIN: &str = env!("CARGO_BIN_EXE_jetmon-prober");

/// The running fleet, or a clear failure telling how to start it.
pub struct Fleet {
    dir: PathBuf,
    pub port: u16,
    /// dnsmasq's port on 127.0.0.1 (zone fleet.test).
    pub dns_port: u16,
}

impl Fleet {
    pub fn get() -> Fleet {
        let dir = PathBuf::from(
            std::env::var("JETMON_FLEET_DIR").unwrap_or_else(|_| "/tmp/jetmon-fleet".into()),
        );
        let pid = std::fs::read_to_string(dir.join("nginx.pid")).ok();
        let alive = pid
            .and_then(|p| p.trim().parse::<i32>().ok())
            .is_some_and(|p| unsafe { libc::kill(p, 0) } == 0);
        assert!(
            alive,
            "the local test fleet is not running: start it with `perf/fleet start` (or run the tests with .ci/test)"
        );
        let read = |f: &str| -> u16 {
            std::fs::read_to_string(dir.join(f))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let (port, dns_port) = (read("port"), read("dns_port"));
        Fleet {
            dir,
            port,
            dns_port,
        }
    }

    /// The fleet's resolver as prober configuration (loopback only: tests never ask the
    /// machine's own resolvers).
    pub fn resolver_config(&self) -> String {
        format!(
            "resolvers = [\"127.0.0.1:{}\"]\nresolver_canary = \"fleet.test\"\n",
            self.dns_port
        )
    }

    /// The fleet's throw-away CA as prober configuration.
    pub fn ca_config(&self) -> String {
        format!(
            "tls_extra_ca_file = {:?}\n",
            self.dir.join("tls/ca.pem").display().to_string()
        )
    }

    /// The fleet's HTTPS port.
    pub fn tls_port(&self) -> u16 {
        std::fs::read_to_string(self.dir.join("tls_port"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// `http://site-N.fleet.test:port/` for site N, through the fleet's DNS.
    pub fn named_url(&self, n: u32) -> String {
        format!("http://site-{n}.fleet.test:{}/", self.port)
    }

    /// `http://127.0.1.N:port/` for site N (1-based).
    pub fn url(&self, n: u32) -> String {
        format!("http://{}:{}/", addr(n), self.port)
    }

    /// Switches a site's mode (up, slow, 500, hang, refused) and waits until nginx sees it.
    pub fn set(&self, n: u32, mode: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../perf/fleet");
        let status = Process::new(script)
            .args(["set", &format!("{}:{}", addr(n), self.port), mode])
            .env("JETMON_FLEET_DIR", &self.dir)
            .status()
            .unwrap();
        assert!(status.success());
        // nginx caches the state files for up to a second.
        std::thread::sleep(Duration::from_millis(1100));
    }
}

fn addr(n: u32) -> String {
    format!("127.0.{}.{}", (n - 1) / 250 + 1, (n - 1) % 250 + 1)
}

/// A prober process and the control side of its rings (one shard).
pub struct Prober {
    pub dir: tempfile::TempDir,
    child: Child,
    commands: Producer,
    pub results: Consumer,
    encoder: FrameEncoder,
    pub stats: Vec<ShardStats>,
    /// Certificate issuer and SAN count of the last HTTPS result of each check.
    pub certs: std::collections::HashMap<u64, (String, u16)>,
    /// Final URL of the last redirected result of each check.
    pub final_urls: std::collections::HashMap<u64, String>,
    /// Note of the last result that had one, per check.
    pub notes: std::collections::HashMap<u64, String>,
    /// Redirect chain (status, URL) of the last redirected result of each check.
    pub chains: std::collections::HashMap<u64, Vec<(u16, String)>>,
    /// Index of the next record in the result ring (it starts empty).
    next_index: u64,
}

impl Prober {
    /// A prober allowed to probe the loopback fleet (`allow_cidrs = ["127.0.0.0/8"]`).
    pub fn start(extra_config: &str, result_ring_bytes: usize) -> Prober {
        Prober::start_raw(
            &format!("allow_cidrs = [\"127.0.0.0/8\"]\n{extra_config}"),
            result_ring_bytes,
        )
    }

    /// A prober with production defaults: probe safety refuses loopback. Its resolver is the
    /// fleet's dnsmasq unless `extra_config` names one (never the machine's).
    pub fn start_raw(extra_config: &str, result_ring_bytes: usize) -> Prober {
        let fleet = Fleet::get();
        let mut dns = if extra_config.contains("resolvers") {
            String::new()
        } else {
            fleet.resolver_config()
        };
        if !extra_config.contains("tls_extra_ca_file") {
            dns.push_str(&fleet.ca_config());
        }
        let extra_config = format!("{dns}{extra_config}");
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("jetmon.toml");
        std::fs::write(
            &cfg,
            format!(
                "[prober]\nshards = 1\nring_dir = {:?}\nresult_ring_bytes = {result_ring_bytes}\n\
                 command_ring_bytes = 1048576\n{extra_config}\n",
                dir.path()
            ),
        )
        .unwrap();
        let commands = RingFile::open_or_create(&dir.path().join("jetmon-commands-0"), 1 << 20)
            .and_then(RingFile::producer)
            .unwrap();
        let results =
            RingFile::open_or_create(&dir.path().join("jetmon-results-0"), result_ring_bytes)
                .and_then(RingFile::consumer)
                .unwrap();
        let log = std::fs::File::create(dir.path().join("prober.log")).unwrap();
        let child = Process::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Prober {
            dir,
            child,
            commands,
            results,
            encoder: FrameEncoder::new(),
            stats: Vec::new(),
            certs: Default::default(),
            final_urls: Default::default(),
            notes: Default::default(),
            chains: Default::default(),
            next_index: 0,
        }
    }

    pub fn send(&mut self, command: &Command) {
        let bytes = self.encoder.command(command);
        self.commands.try_push(KIND_COMMAND, bytes).unwrap();
        self.commands.flush();
    }

    pub fn upsert(&mut self, spec: CheckSpec) {
        self.send(&Command::Upsert(Box::new(spec)));
    }

    /// Collects results until `done` says so or `within` passes; stats frames are kept aside.
    /// Asserts that each result's seq is its index in the ring: nothing lost, nothing repeated.
    pub fn collect(
        &mut self,
        within: Duration,
        mut done: impl FnMut(&[ProbeResult]) -> bool,
    ) -> Vec<ProbeResult> {
        let start = Instant::now();
        let mut out = Vec::new();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("prober.log")).unwrap_or_default();
                panic!("the prober exited ({status}):\n{log}");
            }
            if !self.results.wait(Duration::from_millis(20)) {
                if done(&out) {
                    break;
                }
                continue;
            }
            while let Some(r) = self.results.pop().unwrap() {
                match r.kind {
                    KIND_CHECK_RESULT => {
                        let frame = decode_result(r.payload).unwrap();
                        let result = frame.result;
                        if let Some(url) = frame.extras.final_url {
                            self.final_urls.insert(result.check_id, url.to_owned());
                        }
                        if let Some(note) = frame.extras.note {
                            self.notes.insert(result.check_id, note.to_owned());
                        }
                        if !frame.extras.redirect_chain.is_empty() {
                            self.chains.insert(
                                result.check_id,
                                frame
                                    .extras
                                    .redirect_chain
                                    .iter()
                                    .map(|h| (h.status, h.url.to_owned()))
                                    .collect(),
                            );
                        }
                        if let Some(issuer) = frame.extras.cert_issuer {
                            self.certs.insert(
                                result.check_id,
                                (issuer.to_owned(), frame.extras.cert_san_count),
                            );
                        }
                        assert_eq!(
                            result.seq, self.next_index,
                            "result seq is not its ring index"
                        );
                        out.push(result);
                    }
                    KIND_SHARD_STATS => self.stats.push(decode_stats(r.payload).unwrap()),
                    k => panic!("unexpected record kind {k}"),
                }
                self.next_index += 1;
            }
            self.results.commit();
            if done(&out) {
                break;
            }
        }
        out
    }

    /// The prober's resident memory (VmRSS, KiB).
    pub fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// The prober's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prober.log")).unwrap_or_default()
    }

    /// Waits for the process to exit (after a Drain), bounded.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A check of `url` every `interval_ms` with a `timeout_ms` deadline.
pub fn check(id: u64, url: &str, interval_ms: u32, timeout_ms: u32) -> CheckSpec {
    let mut s = CheckSpec::new(id, id * 10, CheckType::Http, url);
    s.interval_ms = interval_ms;
    s.timeout_ms = timeout_ms;
    s
}
