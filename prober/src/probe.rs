//! The io_uring driver of one HTTP probe: connect with a deadline, write the request, read
//! into pooled buffers and let the sans-IO machine classify. Thin on purpose: every decision
//! is in `proto::http`. A probe never fails: every path ends in an outcome.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use jetmon_shared::check::PhaseTimings;
use jetmon_shared::outcome::Outcome;

use crate::proto::http::{Detail, Progress, ResponseMachine, write_request};
use crate::sched::Settings;
use crate::target::{Scheme, Target};
use crate::tls::{self, HandshakeError, TlsConn, TlsFacts};
use rustls::ClientConfig;

/// Bytes read from the socket per `recv`.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Buffers one probe borrows from its shard's pool; returned intact after the probe.
#[derive(Debug, Default)]
pub struct ProbeBuffers {
    pub read: Vec<u8>,
    pub request: Vec<u8>,
    pub head: Vec<u8>,
    pub fold: Vec<u8>,
    pub carry: Vec<u8>,
    /// Plaintext out of TLS (the socket's bytes go to `read`).
    pub plain: Vec<u8>,
    /// The leaf certificate's issuer, for HTTPS results.
    pub issuer: String,
    /// A redirect's Location, and the last URL of a redirect chain.
    pub location: Vec<u8>,
    pub final_url: String,
    /// The check's target, copied out of the table (it may change while we run).
    pub target: String,
    /// The redirects followed so far: the status that redirected and where it led.
    pub chain: Vec<(u16, String)>,
}

impl ProbeBuffers {
    pub fn new() -> ProbeBuffers {
        ProbeBuffers {
            read: vec![0; READ_BUFFER_BYTES],
            ..ProbeBuffers::default()
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReport {
    pub outcome: Outcome,
    pub detail: u16,
    pub http_status: u16,
    pub phases: PhaseTimings,
    pub bytes_read: u32,
    /// What the TLS handshake showed (zeroes for plain HTTP and other checks).
    pub tls: TlsFacts,
    /// The response redirects (Location in the buffers' `location`).
    pub redirect: bool,
    /// Redirects followed, and result flags (`FLAG_REDIRECT_*`).
    pub redirects: u8,
    pub flags: u8,
    /// The address probe safety refused (for the result's note), when one was judged.
    pub blocked_ip: Option<std::net::IpAddr>,
}

impl ProbeReport {
    fn failed(
        outcome: Outcome,
        detail: u16,
        started: Instant,
        phases: PhaseTimings,
    ) -> ProbeReport {
        ProbeReport {
            outcome,
            detail,
            http_status: 0,
            phases: PhaseTimings {
                total_us: micros(started.elapsed()),
                ..phases
            },
            bytes_read: 0,
            tls: TlsFacts::default(),
            redirect: false,
            redirects: 0,
            flags: 0,
            blocked_ip: None,
        }
    }
}

/// The report of a probe that ended on our side of the wire (no answer judged from the
/// target): zero timings and no response.
pub fn monitor_side(outcome: Outcome) -> ProbeReport {
    ProbeReport {
        outcome,
        detail: 0,
        http_status: 0,
        phases: Default::default(),
        bytes_read: 0,
        tls: Default::default(),
        redirect: false,
        redirects: 0,
        flags: 0,
        blocked_ip: None,
    }
}

/// The connection an HTTP exchange runs over: plain TCP, or TLS on top of it. Both read into
/// their own buffer and hand out the bytes received (plaintext for TLS).
enum Conn<'b> {
    Plain {
        tcp: TcpStream,
        buf: &'b mut Vec<u8>,
    },
    Tls {
        conn: Box<TlsConn<'b>>,
        buf: &'b mut Vec<u8>,
    },
}

impl Conn<'_> {
    async fn write_all(&mut self, data: &[u8], deadline: Instant) -> io::Result<()> {
        match self {
            Conn::Plain { tcp, .. } => {
                let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
                let _ = tcp.set_write_timeout(Some(left));
                tcp.write_all(data).await
            }
            Conn::Tls { conn, .. } => conn.write_all(data, deadline).await,
        }
    }

    /// The next bytes of the response; empty = the server is done.
    async fn read(&mut self, deadline: Instant) -> io::Result<&[u8]> {
        match self {
            Conn::Plain { tcp, buf } => {
                let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
                let _ = tcp.set_read_timeout(Some(left));
                let n = tcp.read(buf).await?;
                Ok(&buf[..n])
            }
            Conn::Tls { conn, buf } => {
                let n = conn.read(buf, deadline).await?;
                Ok(&buf[..n])
            }
        }
    }
}

/// Runs one HTTP(S) probe against `addr` (already resolved) by `deadline`.
pub async fn http(
    target: &Target<'_>,
    addr: SocketAddr,
    settings: &Settings,
    user_agent: &str,
    deadline: Instant,
    bufs: &mut ProbeBuffers,
    tls: &Arc<ClientConfig>,
) -> ProbeReport {
    let started = Instant::now();
    let mut phases = PhaseTimings::default();
    let stream = match connect(addr, deadline, started, &mut phases).await {
        Ok(s) => s,
        Err(report) => return report,
    };
    if bufs.read.len() < READ_BUFFER_BYTES {
        bufs.read.resize(READ_BUFFER_BYTES, 0);
    }
    // Plaintext has a buffer of its own only when there is TLS.
    if target.scheme == Scheme::Https && bufs.plain.len() < READ_BUFFER_BYTES {
        bufs.plain.resize(READ_BUFFER_BYTES, 0);
    }
    let ProbeBuffers {
        read,
        plain,
        request,
        head,
        fold,
        carry,
        issuer,
        location,
        ..
    } = bufs;
    let mut facts = TlsFacts::default();
    issuer.clear();
    let mut conn = match target.scheme {
        Scheme::Http => Conn::Plain {
            tcp: stream,
            buf: read,
        },
        Scheme::Https => {
            let tls_started = Instant::now();
            let mut conn = match TlsConn::new(stream, tls, target.host, read) {
                Ok(c) => Box::new(c),
                Err(_) => return ProbeReport::failed(Outcome::LocalResource, 0, started, phases),
            };
            let _ = tls::take_seen_leaf();
            let handshake = conn.handshake(deadline).await;
            if let Some(leaf) = tls::take_seen_leaf() {
                facts.not_after_s = leaf.not_after_s;
                facts.san_count = leaf.san_count;
                issuer.push_str(&leaf.issuer);
            }
            match handshake {
                Ok(negotiated) => {
                    facts.version = negotiated.version;
                    facts.cipher = negotiated.cipher;
                    phases.tls_us = micros(tls_started.elapsed());
                }
                Err(e) => {
                    let (outcome, detail) = match &e {
                        HandshakeError::Tls(e) => tls::classify(e),
                        HandshakeError::Closed => {
                            (Outcome::TlsHandshake, tls::detail::CLOSED_IN_HANDSHAKE)
                        }
                        HandshakeError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
                            (Outcome::TimeoutConnect, 0)
                        }
                        HandshakeError::Io(e) => (Outcome::ConnReset, errno(e)),
                    };
                    let mut report = ProbeReport::failed(outcome, detail, started, phases);
                    report.tls = facts;
                    return report;
                }
            }
            Conn::Tls { conn, buf: plain }
        }
    };
    let request_at = Instant::now();

    write_request(
        request,
        settings.rules.method,
        target.authority,
        target.path,
        user_agent,
        &settings.headers,
    );
    if let Err(e) = conn.write_all(request, deadline).await {
        let outcome = if e.kind() == io::ErrorKind::TimedOut {
            Outcome::TimeoutTtfb
        } else {
            Outcome::ConnReset
        };
        let mut report = ProbeReport::failed(outcome, errno(&e), started, phases);
        report.tls = facts;
        return report;
    }

    let mut machine = ResponseMachine::new(
        &settings.rules,
        std::mem::take(head),
        std::mem::take(fold),
        std::mem::take(carry),
    );
    let mut bytes_read: u64 = 0;
    let verdict = loop {
        if remaining(deadline).is_none() {
            break machine.deadline();
        }
        match conn.read(deadline).await {
            Ok([]) => break machine.end_of_stream(),
            Ok(chunk) => {
                if bytes_read == 0 {
                    phases.ttfb_us = micros(request_at.elapsed());
                }
                bytes_read += chunk.len() as u64;
                if let Progress::Done(v) = machine.feed(chunk) {
                    break v;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => break machine.deadline(),
            Err(e) => {
                // A reset after a complete answer is the server's business, not a failure.
                let v = machine.end_of_stream();
                if machine.head_complete() && v.outcome == Outcome::Ok {
                    break v;
                }
                (*head, *fold, *carry) = machine.into_buffers();
                let mut report =
                    ProbeReport::failed(Outcome::ConnReset, errno(&e), started, phases);
                report.bytes_read = bytes_read.min(u64::from(u32::MAX)) as u32;
                report.tls = facts;
                return report;
            }
        }
    };
    if verdict.redirect {
        location.clear();
        location.extend_from_slice(machine.location());
    }
    (*head, *fold, *carry) = machine.into_buffers();
    phases.total_us = micros(started.elapsed());
    drop(conn);
    ProbeReport {
        outcome: verdict.outcome,
        detail: if verdict.detail == Detail::None {
            0
        } else {
            verdict.detail as u16
        },
        http_status: verdict.status,
        phases,
        bytes_read: bytes_read.min(u64::from(u32::MAX)) as u32,
        tls: facts,
        redirect: verdict.redirect,
        redirects: 0,
        flags: 0,
        blocked_ip: None,
    }
}

/// Connects by `deadline`, filling `connect_us`; a failure is already a classified report.
async fn connect(
    addr: SocketAddr,
    deadline: Instant,
    started: Instant,
    phases: &mut PhaseTimings,
) -> Result<TcpStream, ProbeReport> {
    let Some(left) = remaining(deadline) else {
        return Err(ProbeReport::failed(
            Outcome::TimeoutConnect,
            0,
            started,
            *phases,
        ));
    };
    match TcpStream::connect_timeout(addr, left).await {
        Ok(s) => {
            phases.connect_us = micros(started.elapsed());
            Ok(s)
        }
        Err(e) => {
            let (outcome, detail) = connect_error(&io::Error::from(e));
            Err(ProbeReport::failed(outcome, detail, started, *phases))
        }
    }
}

/// Most bytes read while looking for a TCP banner.
pub const MAX_BANNER_BYTES: usize = 1024;

/// A `tcp` check: connect, and when `banner` is set, read (at most [`MAX_BANNER_BYTES`]) until
/// it appears. No banner before the deadline is `timeout_ttfb`; a different one, or the peer
/// closing first, is `keyword_missing`.
pub async fn tcp(
    addr: SocketAddr,
    banner: Option<&[u8]>,
    deadline: Instant,
    bufs: &mut ProbeBuffers,
) -> ProbeReport {
    let started = Instant::now();
    let mut phases = PhaseTimings::default();
    let mut stream = match connect(addr, deadline, started, &mut phases).await {
        Ok(s) => s,
        Err(report) => return report,
    };
    let Some(banner) = banner.filter(|b| !b.is_empty()) else {
        phases.total_us = micros(started.elapsed());
        return ProbeReport {
            outcome: Outcome::Ok,
            detail: 0,
            http_status: 0,
            phases,
            bytes_read: 0,
            tls: TlsFacts::default(),
            redirect: false,
            redirects: 0,
            flags: 0,
            blocked_ip: None,
        };
    };
    if bufs.read.len() < READ_BUFFER_BYTES {
        bufs.read.resize(READ_BUFFER_BYTES, 0);
    }
    let seen = &mut bufs.head;
    seen.clear();
    let connected = Instant::now();
    let outcome = loop {
        let Some(left) = remaining(deadline) else {
            break if seen.is_empty() {
                Outcome::TimeoutTtfb
            } else {
                Outcome::KeywordMissing
            };
        };
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut bufs.read).await {
            Ok(0) => break Outcome::KeywordMissing,
            Ok(n) => {
                if seen.is_empty() {
                    phases.ttfb_us = micros(connected.elapsed());
                }
                let take = n.min(MAX_BANNER_BYTES - seen.len());
                seen.extend_from_slice(&bufs.read[..take]);
                if memchr::memmem::find(seen, banner).is_some() {
                    break Outcome::Ok;
                }
                if seen.len() >= MAX_BANNER_BYTES {
                    break Outcome::KeywordMissing;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                break if seen.is_empty() {
                    Outcome::TimeoutTtfb
                } else {
                    Outcome::KeywordMissing
                };
            }
            Err(_) => break Outcome::ConnReset,
        }
    };
    phases.total_us = micros(started.elapsed());
    let bytes_read = seen.len() as u32;
    ProbeReport {
        outcome,
        detail: 0,
        http_status: 0,
        phases,
        bytes_read,
        tls: TlsFacts::default(),
        redirect: false,
        redirects: 0,
        flags: 0,
        blocked_ip: None,
    }
}

/// Time left before `deadline`, None once it has passed.
pub(crate) fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// A duration in whole microseconds, saturating at u32::MAX (~71 minutes).
pub(crate) fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

fn errno(e: &io::Error) -> u16 {
    e.raw_os_error()
        .map(|c| c.clamp(0, i32::from(u16::MAX)) as u16)
        .unwrap_or(0)
}

/// Classifies a failed connect. Our own resource exhaustion is monitor-side, never the site's.
pub fn connect_error(e: &io::Error) -> (Outcome, u16) {
    let detail = errno(e);
    let outcome = match e.raw_os_error() {
        Some(
            libc::EMFILE
            | libc::ENFILE
            | libc::ENOBUFS
            | libc::ENOMEM
            | libc::EADDRNOTAVAIL
            | libc::EADDRINUSE,
        ) => Outcome::LocalResource,
        Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH) => Outcome::ConnRefused,
        Some(libc::ECONNRESET | libc::EPIPE) => Outcome::ConnReset,
        Some(libc::ETIMEDOUT | libc::ECANCELED) => Outcome::TimeoutConnect,
        _ => match e.kind() {
            io::ErrorKind::TimedOut => Outcome::TimeoutConnect,
            io::ErrorKind::ConnectionRefused => Outcome::ConnRefused,
            io::ErrorKind::ConnectionReset => Outcome::ConnReset,
            _ => Outcome::ConnRefused,
        },
    };
    (outcome, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_are_classified_and_ours_are_monitor_side() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(
            connect_error(&os(libc::ECONNREFUSED)).0,
            Outcome::ConnRefused
        );
        assert_eq!(
            connect_error(&os(libc::ETIMEDOUT)).0,
            Outcome::TimeoutConnect
        );
        assert_eq!(connect_error(&os(libc::ECONNRESET)).0, Outcome::ConnReset);
        for ours in [
            libc::EMFILE,
            libc::ENFILE,
            libc::EADDRNOTAVAIL,
            libc::ENOBUFS,
        ] {
            assert_eq!(
                connect_error(&os(ours)).0,
                Outcome::LocalResource,
                "errno {ours}"
            );
        }
        assert_eq!(
            connect_error(&io::Error::new(io::ErrorKind::TimedOut, "t")).0,
            Outcome::TimeoutConnect
        );
        assert_eq!(
            connect_error(&os(libc::ECONNREFUSED)).1,
            libc::ECONNREFUSED as u16
        );
    }
}
