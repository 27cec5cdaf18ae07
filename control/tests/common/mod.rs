//! Helpers several control test binaries share.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::time::Duration;

/// `GET path` on loopback; the whole raw response (head and body), or "" when nothing
/// answers (a server being restarted, a database outage test).
pub fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut s = String::new();
    let _ = c.read_to_string(&mut s);
    s
}
