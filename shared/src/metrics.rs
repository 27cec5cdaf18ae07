//! `GET /metrics` (Prometheus text format 0.0.4), `/ready` and `/health` for control
//! (`control.api_listen`) and the veriflier (`veriflier.metrics_listen`). The owner renders
//! the text once a second; this thread only serves the latest copy, so a scrape never touches
//! the hot path.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

/// The latest rendered text and readiness, shared with the server thread.
#[derive(Clone, Default)]
pub struct Shared {
    pub text: Arc<Mutex<String>>,
    /// Why control is not ready (None = ready), as a public code (`database_unavailable`):
    /// `/ready` answers it to anyone, so it never holds an error chain (that goes to the log).
    pub not_ready: Arc<Mutex<Option<String>>>,
}

/// Binds `addr` (port 0 = any free port) and serves `/metrics`, `/ready` (200, or 503 with
/// the reason) and `/health` (200 while the process runs) from a background thread.
/// `key` names the setting in errors.
pub fn start(addr: &str, key: &str) -> Result<(SocketAddr, Shared)> {
    let listener = TcpListener::bind(addr).with_context(|| {
        format!("listening on {addr} ({key}) for /metrics: is another jetmon running?")
    })?;
    let bound = listener.local_addr()?;
    let text = Shared::default();
    let shared = text.clone();
    std::thread::Builder::new()
        .name("jetmon-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 2048];
                let n = stream.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("");
                let (status, kind, body) = match path {
                    "/metrics" => {
                        let body = shared.text.lock().map(|t| t.clone()).unwrap_or_default();
                        ("200 OK", "text/plain; version=0.0.4", body)
                    }
                    "/ready" => match shared.not_ready.lock().ok().and_then(|r| r.clone()) {
                        None => ("200 OK", "text/plain", "ready\n".to_owned()),
                        Some(why) => ("503 Service Unavailable", "text/plain", format!("{why}\n")),
                    },
                    "/health" => ("200 OK", "text/plain", "ok\n".to_owned()),
                    _ => ("404 Not Found", "text/plain", "try /metrics, /ready or /health\n".to_owned()),
                };
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        })
        .context("starting the metrics thread")?;
    Ok((bound, text))
}

/// Builds the exposition text: one `# HELP`/`# TYPE` per family, then its samples.
#[derive(Default)]
pub struct Text {
    out: String,
}

impl Text {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Resident memory of a process, bytes (0 when unknown).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_text_is_well_formed_and_escaped() {
        let mut t = Text::default();
        t.family("jetmon_x_total", "counter", "Things.");
        t.sample(
            "jetmon_x_total",
            &[("shard", "0"), ("outcome", "a\"b")],
            3.0,
        );
        t.sample("jetmon_x_total", &[], 1.5);
        assert_eq!(
            t.finish(),
            "# HELP jetmon_x_total Things.\n# TYPE jetmon_x_total counter\n\
             jetmon_x_total{shard=\"0\",outcome=\"a\\\"b\"} 3\njetmon_x_total 1.5\n"
        );
        assert!(rss_bytes(std::process::id()) > 0);
    }
}
