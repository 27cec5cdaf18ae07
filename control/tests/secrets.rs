//! Secrets at rest (docs/notifications.md), through `jetmon up` on SQLite: a check's custom
//! headers and credentials are sent by the prober, answered only as previews, and found
//! nowhere in clear — not in the database file, its WAL, the log, `/metrics` or any answer;
//! `jetmon secrets rotate-key` seals them again under a new key while the API keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "harness/mod.rs"]
mod harness;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::*;
use serde_json::json;

/// A loopback HTTP server answering 200 and keeping every request head it was sent.
fn recorder() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        for mut c in listener.incoming().map_while(Result::ok) {
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = vec![0u8; 16384];
            let n = c.read(&mut buf).unwrap_or(0);
            keep.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, seen)
}

fn bytes_of(p: &std::path::Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn check_credentials_are_sent_shown_as_previews_and_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let mut api = Api::start_plain(&format!("sqlite:{}", db.display()), "secr");
    let admin = api.key("admin");
    let (port, seen) = recorder();
    let mut answers = Vec::new();
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &admin,
        Some(json!({"url": format!("http://127.0.0.1:{port}/health")})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let site = id_of(&r.body["site"]);
    let check = r.body["checks"][0]["id"].as_u64().unwrap();
    let path = format!("/api/v1/sites/{site}/checks/{check}");
    // Refused: framing headers, Authorization as a plain header, control characters.
    for (headers, why) in [
        (json!([{"name": "Host", "value": "x"}]), "may not be set"),
        (
            json!([{"name": "Authorization", "value": "Bearer x"}]),
            "send credentials as auth",
        ),
        (
            json!([{"name": "X-A", "value": "a\r\nX-B: b"}]),
            "may not be set",
        ),
    ] {
        let r = api.call("PATCH", &path, &admin, Some(json!({"headers": headers})));
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(why),
            "{}",
            r.body
        );
    }
    let r = api.call(
        "PATCH",
        &path,
        &admin,
        Some(json!({
            "headers": [{"name": "X-Api-Key", "value": "hdr-secret-0001"}],
            "auth": {"type": "basic", "username": "monitor", "password": "pw-secret-0002"},
        })),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["headers"],
        json!([{"name": "X-Api-Key", "value_preview": "…0001"}])
    );
    assert_eq!(
        r.body["auth"],
        json!({"type": "basic", "username": "monitor", "secret_preview": "…0002"})
    );
    answers.push(r.body.to_string());
    // The prober sends them.
    let t = api.call(
        "POST",
        &format!("/api/v1/sites/{site}/trigger-now"),
        &admin,
        None,
    );
    answers.push(t.body.to_string());
    eventually(
        "the probe with its headers",
        Duration::from_secs(60),
        || {
            let basic = "Authorization: Basic bW9uaXRvcjpwdy1zZWNyZXQtMDAwMg==";
            seen.lock()
                .unwrap()
                .iter()
                .any(|h| h.contains("X-Api-Key: hdr-secret-0001") && h.contains(basic))
        },
    );
    // A PATCH of something else keeps them; bearer replaces basic; none removes it.
    let r = api.call("PATCH", &path, &admin, Some(json!({"interval_s": 30})));
    assert_eq!(r.body["auth"]["secret_preview"], "…0002", "{}", r.body);
    let r = api.call(
        "PATCH",
        &path,
        &admin,
        Some(json!({"auth": {"type": "bearer", "token": "tok-secret-0003"}})),
    );
    assert_eq!(
        r.body["auth"],
        json!({"type": "bearer", "username": null, "secret_preview": "…0003"})
    );
    assert_eq!(r.body["headers"][0]["name"], "X-Api-Key");
    answers.push(r.body.to_string());
    for p in [
        path.clone(),
        format!("/api/v1/sites/{site}/checks"),
        format!("/api/v1/sites/{site}"),
    ] {
        answers.push(api.call("GET", &p, &admin, None).body.to_string());
    }
    // Headers through `jetmon sites import` (JSON lines): sealed too, the plan never says them.
    let file = api._dir.path().join("h.jsonl");
    let line = |v: &str| {
        format!(
            "{{\"url\": \"http://127.0.0.1:{port}/imported\", \"headers\": {{\"X-Token\": \"{v}\"}}}}\n"
        )
    };
    std::fs::write(&file, line("imp-secret-0004")).unwrap();
    let f = file.to_str().unwrap();
    let out = api.cli(&["sites", "import", f]);
    assert!(out.contains("1 site(s) added"), "{out}");
    assert!(api.cli(&["sites", "import", f]).contains("1 unchanged"));
    std::fs::write(&file, line("imp-secret-0005")).unwrap();
    let (code, out, err) = api.cli_status(&["sites", "import", "--dry-run", f]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("request headers (1 → 1)"), "{out}");
    answers.push(format!("{out}{err}"));
    // Rotation: a new key, everything sealed again, still opening, the API still answering.
    let before = api.cli(&["secrets", "status"]);
    assert!(before.contains("2 secret(s) sealed with k1"), "{before}");
    let rotated = api.cli(&["secrets", "rotate-key"]);
    assert!(
        rotated.contains("sealed 2 secret(s) again under k2"),
        "{rotated}"
    );
    assert!(rotated.contains("2 secret(s) sealed with k2"), "{rotated}");
    assert!(!rotated.contains("sealed with k1"), "{rotated}");
    let r = api.call("GET", &path, &admin, None);
    assert_eq!(r.body["auth"]["secret_preview"], "…0003", "{}", r.body);
    let key_file = dir.path().join("s.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Nowhere in clear.
    std::thread::sleep(Duration::from_secs(2));
    let metrics = raw(&api.addr, "GET", "/metrics", None, None, &[]);
    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("the database".into(), bytes_of(&db)),
        ("its WAL".into(), bytes_of(&db.with_extension("db-wal"))),
        ("the log".into(), bytes_of(&api._dir.path().join("up.log"))),
        ("/metrics".into(), metrics.body.to_string().into_bytes()),
    ];
    places.extend(
        answers
            .into_iter()
            .map(|a| ("an answer".to_owned(), a.into_bytes())),
    );
    for secret in [
        "hdr-secret-0001",
        "pw-secret-0002",
        "tok-secret-0003",
        "imp-secret-0004",
        "imp-secret-0005",
        "bW9uaXRvcjpwdy1zZWNyZXQtMDAwMg",
    ] {
        for (what, bytes) in &places {
            assert!(!contains(bytes, secret), "{secret} in clear in {what}");
        }
    }
}

#[test]
fn the_key_may_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jetmon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[control]\ndatabase_url = \"sqlite:{}\"\n",
            dir.path().join("e.db").display()
        ),
    )
    .unwrap();
    let key = "k9 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let out = std::process::Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "secrets", "status"])
        .env("JETMON_SECRET_KEY", key)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("keys in JETMON_SECRET_KEY: k9"), "{text}");
    assert!(
        !text.contains("AAECAwQF"),
        "the key itself is never printed: {text}"
    );
    // new-key refuses to write a file the key does not come from.
    let out = std::process::Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "secrets", "new-key"])
        .env("JETMON_SECRET_KEY", key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JETMON_SECRET_KEY"));
    assert!(!dir.path().join("e.key").exists());
}
