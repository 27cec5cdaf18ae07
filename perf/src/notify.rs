//! P10, a hosting provider's outage: `jetmon up` (SQLite) with N sites on one local target
//! that turns to HTTP 500 for all of them at once, and 3 webhooks subscribed to everything —
//! two healthy receivers and one that holds every request past Jetmon's 30 s limit. Latency
//! is from the outbox row's enqueue (written in the transaction of its transition, so the
//! instant it became durable, to the batch's few ms) to the healthy receiver's receipt.
//! `lost` counts healthy rows finished without the receiver having them, `pending_at_end`
//! those still waiting in the outbox when the run gave up (durable, sent later);
//! `duplicates` receipts beyond the first of an id (a re-send carries the same id and body).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use jetmon_control::store::NewWebhook;
use jetmon_shared::check::{CheckSpec, CheckType};
use jetmon_shared::config::ControlConfig;

pub struct NotifyArgs {
    pub sites: u32,
    pub interval_s: u32,
    pub dir: PathBuf,
    pub timeout: Duration,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The sites' server: 200 until `down`, then 500, one request per connection.
fn target(down: Arc<AtomicBool>) -> Result<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?.to_string();
    let l = Arc::new(l);
    for _ in 0..4 {
        let (l, down) = (l.clone(), down.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut s = s;
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 2048];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 8192 {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let status = if down.load(Ordering::Relaxed) {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )
                    .as_bytes(),
                );
            }
        });
    }
    Ok(addr)
}

type Receipts = Arc<Mutex<Vec<(String, String, u64)>>>;

/// The receivers: `/ok/NAME` answers 204 at once, `/hang/NAME` holds the request 45 s.
/// Keep-alive, a thread per connection (the deliverer keeps a handful).
fn receiver(receipts: Receipts) -> Result<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?.to_string();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let receipts = receipts.clone();
            std::thread::spawn(move || serve(s, &receipts));
        }
    });
    Ok(addr)
}

fn serve(s: TcpStream, receipts: &Receipts) {
    let _ = s.set_nodelay(true);
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let (mut length, mut id) = (0usize, String::new());
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "webhook-id" => id = v.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let at = now_us();
        if let Ok(mut list) = receipts.lock() {
            list.push((path.clone(), id, at));
        }
        if path.starts_with("/hang/") {
            std::thread::sleep(Duration::from_secs(45));
        }
        if w.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

pub fn run(args: &NotifyArgs, jetmon: &Path, prober: &Path) -> Result<String> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let down = Arc::new(AtomicBool::new(false));
    let target = target(down.clone())?;
    let receipts: Receipts = Arc::default();
    let hooks = receiver(receipts.clone())?;
    let db = args.dir.join("jetmon.db");
    let url = format!("sqlite:{}", db.display());
    let cfg = args.dir.join("jetmon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[prober]\nshards = 1\nring_dir = {:?}\nring_prefix = \"notify\"\nallow_cidrs = [\"127.0.0.0/8\"]\n\
             [control]\napi_listen = \"127.0.0.1:0\"\nprober_binary = {:?}\ndatabase_url = {url:?}\n\
             delivery_allow_cidrs = [\"127.0.0.0/8\"]\n",
            args.dir.display().to_string(),
            prober.display().to_string(),
        ),
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let control = ControlConfig {
        database_url: url.clone(),
        ..ControlConfig::default()
    };
    let subs = rt.block_on(async {
        let store = jetmon_control::secrets::open_store(&control, "bench").await?;
        let mut batch = Vec::with_capacity(1000);
        for k in 0..args.sites {
            let t = format!("http://{target}/?s={k}");
            let mut spec = CheckSpec::new(1, 1, CheckType::Http, &t);
            spec.interval_ms = args.interval_s * 1000;
            spec.timeout_ms = 2_000;
            spec.retries = 1;
            spec.retry_spacing_ms = 1_000;
            batch.push((t, spec));
            if batch.len() == 1000 {
                store.add_sites_with_checks(&batch).await?;
                batch.clear();
            }
        }
        store.add_sites_with_checks(&batch).await?;
        let mut ids = Vec::new();
        for path in ["/ok/a", "/ok/b", "/hang/h"] {
            let secret = jetmon_outbox_secret()?;
            ids.push(
                store
                    .create_webhook(&NewWebhook {
                        tenant_id: 1,
                        url: format!("http://{hooks}{path}"),
                        description: path.to_owned(),
                        event_types: vec![],
                        site_ids: vec![],
                        states: vec![],
                        secret,
                        max_in_flight: 4,
                        retry_ladder_s: vec![],
                    })
                    .await?,
            );
        }
        store.close().await;
        anyhow::Ok(ids)
    })?;
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
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("metrics on http://") {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("jetmon up did not start:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every site checked (and Up) at least once before the outage.
    std::thread::sleep(Duration::from_secs(u64::from(args.interval_s) + 5));
    let pre = receipts.lock().map(|r| r.len()).unwrap_or(0);
    eprintln!(
        "notify: {} sites up, {pre} notices before the outage; the target goes down",
        args.sites
    );
    let flipped = now_us();
    down.store(true, Ordering::Relaxed);
    let store = rt.block_on(jetmon_control::secrets::open_store(&control, "bench"))?;
    let deadline = Instant::now() + args.timeout;
    let healthy = [subs[0], subs[1]];
    // Progress by counting (the full rows are read once, at the end: reading 80,000 rows
    // every two seconds took a good part of a core from the system under test).
    let (mut last_rows, mut stable) = (0u64, 0);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let (mut total, mut pending, mut down_sites) = (0, 0, 0);
        for s in healthy {
            let (t, p, d) =
                rt.block_on(store.delivery_progress(1, s, jetmon_shared::state::State::Down))?;
            (total, pending, down_sites) = (total + t, pending + p, d);
        }
        eprintln!(
            "notify: {:>4.0} s: {down_sites} sites down, {total} healthy rows, {pending} pending, {} receipts",
            (now_us() - flipped) as f64 / 1e6,
            receipts.lock().map(|r| r.len()).unwrap_or(0)
        );
        stable = if pending == 0 && total == last_rows && down_sites == u64::from(args.sites) {
            stable + 1
        } else {
            0
        };
        last_rows = total;
        if stable >= 2 || Instant::now() > deadline {
            break;
        }
    }
    let mut rows = Vec::new();
    for s in healthy {
        rows.extend(rt.block_on(store.delivery_times(1, s))?);
    }
    let got = receipts.lock().map(|r| r.clone()).unwrap_or_default();
    drop(up);
    let enqueued: HashMap<&str, u64> = rows
        .iter()
        .filter(|r| r.1 >= flipped)
        .map(|r| (r.0.as_str(), r.1))
        .collect();
    // Still waiting in the outbox when the run ended (not lost: durable, and sent later).
    let pending_at_end = rows.iter().filter(|r| r.1 >= flipped && r.2 == 0).count();
    let pending_ids: std::collections::HashSet<&str> = rows
        .iter()
        .filter(|r| r.2 == 0)
        .map(|r| r.0.as_str())
        .collect();
    let mut first: HashMap<&str, u64> = HashMap::new();
    let mut duplicates = 0u64;
    for (path, id, at) in &got {
        if !path.starts_with("/ok/") {
            continue;
        }
        if first.insert(id.as_str(), *at).is_some() {
            duplicates += 1;
        }
    }
    let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
    let (mut lo, mut hi) = (u64::MAX, 0);
    let mut lost = 0u64;
    for (id, enq) in &enqueued {
        match first.get(id) {
            Some(at) => {
                h.record(at.saturating_sub(*enq).max(1))?;
                lo = lo.min(*enq);
                hi = hi.max(*at);
            }
            // Lost: finished (delivered or abandoned) without the receiver having it.
            None if !pending_ids.contains(id) => lost += 1,
            None => {}
        }
    }
    let delivered = h.len();
    let span_s = (hi.saturating_sub(lo)) as f64 / 1e6;
    let hang_attempts = got.iter().filter(|g| g.0.starts_with("/hang/")).count();
    Ok(format!(
        "RESULT scenario=notify sites={} webhooks=3 hanging=1 interval_s={} healthy_rows={} \
         delivered={delivered} deliveries_per_s={:.0} latency_p50_ms={:.1} latency_p99_ms={:.1} \
         latency_max_ms={:.1} lost={lost} duplicates={duplicates} pending_at_end={pending_at_end} \
         hanging_attempts={hang_attempts}",
        args.sites,
        args.interval_s,
        enqueued.len(),
        if span_s > 0.0 {
            delivered as f64 / span_s
        } else {
            0.0
        },
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
    ))
}

fn jetmon_outbox_secret() -> Result<String> {
    jetmon_outbox::sign::new_secret().context("no randomness")
}
