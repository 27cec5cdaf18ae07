//! P1: plain HTTP, a new connection per check, the prober pinned to one core and nginx on the
//! other, against `wrk -t1 -c256 -H 'Connection: close'` pinned to the same core, in one run
//! (wrk, prober, wrk — the wrk figure is the mean of the two, to cancel drift).
//!
//! With `tls` (P2) both sides speak HTTPS with a full handshake per request: the prober to
//! `https://site-N.fleet.test:PORT/` (verifying the fleet CA's chain, names from the fleet's
//! DNS, cached), wrk to the first site's address (it verifies nothing). nginx has session
//! caches and tickets off, so nobody resumes.

use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jetmon_shared::check::{CheckSpec, CheckType};
use jetmon_shared::outcome::Outcome;

use crate::prober::ProberUnderTest;

pub struct HttpArgs {
    pub duration: Duration,
    pub warmup: Duration,
    pub checks: u32,
    pub sites: u32,
    pub port: u16,
    pub cpu: usize,
    pub wrk_connections: u32,
    /// HTTPS on this port instead of plain HTTP.
    pub tls: Option<u16>,
}

struct WrkRun {
    per_s: f64,
    user: Duration,
    sys: Duration,
    requests: f64,
}

pub fn run(args: &HttpArgs, prober_bin: &Path) -> Result<String> {
    let wrk1 = wrk(args)?;
    eprintln!("wrk: {:.0} req/s", wrk1.per_s);
    let prober = prober_run(args, prober_bin)?;
    eprintln!("prober: {:.0} checks/s", prober.per_s);
    let wrk2 = wrk(args)?;
    eprintln!("wrk: {:.0} req/s", wrk2.per_s);
    let wrk_per_s = (wrk1.per_s + wrk2.per_s) / 2.0;
    let wrk_requests = wrk1.requests + wrk2.requests;
    let us = |d: Duration, n: f64| d.as_secs_f64() * 1e6 / n.max(1.0);
    Ok(format!(
        "RESULT scenario={} checks_per_s={:.0} wrk_per_s={wrk_per_s:.0} ratio={:.3} user_us_per_check={:.2} \
         sys_us_per_check={:.2} wrk_user_us_per_req={:.2} wrk_sys_us_per_req={:.2} errors={} checks={} \
         duration_s={} cpu={}",
        if args.tls.is_some() { "tls" } else { "http" },
        prober.per_s,
        prober.per_s / wrk_per_s,
        us(prober.user, prober.requests),
        us(prober.sys, prober.requests),
        us(wrk1.user + wrk2.user, wrk_requests),
        us(wrk1.sys + wrk2.sys, wrk_requests),
        prober.errors,
        args.checks,
        args.duration.as_secs(),
        args.cpu,
    ))
}

pub struct ProberRun {
    pub per_s: f64,
    pub user: Duration,
    pub sys: Duration,
    pub requests: f64,
    pub errors: u64,
}

pub fn prober_run(args: &HttpArgs, prober_bin: &Path) -> Result<ProberRun> {
    let mut p = ProberUnderTest::start(prober_bin, args.cpu, 64 << 20)?;
    let mut ignore = |_: &jetmon_shared::frames::ProbeResult| {};
    // Offered load above capacity: every check every second. Each check is at most once in
    // the ready queue, so the backlog is bounded by the number of checks.
    for id in 1..=u64::from(args.checks) {
        let site = (id % u64::from(args.sites)) as u32 + 1;
        let url = match args.tls {
            Some(port) => format!("https://site-{site}.fleet.test:{port}/?c={id}"),
            None => format!("http://{}:{}/?c={id}", crate::fleet_addr(site), args.port),
        };
        let mut spec = CheckSpec::new(id, id, CheckType::Http, &url);
        spec.interval_ms = 1_000;
        spec.timeout_ms = 5_000;
        p.upsert(spec, &mut ignore)?;
    }
    p.flush();
    p.pump(args.warmup, &mut ignore)?;
    let (u0, s0) = p.cpu()?;
    let (mut done, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    p.pump(args.duration, &mut |r| {
        done += 1;
        if r.outcome != Outcome::Ok {
            errors += 1;
        }
    })?;
    let elapsed = start.elapsed();
    let (u1, s1) = p.cpu()?;
    if done == 0 {
        bail!("no check completed: {}", p.log());
    }
    Ok(ProberRun {
        per_s: done as f64 / elapsed.as_secs_f64(),
        user: u1 - u0,
        sys: s1 - s0,
        requests: done as f64,
        errors,
    })
}

fn wrk(args: &HttpArgs) -> Result<WrkRun> {
    let url = match args.tls {
        Some(port) => format!("https://{}:{port}/", crate::fleet_addr(1)),
        None => format!("http://{}:{}/", crate::fleet_addr(1), args.port),
    };
    let mut child = Process::new("taskset")
        .args(["-c", &args.cpu.to_string(), "wrk", "-t1"])
        .arg(format!("-c{}", args.wrk_connections))
        .arg(format!("-d{}s", args.duration.as_secs()))
        .args(["-H", "Connection: close", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running wrk (Debian package wrk) under taskset")?;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        stdout.read_to_string(&mut out)?;
    }
    // wait4 gives the child's own CPU times.
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting on our own child with valid out-pointers.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let tv =
        |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    let field = |name: &str| -> Option<f64> {
        out.lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    let per_s =
        field("Requests/sec:").with_context(|| format!("could not read wrk's output:\n{out}"))?;
    let requests = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(per_s * args.duration.as_secs_f64());
    if out.contains("Non-2xx") || out.contains("Socket errors") {
        eprintln!("wrk reported errors:\n{out}");
    }
    Ok(WrkRun {
        per_s,
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
        requests,
    })
}
