//! `jetmon check URL`: one probe through the real engine. A private `jetmon-prober` (one
//! shard, its own rings in a temporary directory) gets the check and a trigger-now, the result
//! frame is printed, the prober drains. So DNS, TLS, redirects, content checks and probe
//! safety are exactly what the fleet does — no second implementation.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jetmon_shared::check::CheckSpec;

use crate::api::Probed;
use crate::engine::Thresholds;
use jetmon_shared::config::Config;
use jetmon_shared::frames::{
    Command, FrameEncoder, KIND_CHECK_RESULT, KIND_COMMAND, decode_result,
};
use jetmon_shared::outcome::{Outcome, OutcomeClass};
use jetmon_shared::ring::{PushError, RingFile};

/// What the probe found, with the variable-length facts copied out of the frame.
#[derive(Debug, Clone)]
pub struct OneOff {
    /// The result with its note (which rule, which address, how to allow it), final URL and
    /// redirect chain, as the API's trigger-now reads them.
    pub probed: Probed,
    pub cert_issuer: Option<String>,
    pub cert_san_count: u16,
    /// The check's response-time thresholds (all 0 = none).
    pub thresholds: Thresholds,
}

/// Removes the temporary directory however we leave.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The private prober: killed and reaped however we leave (an error, our deadline, Ctrl-C).
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Why a one-off run ended without a result.
#[derive(Debug)]
pub enum Interrupted {
    /// SIGINT or SIGTERM arrived; everything started was stopped and removed.
    Signal,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted; the private prober was stopped and its files removed")
    }
}

impl std::error::Error for Interrupted {}

/// Options that go to the private prober's configuration.
#[derive(Debug, Default, Clone)]
pub struct ProberOptions {
    pub resolvers: Vec<String>,
    pub extra_ca_file: Option<PathBuf>,
    pub allow_cidrs: Vec<String>,
}

/// Runs `spec` once and returns the result.
pub fn probe(
    config: &Config,
    prober: &Path,
    spec: CheckSpec,
    opts: &ProberOptions,
) -> Result<OneOff> {
    let dir = std::env::temp_dir().join(format!("jetmon-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _cleanup = TempDir(dir.clone());
    let cfg_path = write_config(config, opts, &dir)?;
    let mut commands =
        RingFile::open_or_create(&dir.join("check-commands-0"), 65536)?.producer()?;
    let mut results = RingFile::open_or_create(&dir.join("check-results-0"), 65536)?.consumer()?;
    let mut child = spawn_private(prober, &cfg_path, &dir)?;
    let mut encoder = FrameEncoder::new();
    let mut send = |c: &Command| -> Result<()> {
        match commands.try_push(KIND_COMMAND, encoder.command(c)) {
            Ok(()) => {
                commands.flush();
                Ok(())
            }
            Err(PushError::Full) => bail!("the private prober's command ring is full"),
            Err(e) => Err(e.into()),
        }
    };
    let timeout = Duration::from_millis(u64::from(spec.timeout_ms));
    let thresholds = Thresholds {
        ttfb_warn_ms: spec.ttfb_warn_ms,
        ttfb_degrade_ms: spec.ttfb_degrade_ms,
        total_warn_ms: spec.total_warn_ms,
        total_degrade_ms: spec.total_degrade_ms,
    };
    let mut spec = spec;
    spec.check_id = 1;
    spec.site_id = 1;
    spec.interval_ms = 86_400_000; // it runs when triggered, not on a schedule
    send(&Command::Upsert(Box::new(spec)))?;
    send(&Command::TriggerNow {
        check_id: 1,
        request_id: 1,
    })?;
    let deadline = Instant::now() + timeout + Duration::from_secs(10);
    let found = loop {
        if let Some(status) = child.0.try_wait()? {
            let log = std::fs::read_to_string(dir.join("prober.log")).unwrap_or_default();
            bail!("the prober stopped ({status}): {}", log.trim());
        }
        if jetmon_shared::shutdown::requested() {
            return Err(Interrupted::Signal.into());
        }
        if Instant::now() > deadline {
            break None;
        }
        if !results.wait(Duration::from_millis(20)) {
            continue;
        }
        let mut hit = None;
        while let Some(record) = results.pop()? {
            if record.kind != KIND_CHECK_RESULT {
                continue;
            }
            if let Ok(frame) = decode_result(record.payload)
                && frame.result.request_id == 1
            {
                hit = Some(OneOff {
                    probed: Probed::from_frame(&frame),
                    cert_issuer: frame.extras.cert_issuer.map(str::to_owned),
                    cert_san_count: frame.extras.cert_san_count,
                    thresholds,
                });
            }
        }
        results.commit();
        if hit.is_some() {
            break hit;
        }
    };
    let _ = send(&Command::Drain { deadline_ms: 1000 });
    let stop = Instant::now();
    while child.0.try_wait()?.is_none() && stop.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(child); // killed if still running, reaped; then the directory goes
    found.with_context(|| {
        format!(
            "no result from the prober within {} s (the check's timeout plus 10 s); it was \
             stopped and its files removed",
            deadline_s(timeout)
        )
    })
}

/// The private prober's configuration: one shard, small rings in `dir`, the operator's
/// resolvers, allow-list and CA unless the command line overrides them.
fn write_config(config: &Config, opts: &ProberOptions, dir: &Path) -> Result<PathBuf> {
    let toml_list = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut resolvers = opts.resolvers.clone();
    if resolvers.is_empty() {
        resolvers = config.prober.resolvers.clone();
    }
    let mut allow = config.prober.allow_cidrs.clone();
    allow.extend(opts.allow_cidrs.iter().cloned());
    let ca = opts
        .extra_ca_file
        .clone()
        .or_else(|| config.prober.tls_extra_ca_file.clone());
    let mut toml = format!(
        "[prober]\nshards = 1\nring_dir = {:?}\nring_prefix = \"check\"\nresult_ring_bytes = 65536\n\
         command_ring_bytes = 65536\nio_memory_bytes = {}\nuser_agent = {:?}\nresolvers = [{}]\n\
         allow_cidrs = [{}]\nresolver_canary = {:?}\n",
        dir.display().to_string(),
        config.prober.io_memory_bytes,
        config.prober.user_agent,
        toml_list(&resolvers),
        toml_list(&allow),
        config.prober.resolver_canary,
    );
    if let Some(ca) = ca {
        toml.push_str(&format!(
            "tls_extra_ca_file = {:?}\n",
            ca.display().to_string()
        ));
    }
    let cfg_path = dir.join("prober.toml");
    std::fs::write(&cfg_path, toml)?;
    Ok(cfg_path)
}

/// Starts the private prober in its own process group (Ctrl-C and SIGTERM reach us, and we
/// stop it), with PDEATHSIG so that it stops if we die without a chance to.
fn spawn_private(prober: &Path, cfg_path: &Path, dir: &Path) -> Result<ChildGuard> {
    let log = std::fs::File::create(dir.join("prober.log"))?;
    // Ctrl-C and SIGTERM reach us, not the prober (its own process group): we stop it and
    // remove its files. If we die without a chance to, the kernel stops it (PDEATHSIG).
    jetmon_shared::shutdown::install();
    let mut process = Process::new(prober);
    process
        .arg("--config")
        .arg(cfg_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        process.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(ChildGuard(process.spawn().with_context(|| {
        format!("starting {}", prober.display())
    })?))
}

fn deadline_s(timeout: Duration) -> u64 {
    timeout.as_secs() + 10
}

/// Exit code for a result: 0 up (or advisory), 1 the check failed, 3 we could not tell.
pub fn exit_code(outcome: Outcome) -> u8 {
    match outcome.class() {
        OutcomeClass::Up | OutcomeClass::Advisory => 0,
        OutcomeClass::SiteFailure => 1,
        OutcomeClass::MonitorSide => 3,
    }
}

fn ms(us: u32) -> String {
    if us == 0 {
        "-".to_owned()
    } else {
        format!("{:.1} ms", f64::from(us) / 1000.0)
    }
}

fn tls_version(v: u16) -> &'static str {
    match v {
        0x0304 => "TLS 1.3",
        0x0303 => "TLS 1.2",
        0x0302 => "TLS 1.1",
        0x0301 => "TLS 1.0",
        _ => "-",
    }
}

/// What this one probe's timings say against the check's thresholds: `None` without
/// thresholds or on a failure, else "ok", "warning" or "degraded". The engine opens a
/// `performance` event on the median of the last 3 successes; one probe is a hint.
pub fn performance(r: &OneOff) -> Option<&'static str> {
    if r.thresholds.is_off() || r.probed.result.outcome != Outcome::Ok {
        return None;
    }
    let p = &r.probed.result.phases;
    Some(match r.thresholds.level(p.ttfb_us, p.total_us) {
        2 => "degraded",
        1 => "warning",
        _ => "ok",
    })
}

/// Human-readable lines.
pub fn render(target: &str, r: &OneOff, now_s: i64) -> String {
    let target = &jetmon_shared::check::redact_userinfo(target);
    let p = &r.probed.result.phases;
    let mut out = format!(
        "{target}\n  outcome   {} ({}){}\n",
        r.probed.result.outcome.name(),
        r.probed.result.outcome.code(),
        if r.probed.result.detail != 0 {
            format!(", detail {}", r.probed.result.detail)
        } else {
            String::new()
        }
    );
    if let Some(note) = &r.probed.note {
        out.push_str(&format!("  why       {note}\n"));
    }
    if r.probed.result.http_status != 0 {
        out.push_str(&format!(
            "  status    HTTP {}\n",
            r.probed.result.http_status
        ));
    }
    out.push_str(&format!(
        "  phases    dns {}  connect {}  tls {}  ttfb {}  total {}\n",
        ms(p.dns_us),
        ms(p.connect_us),
        ms(p.tls_us),
        ms(p.ttfb_us),
        ms(p.total_us)
    ));
    if let Some(level) = performance(r) {
        let t = &r.thresholds;
        let limit = |warn: u32, degrade: u32| match (warn, degrade) {
            (0, 0) => "-".to_owned(),
            (w, 0) => format!("warn > {w} ms"),
            (0, d) => format!("degrade > {d} ms"),
            (w, d) => format!("warn > {w} ms, degrade > {d} ms"),
        };
        out.push_str(&format!(
            "  perf      {level} (ttfb {}; total {}; the engine judges the median of 3)\n",
            limit(t.ttfb_warn_ms, t.ttfb_degrade_ms),
            limit(t.total_warn_ms, t.total_degrade_ms)
        ));
    }
    out.push_str(&format!(
        "  read      {} bytes\n",
        r.probed.result.bytes_read
    ));
    if r.probed.result.redirect_count > 0 {
        out.push_str(&format!(
            "  redirects {} → {}\n",
            r.probed.result.redirect_count,
            r.probed.final_url.as_deref().unwrap_or("?")
        ));
        for (status, url) in &r.probed.redirect_chain {
            out.push_str(&format!("            {status} → {url}\n"));
        }
    }
    if r.probed.result.cert_not_after_s != 0 {
        let days = (r.probed.result.cert_not_after_s - now_s).div_euclid(86_400);
        out.push_str(&format!(
            "  tls       {}; certificate by {:?}, {} SAN(s), expires in {days} day(s) (notAfter {})\n",
            tls_version(r.probed.result.tls_version),
            r.cert_issuer.as_deref().unwrap_or("?"),
            r.cert_san_count,
            r.probed.result.cert_not_after_s
        ));
    }
    out
}

/// One JSON object for scripts.
pub fn json(target: &str, r: &OneOff) -> String {
    let target = jetmon_shared::check::redact_userinfo(target);
    let p = &r.probed.result.phases;
    serde_json::json!({
        "target": target,
        "outcome": r.probed.result.outcome.name(),
        "outcome_code": r.probed.result.outcome.code(),
        "class": match r.probed.result.outcome.class() {
            OutcomeClass::Up => "up",
            OutcomeClass::SiteFailure => "site_failure",
            OutcomeClass::Advisory => "advisory",
            OutcomeClass::MonitorSide => "monitor_side",
        },
        "detail": r.probed.result.detail,
        "note": r.probed.note,
        "performance": performance(r),
        "redirect_chain": r.probed.redirect_chain.iter()
            .map(|(status, url)| serde_json::json!({"status": status, "url": url}))
            .collect::<Vec<_>>(),
        "http_status": r.probed.result.http_status,
        "phases_us": {
            "dns": p.dns_us, "connect": p.connect_us, "tls": p.tls_us,
            "ttfb": p.ttfb_us, "total": p.total_us,
        },
        "bytes_read": r.probed.result.bytes_read,
        "redirect_count": r.probed.result.redirect_count,
        "final_url": r.probed.final_url,
        "tls_version": (r.probed.result.tls_version != 0).then(|| tls_version(r.probed.result.tls_version)),
        "cert_not_after": (r.probed.result.cert_not_after_s != 0).then_some(r.probed.result.cert_not_after_s),
        "cert_issuer": r.cert_issuer,
        "cert_san_count": r.cert_san_count,
    })
    .to_string()
}
