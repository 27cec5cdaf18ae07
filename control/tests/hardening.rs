//! Hardening (issue 24), through `jetmon up` on SQLite: secrets never at rest (a replayed key
//! creation or rotation answers without the token; the database, its WAL, the spool, the log,
//! `/metrics` and every other answer hold no token; files are private whatever the umask), and
//! the API cannot lock its callers out by revoking the last admin key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "harness/mod.rs"]
mod harness;

use std::os::unix::fs::PermissionsExt;

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
