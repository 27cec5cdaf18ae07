//! The REST API's foundation through `jetmon up`: keys, the error envelope and request ids,
//! cursor pages and their validation, the operator endpoints beside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jetmon");

struct Up(std::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Reply {
    status: u16,
    head: String,
    body: serde_json::Value,
}

fn get(addr: &str, path: &str, token: Option<&str>, request_id: Option<&str>) -> Reply {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(id) = request_id {
        req.push_str(&format!("X-Request-ID: {id}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_owned())),
    }
}

fn key(cfg: &Path, scope: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "keys",
            "create",
            "--name",
            scope,
        ])
        .args(["--scope", scope])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn keys_envelopes_request_ids_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("jetmon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[prober]\nshards = 1\nring_dir = {:?}\nring_prefix = \"api\"\nresult_ring_bytes = 1048576\n\
             command_ring_bytes = 262144\nallow_cidrs = [\"127.0.0.0/8\"]\n[control]\n\
             api_listen = \"127.0.0.1:0\"\nprober_binary = {:?}\ndatabase_url = \"sqlite:{}\"\n",
            d,
            Path::new(BIN).with_file_name("jetmon-prober"),
            d.join("jetmon.db").display()
        ),
    )
    .unwrap();
    let read = key(&cfg, "read");
    let revoked = key(&cfg, "read");
    let log = d.join("up.log");
    let _up = Up(Command::new(BIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "up",
            "--demo",
            "--duration",
            "60",
        ])
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap());
    let began = Instant::now();
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("metrics on http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
        assert!(began.elapsed() < Duration::from_secs(30), "{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let revoke = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "keys", "revoke", "2"])
        .output()
        .unwrap();
    assert!(revoke.status.success());

    // No auth needed: liveness, readiness, metrics.
    let r = get(&addr, "/api/v1/health", None, None);
    assert_eq!(r.status, 200);
    assert!(r.head.contains("x-request-id: "), "{}", r.head);
    assert_eq!(get(&addr, "/health", None, None).status, 200);
    // /metrics is rendered once a second by the supervisor.
    let began = Instant::now();
    loop {
        let m = get(&addr, "/metrics", None, None);
        assert_eq!(m.status, 200);
        if m.body.as_str().unwrap_or("").contains("# TYPE") {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(10), "empty /metrics");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Auth: missing, unknown, revoked → 401 envelopes carrying the request id.
    for token in [None, Some("jm_nope"), Some(revoked.as_str())] {
        let r = get(&addr, "/api/v1/me", token, Some("req-42"));
        assert_eq!(r.status, 401, "{token:?}");
        assert_eq!(r.body["error"]["code"], "unauthorized");
        assert_eq!(r.body["error"]["request_id"], "req-42");
        assert!(r.head.contains("x-request-id: req-42"));
    }
    let me = get(&addr, "/api/v1/me", Some(&read), None);
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["key"]["scope"], "read");
    assert!(
        me.body.to_string().find(&read).is_none(),
        "the token is echoed"
    );
    // Pages: the demo's 4 sites, 3 then 1, the cursor opaque; filters before the cut.
    let p1 = get(&addr, "/api/v1/sites?limit=3", Some(&read), None);
    assert_eq!(p1.status, 200, "{}", p1.body);
    assert_eq!(p1.body["data"].as_array().unwrap().len(), 3);
    let next = p1.body["page"]["next"].as_str().unwrap().to_owned();
    let p2 = get(
        &addr,
        &format!("/api/v1/sites?limit=3&cursor={next}"),
        Some(&read),
        None,
    );
    assert_eq!(p2.body["data"].as_array().unwrap().len(), 1, "{}", p2.body);
    assert!(p2.body["page"]["next"].is_null());
    let first = &p1.body["data"][0];
    assert!(first["state"].is_string() && first["site_status"].is_number());
    let id = first["id"].as_u64().unwrap();
    let one = get(&addr, &format!("/api/v1/sites/{id}"), Some(&read), None);
    assert_eq!((one.status, &one.body["id"]), (200, &first["id"]));
    // Bad input: each a 400 or 404 envelope that names the problem.
    for (path, status, code) in [
        ("/api/v1/sites?limit=0", 400, "invalid_query"),
        ("/api/v1/sites?limit=500", 400, "invalid_query"),
        ("/api/v1/sites?state=sideways", 400, "invalid_query"),
        ("/api/v1/sites?colour=red", 400, "invalid_query"),
        ("/api/v1/sites?cursor=!!!", 400, "invalid_cursor"),
        ("/api/v1/sites/abc", 400, "invalid_path"),
        ("/api/v1/sites/999999", 404, "not_found"),
        ("/api/v1/nowhere", 404, "not_found"),
    ] {
        let r = get(&addr, path, Some(&read), None);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert_eq!(r.body["error"]["code"], code, "{path}: {}", r.body);
        assert!(
            !r.body["error"]["request_id"]
                .as_str()
                .unwrap_or("")
                .is_empty()
        );
    }
    let r = get(&addr, "/api/v1/sites?colour=red", Some(&read), None);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{}",
        r.body
    );
}
