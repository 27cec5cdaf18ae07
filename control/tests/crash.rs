//! `kill -9` of control during a storm of flips, then restarts: every transition is stored
//! exactly once. The prober keeps running (each new control adopts it); results wait in the
//! ring; each control resumes from the durable position. Checked on the stored log itself:
//! every event's transitions form one unbroken chain (opened once, each `before` equal to the
//! previous `after`, nothing after the close), which a lost or a repeated transition breaks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::http_get;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jetmon_control::store::Store;
use jetmon_shared::check::{CheckSpec, CheckType};
use jetmon_shared::state::State;

const BIN: &str = env!("CARGO_BIN_EXE_jetmon");
const CHECKS: u64 = 40;

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(cfg: &Path, log: &Path) -> KillOnDrop {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    KillOnDrop(
        Command::new(BIN)
            .arg("--config")
            .arg(cfg)
            .args(["up", "--demo", "--duration", "120"])
            .env("JETMON_DEMO_FLAP_CYCLE_S", "4")
            .env("JETMON_DEMO_INTERVAL_S", "1")
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    )
}

/// SIGTERM, then waits (bounded) for a graceful exit.
fn terminate(up: &mut KillOnDrop) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(up.0.id() as i32, libc::SIGTERM) };
    let stop = Instant::now();
    while up.0.try_wait().unwrap().is_none() {
        assert!(
            stop.elapsed() < Duration::from_secs(15),
            "jetmon up did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The demo fleet has one fixed address: the two backends take turns.
static DEMO_PORT: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn kill_9_of_control_during_a_storm_loses_and_repeats_no_transition_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("jetmon.db").display());
    storm(dir.path(), &url);
}

#[test]
fn kill_9_of_control_during_a_storm_loses_and_repeats_no_transition_postgres() {
    let url = common::pg_database("crash");
    let dir = tempfile::tempdir().unwrap();
    storm(dir.path(), &url);
}

/// Writes the configuration and the storm's checks; returns the configuration file.
fn prepare(dir: &Path, url: &str) -> std::path::PathBuf {
    let prober = Path::new(BIN).with_file_name("jetmon-prober");
    let cfg = dir.join("jetmon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[prober]\nshards = 1\nring_dir = {:?}\nring_prefix = \"crash\"\nresult_ring_bytes = 1048576\n\
             command_ring_bytes = 262144\n[control]\napi_listen = \"127.0.0.1:0\"\nprober_binary = {:?}\ndatabase_url = {:?}\n\
             stats_spool_dir = {:?}\nsecret_key_file = {:?}\n",
            dir,
            prober,
            url,
            dir.join("spool"),
            dir.join("secrets.key"),
        ),
    )
    .unwrap();
    // The vault's key (PostgreSQL has no default): the demo webhook's secret is sealed with it.
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("secrets.key");
        std::fs::write(&key, "k1 MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = url.to_owned();
    // A storm: 40 checks on the flapping demo site (down 2 s of every 4), every second, one
    // quick re-check: each opens and closes events all the time.
    rt.block_on(async {
        let store = Store::open(&url, "test").await.unwrap();
        for k in 0..CHECKS {
            let site = store.add_site(&format!("storm {k}")).await.unwrap();
            let mut spec = CheckSpec::new(
                0,
                0,
                CheckType::Http,
                &format!("http://127.0.0.1:18090/flap?k={k}"),
            );
            spec.interval_ms = 1_000;
            spec.timeout_ms = 900;
            spec.retries = 1;
            spec.retry_spacing_ms = 300;
            store.add_check(site, &spec, true).await.unwrap();
        }
        store.close().await;
    });
    cfg
}

fn storm(dir: &Path, url: &str) {
    let _turn = DEMO_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = prepare(dir, url);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log = dir.join("up.log");
    let mut up = start(&cfg, &log);
    let mut kills = 0;
    let began = Instant::now();
    for wait_ms in [4_000u64, 2_500, 3_300, 1_700] {
        std::thread::sleep(Duration::from_millis(wait_ms));
        // SAFETY: kill(2) on our own child (control), mid-storm.
        unsafe { libc::kill(up.0.id() as i32, libc::SIGKILL) };
        let _ = up.0.wait();
        kills += 1;
        // The demo port and the rings outlive the dead control only in the kernel's view for a
        // moment; the next control takes them over.
        std::thread::sleep(Duration::from_millis(300));
        up = start(&cfg, &log);
    }
    std::thread::sleep(Duration::from_secs(4));
    terminate(&mut up);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(kills, 4);
    assert!(
        text.matches("adopting prober pid").count() >= 3,
        "each new control adopts the running prober:\n{text}"
    );
    let ran_s = began.elapsed().as_secs_f64();
    assert!(ran_s < 60.0);
    // The statistics spool survived the kills: flushing it gives each check at most one
    // scheduled result per second it ran (a replay spooled twice would push past that).
    let flush = std::process::Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "stats", "flush"])
        .output()
        .unwrap();
    assert!(
        flush.status.success(),
        "jetmon stats flush: {}",
        String::from_utf8_lossy(&flush.stderr)
    );

    verify_log(&rt, url, Some(ran_s));
}

/// The stored log, event by event: one unbroken chain per event. With `ran_s`, also the
/// statistics: at most one scheduled result per check per second run.
fn verify_log(rt: &tokio::runtime::Runtime, url: &str, ran_s: Option<f64>) {
    let (events, transitions) = rt.block_on(async {
        let store = Store::open(url, "test").await.unwrap();
        let mut results = 0;
        for c in store.checks().await.unwrap() {
            for row in store
                .period_stats(
                    jetmon_control::store::Period::Hour,
                    c.spec.check_id,
                    0,
                    u64::MAX / 2,
                )
                .await
                .unwrap()
            {
                results += row.ok_count + row.fail_count;
            }
        }
        if let Some(ran_s) = ran_s {
            let most = (CHECKS as f64 * (ran_s + 2.0)) as u64;
            assert!(
                results > most / 3 && results <= most,
                "{results} scheduled results in statistics for {CHECKS} checks over {ran_s:.1} s"
            );
        }
        let events = store.events().await.unwrap();
        let mut transitions = Vec::new();
        for site in store.sites().await.unwrap() {
            transitions.extend(store.transitions_of_site(site.id).await.unwrap());
        }
        store.close().await;
        (events, transitions)
    });
    assert!(
        transitions.len() >= 100,
        "a storm of flips: {} transitions",
        transitions.len()
    );
    eprintln!(
        "stored: {} transitions over {} events",
        transitions.len(),
        events.len(),
    );
    // One unbroken chain per event.
    let mut chain: BTreeMap<u64, (bool, Option<State>)> = BTreeMap::new(); // (seen, last after)
    for (event, check, before, after, reason) in &transitions {
        let entry = chain.entry(*event).or_insert((false, None));
        match before {
            None => assert!(
                !entry.0,
                "event {event} (check {check}) opened twice ({reason:?})"
            ),
            Some(b) => {
                assert!(entry.0, "event {event}: a transition before its opening");
                assert_eq!(
                    entry.1,
                    Some(*b),
                    "event {event} (check {check}): a transition from {b:?} but it was at {:?} ({reason:?})",
                    entry.1
                );
            }
        }
        *entry = (true, *after);
    }
    // The event rows agree with where their chains ended.
    for e in &events {
        let (_, last) = chain.get(&e.id).copied().unwrap_or((false, None));
        match e.ended_us {
            None => assert_eq!(last, Some(e.state), "open event {}", e.id),
            Some(_) => assert_eq!(last, None, "closed event {} has a later transition", e.id),
        }
    }
}

/// A throw-away PostgreSQL cluster of this test's own (`perf/postgres` with its own directory
/// and port), so stopping it disturbs no other test; stopped and removed on drop.
struct OwnPostgres {
    script: std::path::PathBuf,
    dir: String,
    port: &'static str,
}

impl OwnPostgres {
    fn run(&self, args: &[&str]) {
        let out = Command::new(&self.script)
            .args(args)
            .env("JETMON_PG_DIR", &self.dir)
            .env("JETMON_PG_PORT", self.port)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "perf/postgres {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .env("JETMON_PG_DIR", &self.dir)
            .env("JETMON_PG_PORT", self.port)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// reliability.md: the database away for 60 s. Probing goes on (results wait in the ring),
/// `/ready` says why, control neither crashes nor restarts, and when the database is back every
/// transition is written once.
#[test]
fn a_60_second_postgresql_outage_loses_and_repeats_nothing() {
    if std::env::var("JETMON_TEST_PG_URL").is_err() {
        panic!("JETMON_TEST_PG_URL is not set: PostgreSQL tests run under .ci/test");
    }
    let _turn = DEMO_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let pg = OwnPostgres {
        script: Path::new(env!("CARGO_MANIFEST_DIR")).join("../perf/postgres"),
        dir: format!("/tmp/jetmon-pg-outage-{}", std::process::id()),
        port: "15439",
    };
    pg.run(&["start", "--duration", "600"]);
    let url = "postgres://postgres@127.0.0.1:15439/jetmon_test";
    let dir = tempfile::tempdir().unwrap();
    let cfg = prepare(dir.path(), url);
    let log = dir.path().join("up.log");
    let mut up = start(&cfg, &log);
    let addr = {
        let began = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("metrics on http://").nth(1) {
                break rest.split('/').next().unwrap().to_owned();
            }
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "no metrics:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    std::thread::sleep(Duration::from_secs(5));
    let before = metric(
        &http_get(&addr, "/metrics"),
        "jetmon_result_ring_used_bytes",
    );
    pg.run(&["pause"]);
    let outage = Instant::now();
    let mut saw_not_ready = false;
    while outage.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            up.0.try_wait().unwrap().is_none(),
            "control exited during the outage:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let ready = http_get(&addr, "/ready");
        if ready.starts_with("HTTP/1.1 503") && ready.contains("database") {
            saw_not_ready = true;
        }
    }
    // Results of the probing that went on wait in the ring (read once the batch is stored).
    let waiting = metric(
        &http_get(&addr, "/metrics"),
        "jetmon_result_ring_used_bytes",
    );
    assert!(saw_not_ready, "/ready never reported the database outage");
    assert!(
        waiting > before + 100_000.0,
        "probing went on during the outage: ring use {before} → {waiting} bytes"
    );
    pg.run(&["resume"]);
    let back = Instant::now();
    while !http_get(&addr, "/ready").starts_with("HTTP/1.1 200") {
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "not ready 30 s after the database came back:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "ready again {:.1?} after the database came back",
        back.elapsed()
    );
    // Notices: every row written by then (before, and the backlog written once the database
    // was back) reaches the demo's receiver; none is abandoned.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ready_us = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap();
    let store = rt.block_on(Store::open(url, "test")).unwrap();
    let settled = Instant::now();
    let rows = loop {
        let rows = rt.block_on(store.delivery_times(1, 1)).unwrap();
        let due: Vec<_> = rows.iter().filter(|r| r.1 < ready_us).collect();
        if due.iter().all(|r| r.2 == 1) {
            break due.into_iter().cloned().collect::<Vec<_>>();
        }
        if settled.elapsed() >= Duration::from_secs(60) {
            // What the rows and the deliverer say, to tell a lease from an order wait.
            let rows = std::process::Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    "15439",
                    "-U",
                    "postgres",
                    "jetmon_test",
                    "-c",
                ])
                .arg(
                    "SELECT id, site_id, transition_id, attempts, next_at, lease_owner, \
                     lease_until, (extract(epoch from now()) * 1000000)::bigint AS now_us \
                     FROM outbox WHERE state = 0 ORDER BY transition_id LIMIT 20",
                )
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let said: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("deliver") && !l.contains("delivery "))
                .collect();
            panic!(
                "notices still pending 60 s after the outage: {:?}\n{rows}\n{}",
                due.iter().filter(|r| r.2 != 1).take(5).collect::<Vec<_>>(),
                said.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    rt.block_on(store.close());
    assert!(
        rows.len() > 20,
        "too few notices to mean anything: {}",
        rows.len()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    for (id, _, _) in &rows {
        assert!(
            text.contains(&format!("delivery {id})")),
            "delivery {id} is marked delivered but the demo receiver never printed it"
        );
    }
    eprintln!("{} notices delivered across the outage", rows.len());
    terminate(&mut up);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("will retry, nothing is lost"), "{text}");
    assert_eq!(
        text.matches("jetmon: database postgres").count(),
        1,
        "control started once, no crash loop:\n{text}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    verify_log(&rt, url, None);
}
