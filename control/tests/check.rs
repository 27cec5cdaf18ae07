//! `jetmon check`: one probe through a private jetmon-prober against the real test fleet
//! (perf/fleet: nginx HTTP/HTTPS and dnsmasq, started by .ci/test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_jetmon");

fn fleet() -> (PathBuf, String) {
    let dir = PathBuf::from(
        std::env::var("JETMON_FLEET_DIR").unwrap_or_else(|_| "/tmp/jetmon-fleet".into()),
    );
    let dns_port = std::fs::read_to_string(dir.join("dns_port")).unwrap_or_else(|_| {
        panic!(
            "the local test fleet is not running in {}: start it with `perf/fleet start` (or run .ci/test)",
            dir.display()
        )
    });
    (
        dir.join("tls/ca.pem"),
        format!("127.0.0.1:{}", dns_port.trim()),
    )
}

fn jetmon(args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jetmon.toml");
    std::fs::write(&cfg, "[prober]\nio_memory_bytes = 1048576\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn one_off_checks_print_phases_outcomes_and_certificates() {
    let (ca, resolver) = fleet();
    let ca = ca.display().to_string();
    let common = [
        "--resolver",
        &resolver,
        "--extra-ca",
        &ca,
        "--allow-cidr",
        "127.0.0.0/8",
    ];

    let mut args = vec![
        "https://valid.tls.fleet.test:18443/",
        "--keyword",
        "tls case",
    ];
    args.extend(common);
    let (code, out, err) = jetmon(&args);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("outcome   ok (0)") && out.contains("HTTP 200"),
        "{out}"
    );
    assert!(
        out.contains("TLS 1.3") && out.contains("Jetmon Fleet Intermediate"),
        "{out}"
    );

    let mut args = vec!["https://expired.tls.fleet.test:18443/", "--json"];
    args.extend(common);
    let (code, out, err) = jetmon(&args);
    assert_eq!(code, Some(1), "a failed check exits 1: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["outcome"], "tls_cert_expired");
    assert_eq!(v["outcome_code"], 10);
    assert!(
        v["cert_not_after"].as_i64().unwrap() > 0,
        "expiry even when refused: {v}"
    );

    let mut args = vec!["http://site-5.fleet.test:18080/r/1"];
    args.extend(common);
    let (code, out, _) = jetmon(&args);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("redirects 3 → http://site-5.fleet.test:18080/ok?from=3"),
        "{out}"
    );

    // Probe safety is on unless a range is allowed: we could not tell, exit 3.
    let (code, out, _) = jetmon(&["http://127.0.1.5:18080/"]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("probe_safety_blocked"), "{out}");

    // A bad flag: one line naming it, exit 2.
    let (code, _, err) = jetmon(&["http://example.test/", "--redirects", "sometimes"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--redirects \"sometimes\""), "{err}");
}
