//! TOML configuration of all three binaries. One file may hold every section (`[prober]`,
//! `[control]`, `[veriflier]`); each binary reads its own and still rejects typos anywhere.
//! Defaults work on a laptop. Any error is one line naming the key and the problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cidr::Cidr;

/// The file each binary reads when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "jetmon.toml";
/// glommio refuses to start with less registered I/O memory than this per executor.
pub const MIN_IO_MEMORY_BYTES: usize = 512 * 1024;
/// Most prober shards.
pub const MAX_SHARDS: u16 = 256;
/// The v1-compatible default User-Agent.
pub const DEFAULT_USER_AGENT: &str = "jetmon/2.0 (Jetpack Site Uptime Monitor by WordPress.com)";

/// Every section; absent sections take their defaults.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub prober: ProberConfig,
    pub control: ControlConfig,
    pub veriflier: VeriflierConfig,
}

/// Where shard executors run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Let the kernel schedule shard threads (best on small or shared boxes).
    #[default]
    Unbound,
    /// Pin shard i to `cpus[i]` (or to CPU i+1 when `cpus` is empty).
    Pinned,
}

/// `[prober]`: the data plane.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProberConfig {
    /// Shard executors; 0 = one per core but one, at least 1.
    pub shards: u16,
    pub placement: Placement,
    /// CPUs for `placement = "pinned"`, one per shard.
    pub cpus: Vec<usize>,
    /// io_uring registered memory per shard. Pinned three times (one per io_uring of the
    /// executor), so each shard needs about 3x this within `ulimit -l`.
    pub io_memory_bytes: usize,
    /// Directory of the shared-memory rings.
    pub ring_dir: PathBuf,
    /// Ring files are `<ring_prefix>-results-<shard>` and `<ring_prefix>-commands-<shard>`.
    pub ring_prefix: String,
    pub result_ring_bytes: usize,
    pub command_ring_bytes: usize,
    /// Probes in flight per shard at most.
    pub max_in_flight_per_shard: u32,
    /// Probes in flight to one IP address at most (a shared host serving many blogs).
    pub max_per_target_ip: u16,
    pub user_agent: String,
    /// Identifies this prober's network in results.
    pub vantage_id: u32,
    /// A probe starting later than this is flagged late (monitor-side).
    pub lateness_threshold_ms: u32,
    /// Private ranges the operator allows probing (probe safety refuses them otherwise).
    pub allow_cidrs: Vec<String>,
    /// DNS resolvers (`ip:port`); empty = those of /etc/resolv.conf.
    pub resolvers: Vec<String>,
    /// A name our resolvers can always answer (an NS query). When a name fails and we have no
    /// recent proof that the resolvers work, this decides whether the failure is the name's
    /// (`dns_servfail`) or ours (`resolver_unavailable`). "." = the root zone.
    pub resolver_canary: String,
    /// A PEM file of extra CA certificates trusted for HTTPS checks (besides Mozilla's list
    /// and the OS bundle): private CAs, or the local test fleet's.
    pub tls_extra_ca_file: Option<PathBuf>,
}

impl Default for ProberConfig {
    fn default() -> Self {
        ProberConfig {
            shards: 0,
            placement: Placement::Unbound,
            cpus: Vec::new(),
            io_memory_bytes: 1 << 20,
            ring_dir: PathBuf::from("/dev/shm"),
            ring_prefix: "jetmon".to_owned(),
            result_ring_bytes: 64 << 20,
            command_ring_bytes: 16 << 20,
            max_in_flight_per_shard: 10_000,
            max_per_target_ip: 8,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            vantage_id: 0,
            lateness_threshold_ms: 1_000,
            allow_cidrs: Vec::new(),
            resolvers: Vec::new(),
            resolver_canary: ".".to_owned(),
            tls_extra_ca_file: None,
        }
    }
}

impl ProberConfig {
    /// The shard count after resolving 0 = auto against `cores`.
    pub fn effective_shards(&self, cores: usize) -> u16 {
        if self.shards > 0 {
            self.shards
        } else {
            (cores.saturating_sub(1)).clamp(1, usize::from(MAX_SHARDS)) as u16
        }
    }

    /// Path of shard `shard`'s result ring.
    pub fn result_ring_path(&self, shard: u16) -> PathBuf {
        self.ring_dir
            .join(format!("{}-results-{shard}", self.ring_prefix))
    }

    /// Path of shard `shard`'s command ring.
    pub fn command_ring_path(&self, shard: u16) -> PathBuf {
        self.ring_dir
            .join(format!("{}-commands-{shard}", self.ring_prefix))
    }

    /// The allow-list, parsed (validated at load time, so this cannot fail afterwards).
    pub fn allow_list(&self) -> Vec<Cidr> {
        self.allow_cidrs
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect()
    }
}

/// `[control.detection]`: how a failure becomes Down.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// Fast local re-checks after a first failure.
    pub retries: u8,
    pub retry_spacing_ms: u32,
    pub veriflier_quorum: u8,
    pub veriflier_quorum_floor: u8,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            retries: 2,
            retry_spacing_ms: 10_000,
            veriflier_quorum: 2,
            veriflier_quorum_floor: 2,
        }
    }
}

/// One veriflier control may ask.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VeriflierPeer {
    pub name: String,
    /// `https://host:port`
    pub url: String,
    /// File holding the shared token (never the token itself in config).
    pub token_file: PathBuf,
    /// Extra CA to trust for this veriflier's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM, chain) and key presented to a veriflier that requires one.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// The name the veriflier's certificate must carry, when `url` names it by address.
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

/// `[control]`: the control plane.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// `sqlite://FILE` (default, embedded) or `postgres://…` (fleets).
    pub database_url: String,
    /// REST API and dashboard; loopback unless you mean it.
    pub api_listen: String,
    /// Buckets checks are hashed into (fleet mode leases buckets to hosts).
    pub buckets: u16,
    /// The prober executable; empty = `jetmon-prober` beside `jetmon`.
    pub prober_binary: Option<PathBuf>,
    pub detection: DetectionConfig,
    pub verifliers: Vec<VeriflierPeer>,
    /// Where results wait (on disk, not in memory) until their hour is flushed as statistics;
    /// empty = beside the SQLite file (`<file>.spool`), or `./jetmon-spool` for PostgreSQL.
    pub stats_spool_dir: Option<PathBuf>,
    /// Days hourly statistics are kept before they are merged into daily rows.
    pub stats_hourly_days: u32,
    /// Days daily statistics are kept.
    pub stats_daily_days: u32,
    /// REST API requests per minute per key (a token bucket: bursts up to this many).
    pub api_rate_per_minute: u32,
    /// Expensive REST API operations (trigger-now) per minute per key, on top.
    pub api_expensive_per_minute: u32,
    /// The key file sealing stored secrets (docs/notifications.md); `JETMON_SECRET_KEY` may
    /// hold its text instead. Empty = beside the SQLite file (`<file>.key`, created when first
    /// needed); PostgreSQL has no default (every host must use the same key).
    pub secret_key_file: Option<PathBuf>,
    /// Ranges webhook (and later alert) targets may reach despite probe safety; empty in
    /// production. Tests allow their loopback receivers here.
    pub delivery_allow_cidrs: Vec<String>,
    /// Seconds a delivery worker holds the rows it claimed; a worker that dies leaves them to
    /// be claimed again after this. At least twice the 30 s request limit plus a slot's wait.
    pub delivery_lease_s: u32,
    /// An extra CA (PEM) trusted for HTTPS receivers, beside the web PKI roots.
    pub delivery_ca_file: Option<PathBuf>,
    /// Where the WPCOM v1 status-change notice is POSTed (api.md, back-compat); empty: not
    /// sent. Sites with a `blog_id` only; through the outbox, with a circuit breaker.
    pub wpcom_notice_url: Option<String>,
    /// File holding the bearer token of the WPCOM notice (never the token in config).
    pub wpcom_token_file: Option<PathBuf>,
}

impl ControlConfig {
    /// `delivery_allow_cidrs` parsed (validated at load).
    pub fn delivery_allow_list(&self) -> Vec<Cidr> {
        self.delivery_allow_cidrs
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect()
    }

    /// The statistics spool directory in effect.
    pub fn spool_dir(&self) -> PathBuf {
        if let Some(d) = &self.stats_spool_dir {
            return d.clone();
        }
        match self.database_url.strip_prefix("sqlite:") {
            Some(rest) => {
                let path = rest.trim_start_matches("//");
                let path = path.split('?').next().unwrap_or(path);
                if path.is_empty() || path == ":memory:" {
                    PathBuf::from("jetmon-spool")
                } else {
                    PathBuf::from(format!("{path}.spool"))
                }
            }
            None => PathBuf::from("jetmon-spool"),
        }
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            database_url: "sqlite://jetmon.db".to_owned(),
            api_listen: "127.0.0.1:8080".to_owned(),
            buckets: 1024,
            prober_binary: None,
            detection: DetectionConfig::default(),
            verifliers: Vec::new(),
            stats_spool_dir: None,
            stats_hourly_days: 14,
            stats_daily_days: 400,
            api_rate_per_minute: 600,
            api_expensive_per_minute: 10,
            secret_key_file: None,
            delivery_allow_cidrs: Vec::new(),
            delivery_lease_s: 90,
            delivery_ca_file: None,
            wpcom_notice_url: None,
            wpcom_token_file: None,
        }
    }
}

/// `[veriflier]`: the confirmation service.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VeriflierConfig {
    pub listen: String,
    pub name: String,
    pub token_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Require client certificates signed by this CA.
    pub client_ca_file: Option<PathBuf>,
    /// Checks per request at most.
    pub max_batch: u32,
    pub max_in_flight: u32,
    /// `GET /metrics`, `/ready`, `/health` (plain HTTP; loopback unless you mean it); empty = off.
    pub metrics_listen: String,
}

impl Default for VeriflierConfig {
    fn default() -> Self {
        VeriflierConfig {
            listen: "127.0.0.1:7803".to_owned(),
            name: "veriflier".to_owned(),
            token_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            client_ca_file: None,
            max_batch: 500,
            max_in_flight: 2_000,
            metrics_listen: "127.0.0.1:7804".to_owned(),
        }
    }
}

/// A configuration problem, displayed as one line: `FILE:LINE: key `a.b`: problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {}{problem}", line.map(|l| format!(":{l}")).unwrap_or_default(), key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
pub struct ConfigError {
    /// The file (or `<defaults>`).
    pub origin: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub problem: String,
}

impl ConfigError {
    /// The exit code binaries use for configuration errors.
    pub const EXIT_CODE: i32 = 2;
}

impl Config {
    /// Reads `path`, or `jetmon.toml` in the working directory when `path` is `None` and that
    /// file exists, or the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let default = Path::new(DEFAULT_CONFIG_FILE);
        let path = match path {
            Some(p) => p,
            None if default.exists() => default,
            None => return Ok(Config::default()),
        };
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: None,
            key: None,
            problem: format!("cannot read: {e}"),
        })?;
        Config::from_toml(&text, &origin)
    }

    /// [`Config::load`] for a binary's `main`: on error prints `PROGRAM: error` as one line
    /// and exits with [`ConfigError::EXIT_CODE`].
    pub fn load_or_exit(program: &str, path: Option<&Path>) -> Config {
        Config::load(path).unwrap_or_else(|e| {
            eprintln!("{program}: {e}");
            std::process::exit(ConfigError::EXIT_CODE)
        })
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let fail = |span: Option<std::ops::Range<usize>>, key: Option<String>, problem: String| {
            ConfigError {
                origin: origin.to_owned(),
                line: span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
                key,
                problem,
            }
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| fail(e.span(), None, one_line(e.message())))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let key = (path != ".").then_some(path);
            let inner = e.into_inner();
            fail(inner.span(), key, one_line(inner.message()))
        })?;
        config
            .validate()
            .map_err(|(key, problem)| fail(None, Some(key.to_owned()), problem))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        let p = &self.prober;
        if p.shards > MAX_SHARDS {
            return Err((
                "prober.shards",
                format!("{} is more than {MAX_SHARDS}", p.shards),
            ));
        }
        if p.placement == Placement::Pinned
            && !p.cpus.is_empty()
            && p.shards > 0
            && p.cpus.len() != usize::from(p.shards)
        {
            return Err((
                "prober.cpus",
                format!("lists {} CPUs for {} shards", p.cpus.len(), p.shards),
            ));
        }
        if p.io_memory_bytes < MIN_IO_MEMORY_BYTES {
            return Err((
                "prober.io_memory_bytes",
                format!(
                    "{} is below {MIN_IO_MEMORY_BYTES} (glommio refuses less)",
                    p.io_memory_bytes
                ),
            ));
        }
        for (key, bytes) in [
            ("prober.result_ring_bytes", p.result_ring_bytes),
            ("prober.command_ring_bytes", p.command_ring_bytes),
        ] {
            if !bytes.is_power_of_two()
                || !(crate::ring::MIN_CAPACITY..=crate::ring::MAX_CAPACITY).contains(&bytes)
            {
                return Err((
                    key,
                    format!(
                        "{bytes} must be a power of two from {} to {}",
                        crate::ring::MIN_CAPACITY,
                        crate::ring::MAX_CAPACITY
                    ),
                ));
            }
        }
        if p.ring_prefix.is_empty()
            || !p
                .ring_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err((
                "prober.ring_prefix",
                "use letters, digits, '-' and '_' only".into(),
            ));
        }
        if p.max_in_flight_per_shard == 0 {
            return Err((
                "prober.max_in_flight_per_shard",
                "must be at least 1".into(),
            ));
        }
        if p.max_per_target_ip == 0 {
            return Err(("prober.max_per_target_ip", "must be at least 1".into()));
        }
        if p.user_agent.is_empty() || p.user_agent.chars().any(char::is_control) {
            return Err((
                "prober.user_agent",
                "must be non-empty printable text".into(),
            ));
        }
        for cidr in &p.allow_cidrs {
            cidr.parse::<Cidr>()
                .map_err(|e| ("prober.allow_cidrs", format!("{cidr:?}: {e}")))?;
        }
        for cidr in &self.control.delivery_allow_cidrs {
            cidr.parse::<Cidr>()
                .map_err(|e| ("control.delivery_allow_cidrs", format!("{cidr:?}: {e}")))?;
        }
        if let Some(u) = self
            .control
            .wpcom_notice_url
            .as_deref()
            .filter(|u| !u.is_empty())
        {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err((
                    "control.wpcom_notice_url",
                    format!("{u:?} is not an http(s) URL"),
                ));
            }
            if self.control.wpcom_token_file.is_none() {
                return Err((
                    "control.wpcom_token_file",
                    "the WPCOM notice needs its bearer token's file".into(),
                ));
            }
        }
        if self.control.delivery_lease_s < 61 {
            return Err((
                "control.delivery_lease_s",
                "must be at least 61 (a request may take 30 s, and wait as long for a slot)".into(),
            ));
        }
        for r in &p.resolvers {
            r.parse::<SocketAddr>()
                .map_err(|_| ("prober.resolvers", format!("{r:?} is not ip:port")))?;
        }
        if let Some(file) = p.tls_extra_ca_file.as_ref().filter(|f| !f.is_file()) {
            return Err((
                "prober.tls_extra_ca_file",
                format!("{}: no such file", file.display()),
            ));
        }
        let canary = &p.resolver_canary;
        if canary.is_empty()
            || canary.len() > 253
            || !canary
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        {
            return Err((
                "prober.resolver_canary",
                format!("{canary:?} is not a DNS name"),
            ));
        }
        let c = &self.control;
        if !(c.database_url.starts_with("sqlite:")
            || c.database_url.starts_with("postgres://")
            || c.database_url.starts_with("postgresql://"))
        {
            return Err((
                "control.database_url",
                "must start with sqlite: or postgres://".into(),
            ));
        }
        c.api_listen.parse::<SocketAddr>().map_err(|_| {
            (
                "control.api_listen",
                format!("{:?} is not ip:port", c.api_listen),
            )
        })?;
        if c.buckets == 0 {
            return Err(("control.buckets", "must be at least 1".into()));
        }
        if c.api_rate_per_minute == 0 {
            return Err(("control.api_rate_per_minute", "must be at least 1".into()));
        }
        if c.api_expensive_per_minute == 0 {
            return Err((
                "control.api_expensive_per_minute",
                "must be at least 1".into(),
            ));
        }
        if c.stats_hourly_days == 0 {
            return Err(("control.stats_hourly_days", "must be at least 1".into()));
        }
        if c.stats_daily_days <= c.stats_hourly_days {
            return Err((
                "control.stats_daily_days",
                format!(
                    "must be more than stats_hourly_days ({})",
                    c.stats_hourly_days
                ),
            ));
        }
        let d = &c.detection;
        if d.veriflier_quorum_floor > d.veriflier_quorum {
            return Err((
                "control.detection.veriflier_quorum_floor",
                format!(
                    "{} is above veriflier_quorum {}",
                    d.veriflier_quorum_floor, d.veriflier_quorum
                ),
            ));
        }
        if d.retries > 10 {
            return Err(("control.detection.retries", "at most 10".into()));
        }
        let v = &self.veriflier;
        v.listen
            .parse::<SocketAddr>()
            .map_err(|_| ("veriflier.listen", format!("{:?} is not ip:port", v.listen)))?;
        if v.tls_cert_file.is_some() != v.tls_key_file.is_some() {
            return Err((
                "veriflier.tls_key_file",
                "tls_cert_file and tls_key_file go together".into(),
            ));
        }
        if !v.metrics_listen.is_empty() {
            v.metrics_listen.parse::<SocketAddr>().map_err(|_| {
                (
                    "veriflier.metrics_listen",
                    format!("{:?} is not ip:port (or \"\" for none)", v.metrics_listen),
                )
            })?;
        }
        if v.max_batch == 0 || v.max_batch > 500 {
            return Err((
                "veriflier.max_batch",
                format!("{} is outside 1..=500", v.max_batch),
            ));
        }
        Ok(())
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let e = Config::from_toml(text, "t.toml").expect_err("should fail");
        let line = e.to_string();
        assert!(!line.contains('\n'), "one line: {line}");
        line
    }

    #[test]
    fn empty_file_gives_working_defaults() {
        let c = Config::from_toml("", "t.toml").expect("defaults");
        assert_eq!(c, Config::default());
        assert_eq!(c.prober.effective_shards(2), 1);
        assert_eq!(c.prober.effective_shards(1), 1);
        assert_eq!(c.prober.effective_shards(16), 15);
        assert_eq!(c.prober.io_memory_bytes, 1 << 20);
        assert_eq!(
            c.prober.result_ring_path(3),
            PathBuf::from("/dev/shm/jetmon-results-3")
        );
    }

    #[test]
    fn full_file_parses() {
        let c = Config::from_toml(
            r#"
            [prober]
            shards = 2
            placement = "pinned"
            cpus = [0, 1]
            allow_cidrs = ["127.0.0.0/8", "::1/128"]
            resolvers = ["127.0.0.1:5353"]
            [control]
            database_url = "postgres://jetmon@127.0.0.1/jetmon"
            [control.detection]
            retries = 3
            [[control.verifliers]]
            name = "eu"
            url = "https://127.0.0.1:7803"
            token_file = "/etc/jetmon/eu.token"
            [veriflier]
            listen = "127.0.0.1:9000"
            "#,
            "t.toml",
        )
        .expect("parses");
        assert_eq!(c.prober.shards, 2);
        assert_eq!(c.prober.allow_list().len(), 2);
        assert_eq!(c.control.detection.retries, 3);
        assert_eq!(c.control.verifliers[0].name, "eu");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = err("[prober]\nshards = 1\nshardz = 2\n");
        assert!(
            e.starts_with("t.toml:3: key `prober.shardz`: unknown field"),
            "{e}"
        );
        let e = err("[probr]\n");
        assert!(e.contains("`probr`"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = err("[prober]\nshards = \"two\"\n");
        assert!(e.starts_with("t.toml:2: key `prober.shards`:"), "{e}");
        let e = err("[control.detection]\nretries = -1\n");
        assert!(e.contains("key `control.detection.retries`"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = err("[prober]\nshards = = 1\n");
        assert!(e.starts_with("t.toml:2: "), "{e}");
    }

    #[test]
    fn impossible_values_are_named() {
        for (text, key) in [
            ("[prober]\nio_memory_bytes = 4096", "prober.io_memory_bytes"),
            (
                "[prober]\nresult_ring_bytes = 1000",
                "prober.result_ring_bytes",
            ),
            (
                "[prober]\nallow_cidrs = [\"10.0.0.0/33\"]",
                "prober.allow_cidrs",
            ),
            (
                "[prober]\nresolvers = [\"dns.example\"]",
                "prober.resolvers",
            ),
            (
                "[prober]\ntls_extra_ca_file = \"/nonexistent/ca.pem\"",
                "prober.tls_extra_ca_file",
            ),
            (
                "[prober]\nresolver_canary = \"bad name!\"",
                "prober.resolver_canary",
            ),
            ("[prober]\nring_prefix = \"../x\"", "prober.ring_prefix"),
            (
                "[control]\ndatabase_url = \"mysql://x\"",
                "control.database_url",
            ),
            (
                "[control]\napi_listen = \"localhost\"",
                "control.api_listen",
            ),
            (
                "[control.detection]\nveriflier_quorum = 1\nveriflier_quorum_floor = 2",
                "control.detection.veriflier_quorum_floor",
            ),
            ("[veriflier]\nmax_batch = 501", "veriflier.max_batch"),
            (
                "[veriflier]\ntls_cert_file = \"c.pem\"",
                "veriflier.tls_key_file",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(&format!("key `{key}`")), "{text} -> {e}");
        }
    }
}
