//! `jetmon up --demo`: a small built-in fleet so a newcomer sees Jetmon work without the
//! internet or any setup — an HTTP server on loopback with a few sites that behave
//! differently, and demo checks pointing at them. Bounded: it serves at most
//! `MAX_CONNECTIONS` at once and lives as long as `jetmon up`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use jetmon_shared::check::{CheckSpec, CheckType};

/// Where the demo fleet listens (loopback only).
pub const DEMO_ADDR: &str = "127.0.0.1:18090";
const MAX_CONNECTIONS: usize = 64;
/// The flapping site is down for the second half of every cycle (seconds; tests shorten it
/// with JETMON_DEMO_FLAP_CYCLE_S).
pub const FLAP_CYCLE_S: u64 = 120;

fn flap_cycle_s() -> u64 {
    std::env::var("JETMON_DEMO_FLAP_CYCLE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v >= 2)
        .unwrap_or(FLAP_CYCLE_S)
}

/// The demo's own webhook receiver, on the demo fleet's address: `jetmon up --demo` subscribes
/// it to every notice, it checks both signatures, prints each notice it gets and lists the
/// latest at `GET /hook`.
pub const HOOK_PATH: &str = "/hook";
/// Notices the receiver keeps for `GET /hook`.
const HOOK_KEEP: usize = 50;

static HOOK_SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static HOOK_SEEN: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// The demo receiver's URL.
pub fn hook_url() -> String {
    format!("http://{DEMO_ADDR}{HOOK_PATH}")
}

/// The secrets the demo receiver verifies with (the demo webhook's).
pub fn set_hook_secrets(secrets: Vec<String>) {
    if let Ok(mut s) = HOOK_SECRETS.lock() {
        *s = secrets;
    }
}

/// The demo sites: (name, path, what it does).
pub const SITES: &[(&str, &str)] = &[
    ("demo: always up", "/up"),
    ("demo: flapping (down 1 minute in 2)", "/flap"),
    ("demo: slow but fine (0.8 s)", "/slow"),
    ("demo: broken (HTTP 500)", "/down"),
];

/// The check of a demo site: every 15 s (tests shorten it with JETMON_DEMO_INTERVAL_S), 3 s
/// timeout, 2 re-checks 5 s apart (or one interval, when shorter).
pub fn check_for(path: &str) -> CheckSpec {
    let interval_s = std::env::var("JETMON_DEMO_INTERVAL_S")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|v| (1..=3600).contains(v))
        .unwrap_or(15);
    let mut spec = CheckSpec::new(0, 0, CheckType::Http, &format!("http://{DEMO_ADDR}{path}"));
    spec.interval_ms = interval_s * 1000;
    spec.timeout_ms = 3_000;
    spec.retries = 2;
    spec.retry_spacing_ms = 5_000.min(interval_s * 1000);
    spec
}

/// Starts the demo server in the background.
pub fn start() -> Result<SocketAddr> {
    let cycle = flap_cycle_s();
    let listener = TcpListener::bind(DEMO_ADDR).with_context(|| {
        format!("starting the demo fleet on {DEMO_ADDR} (is another `jetmon up --demo` running?)")
    })?;
    let addr = listener.local_addr()?;
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("jetmon-demo".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if busy.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    continue; // dropped: the prober sees a reset, as from an overloaded site
                }
                busy.fetch_add(1, Ordering::Relaxed);
                let busy = busy.clone();
                let _ = std::thread::Builder::new()
                    .name("jetmon-demo-conn".into())
                    .spawn(move || {
                        serve(stream, cycle);
                        busy.fetch_sub(1, Ordering::Relaxed);
                    });
            }
        })
        .context("starting the demo fleet thread")?;
    Ok(addr)
}

fn serve(mut stream: TcpStream, cycle: u64) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request).into_owned();
    if text.starts_with("POST /hook ") {
        return receive(stream, &request, &text);
    }
    if text.starts_with("GET /hook ") {
        let seen = HOOK_SEEN
            .lock()
            .map(|s| s.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        let page = if seen.is_empty() {
            "no notice yet: the broken and flapping demo sites send some within a minute\n"
                .to_owned()
        } else {
            format!("{seen}\n")
        };
        let _ = stream.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            )
            .as_bytes(),
        );
        return;
    }
    // The query is ignored, so many checks can share one demo site (`/flap?k=7`).
    let path = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (status, body) = match path {
        "/up" => ("200 OK", "the demo site is up"),
        "/flap" if now % cycle < cycle / 2 => ("200 OK", "up for now"),
        "/flap" => ("503 Service Unavailable", "down for now"),
        "/slow" => {
            std::thread::sleep(Duration::from_millis(800));
            ("200 OK", "slow but fine")
        }
        "/down" => ("500 Internal Server Error", "always broken"),
        // Up only for clients whose User-Agent says "veriflier": a site that fails from the
        // prober's network alone (the veriflier tests' false alarm). Not a listed demo site.
        "/vantage" if user_agent(&text).contains("veriflier") => ("200 OK", "up from here"),
        "/vantage" => (
            "500 Internal Server Error",
            "down from the prober's network",
        ),
        _ => ("404 Not Found", "no such demo site"),
    };
    let page = format!("<html><body><p>{body}</p></body></html>\n");
    let _ = stream.write_all(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        )
        .as_bytes(),
    );
}

fn user_agent(request: &str) -> &str {
    request
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("user-agent")
                .then(|| value.trim())
        })
        .unwrap_or("")
}

fn header<'a>(request: &'a str, name: &str) -> &'a str {
    request
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or("")
}

/// `POST /hook`: a notice from the demo webhook. Checks both signatures with the demo
/// webhook's secret, prints one line, answers 204.
fn receive(mut stream: TcpStream, request: &[u8], text: &str) {
    let length: usize = header(text, "content-length")
        .parse()
        .unwrap_or(0)
        .min(64 * 1024);
    let start = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(request.len(), |p| p + 4);
    let mut body = request[start..].to_vec();
    let mut buf = [0u8; 4096];
    while body.len() < length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    body.truncate(length);
    let id = header(text, "webhook-id");
    let t: u64 = header(text, "webhook-timestamp").parse().unwrap_or(0);
    let secrets = HOOK_SECRETS.lock().map(|s| s.clone()).unwrap_or_default();
    let standard_sent: Vec<&str> = header(text, "webhook-signature").split(' ').collect();
    let jetmon_sent = header(text, "x-jetmon-signature");
    let mut standard = false;
    let mut jetmon = false;
    for s in &secrets {
        let want = jetmon_outbox::sign::standard(&[s.as_str()], id, t, &body);
        standard |= !want.is_empty() && standard_sent.contains(&want.as_str());
        let want = jetmon_outbox::sign::jetmon(&[s.as_str()], t, &body);
        if let Some(v1) = want.split(',').nth(1) {
            jetmon |= jetmon_sent.split(',').any(|p| p == v1);
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let url = v["site"]["url"].as_str().unwrap_or("?");
    let event = &v["event"];
    let what = match v["type"].as_str().unwrap_or("") {
        "ping" => "a test ping".to_owned(),
        "site.state_changed" => format!(
            "{url}: the site is now {}",
            v["site"]["state"].as_str().unwrap_or("?")
        ),
        "event.opened" => format!(
            "{url}: event {} opened, {}",
            event["id"],
            event["state"].as_str().unwrap_or("?")
        ),
        "event.closed" => format!(
            "{url}: event {} closed ({}, after {})",
            event["id"],
            event["resolution_reason"].as_str().unwrap_or("?"),
            event["state"].as_str().unwrap_or("?")
        ),
        _ => format!(
            "{url}: event {} now {}",
            event["id"],
            event["state"].as_str().unwrap_or("?")
        ),
    };
    let verdict = if standard && jetmon {
        "both signatures verified".to_owned()
    } else {
        format!(
            "SIGNATURE CHECK FAILED (Standard Webhooks {}, X-Jetmon-Signature {}; was the secret rotated? restart the demo)",
            if standard { "ok" } else { "bad" },
            if jetmon { "ok" } else { "bad" }
        )
    };
    let line = format!(
        "{} {} {what} ({verdict}; delivery {id})",
        v["occurred_at"].as_str().unwrap_or(""),
        v["type"].as_str().unwrap_or("?"),
    );
    eprintln!("jetmon demo: webhook received: {line}");
    if let Ok(mut seen) = HOOK_SEEN.lock() {
        if seen.len() >= HOOK_KEEP {
            seen.pop_front();
        }
        seen.push_back(line);
    }
    let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
}
