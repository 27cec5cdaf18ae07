//! The whole product at density: `jetmon up` (control + prober + SQLite) with N checks spread
//! over the fleet's sites at a 300 s interval, for a window; then the memory of both processes
//! (RSS, private, shared ring pages) and what `/metrics` says about missed checks and
//! lateness. The budget is the sum of the two RSS; the shared ring pages count in
//! both, so the distinct memory is printed too.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jetmon_control::store::Store;
use jetmon_shared::check::{CheckSpec, CheckType};

pub struct ProductArgs {
    pub checks: u32,
    pub sites: u32,
    pub interval_s: u32,
    pub duration: Duration,
    pub port: u16,
    pub dir: PathBuf,
}

/// (RSS, private, mapped-file-or-shm) in MB from /proc/PID/status: what is not anonymous is
/// the ring mappings (tmpfs or a file) and the binary's pages.
fn memory(pid: u32) -> (f64, f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    let (rss, anon) = (kb("VmRSS:"), kb("RssAnon:"));
    (rss, anon, rss - anon)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn get(addr: &str, path: &str) -> Result<String> {
    let mut c = std::net::TcpStream::connect(addr)?;
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())?;
    let mut s = String::new();
    c.read_to_string(&mut s)?;
    Ok(s)
}

pub fn run(args: &ProductArgs, jetmon: &Path, prober: &Path) -> Result<String> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let db = args.dir.join("jetmon.db");
    let cfg = args.dir.join("jetmon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[prober]\nshards = 1\nring_dir = {:?}\nring_prefix = \"product\"\nallow_cidrs = [\"127.0.0.0/8\"]\n\
             [control]\napi_listen = \"127.0.0.1:0\"\nprober_binary = {:?}\ndatabase_url = \"sqlite:{}\"\n",
            args.dir.display().to_string(),
            prober.display().to_string(),
            db.display()
        ),
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("sqlite:{}", db.display());
    let loaded = Instant::now();
    rt.block_on(async {
        let store = Store::open(&url, "bench").await?;
        let mut batch = Vec::with_capacity(1000);
        for k in 0..args.checks {
            let n = k % args.sites + 1;
            let target = format!("http://{}:{}/?c={k}", crate::fleet_addr(n), args.port);
            let mut spec = CheckSpec::new(1, 1, CheckType::Http, &target);
            spec.interval_ms = args.interval_s * 1000;
            batch.push((target, spec));
            if batch.len() == 1000 {
                store.add_sites_with_checks(&batch).await?;
                batch.clear();
            }
        }
        store.add_sites_with_checks(&batch).await?;
        store.close().await;
        anyhow::Ok(())
    })?;
    eprintln!(
        "product: {} checks stored in {:.0?}",
        args.checks,
        loaded.elapsed()
    );
    let log_path = args.dir.join("up.log");
    let up = crate::Terminate(
        Command::new(jetmon)
            .arg("--config")
            .arg(&cfg)
            .arg("up")
            .stderr(Stdio::from(std::fs::File::create(&log_path)?))
            .spawn()
            .with_context(|| format!("starting {}", jetmon.display()))?,
    );
    let started = Instant::now();
    let addr = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("metrics on http://")) {
            break line
                .split("http://")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .unwrap_or_default()
                .to_owned();
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("jetmon up did not start:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(args.duration);
    let control_pid = up.0.id();
    let children =
        std::fs::read_to_string(format!("/proc/{control_pid}/task/{control_pid}/children"))
            .unwrap_or_default();
    let prober_pid: u32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .context("no prober child")?;
    let (c_rss, c_private, c_shared) = memory(control_pid);
    let (p_rss, p_private, p_shared) = memory(prober_pid);
    let metrics = get(&addr, "/metrics")?;
    let missed = metric(&metrics, "jetmon_checks_missed_total");
    let p99 = metric(&metrics, "jetmon_check_start_lateness_p99_seconds{") * 1000.0;
    let frames = metric(&metrics, "jetmon_frames_ingested_total ");
    let transitions = metric(&metrics, "jetmon_transitions_total ");
    let spooled = metric(&metrics, "jetmon_stats_spooled_total ");
    drop(up);
    Ok(format!(
        "RESULT scenario=product checks={} sites={} interval_s={} duration_s={} rss_sum_mb={:.1} \
         distinct_mb={:.1} control_rss_mb={c_rss:.1} control_private_mb={c_private:.1} \
         prober_rss_mb={p_rss:.1} prober_private_mb={p_private:.1} mapped_mb={:.1} missed={missed} \
         lateness_p99_ms={p99:.2} frames_ingested={frames} transitions={transitions} \
         stats_spooled={spooled}",
        args.checks,
        args.sites,
        args.interval_s,
        args.duration.as_secs(),
        c_rss + p_rss,
        c_private + p_private + c_shared.max(p_shared),
        c_shared.max(p_shared),
    ))
}
