//! `perf/bench veriflier`: how many checks one veriflier sustains on one core, against the
//! prober on the same core and fleet, in one run (prober, veriflier, prober — the prober
//! figure is the mean of the two, to cancel drift). The veriflier process is pinned with
//! `taskset`; a client in this process keeps `concurrency` batches of `batch` checks in flight
//! over gRPC (plain HTTP/2 on loopback) and counts the results streamed back.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use jetmon_shared::check::{CheckSpec, CheckType};
use jetmon_shared::frames::{Command as Frame, FrameEncoder};
use jetmon_veriflier::pb;
use jetmon_veriflier::pb::veriflier_client::VeriflierClient;

use crate::http::HttpArgs;

const TOKEN: &str = "veriflier-bench-token-0123456789";

pub struct VeriflierArgs {
    pub http: HttpArgs,
    pub batch: u32,
    pub concurrency: u32,
}

struct Run {
    per_s: f64,
    user_us: f64,
    errors: u64,
}

pub fn run(args: &VeriflierArgs, prober_bin: &Path, veriflier_bin: &Path) -> Result<String> {
    let p1 = crate::http::prober_run(&args.http, prober_bin)?;
    eprintln!("prober: {:.0} checks/s", p1.per_s);
    let v = veriflier_run(args, veriflier_bin)?;
    eprintln!("veriflier: {:.0} checks/s", v.per_s);
    let p2 = crate::http::prober_run(&args.http, prober_bin)?;
    eprintln!("prober: {:.0} checks/s", p2.per_s);
    let prober = (p1.per_s + p2.per_s) / 2.0;
    let prober_user =
        (p1.user.as_secs_f64() + p2.user.as_secs_f64()) * 1e6 / (p1.requests + p2.requests);
    Ok(format!(
        "RESULT scenario=veriflier checks_per_s={:.0} prober_checks_per_s={prober:.0} ratio={:.3} \
         user_us_per_check={:.2} prober_user_us_per_check={prober_user:.2} errors={} batch={} \
         concurrency={} duration_s={} cpu={}",
        v.per_s,
        v.per_s / prober,
        v.user_us,
        v.errors,
        args.batch,
        args.concurrency,
        args.http.duration.as_secs(),
        args.http.cpu,
    ))
}

fn veriflier_run(args: &VeriflierArgs, bin: &Path) -> Result<Run> {
    let dir = std::env::temp_dir().join(format!("jetmon-perf-veriflier-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let token = dir.join("token");
    std::fs::write(&token, TOKEN)?;
    let cfg = dir.join("veriflier.toml");
    std::fs::write(
        &cfg,
        format!(
            "[prober]\nallow_cidrs = [\"127.0.0.0/8\"]\n[veriflier]\nlisten = \"127.0.0.1:0\"\n\
             metrics_listen = \"\"\ntoken_file = {:?}\nmax_in_flight = 100000\n",
            token.display().to_string()
        ),
    )?;
    let v = jetmon_veriflier::launch::launch(
        Command::new("taskset")
            .args(["-c", &args.http.cpu.to_string()])
            .arg(bin)
            .arg("--config")
            .arg(&cfg),
        false,
        Duration::from_secs(20),
    )?;
    let result = client(args, &v.addr, v.child.id());
    drop(v);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn client(args: &VeriflierArgs, addr: &str, pid: u32) -> Result<Run> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let mut enc = FrameEncoder::new();
        let h = &args.http;
        let items: Vec<pb::CheckItem> = (1..=u64::from(h.checks))
            .map(|id| {
                let site = (id % u64::from(h.sites)) as u32 + 1;
                let url = format!("http://{}:{}/?c={id}", crate::fleet_addr(site), h.port);
                let mut spec = CheckSpec::new(id, id, CheckType::Http, &url);
                spec.timeout_ms = 5_000;
                pb::CheckItem {
                    spec_frame: enc.command(&Frame::Upsert(Box::new(spec))).to_vec(),
                }
            })
            .collect();
        let items = Arc::new(items);
        let (done, errors, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let mut tasks = Vec::new();
        for k in 0..args.concurrency {
            let (items, done, errors, stop) =
                (items.clone(), done.clone(), errors.clone(), stop.clone());
            let mut client = VeriflierClient::new(channel.clone());
            let batch = args.batch as usize;
            tasks.push(tokio::spawn(async move {
                let mut at = (k as usize * batch) % items.len();
                while !stop.load(Ordering::Relaxed) {
                    let chunk: Vec<pb::CheckItem> = (0..batch)
                        .map(|i| items[(at + i) % items.len()].clone())
                        .collect();
                    at = (at + batch) % items.len();
                    let mut req = tonic::Request::new(pb::CheckRequest { checks: chunk });
                    if let Ok(v) = format!("Bearer {TOKEN}").parse() {
                        req.metadata_mut().insert("authorization", v);
                    }
                    let Ok(resp) = client.check(req).await else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let mut stream = resp.into_inner();
                    while let Ok(Some(r)) = stream.message().await {
                        done.fetch_add(1, Ordering::Relaxed);
                        if r.outcome != 0 {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(h.warmup).await;
        let (d0, (u0, _)) = (
            done.load(Ordering::Relaxed),
            crate::prober::process_cpu(pid)?,
        );
        let start = Instant::now();
        tokio::time::sleep(h.duration).await;
        let elapsed = start.elapsed();
        let (d1, (u1, _)) = (
            done.load(Ordering::Relaxed),
            crate::prober::process_cpu(pid)?,
        );
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.abort();
        }
        let n = d1 - d0;
        if n == 0 {
            bail!("the veriflier completed no check");
        }
        Ok(Run {
            per_s: n as f64 / elapsed.as_secs_f64(),
            user_us: (u1 - u0).as_secs_f64() * 1e6 / n as f64,
            errors: errors.load(Ordering::Relaxed),
        })
    })
}
