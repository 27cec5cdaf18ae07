//! `jetmon` as an operator meets it: config errors, and `jetmon up` running a real
//! `jetmon-prober` child over real rings, including recovery from `kill -9` of the prober.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jetmon");

fn prober_bin() -> PathBuf {
    let p = Path::new(BIN).with_file_name("jetmon-prober");
    assert!(
        p.exists(),
        "{} missing: run the tests with `cargo test --workspace`",
        p.display()
    );
    p
}

fn config(dir: &Path) -> PathBuf {
    let cfg = dir.join("jetmon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[prober]\nshards = 2\nring_dir = {:?}\nresult_ring_bytes = 65536\ncommand_ring_bytes = 65536\n\
             [control]\napi_listen = \"127.0.0.1:0\"\nprober_binary = {:?}\ndatabase_url = \"sqlite:{}\"\n",
            dir,
            prober_bin(),
            dir.join("jetmon.db").display()
        ),
    )
    .unwrap();
    cfg
}

/// Kills `jetmon up` (and so, through its drain or the supervisor's death, its prober) when a
/// test fails half-way.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn config_errors_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[control]\napi_listen = \"everywhere\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("jetmon: ") && err.contains("key `control.api_listen`"),
        "{err}"
    );

    let out = Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .arg("rings")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    let good = config(dir.path());
    let out = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 shard(s)"));
}

#[test]
fn up_supervises_the_prober_and_restarts_it_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut up = KillOnDrop(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(["up", "--demo", "--duration", "60"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let stderr = up.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let expect = |needle: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no line containing {needle:?}");
    };
    let started = expect("started prober pid");
    let pid: i32 = started.rsplit(' ').next().unwrap().parse().unwrap();
    expect("checks configured");
    // SAFETY: kill(2) on the prober child of our child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    expect("prober exited (signal: 9");
    let restarted = expect("started prober pid");
    assert_ne!(restarted, started);
    // The new prober gets the whole check set again.
    expect("checks configured");
    // SIGTERM: control drains the prober and exits 0.
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(up.0.id() as i32, libc::SIGTERM) };
    expect("prober stopped");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = up.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "jetmon up did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn corrupt_or_foreign_ring_files_give_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let results = dir.path().join("jetmon-results-0");
    let run = || {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(["up", "--duration", "1"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Not a ring at all.
    std::fs::write(&results, vec![b'x'; 70_000]).unwrap();
    let (code, err) = run();
    assert_eq!(code, Some(1), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.contains("not a jetmon ring") && last.contains("jetmon-results-0"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::fs::read(&results).unwrap(),
        vec![b'x'; 70_000],
        "a foreign file is left alone"
    );

    // A ring of another layout version.
    std::fs::remove_file(&results).unwrap();
    jetmon_shared::ring::RingFile::open_or_create(&results, 65536).unwrap();
    let mut bytes = std::fs::read(&results).unwrap();
    bytes[8] = 7; // layout_version (docs/ring.md)
    std::fs::write(&results, &bytes).unwrap();
    let (code, err) = run();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains("layout version 7, this build reads version 1"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
