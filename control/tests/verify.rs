//! Outage confirmation with real verifliers over gRPC: `jetmon up` with seven configured
//! verifliers — two healthy (one over mutual TLS, control presenting a client certificate),
//! one killed, one that always says "down", one that hangs, one asked with a wrong token, one
//! whose TLS certificate control does not trust. Quorum 2 (floor 2): a real outage (down from
//! everywhere) is confirmed by the three that saw it down; a site that fails only from the
//! prober's network is a false alarm — the always-down veriflier cannot confirm it alone, and
//! the dead, hanging and refused ones neither confirm nor veto. Every vote is kept with the
//! transition.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::http_get;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jetmon_control::store::Store;
use jetmon_shared::check::{CheckSpec, CheckType};
use sqlx::Row;

const BIN: &str = env!("CARGO_BIN_EXE_jetmon");
const TOKEN: &str = "quorum-test-token-0123456789";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a veriflier; returns it and its address once it listens.
fn veriflier(
    dir: &Path,
    name: &str,
    mode: &str,
    tls: Option<(&Path, bool)>,
) -> (jetmon_veriflier::launch::Launched, String) {
    let bin = Path::new(BIN).with_file_name("jetmon-veriflier");
    let token = dir.join(format!("{name}.token"));
    std::fs::write(&token, TOKEN).unwrap();
    let mut toml = format!(
        "[prober]\nallow_cidrs = [\"127.0.0.0/8\"]\nuser_agent = \"jetmon-veriflier-test\"\n\
         [veriflier]\nname = {name:?}\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ntoken_file = {token:?}\n"
    );
    if let Some((pki, client_certs)) = tls {
        toml.push_str(&format!(
            "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
            pki.join("valid.pem"),
            pki.join("leaf.key")
        ));
        if client_certs {
            toml.push_str(&format!("client_ca_file = {:?}\n", pki.join("ca.pem")));
        }
    }
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, toml).unwrap();
    let v = jetmon_veriflier::launch::launch(
        Command::new(bin).args(["--config", cfg.to_str().unwrap(), "--test-mode", mode]),
        false,
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("veriflier {name}: {e:#}"));
    let addr = v.addr.clone();
    (v, addr)
}

fn peer(name: &str, url: &str, token: &Path) -> String {
    format!("[[control.verifliers]]\nname = {name:?}\nurl = {url:?}\ntoken_file = {token:?}\n")
}

#[test]
fn quorum_confirms_real_outages_and_no_single_bad_veriflier_decides() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = d.join("pki");
    let made = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../perf/fleet-certs"))
        .arg(&pki)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (_good, good) = veriflier(d, "good", "normal", None);
    let (mut dead, dead_addr) = veriflier(d, "dead", "normal", None);
    let _ = dead.child.kill();
    let _ = dead.child.wait();
    let (_liar, liar) = veriflier(d, "liar", "always-down", None);
    let (_hang, hang) = veriflier(d, "hang", "hang", None);
    let (_other, other) = veriflier(d, "other-token", "normal", None);
    let (_tls, tls) = veriflier(d, "untrusted", "normal", Some((&pki, false)));
    let (_mtls, mtls) = veriflier(d, "mtls", "normal", Some((&pki, true)));
    let wrong = d.join("wrong.token");
    std::fs::write(&wrong, "not-the-right-token-at-all").unwrap();
    let token = d.join("good.token");
    let mut peers = String::new();
    for (name, url, tok) in [
        ("good", format!("http://{good}"), &token),
        ("dead", format!("http://{dead_addr}"), &token),
        ("liar", format!("http://{liar}"), &token),
        ("hang", format!("http://{hang}"), &token),
        ("other-token", format!("http://{other}"), &wrong),
        // The certificate names *.fleet.test; control is not given the test CA.
        ("untrusted", format!("https://{tls}"), &token),
    ] {
        peers.push_str(&peer(name, &url, tok));
    }
    // Mutual TLS, done right: the fleet CA trusted, a client certificate presented.
    peers.push_str(&peer("mtls", &format!("https://{mtls}"), &token));
    peers.push_str(&format!(
        "ca_file = {:?}\nclient_cert_file = {:?}\nclient_key_file = {:?}\n\
         tls_server_name = \"veriflier.fleet.test\"\n",
        pki.join("ca.pem"),
        pki.join("client.pem"),
        pki.join("leaf.key")
    ));
    let db = d.join("jetmon.db");
    let url = format!("sqlite:{}", db.display());
    let cfg = d.join("jetmon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[prober]\nshards = 1\nring_dir = {:?}\nring_prefix = \"verify\"\nresult_ring_bytes = 1048576\n\
             command_ring_bytes = 262144\nallow_cidrs = [\"127.0.0.0/8\"]\n\
             [control]\napi_listen = \"127.0.0.1:0\"\nprober_binary = {:?}\ndatabase_url = {:?}\n\
             [control.detection]\nretries = 1\nretry_spacing_ms = 300\n{peers}",
            d,
            Path::new(BIN).with_file_name("jetmon-prober"),
            url
        ),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (real, vantage) = rt.block_on(async {
        let store = Store::open(&url, "test").await.unwrap();
        let mut ids = Vec::new();
        for (name, path) in [("real outage", "/down?k=real"), ("prober only", "/vantage")] {
            let site = store.add_site(name).await.unwrap();
            let mut spec = CheckSpec::new(
                0,
                0,
                CheckType::Http,
                &format!("http://127.0.0.1:18090{path}"),
            );
            spec.interval_ms = 2_000;
            spec.timeout_ms = 2_000;
            spec.retries = 1;
            spec.retry_spacing_ms = 300;
            ids.push(store.add_check(site, &spec, true).await.unwrap());
        }
        store.close().await;
        (ids[0], ids[1])
    });
    let log = d.join("up.log");
    let up = Proc(
        Command::new(BIN)
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "up",
                "--demo",
                "--duration",
                "120",
            ])
            .env("JETMON_DEMO_INTERVAL_S", "2")
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
    );
    // Wait for: the real outage Down (confirmed), the prober-only failure closed as a false
    // alarm at least once.
    let began = Instant::now();
    let rows = loop {
        std::thread::sleep(Duration::from_secs(2));
        let rows = transitions(&rt, &url);
        let confirmed = rows
            .iter()
            .any(|r| r.0 == real && r.1 == "verifier_confirmed");
        let false_alarm = rows.iter().any(|r| r.0 == vantage && r.1 == "false_alarm");
        if confirmed && false_alarm {
            break rows;
        }
        assert!(
            began.elapsed() < Duration::from_secs(90),
            "no verdicts in 90 s: {rows:#?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    // Each veriflier's health in control's /metrics.
    let text = std::fs::read_to_string(&log).unwrap();
    let addr = text
        .split("metrics on http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    std::thread::sleep(Duration::from_millis(1_200));
    let metrics = http_get(&addr, "/metrics");
    for (name, healthy) in [
        ("good", 1),
        ("mtls", 1),
        ("liar", 1),
        ("dead", 0),
        ("hang", 0),
    ] {
        let line = format!("jetmon_veriflier_healthy{{veriflier=\"{name}\"}} {healthy}");
        assert!(metrics.contains(&line), "{line}:\n{metrics}");
    }
    drop(up);
    let text = std::fs::read_to_string(&log).unwrap();
    // The real outage: confirmed by the two that saw it down.
    let (_, _, source, meta) = rows
        .iter()
        .find(|r| r.0 == real && r.1 == "verifier_confirmed")
        .unwrap();
    assert_eq!(source, "veriflier:good,liar,mtls", "{meta}");
    let votes = votes(meta);
    assert_eq!(votes.len(), 7, "{meta}");
    let vote = |name: &str| {
        votes
            .iter()
            .find(|v| v["veriflier"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(vote("good")["vote"], "down");
    assert_eq!(vote("good")["outcome"], "http_status");
    assert_eq!(vote("good")["http_status"], 500);
    assert_eq!(vote("liar")["vote"], "down");
    assert_eq!(vote("mtls")["vote"], "down");
    for name in ["dead", "hang", "other-token", "untrusted"] {
        assert_eq!(vote(name)["vote"], "abstain", "{name}: {meta}");
    }
    // Clear reasons for the abstentions (first round: each is asked once before backing off).
    for needle in [
        "veriflier other-token abstains",
        "Unauthenticated: missing or wrong veriflier token",
        "veriflier untrusted abstains",
        "invalid peer certificate",
        "veriflier dead abstains",
        "veriflier hang abstains",
        "no answer within",
    ] {
        assert!(text.contains(needle), "log lacks {needle:?}:\n{text}");
    }
    // The prober-only failure: the healthy veriflier saw it up, the liar alone cannot confirm.
    let (_, _, source, meta) = rows
        .iter()
        .find(|r| r.0 == vantage && r.1 == "false_alarm")
        .unwrap();
    assert_eq!(source, "veriflier:good,mtls", "{meta}");
    let votes = self::votes(meta);
    let up_votes: Vec<&str> = votes
        .iter()
        .filter(|v| v["vote"] == "up")
        .map(|v| v["veriflier"].as_str().unwrap())
        .collect();
    assert_eq!(up_votes, vec!["good", "mtls"], "{meta}");
    // It never reached Down.
    assert!(
        !rows
            .iter()
            .any(|r| r.0 == vantage && r.1 == "verifier_confirmed"),
        "{rows:#?}"
    );
}

fn votes(meta: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(meta).unwrap();
    v["votes"].as_array().cloned().unwrap_or_default()
}

/// (check, reason name, source, metadata) of every transition, in order.
fn transitions(rt: &tokio::runtime::Runtime, url: &str) -> Vec<(u64, String, String, String)> {
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let Ok(pool) = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
        else {
            return Vec::new();
        };
        let rows = sqlx::query(
            "SELECT e.check_id, t.reason, t.source, t.metadata FROM transitions t \
             JOIN events e ON e.id = t.event_id ORDER BY t.id",
        )
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        pool.close().await;
        rows.iter()
            .map(|r| {
                let reason = u8::try_from(r.get::<i64, _>(1)).unwrap();
                (
                    r.get::<i64, _>(0) as u64,
                    jetmon_shared::state::Reason::from_code(reason)
                        .map_or("?".to_owned(), |x| x.name().to_owned()),
                    r.get::<String, _>(2),
                    r.get::<String, _>(3),
                )
            })
            .collect()
    })
}
