//! P8: the REST API's SLA route on a realistic history. 10,000 sites (one HTTP check each)
//! with 30 days of synthetic history in SQLite: a few incidents and false alarms per site
//! (events and transitions written through `Store::apply`, as control writes them), hourly
//! statistics for the 14 days hourly rows are kept and daily rows before that. Then the API
//! server (`jetmon_control::api::start`, as `jetmon up` runs it) is pinned to one core and
//! `GET /api/v1/sites/{id}/sla?window=30d` is measured from the other: p50/p99 over one
//! keep-alive connection, then requests/s under wrk. With `--tenants N` (default 100) the
//! sites are spread over N tenants and every request goes through a gateway key naming the
//! site's tenant (`X-Jetmon-Tenant-ID`): the tenant is resolved and every query scoped.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use jetmon_control::engine::{EventKind, Identity, Source, Transition};
use jetmon_control::keys::{Scope, new_token};
use jetmon_control::stats::{Hist, PeriodStats};
use jetmon_control::store::{Batch, KeyKind, NewKey, NewSite, Period, Store};
use jetmon_shared::check::{CheckSpec, CheckType};
use jetmon_shared::state::{Reason, Severity, State};

pub struct ApiArgs {
    pub sites: u32,
    pub days: u32,
    pub requests: u32,
    pub wrk_seconds: u32,
    pub wrk_connections: u32,
    pub dir: PathBuf,
    /// Reuse the history an earlier run of the same size left in `dir`.
    pub reuse: bool,
    /// Tenants the sites are spread over (0: none, an operator key).
    pub tenants: u32,
}

/// The tenant (id) of site `site` when sites are spread over `tenants` tenants made after
/// the default one (ids 2..=tenants+1), round robin.
fn tenant_of(site: u64, tenants: u32) -> Option<u64> {
    (tenants > 0).then(|| 2 + (site - 1) % u64::from(tenants))
}

/// A read key: a gateway key when there are tenants, else an operator key.
async fn bench_key(store: &Store, tenants: u32, now: u64) -> Result<String> {
    let token = new_token()?;
    let key = NewKey {
        name: "bench",
        scope: Scope::Read,
        expires_us: None,
        kind: if tenants > 0 {
            KeyKind::Gateway
        } else {
            KeyKind::Operator
        },
        tenant_id: None,
    };
    store.create_key(&key, &token, now).await?;
    Ok(token.token)
}

const S: u64 = 1_000_000;
const HOUR: u64 = 3600 * S;
const DAY: u64 = 86_400 * S;

use crate::stats::Rng;

/// Uniform in `0..n`.
fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next() % n.max(1)
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One period's statistics for a check: `n` results around `base_us`.
fn period(rng: &mut Rng, check: u64, period: u64, n: u32, base_us: u32) -> PeriodStats {
    let mut samples = |scale: u32| {
        Hist::from_values((0..n).map(|_| {
            let jitter = below(&mut *rng, u64::from(base_us / 2).max(1)) as u32;
            (base_us / scale).saturating_add(jitter / scale)
        }))
    };
    let hists = [samples(1), samples(20), samples(5), samples(3), samples(2)];
    let mut s = PeriodStats {
        check_id: check,
        period,
        ..PeriodStats::default()
    };
    for _ in 0..n {
        s.add(0);
    }
    s.hists = hists;
    s
}

fn transition(
    event_id: u64,
    site: u64,
    before: Option<State>,
    after: Option<State>,
    reason: Reason,
    at_us: u64,
    started_us: u64,
) -> Transition {
    let sev = |s: State| match s {
        State::Down => Severity(4),
        State::SeemsDown => Severity(3),
        _ => Severity(0),
    };
    Transition {
        event_id,
        identity: Identity {
            site_id: site,
            check_id: site,
            kind: EventKind::Availability,
        },
        before: before.map(|s| (s, sev(s))),
        after: after.map(|s| (s, sev(s))),
        reason,
        source: Source::System("bench"),
        at_us,
        started_at_us: started_us,
        detail: Vec::new(),
        votes: Vec::new(),
        note: None,
    }
}

/// Builds the history; returns the database URL and an API token.
async fn seed(a: &ApiArgs) -> Result<(String, String)> {
    std::fs::create_dir_all(&a.dir)?;
    let db = a.dir.join("api-bench.db");
    let seeded = a
        .dir
        .join(format!("seeded-{}x{}-t{}", a.sites, a.days, a.tenants));
    if a.reuse && seeded.exists() {
        // The history of an earlier run with the same size; a fresh key (tokens are not kept).
        let url = format!("sqlite:{}", db.display());
        let store = Store::open(&url, "bench").await?;
        let token = bench_key(&store, a.tenants, now_us()).await?;
        store.close().await;
        eprintln!("perf: reusing the history in {}", db.display());
        return Ok((url, token));
    }
    let _ = std::fs::remove_file(&seeded);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let url = format!("sqlite:{}", db.display());
    let store = Store::open(&url, "bench").await?;
    let began = Instant::now();
    let now = now_us();
    let start = now - u64::from(a.days) * DAY;
    for t in 0..a.tenants {
        store.create_tenant(&format!("bench-{t:03}")).await?;
    }
    // Sites (ids 1..=N), one check each (id = site id), created before the window.
    let mut made = 0;
    while made < a.sites {
        let n = (a.sites - made).min(1000);
        let batch: Vec<NewSite> = (0..n)
            .map(|k| {
                let site = u64::from(made + k + 1);
                let url = format!("http://127.0.0.1:8080/site/{site}");
                NewSite {
                    name: format!("bench {}", made + k + 1),
                    url: url.clone(),
                    tags: vec!["bench".into()],
                    checks: vec![CheckSpec::new(1, 1, CheckType::Http, &url)],
                    blog_id: Some(site),
                    tenant_id: tenant_of(site, a.tenants).unwrap_or(1),
                }
            })
            .collect();
        store.create_sites(&batch).await?;
        made += n;
    }
    // Backdate the sites so the whole window counts.
    store.backdate_sites(start - DAY).await?;
    // Events: per site 2 incidents (Seems Down → Down → cleared) and 1 false alarm.
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut next_event = 1;
    let mut batch = Batch::default();
    for site in 1..=u64::from(a.sites) {
        for kind in 0..3 {
            let t0 = start + below(&mut rng, u64::from(a.days) * DAY - DAY);
            let id = next_event;
            next_event += 1;
            batch.transitions.push(transition(
                id,
                site,
                None,
                Some(State::SeemsDown),
                Reason::Opened,
                t0,
                t0,
            ));
            if kind < 2 {
                let down = t0 + 30 * S;
                let end = down + (60 + below(&mut rng, 3600)) * S;
                batch.transitions.push(transition(
                    id,
                    site,
                    Some(State::SeemsDown),
                    Some(State::Down),
                    Reason::VerifierConfirmed,
                    down,
                    t0,
                ));
                batch.transitions.push(transition(
                    id,
                    site,
                    Some(State::Down),
                    None,
                    Reason::VerifierCleared,
                    end,
                    t0,
                ));
            } else {
                batch.transitions.push(transition(
                    id,
                    site,
                    Some(State::SeemsDown),
                    None,
                    Reason::FalseAlarm,
                    t0 + 40 * S,
                    t0,
                ));
            }
        }
        if batch.transitions.len() >= 3000 {
            store.apply(&std::mem::take(&mut batch)).await?;
        }
    }
    store.apply(&batch).await?;
    // Statistics: daily rows before the hourly retention (14 days), hourly rows after.
    let hourly_from = now - 14 * DAY;
    let mut rows = Vec::new();
    let flush = |rows: &mut Vec<PeriodStats>, p: Period| {
        let taken = std::mem::take(rows);
        let store = store.clone();
        async move { store.put_period(p, taken).await }
    };
    for day in start / DAY..hourly_from / DAY {
        for site in 1..=u64::from(a.sites) {
            rows.push(period(
                &mut rng,
                site,
                day,
                288,
                50_000 + (site % 400) as u32 * 1000,
            ));
            if rows.len() >= 5000 {
                flush(&mut rows, Period::Day).await?;
            }
        }
    }
    flush(&mut rows, Period::Day).await?;
    for hour in hourly_from / HOUR..now / HOUR {
        for site in 1..=u64::from(a.sites) {
            rows.push(period(
                &mut rng,
                site,
                hour,
                12,
                50_000 + (site % 400) as u32 * 1000,
            ));
            if rows.len() >= 5000 {
                flush(&mut rows, Period::Hour).await?;
            }
        }
    }
    flush(&mut rows, Period::Hour).await?;
    let token = bench_key(&store, a.tenants, now).await?;
    store.close().await;
    std::fs::write(&seeded, b"")?;
    eprintln!(
        "perf: seeded {} sites × {} days ({} events) in {:.0} s",
        a.sites,
        a.days,
        next_event - 1,
        began.elapsed().as_secs_f64()
    );
    Ok((url, token))
}

fn pin(cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in cpus {
            libc::CPU_SET(*cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One keep-alive GET (acting for `tenant` through the gateway key when given); returns the
/// status.
fn get(
    r: &mut BufReader<std::net::TcpStream>,
    path: &str,
    token: &str,
    tenant: Option<u64>,
) -> Result<u16> {
    let gateway = tenant.map_or(String::new(), |t| format!("X-Jetmon-Tenant-ID: {t}\r\n"));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n{gateway}\r\n"
    );
    r.get_mut().write_all(req.as_bytes())?;
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line.split_whitespace().nth(1).unwrap_or("0").parse()?;
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(status)
}

pub fn run(a: &ApiArgs) -> Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (url, token) = rt.block_on(seed(a))?;
    // The server: its threads inherit core 0; this thread then moves to core 1.
    pin(&[0]);
    let (link, _end) = jetmon_control::api::link();
    let spool = tempfile::tempdir()?;
    let vault = jetmon_control::secrets::vault(&jetmon_shared::config::ControlConfig {
        database_url: url.clone(),
        ..Default::default()
    });
    let addr = jetmon_control::api::start(jetmon_control::api::Options {
        listen: "127.0.0.1:0".into(),
        database_url: url,
        vault,
        host: "bench".into(),
        metrics: jetmon_control::metrics::Shared::default(),
        safety: Default::default(),
        delivery_safety: Default::default(),
        link,
        rate_per_minute: 1_000_000_000,
        expensive_per_minute: 10,
        // An empty spool: each request still looks for the live hour, as in production.
        spool_dir: Some(spool.path().to_owned()),
    })?;
    pin(&[1]);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let conn = std::net::TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    let mut r = BufReader::new(conn);
    let path = |rng: &mut Rng| {
        let site = 1 + below(&mut *rng, u64::from(a.sites));
        (
            format!("/api/v1/sites/{site}/sla?window=30d"),
            tenant_of(site, a.tenants),
        )
    };
    for _ in 0..200 {
        let (p, t) = path(&mut rng);
        if get(&mut r, &p, &token, t)? != 200 {
            bail!("GET {p} did not answer 200");
        }
    }
    let mut lat = hdrhistogram::Histogram::<u64>::new(3)?;
    for _ in 0..a.requests {
        let (p, tenant) = path(&mut rng);
        let t = Instant::now();
        let status = get(&mut r, &p, &token, tenant)?;
        lat.record(t.elapsed().as_micros() as u64)?;
        if status != 200 {
            bail!("GET {p}: {status}");
        }
    }
    drop(r);
    let p50 = lat.value_at_quantile(0.50) as f64 / 1000.0;
    let p99 = lat.value_at_quantile(0.99) as f64 / 1000.0;
    // Throughput: wrk on core 1, random sites.
    let script = a.dir.join("sla.lua");
    // Each request names its site's tenant (round robin, as seeded) when there are tenants.
    let tenant_header = if a.tenants > 0 {
        format!(
            ", [\"X-Jetmon-Tenant-ID\"] = tostring(2 + (site - 1) % {})",
            a.tenants
        )
    } else {
        String::new()
    };
    std::fs::write(
        &script,
        format!(
            "math.randomseed(7)\nrequest = function()\n  local site = math.random(1, {})\n  \
             return wrk.format(\"GET\", \"/api/v1/sites/\" .. site .. \"/sla?window=30d\", \
             {{[\"Authorization\"] = \"Bearer {token}\"{tenant_header}}})\nend\n",
            a.sites
        ),
    )?;
    let out = std::process::Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1"])
        .arg(format!("-c{}", a.wrk_connections))
        .arg(format!("-d{}s", a.wrk_seconds))
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{addr}/"))
        .output()
        .context("running wrk (Debian package wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("wrk printed no Requests/sec: {text}"))?;
    if text.contains("Non-2xx") {
        bail!("wrk saw errors: {text}");
    }
    let _ = std::fs::remove_file(&script);
    // Back on every core, so the record names the machine (not this thread's affinity).
    let all: Vec<usize> = (0..64).collect();
    pin(&all);
    Ok(format!(
        "sites={} tenants={} days={} requests={} p50_ms={p50:.2} p99_ms={p99:.2} \
         req_per_s={rps:.0} wrk_connections={} server_cpu=0 client_cpu=1",
        a.sites, a.tenants, a.days, a.requests, a.wrk_connections
    ))
}
