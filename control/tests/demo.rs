//! `jetmon up --demo` end to end: real prober, real rings, real SQLite, the built-in demo
//! fleet. Sites go Seems Down → Down → Up and it shows in the database (what `jetmon sites
//! list` prints); `kill -9` of the prober gives Unknown, never Down, and a restart; the list
//! command reads it all. The flapping site's cycle (40 s) and the checks' interval (3 s) are shortened for the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::http_get;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jetmon_control::store::Store;
use jetmon_shared::state::{Reason, State};

const BIN: &str = env!("CARGO_BIN_EXE_jetmon");

/// The demo fleet has one fixed address: these tests take turns.
static DEMO_PORT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    DEMO_PORT.lock().unwrap_or_else(|e| e.into_inner())
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &Path) -> std::path::PathBuf {
    let prober = Path::new(BIN).with_file_name("jetmon-prober");
    let cfg = dir.join("jetmon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[prober]\nshards = 1\nring_dir = {:?}\nring_prefix = \"demo\"\nresult_ring_bytes = 1048576\n\
             command_ring_bytes = 65536\nallow_cidrs = [\"127.0.0.0/8\"]\n[control]\napi_listen = \"127.0.0.1:0\"\nprober_binary = {:?}\ndatabase_url = \"sqlite:{}\"\n",
            dir,
            prober,
            dir.join("jetmon.db").display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn demo_sites_go_down_and_up_and_a_killed_prober_is_unknown_not_down() {
    let _turn = take_turn();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut up = KillOnDrop(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(["up", "--demo", "--duration", "150"])
            .env("JETMON_DEMO_FLAP_CYCLE_S", "40")
            .env("JETMON_DEMO_INTERVAL_S", "3")
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
    let expect = |needle: &str, within: Duration| -> String {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no line containing {needle:?}");
    };
    let metrics_line = expect("metrics on http://", Duration::from_secs(30));
    let metrics_addr = metrics_line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let started = expect("started prober pid", Duration::from_secs(30));
    let pid: i32 = started.rsplit(' ').next().unwrap().parse().unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("sqlite:{}", dir.path().join("jetmon.db").display());
    let store = rt.block_on(Store::open(&url, "test")).unwrap();
    let sites = rt.block_on(store.sites()).unwrap();
    let id_of = |prefix: &str| {
        sites
            .iter()
            .find(|s| s.name.starts_with(prefix))
            .unwrap()
            .id
    };
    let (up_site, flapping, broken) = (
        id_of("demo: always up"),
        id_of("demo: flapping"),
        id_of("demo: broken"),
    );
    // Within the demo's promise (two minutes), the flapping site has gone Seems Down → Down →
    // Up, and the broken one is Down.
    let deadline = Instant::now() + Duration::from_secs(90);
    let went_down_and_up = loop {
        let t = rt.block_on(store.transitions_of_site(flapping)).unwrap();
        let down = t
            .iter()
            .position(|x| x.3 == Some(State::Down) && x.2 == Some(State::SeemsDown));
        let opened = t
            .iter()
            .position(|x| x.2.is_none() && x.3 == Some(State::SeemsDown));
        let cleared = t.iter().position(|x| {
            x.2 == Some(State::Down) && x.3.is_none() && x.4 == Reason::VerifierCleared
        });
        if let (Some(o), Some(d), Some(c)) = (opened, down, cleared)
            && o < d
            && d < c
        {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the flapping site did not go down and up: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(!went_down_and_up.is_empty());
    let sites = rt.block_on(store.sites()).unwrap();
    let broken_row = sites.iter().find(|s| s.id == broken).unwrap();
    assert_eq!((broken_row.state, broken_row.site_status), (State::Down, 2));
    let up_row = sites.iter().find(|s| s.id == up_site).unwrap();
    assert_eq!(up_row.state, State::Up);

    // /metrics (Prometheus text): ingest, transitions, memory of both processes.
    let body = {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&metrics_addr).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let ready = {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&metrics_addr).unwrap();
        c.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    };
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.ends_with("ready\n"),
        "{ready}"
    );
    for needle in [
        "# TYPE jetmon_transitions_total counter",
        "jetmon_frames_ingested_total ",
        "jetmon_checks_completed_total{shard=\"0\",outcome=\"ok\"}",
        "jetmon_process_resident_bytes{process=\"prober\"}",
        "jetmon_db_batch_seconds{quantile=\"0.99\"}",
    ] {
        assert!(body.contains(needle), "no {needle:?} in /metrics:\n{body}");
    }

    // Sites imported while jetmon up runs are picked up (within 5 s) and probed.
    let csv = dir.path().join("more.csv");
    std::fs::write(
        &csv,
        "http://127.0.0.1:18090/up?imported=1,10,,501\nnot a url\n\
         http://127.0.0.1:18090/up?imported=2,10,,501\n",
    )
    .unwrap();
    let import = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["sites", "import"])
        .arg(&csv)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&import.stderr);
    assert_eq!(
        import.status.code(),
        Some(1),
        "a rejected row: exit 1\n{err}"
    );
    assert!(err.contains("more.csv:2:"), "{err}");
    assert!(
        err.contains("more.csv:3: blog_id 501 is named by an earlier row"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&import.stdout)
            .contains("imported: 1 site(s) added, 0 updated, 0 unchanged; 2 row(s) rejected")
    );
    expect("check set changed: 1 check(s)", Duration::from_secs(15));

    // kill -9 the prober: Unknown (prober_restart), never Down, and a new prober.
    // SAFETY: kill(2) on the prober child of our child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    expect("prober exited (signal: 9", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = rt.block_on(store.transitions_of_site(up_site)).unwrap();
        if t.iter()
            .any(|x| x.2.is_none() && x.3 == Some(State::Unknown))
        {
            assert!(
                t.iter()
                    .all(|x| x.3 != Some(State::Down) && x.3 != Some(State::SeemsDown)),
                "the always-up site went down when the prober died: {t:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Unknown after the prober died: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    expect("started prober pid", Duration::from_secs(10));
    // The new prober's results clear the Unknown.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let t = rt.block_on(store.transitions_of_site(up_site)).unwrap();
        if t.iter()
            .any(|x| x.2 == Some(State::Unknown) && x.3.is_none())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Unknown was not cleared: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    rt.block_on(store.close());

    // `jetmon sites list` reads the same database.
    let list = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["sites", "list"])
        .output()
        .unwrap();
    assert!(list.status.success());
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("demo: broken") && text.contains("down"),
        "{text}"
    );
    // The imported site: its v1 id beside its id, named by its URL.
    assert!(
        text.lines()
            .any(|l| l.contains("  501  ") && l.ends_with("http://127.0.0.1:18090/up?imported=1")),
        "{text}"
    );

    // SIGTERM: a clean stop.
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(up.0.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = up.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "jetmon up did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn a_locked_database_holds_batches_back_and_loses_nothing() {
    let _turn = take_turn();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let log_path = dir.path().join("up.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _up = KillOnDrop(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(["up", "--demo", "--duration", "90"])
            .env("JETMON_DEMO_FLAP_CYCLE_S", "6")
            .env("JETMON_DEMO_INTERVAL_S", "1")
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let started = Instant::now();
    let addr = loop {
        if let Some(line) = read_log()
            .lines()
            .find(|l| l.contains("metrics on http://"))
        {
            break line
                .split("http://")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .unwrap()
                .to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(5));
    // Another process takes the write lock for 12 s (longer than the 5 s busy timeout).
    let db = dir.path().join("jetmon.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("sqlite:{}", db.display());
    let before = rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        sqlx::raw_sql("BEGIN EXCLUSIVE")
            .execute(&mut *conn)
            .await
            .unwrap();
        let mut saw_503 = false;
        let hold = Instant::now();
        while hold.elapsed() < Duration::from_secs(12) {
            let ready = http_get(&addr, "/ready");
            if ready.starts_with("HTTP/1.1 503") {
                saw_503 = true;
                // Anyone may ask: a code, never the error chain (that is in the log).
                assert!(ready.ends_with("\r\n\r\ndatabase_unavailable\n"), "{ready}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        sqlx::raw_sql("COMMIT").execute(&mut *conn).await.unwrap();
        drop(conn);
        pool.close().await;
        saw_503
    });
    assert!(
        before,
        "/ready never said the database was away:\n{}",
        read_log()
    );
    assert!(read_log().contains("storing a batch failed (will retry, nothing is lost)"));
    // It comes back: ready again, and the log of every event is one unbroken chain.
    let back = Instant::now();
    while !http_get(&addr, "/ready").starts_with("HTTP/1.1 200") {
        assert!(back.elapsed() < Duration::from_secs(20), "not ready again");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let store = rt.block_on(Store::open(&url, "test")).unwrap();
    let sites = rt.block_on(store.sites()).unwrap();
    let mut chain: std::collections::BTreeMap<u64, Option<State>> = Default::default();
    let mut count = 0;
    for site in sites {
        for (event, _, before, after, reason) in
            rt.block_on(store.transitions_of_site(site.id)).unwrap()
        {
            count += 1;
            match before {
                None => assert!(!chain.contains_key(&event), "event {event} opened twice"),
                Some(b) => assert_eq!(
                    chain.get(&event).copied().flatten(),
                    Some(b),
                    "event {event} ({reason:?})"
                ),
            }
            chain.insert(event, after);
        }
    }
    assert!(
        count >= 6,
        "the flapping site kept flipping: {count} transitions"
    );
    rt.block_on(store.close());
}
