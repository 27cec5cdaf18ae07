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
    // Each hop: the status that redirected and where it led.
    assert_eq!(
        out.matches(" → http://site-5.fleet.test:18080/").count(),
        4,
        "{out}"
    );
    let mut args = vec!["http://site-5.fleet.test:18080/r/1", "--json"];
    args.extend(common);
    let (_, out, _) = jetmon(&args);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let chain = v["redirect_chain"].as_array().unwrap();
    assert_eq!(chain.len(), 3, "{v}");
    assert_eq!(
        chain[2]["url"], "http://site-5.fleet.test:18080/ok?from=3",
        "{v}"
    );
    assert!(
        chain
            .iter()
            .all(|h| h["status"].as_u64().unwrap() / 100 == 3)
    );

    // Probe safety is on unless a range is allowed: we could not tell, exit 3, and the
    // refusal says why in words.
    let (code, out, _) = jetmon(&["http://127.0.1.5:18080/"]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("probe_safety_blocked"), "{out}");
    assert!(
        out.contains(
            "why       loopback address 127.0.1.5 is refused (127.0.0.0/8, ::1; \
             http://127.0.1.5:18080/); allow it with prober.allow_cidrs / --allow-cidr"
        ),
        "{out}"
    );

    // A target the prober refuses at configuration answers at once (not after the deadline
    // with "no result from the prober in time"), and never prints the password.
    let (code, out, err) = jetmon(&["http://admin:hunter2@example.test/", "--json"]);
    assert_eq!(code, Some(3), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["outcome"], "probe_safety_blocked", "{v}");
    assert!(
        v["note"].as_str().unwrap().contains("user:password@"),
        "{v}"
    );
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );

    // A bad flag: one line naming it (the API's field, as a flag), exit 2.
    let (code, _, err) = jetmon(&["http://example.test/", "--redirects", "sometimes"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--redirect-policy") && err.contains("sometimes"),
        "{err}"
    );
}

/// docs/api.md's check settings are `jetmon check` flags of the same names (`-` or `_`), with
/// the API's validation, and each acts on the probe.
#[test]
fn every_api_check_setting_is_a_flag_that_acts() {
    let (ca, resolver) = fleet();
    let ca = ca.display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--resolver",
            &resolver,
            "--extra-ca",
            &ca,
            "--allow-cidr",
            "127.0.0.0/8",
            "--json",
        ];
        args.extend(extra);
        let (code, out, err) = jetmon(&args);
        let v: serde_json::Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|_| serde_json::Value::String(format!("{out}{err}")));
        (code, v, err)
    };
    let site = "http://site-6.fleet.test:18080/";
    // Accepts and never answers: only the timeout ends a probe of it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!(
        "http://127.0.0.1:{}/",
        listener.local_addr().unwrap().port()
    );
    let _hold = std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(2).collect();
        std::thread::sleep(std::time::Duration::from_secs(5));
        drop(held);
    });
    let cases: &[(&[&str], &str)] = &[
        (
            &[site, "--keywords", "no such words anywhere"],
            "keyword_missing",
        ),
        (
            &[site, "--forbidden-keywords", "fleet"],
            "keyword_forbidden_present",
        ),
        (&[site, "--accepted-statuses", "201-299"], "http_status"),
        (&[site, "--accepted_statuses", "200"], "ok"),
        (&[site, "--keywords", "is up"], "ok"),
        (&[site, "--method", "HEAD"], "ok"),
        (&[site, "--min-body-bytes", "5000"], "body_empty"),
        (
            &[site, "--body-budget-bytes", "16", "--keywords", "is up"],
            "keyword_missing",
        ),
        (
            &[
                "http://site-6.fleet.test:18080/r/1",
                "--redirect-policy",
                "fail",
            ],
            "redirect_policy",
        ),
        (
            &["http://site-6.fleet.test:18080/r/1", "--max_redirects", "2"],
            "redirect_loop_or_limit",
        ),
        (&[site, "--ip-preference", "v6_only"], "dns_no_records"),
        (
            &[site, "--keywords", "IS UP", "--keyword-case-sensitive"],
            "keyword_missing",
        ),
        (&[&silent, "--timeout-ms", "300"], "timeout_ttfb"),
        (
            &[
                "site-6.fleet.test",
                "--type",
                "dns",
                "--dns-record-type",
                "A",
                "--dns-expected",
                "192.0.2.1",
            ],
            "keyword_missing",
        ),
        (
            &[
                "site-6.fleet.test:18080",
                "--type",
                "tcp",
                "--tcp-banner",
                "SSH-",
            ],
            "",
        ),
    ];
    for (args, outcome) in cases {
        let (_, v, err) = run(args);
        let got = v["outcome"].as_str().unwrap_or_default();
        if outcome.is_empty() {
            assert!(got != "ok" && !got.is_empty(), "{args:?}: {v}{err}");
        } else {
            assert_eq!(got, *outcome, "{args:?}: {v}{err}");
        }
    }
    // Response-time thresholds: one probe's verdict (the engine judges the median of 3),
    // against a server that waits 100 ms before it answers.
    let slow_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = format!(
        "http://127.0.0.1:{}/",
        slow_listener.local_addr().unwrap().port()
    );
    let _serve = std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut c in slow_listener.incoming().take(3).flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            std::thread::sleep(std::time::Duration::from_millis(100));
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    let (_, v, _) = run(&[&slow, "--ttfb-warn-ms", "20", "--total-degrade-ms", "50"]);
    assert_eq!(v["performance"], "degraded", "{v}");
    let (_, v, _) = run(&[&slow, "--ttfb_warn_ms", "20"]);
    assert_eq!(v["performance"], "warning", "{v}");
    let (_, v, _) = run(&[&slow, "--total-warn-ms", "60000"]);
    assert_eq!(v["performance"], "ok", "{v}");
    let (_, v, _) = run(&[site]);
    assert!(v["performance"].is_null(), "{v}");
    // The API's limits, named as flags.
    for (args, names) in [
        (
            &[site, "--body-budget-bytes", "2000000"][..],
            "--body-budget-bytes",
        ),
        (&[site, "--max-redirects", "11"][..], "--max-redirects"),
        (&[site, "--ip-preference", "v5"][..], "--ip-preference"),
        (&[site, "--timeout-ms", "0"][..], "--timeout-ms"),
    ] {
        let (code, v, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {v}");
        assert!(err.contains(names), "{args:?}: {err}");
    }
}

/// `jetmon check` stops what it started: Ctrl-C (SIGINT) while a probe hangs ends it at once
/// with exit 130, no private prober left running and its directory gone.
#[test]
fn ctrl_c_stops_the_private_prober_and_removes_its_files() {
    // A server that accepts and never answers: the probe hangs until its 30 s timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().take(4) {
            held.push(s);
        }
        std::thread::sleep(std::time::Duration::from_secs(40));
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jetmon.toml");
    std::fs::write(&cfg, "[prober]\nio_memory_bytes = 1048576\n").unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child = Command::new(BIN)
        .env("TMPDIR", &tmp)
        .arg("--config")
        .arg(&cfg)
        .arg("check")
        .arg(format!("http://127.0.0.1:{port}/"))
        .args(["--allow-cidr", "127.0.0.0/8", "--timeout", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let work = tmp.join(format!("jetmon-check-{}", child.id()));
    let prober_running = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
            std::fs::read(p.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(work.to_str().unwrap()))
                .unwrap_or(false)
        })
    };
    let started = std::time::Instant::now();
    while !(work.join("prober.log").exists() && prober_running()) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the private prober never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500)); // the probe is hanging now
    // SAFETY: a signal to our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let mut status = None;
    for _ in 0..200 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("jetmon check did not stop on SIGINT");
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!work.exists(), "{} was left behind", work.display());
    assert!(!prober_running(), "the private prober was left running");
}
