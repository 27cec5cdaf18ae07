//! P5: detection, end to end — the whole product (`jetmon up`: prober, ingest, engine,
//! SQLite) watching N fleet sites at a 30 s interval; a set of them is flipped to HTTP 500 at
//! once, then back. Measured from the store, as a user would see it: when each flipped site
//! became Seems Down and Down, when it recovered, and whether any other site went Down.
//! Confirmation by 2 local re-checks 10 s apart, then — with `--verifliers N` — by N real
//! `jetmon-veriflier` processes on loopback (quorum 2).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jetmon_control::store::Store;
use jetmon_shared::check::{CheckSpec, CheckType};
use jetmon_shared::state::State;

pub struct DetectionArgs {
    pub sites: u32,
    pub flipped: u32,
    pub interval_s: u32,
    pub port: u16,
    pub fleet_script: PathBuf,
    pub dir: PathBuf,
    /// Verifliers started on loopback and configured in control (0 = local confirmation).
    pub verifliers: u32,
}

fn p95(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * 0.95).ceil() as usize).clamp(1, v.len()) - 1]
}

fn set(args: &DetectionArgs, site: u32, mode: &str) -> Result<()> {
    let status = Command::new(&args.fleet_script)
        .args([
            "set",
            &format!("{}:{}", crate::fleet_addr(site), args.port),
            mode,
        ])
        .status()?;
    if !status.success() {
        bail!("perf/fleet set failed");
    }
    Ok(())
}

/// Starts a veriflier on loopback; returns it and its address.
fn veriflier(
    dir: &Path,
    k: u32,
    bin: &Path,
) -> Result<(jetmon_veriflier::launch::Launched, String)> {
    let token = dir.join("veriflier.token");
    std::fs::write(&token, "detection-bench-token-0123456789")?;
    let cfg = dir.join(format!("veriflier-{k}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[prober]\nallow_cidrs = [\"127.0.0.0/8\"]\n[veriflier]\nname = \"v{k}\"\n\
             listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ntoken_file = {:?}\n",
            token.display().to_string()
        ),
    )?;
    let v = jetmon_veriflier::launch::launch(
        Command::new(bin).arg("--config").arg(&cfg),
        false,
        Duration::from_secs(20),
    )?;
    let addr = v.addr.clone();
    Ok((v, addr))
}

pub fn run(args: &DetectionArgs, jetmon: &Path, prober: &Path) -> Result<String> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let db = args.dir.join("jetmon.db");
    let cfg = args.dir.join("jetmon.toml");
    let mut verifliers = Vec::new();
    let mut peers = String::new();
    for k in 1..=args.verifliers {
        let (child, addr) = veriflier(&args.dir, k, &jetmon.with_file_name("jetmon-veriflier"))?;
        verifliers.push(child);
        peers.push_str(&format!(
            "[[control.verifliers]]\nname = \"v{k}\"\nurl = \"http://{addr}\"\ntoken_file = {:?}\n",
            args.dir.join("veriflier.token").display().to_string()
        ));
    }
    std::fs::write(
        &cfg,
        format!(
            "[prober]\nshards = 1\nring_dir = {:?}\nring_prefix = \"detect\"\nallow_cidrs = [\"127.0.0.0/8\"]\n\
             [control]\napi_listen = \"127.0.0.1:0\"\nprober_binary = {:?}\ndatabase_url = \"sqlite:{}\"\n{peers}",
            args.dir.display().to_string(),
            prober.display().to_string(),
            db.display()
        ),
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("sqlite:{}", db.display());
    let store = rt.block_on(Store::open(&url, "bench"))?;
    let mut site_of = Vec::new(); // fleet site number -> site id
    rt.block_on(async {
        for n in 1..=args.sites {
            let target = format!("http://{}:{}/", crate::fleet_addr(n), args.port);
            let id = store.add_site(&target).await?;
            let mut spec = CheckSpec::new(0, 0, CheckType::Http, &target);
            spec.interval_ms = args.interval_s * 1000;
            spec.timeout_ms = 5_000;
            spec.retries = 2;
            spec.retry_spacing_ms = 10_000;
            store.add_check(id, &spec, true).await?;
            site_of.push(id);
        }
        anyhow::Ok(())
    })?;
    let log = std::fs::File::create(args.dir.join("up.log"))?;
    let _up = crate::Terminate(
        Command::new(jetmon)
            .arg("--config")
            .arg(&cfg)
            .arg("up")
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", jetmon.display()))?,
    );
    // Every check runs at least once, all Up.
    std::thread::sleep(Duration::from_secs(u64::from(args.interval_s) + 10));
    let every = (args.sites / args.flipped.max(1)).max(1);
    let flipped: Vec<u32> = (1..=args.sites)
        .filter(|n| n % every == 0)
        .take(args.flipped as usize)
        .collect();
    for n in &flipped {
        set(args, *n, "500")?;
    }
    std::thread::sleep(Duration::from_millis(1_100)); // nginx sees the mode files
    let flip_at = Instant::now();
    let (mut to_seems, mut to_down) = (vec![None; flipped.len()], vec![None; flipped.len()]);
    let limit = Duration::from_secs(u64::from(args.interval_s) * 2 + 60);
    while flip_at.elapsed() < limit && to_down.iter().any(Option::is_none) {
        let sites = rt.block_on(store.sites())?;
        for (i, n) in flipped.iter().enumerate() {
            let id = site_of[(*n - 1) as usize];
            if let Some(s) = sites.iter().find(|s| s.id == id) {
                if to_seems[i].is_none() && matches!(s.state, State::SeemsDown | State::Down) {
                    to_seems[i] = Some(flip_at.elapsed().as_secs_f64());
                }
                if to_down[i].is_none() && s.state == State::Down {
                    to_down[i] = Some(flip_at.elapsed().as_secs_f64());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for n in &flipped {
        set(args, *n, "up")?;
    }
    std::thread::sleep(Duration::from_millis(1_100));
    let back_at = Instant::now();
    let mut recovered = vec![None; flipped.len()];
    while back_at.elapsed() < limit && recovered.iter().any(Option::is_none) {
        let sites = rt.block_on(store.sites())?;
        for (i, n) in flipped.iter().enumerate() {
            let id = site_of[(*n - 1) as usize];
            if recovered[i].is_none() && sites.iter().any(|s| s.id == id && s.state == State::Up) {
                recovered[i] = Some(back_at.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // False downs: a site never flipped that reached Down at any point.
    let flipped_ids: Vec<u64> = flipped.iter().map(|n| site_of[(*n - 1) as usize]).collect();
    let events = rt.block_on(store.events())?;
    let false_downs = events
        .iter()
        .filter(|e| !flipped_ids.contains(&e.site_id) && e.state == State::Down)
        .count();
    rt.block_on(store.close());
    let detected = to_down.iter().filter(|t| t.is_some()).count();
    let mut seems: Vec<f64> = to_seems.iter().flatten().copied().collect();
    let mut down: Vec<f64> = to_down.iter().flatten().copied().collect();
    let mut rec: Vec<f64> = recovered.iter().flatten().copied().collect();
    Ok(format!(
        "RESULT scenario=detection sites={} flipped={} detected={detected} false_downs={false_downs} \
         flip_to_seems_down_p95_s={:.1} flip_to_down_p95_s={:.1} recovery_p95_s={:.1} recovered={} \
         interval_s={} retries=2 retry_spacing_s=10 verifliers={}",
        args.sites,
        flipped.len(),
        p95(&mut seems),
        p95(&mut down),
        p95(&mut rec),
        rec.len(),
        args.interval_s,
        args.verifliers,
    ))
}
