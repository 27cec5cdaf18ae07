//! A deliberately misbehaving HTTP server on loopback, for the cases real nginx will not
//! produce: slowloris heads and bodies, decompression bombs, malformed and oversized heads,
//! broken chunking, redirect loops and redirects into private networks. Bounded: it serves at
//! most `MAX_CONNECTIONS` connections, each for at most `MAX_CONNECTION_TIME`, and stops when
//! dropped or after `LIFETIME`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const MAX_CONNECTIONS: usize = 500;
const MAX_CONNECTION_TIME: Duration = Duration::from_secs(12);
const LIFETIME: Duration = Duration::from_secs(60);

pub struct Hostile {
    pub port: u16,
    /// Connections accepted so far (a canary: tests assert nothing reached it).
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hostile {
    pub fn start() -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut served = 0;
            while !flag.load(Ordering::Relaxed)
                && started.elapsed() < LIFETIME
                && served < MAX_CONNECTIONS
            {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        count.fetch_add(1, Ordering::SeqCst);
                        let flag = flag.clone();
                        std::thread::spawn(move || serve(stream, &flag));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Hostile {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A path answered with a 302 to exactly `location` (hex in the path, so any bytes fit).
    pub fn redirect_to(&self, location: &str) -> String {
        let hex: String = location.bytes().map(|b| format!("{b:02x}")).collect();
        self.url(&format!("/to/{hex}"))
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut c = Compress::new(Compression::default(), false);
    let mut deflated = Vec::with_capacity(data.len() / 100 + 4096);
    c.compress_vec(data, &mut deflated, FlushCompress::Finish)
        .unwrap();
    out.extend(deflated);
    out.extend_from_slice(&[0; 8]);
    out
}

/// Sends `bytes` one at a time, `gap` apart, until done, stopped or out of time.
fn drip(stream: &mut TcpStream, bytes: &[u8], gap: Duration, stop: &AtomicBool) {
    let started = Instant::now();
    for b in bytes {
        if stop.load(Ordering::Relaxed) || started.elapsed() > MAX_CONNECTION_TIME {
            return;
        }
        if stream.write_all(&[*b]).is_err() {
            return;
        }
        std::thread::sleep(gap);
    }
}

fn serve(mut stream: TcpStream, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let ok_head = |extra: &str, len: usize| {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n")
    };
    let redirect = |to: &str| {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let slow = Duration::from_millis(300);
    let response: Vec<u8> = match path.as_str() {
        // The head arrives one byte every 300 ms: never complete within a check's deadline.
        "/slowloris" => {
            drip(&mut stream, b"HTTP/1.1 200 OK\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n", slow, stop);
            return;
        }
        // A quick head, then a body one byte every 300 ms.
        "/slowbody" => {
            let _ = stream.write_all(ok_head("", 1000).as_bytes());
            drip(&mut stream, &[b'x'; 1000], slow, stop);
            return;
        }
        // 64 MiB of zeros, gzipped to ~64 KiB, on a page that should contain a keyword.
        "/bomb" => {
            let body = gzip(&vec![0u8; 64 << 20]);
            let mut r = ok_head("Content-Encoding: gzip\r\nContent-Type: text/html\r\n", body.len()).into_bytes();
            r.extend(body);
            r
        }
        "/gzip" => {
            let mut page = b"<p>filler</p>".repeat(5000);
            page.extend_from_slice(b"<footer>Powered by WordPress</footer>");
            let body = gzip(&page);
            let mut r = ok_head("Content-Encoding: gzip\r\n", body.len()).into_bytes();
            r.extend(body);
            r
        }
        "/bad-gzip" => {
            let mut r = ok_head("Content-Encoding: gzip\r\n", 20).into_bytes();
            r.extend_from_slice(b"this is not gzip....");
            r
        }
        "/malformed" => b"HTTP/1.1 two hundred OK\r\n\r\nhello".to_vec(),
        "/many-headers" => {
            let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..150 {
                r.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
            }
            r.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            r
        }
        "/huge-head" => {
            let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
            for _ in 0..100 {
                r.extend_from_slice(format!("X-Big: {}\r\n", "a".repeat(1000)).as_bytes());
            }
            r.extend_from_slice(b"\r\n");
            r
        }
        "/bad-chunk" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"
                .to_vec()
        }
        "/short" => {
            let mut r = ok_head("", 5000).into_bytes();
            r.extend_from_slice(&[b'y'; 100]);
            r
        }
        p if p.starts_with("/to/") => {
            let hex = &p[4..];
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                .collect();
            let mut r = b"HTTP/1.1 302 Found\r\nLocation: ".to_vec();
            r.extend_from_slice(&bytes);
            r.extend_from_slice(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            r
        }
        "/loop-a" => redirect("/loop-b").into_bytes(),
        "/loop-b" => redirect("/loop-a").into_bytes(),
        "/to-private" => redirect("http://10.1.2.3/admin").into_bytes(),
        "/to-metadata-name" => redirect("http://metadata.google.internal/computeMetadata/v1/").into_bytes(),
        "/to-userinfo" => redirect("http://admin:secret@127.0.0.1/").into_bytes(),
        _ => {
            let body = b"<html>hostile server default page</html>";
            let mut r = ok_head("", body.len()).into_bytes();
            r.extend_from_slice(body);
            r
        }
    };
    let _ = stream.write_all(&response);
}
