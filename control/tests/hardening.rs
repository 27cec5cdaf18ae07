//! Hardening (issue 24), through `jetmon up` on SQLite: secrets never at rest (a replayed key
//! creation or rotation answers without the token; the database, its WAL, the spool, the log,
//! `/metrics` and every other answer hold no token; files are private whatever the umask), and
//! the API cannot lock its callers out by revoking the last admin key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "harness/mod.rs"]
mod harness;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn tokens_are_shown_once_and_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let mut api = Api::start_plain(&format!("sqlite:{}", db.display()), "hard");
    let admin = api.key("admin");
    let idem = [("Idempotency-Key", "make-ci-key")];
    let body = json!({"name": "ci", "scope": "read"});
    let first = api.call_with("POST", "/api/v1/keys", &admin, Some(body.clone()), &idem);
    assert_eq!(first.status, 201, "{}", first.body);
    let token = first.body["token"].as_str().unwrap().to_owned();
    let id = id_of(&first.body["key"]);
    let replay = api.call_with("POST", "/api/v1/keys", &admin, Some(body), &idem);
    assert_eq!(
        replay.header("idempotency-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(replay.status, 201);
    assert_eq!(id_of(&replay.body["key"]), id, "the same key");
    assert!(replay.body["token"].is_null(), "{}", replay.body);
    assert!(replay.body["note"].as_str().unwrap().contains("shown only"));

    let ridem = [("Idempotency-Key", "rotate-ci-key")];
    let rotated = api.call_with(
        "POST",
        &format!("/api/v1/keys/{id}/rotate"),
        &admin,
        Some(json!({"grace_hours": 0})),
        &ridem,
    );
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    let token2 = rotated.body["token"].as_str().unwrap().to_owned();
    let again = api.call_with(
        "POST",
        &format!("/api/v1/keys/{id}/rotate"),
        &admin,
        Some(json!({"grace_hours": 0})),
        &ridem,
    );
    assert!(again.body["token"].is_null(), "{}", again.body);

    // Every other answer, the metrics, the log and the files: no token anywhere.
    let mut seen = vec![replay.body.to_string(), again.body.to_string()];
    for path in ["/api/v1/keys", "/api/v1/me"] {
        seen.push(api.call("GET", path, &admin, None).body.to_string());
    }
    seen.push(
        raw(&api.addr, "GET", "/metrics", None, None, &[])
            .body
            .to_string(),
    );
    // The audit and idempotency writes land within a second or two.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let d = api._dir.path().to_owned();
    let mut files = vec![db.clone(), d.join("up.log")];
    for suffix in ["-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            files.push(p);
        }
    }
    let spool = d.join("spool");
    for e in walk(&spool) {
        files.push(e);
    }
    for f in &files {
        seen.push(String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned());
    }
    for t in [&token, &token2] {
        let secret = &t[3..]; // past the visible `jm_` prefix
        for (i, text) in seen.iter().enumerate() {
            assert!(
                !text.contains(secret),
                "a token in place {i} of {}",
                seen.len()
            );
        }
    }
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_last_admin_key_cannot_be_revoked_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut api = Api::start_plain(
        &format!("sqlite:{}", dir.path().join("l.db").display()),
        "lock",
    );
    let admin = api.key("admin");
    let me = id_of(&api.call("GET", "/api/v1/me", &admin, None).body["key"]);
    let r = api.call("DELETE", &format!("/api/v1/keys/{me}"), &admin, None);
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("last_admin_key")),
        "{}",
        r.body
    );
    assert_eq!(api.call("GET", "/api/v1/me", &admin, None).status, 200);
    // With a second admin key, the first can go.
    let r = api.call(
        "POST",
        "/api/v1/keys",
        &admin,
        Some(json!({"name": "spare", "scope": "admin"})),
    );
    assert_eq!(r.status, 201);
    let spare = r.body["token"].as_str().unwrap().to_owned();
    let r = api.call("DELETE", &format!("/api/v1/keys/{me}"), &spare, None);
    assert_eq!(r.status, 200, "{}", r.body);
    // And a tenant's last admin key is kept the same way.
    api.cli(&["tenants", "create", "acme"]);
    let t = api.cli(&[
        "keys", "create", "--tenant", "acme", "--scope", "admin", "--name", "a",
    ]);
    let tid = id_of(&api.call("GET", "/api/v1/me", &t, None).body["key"]);
    let r = api.call("DELETE", &format!("/api/v1/keys/{tid}"), &spare, None);
    assert_eq!(r.body["error"]["code"], "last_admin_key", "{}", r.body);
}

#[test]
fn files_are_private_whatever_the_umask() {
    // The usual umask (022) would make them world-readable.
    // SAFETY: umask(2) only changes this process's file-creation mask.
    unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let mut api = Api::start_plain(&format!("sqlite:{}", db.display()), "mode");
    let admin = api.key("admin");
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &admin,
        Some(json!({"url": "http://127.0.0.1:1/m", "interval_s": 10})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let spool = api._dir.path().join("spool");
    // A result or two reaches the spool.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(mode(&db), 0o600, "the database");
    for suffix in ["-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    assert_eq!(mode(&spool), 0o700, "the spool directory");
    for f in walk(&spool) {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

#[test]
fn the_auth_scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start_plain(
        &format!("sqlite:{}", dir.path().join("b.db").display()),
        "bear",
    );
    let key = api.key("read");
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let auth = format!("{scheme} {key}");
        let r = raw(
            &api.addr,
            "GET",
            "/api/v1/me",
            None,
            None,
            &[("Authorization", &auth)],
        );
        assert_eq!(r.status, 200, "{scheme}: {}", r.body);
    }
}

/// A request in flight when control is killed does not hold its Idempotency-Key for 24 h: the
/// restarted control releases it, the retry runs once, a later one replays — with its
/// `Location` and content type (an asynchronous trigger-now's 202).
#[test]
fn idempotency_survives_kill_9_of_control() {
    use std::time::{Duration, Instant};
    // A target that accepts and never answers: the probe runs to its timeout.
    let hold = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hold.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hold.incoming().flatten() {
            held.push(c);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut api = Api::start_plain(
        &format!("sqlite:{}", dir.path().join("i.db").display()),
        "idem",
    );
    let admin = api.key("admin");
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &admin,
        Some(json!({"url": format!("http://127.0.0.1:{port}/slow"), "timeout_ms": 4000})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let site = id_of(&r.body["site"]);
    let path = format!("/api/v1/sites/{site}/trigger-now");
    let key = [("Idempotency-Key", "run-once")];
    // Wait until the prober has the check (trigger-now answers 200 rather than 503).
    let began = Instant::now();
    while api.call("POST", &path, &admin, None).status != 200 {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "trigger-now never ran"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // A key of its own for the idempotent calls (trigger-now's rate limit is per key).
    let runner = api.key("write");
    let (addr, token, p) = (api.addr.clone(), runner.clone(), path.clone());
    let in_flight = std::thread::spawn(move || {
        raw(
            &addr,
            "POST",
            &p,
            Some(&token),
            None,
            &[("Idempotency-Key", "run-once")],
        )
    });
    std::thread::sleep(Duration::from_millis(1500));
    api.kill_and_restart();
    let _ = in_flight.join();
    // The retry runs (once the adopted prober answers), never 409.
    let began = Instant::now();
    let first = loop {
        let r = api.call_with("POST", &path, &runner, None, &key);
        assert_ne!(
            r.status, 409,
            "still in flight after the restart: {}",
            r.body
        );
        if r.status == 200 {
            break r;
        }
        assert!(began.elapsed() < Duration::from_secs(60), "{}", r.body);
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(first.header("idempotency-replayed"), None, "it ran");
    let again = api.call_with("POST", &path, &runner, None, &key);
    assert_eq!(
        again.header("idempotency-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(again.body, first.body);

    // A replayed 202 keeps its Location and content type.
    // (Another key: trigger-now has its own small rate limit per key.)
    let other = api.key("admin");
    let akey = [("Idempotency-Key", "async-once")];
    let apath = format!("{path}?async=true");
    let a = api.call_with("POST", &apath, &other, None, &akey);
    assert_eq!(a.status, 202, "{}", a.body);
    let b = api.call_with("POST", &apath, &other, None, &akey);
    assert_eq!(b.status, 202);
    assert_eq!(b.header("idempotency-replayed").as_deref(), Some("true"));
    assert!(a.header("location").is_some());
    assert_eq!(b.header("location"), a.header("location"));
    assert_eq!(b.header("content-type"), a.header("content-type"));
}

/// Names people read refuse control and format characters (a bidi override makes "evil.com"
/// read as something else); keywords refuse control characters.
#[test]
fn names_and_keywords_refuse_invisible_characters() {
    let dir = tempfile::tempdir().unwrap();
    let mut api = Api::start_plain(
        &format!("sqlite:{}", dir.path().join("n.db").display()),
        "name",
    );
    let admin = api.key("admin");
    for name in ["shop\u{202E}moc.live", "a\u{200B}b", "\u{FEFF}x"] {
        let r = api.call(
            "POST",
            "/api/v1/sites",
            &admin,
            Some(json!({"url": "http://127.0.0.1:9/n", "name": name})),
        );
        assert_eq!(r.status, 400, "{name:?}: {}", r.body);
        let r = api.call(
            "POST",
            "/api/v1/keys",
            &admin,
            Some(json!({"name": name, "scope": "read"})),
        );
        assert_eq!(r.status, 400, "key {name:?}: {}", r.body);
    }
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &admin,
        Some(json!({"url": "http://127.0.0.1:9/k", "keywords": ["ok\u{7}"]})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &admin,
        Some(json!({"url": "http://127.0.0.1:9/k", "name": "café 日本", "keywords": ["héllo"]})),
    );
    assert_eq!(r.status, 201, "ordinary Unicode is fine: {}", r.body);
    let (code, _, err) = api.cli_status(&["keys", "create", "--name", "x\u{202E}y"]);
    assert_eq!(code, Some(1), "{err}");
}

/// Runs `sql` on the SQLite database at `db`: a number back, or (`None`) a statement.
fn sqlite(db: &std::path::Path, sql: &str, number: bool) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("sqlite:{}", db.display());
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if number {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        } else {
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            0
        }
    })
}

fn count(db: &std::path::Path, sql: &str) -> i64 {
    sqlite(db, sql, true)
}

/// Sends a POST's headers (and `sent` of its body), leaving the rest of the body owed.
fn owe_a_body(addr: &str, path: &str, token: Option<&str>, sent: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(25))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: 400\r\n\r\n"
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(sent).unwrap();
    c
}

fn status_of(c: &mut std::net::TcpStream) -> (u16, String) {
    use std::io::Read;
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn a_slow_body_gets_408_while_others_are_served() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut api = Api::start_plain(
        &format!("sqlite:{}", dir.path().join("h.db").display()),
        "slow",
    );
    let admin = api.key("admin");
    let reader = api.key("read");
    // Neither a missing key nor a too-small scope waits for the body.
    for (token, want) in [(None, 401), (Some(reader.as_str()), 403)] {
        let began = Instant::now();
        let mut c = owe_a_body(&api.addr, "/api/v1/sites", token, b"{");
        let (status, text) = status_of(&mut c);
        assert_eq!(status, want, "{text}");
        assert!(began.elapsed() < Duration::from_secs(5), "{text}");
    }
    // A valid key trickling its body a byte every half second.
    let began = Instant::now();
    let mut slow = owe_a_body(&api.addr, "/api/v1/sites", Some(&admin), b"{");
    let mut trickle = slow.try_clone().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let dripper = std::thread::spawn(move || {
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            if trickle.write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    // Meanwhile others are served.
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..5 {
        let t = Instant::now();
        let r = api.call("GET", "/api/v1/sites", &admin, None);
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    let (status, text) = status_of(&mut slow);
    let took = began.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = dripper.join();
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "answered after {took:?}"
    );
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
}

#[test]
fn bad_tokens_are_limited_counted_and_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let mut api = Api::start_plain(&format!("sqlite:{}", db.display()), "badt");
    let (admin, fresh) = (api.key("admin"), api.key("read"));
    assert_eq!(api.call("GET", "/api/v1/sites", &admin, None).status, 200);
    // The same bad token again is remembered (no lookup) and still counted.
    for i in 0..30 {
        let token = format!("jm_notakey{}", i % 20);
        let r = api.call("GET", "/api/v1/sites", &token, None);
        assert_eq!(r.status, 401, "try {i}: {}", r.body);
    }
    let r = api.call("GET", "/api/v1/sites", "jm_notakey99", None);
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "auth_rate_limited", "{}", r.body);
    assert!(r.header("retry-after").is_some());
    // The address is refused before any lookup until it refills (2 s a try), a valid key it
    // never used too; a key that worked here recently still gets its lookup.
    let r = api.call("GET", "/api/v1/sites", &fresh, None);
    assert_eq!(r.status, 429, "{}", r.body);
    let r = api.call("GET", "/api/v1/sites", &admin, None);
    assert_eq!(r.status, 200, "{}", r.body);
    std::thread::sleep(Duration::from_millis(2500));
    let r = api.call("GET", "/api/v1/sites", &fresh, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let m = raw(&api.addr, "GET", "/metrics", None, None, &[]);
    let text = m.body.as_str().unwrap().to_owned();
    assert!(
        text.contains("jetmon_api_auth_failures_total 30\n"),
        "{text}"
    );
    assert!(text.contains("jetmon_api_auth_refused_total 2\n"), "{text}");
    // One failure in a hundred is audited, the first among them.
    eventually(
        "the sampled failure audited",
        Duration::from_secs(10),
        || {
            count(
                &db,
                "SELECT COUNT(*) FROM audit_log WHERE key_id = 0 AND status = 401",
            ) == 1
        },
    );
}

#[test]
fn a_bulk_request_stores_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let mut api = Api::start_plain(&format!("sqlite:{}", db.display()), "bulk");
    let admin = api.key("admin");
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &admin,
        Some(json!({"url": "http://127.0.0.1:9/a", "name": "before"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let site = id_of(&r.body["site"]);
    // The database refuses one item's write (after the update before it was made).
    sqlite(
        &db,
        "CREATE TRIGGER boom BEFORE INSERT ON sites WHEN NEW.name = 'boom' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        false,
    );
    let body = json!({"sites": [
        {"id": site, "name": "renamed"},
        {"url": "http://127.0.0.1:9/b", "name": "boom"},
    ]});
    let bytes = body.to_string().into_bytes();
    let r = raw(
        &api.addr,
        "POST",
        "/api/v1/sites/bulk",
        Some(&admin),
        Some(&bytes),
        &[],
    );
    assert!(r.status >= 500, "{} {}", r.status, r.body);
    let now = api.call("GET", &format!("/api/v1/sites/{site}"), &admin, None);
    assert_eq!(now.body["name"], "before", "a 5xx after a partial write");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sites"), 1);
    // Without the refusal, both are stored and said so.
    sqlite(&db, "DROP TRIGGER boom", false);
    let r = api.call("POST", "/api/v1/sites/bulk", &admin, Some(body));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["updated"].as_u64(), r.body["created"].as_u64()),
        (Some(1), Some(1))
    );
    let now = api.call("GET", &format!("/api/v1/sites/{site}"), &admin, None);
    assert_eq!(now.body["name"], "renamed");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sites"), 2);
}

#[test]
fn sites_import_is_idempotent_atomic_and_shows_a_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let mut api = Api::start_plain(&format!("sqlite:{}", db.display()), "impt");
    let admin = api.key("admin");
    let file = dir.path().join("sites.csv");
    let file_s = file.to_str().unwrap().to_owned();
    std::fs::write(
        &file,
        "url,interval_s,keyword,blog_id\nhttp://127.0.0.1:9/a\nhttp://127.0.0.1:9/b,30,ok,7\n\
         http://127.0.0.1:9/c,120\n",
    )
    .unwrap();
    // A dry run says what would happen and writes nothing.
    let (code, out, err) = api.cli_status(&["sites", "import", "--dry-run", &file_s]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("sites.csv:3: would add http://127.0.0.1:9/b"),
        "{out}"
    );
    assert!(
        out.contains("dry run: 3 site(s) to add, 0 to update, 0 unchanged; 0 row(s) rejected"),
        "{out}"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sites"), 0);
    let out = api.cli(&["sites", "import", &file_s]);
    assert!(
        out.contains("3 site(s) added, 0 updated, 0 unchanged"),
        "{out}"
    );
    // The same file again: the same checks, nothing added.
    let out = api.cli(&["sites", "import", &file_s]);
    assert!(
        out.contains("0 site(s) added, 0 updated, 3 unchanged"),
        "{out}"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sites"), 3);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM checks"), 3);
    // A changed row updates its check, and the dry run says how.
    std::fs::write(
        &file,
        "http://127.0.0.1:9/b,45,ok,7\nhttp://127.0.0.1:9/d\n",
    )
    .unwrap();
    let out = api.cli(&["sites", "import", "--dry-run", &file_s]);
    assert!(out.contains("sites.csv:1: would update site"), "{out}");
    assert!(
        out.contains("(http://127.0.0.1:9/b): interval 30 s → 45 s"),
        "{out}"
    );
    // The database refuses the new site: nothing of the file is stored, the update included.
    sqlite(
        &db,
        "CREATE TRIGGER boom BEFORE INSERT ON sites WHEN NEW.url = 'http://127.0.0.1:9/d' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        false,
    );
    let (code, _, err) = api.cli_status(&["sites", "import", &file_s]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nothing of this file was stored"), "{err}");
    let interval = || {
        count(
            &db,
            "SELECT interval_ms FROM checks WHERE target = 'http://127.0.0.1:9/b'",
        )
    };
    assert_eq!(interval(), 30_000, "the update was rolled back");
    sqlite(&db, "DROP TRIGGER boom", false);
    let out = api.cli(&["sites", "import", &file_s]);
    assert!(
        out.contains("1 site(s) added, 1 updated, 0 unchanged"),
        "{out}"
    );
    assert_eq!(interval(), 45_000);
    // The update reaches the API's view of the check too.
    let sites = api.call("GET", "/api/v1/sites?q=127.0.0.1:9/b", &admin, None);
    assert_eq!(
        sites.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        sites.body
    );
}

#[test]
fn the_demo_opens_its_own_targets_and_no_other_port_of_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut api = Api::start_demo_as_shipped(
        &format!("sqlite:{}", dir.path().join("h.db").display()),
        "demoonly",
    );
    let admin = api.key("admin");
    let add = |api: &mut Api, url: &str| {
        api.call("POST", "/api/v1/sites", &admin, Some(json!({"url": url})))
    };
    let mine = format!("http://{}/up?mine=1", api.demo);
    let r = add(&mut api, &mine);
    assert_eq!(r.status, 201, "{}", r.body);
    for url in [
        "http://127.0.0.1:22/",
        "http://127.0.0.1:6379/",
        "http://127.0.0.2:18090/",
        "http://[::1]:18090/",
    ] {
        let r = add(&mut api, url);
        assert_eq!(r.status, 422, "{url}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "unsafe_target", "{url}");
    }
    // The demo sites themselves are probed (the prober opens the same one address).
    let sites = api.call("GET", "/api/v1/sites?q=demo", &admin, None);
    let broken = sites.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str().is_some_and(|n| n.contains("broken")))
        .map(id_of)
        .expect("the broken demo site");
    eventually(
        "the broken demo site goes down",
        Duration::from_secs(90),
        || {
            let s = api.call("GET", &format!("/api/v1/sites/{broken}"), &admin, None);
            s.body["state"] == "down"
        },
    );
}
