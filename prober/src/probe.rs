//! The io_uring driver of one HTTP probe: connect with a deadline, write the request, read
//! into pooled buffers and let the sans-IO machine classify. Thin on purpose: every decision
//! is in `proto::http`. A probe never fails: every path ends in an outcome.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use jetmon_shared::check::PhaseTimings;
use jetmon_shared::outcome::Outcome;

use crate::proto::http::{Detail, Progress, ResponseMachine, write_request};
use crate::sched::Settings;
use crate::target::Target;

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
    /// The check's target, copied out of the table (it may change while we run).
    pub target: String,
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
        }
    }
}

/// Runs one HTTP probe against `addr` (already resolved) by `deadline`.
pub async fn http(
    target: &Target<'_>,
    addr: SocketAddr,
    settings: &Settings,
    user_agent: &str,
    deadline: Instant,
    bufs: &mut ProbeBuffers,
) -> ProbeReport {
    let started = Instant::now();
    let mut phases = PhaseTimings::default();
    let mut stream = match connect(addr, deadline, started, &mut phases).await {
        Ok(s) => s,
        Err(report) => return report,
    };
    let request_at = Instant::now();

    write_request(
        &mut bufs.request,
        settings.rules.method,
        target.authority,
        target.path,
        user_agent,
        &settings.headers,
    );
    let Some(left) = remaining(deadline) else {
        return ProbeReport::failed(Outcome::TimeoutTtfb, 0, started, phases);
    };
    let _ = stream.set_write_timeout(Some(left));
    if let Err(e) = stream.write_all(&bufs.request).await {
        let outcome = if e.kind() == io::ErrorKind::TimedOut {
            Outcome::TimeoutTtfb
        } else {
            Outcome::ConnReset
        };
        return ProbeReport::failed(outcome, errno(&e), started, phases);
    }

    let mut machine = ResponseMachine::new(
        &settings.rules,
        std::mem::take(&mut bufs.head),
        std::mem::take(&mut bufs.fold),
        std::mem::take(&mut bufs.carry),
    );
    if bufs.read.len() < READ_BUFFER_BYTES {
        bufs.read.resize(READ_BUFFER_BYTES, 0);
    }
    let mut bytes_read: u64 = 0;
    let verdict = loop {
        let Some(left) = remaining(deadline) else {
            break machine.deadline();
        };
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut bufs.read).await {
            Ok(0) => break machine.end_of_stream(),
            Ok(n) => {
                if bytes_read == 0 {
                    phases.ttfb_us = micros(request_at.elapsed());
                }
                bytes_read += n as u64;
                if let Progress::Done(v) = machine.feed(&bufs.read[..n]) {
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
                let (head, fold, carry) = machine.into_buffers();
                (bufs.head, bufs.fold, bufs.carry) = (head, fold, carry);
                let mut report =
                    ProbeReport::failed(Outcome::ConnReset, errno(&e), started, phases);
                report.bytes_read = bytes_read.min(u64::from(u32::MAX)) as u32;
                return report;
            }
        }
    };
    let (head, fold, carry) = machine.into_buffers();
    (bufs.head, bufs.fold, bufs.carry) = (head, fold, carry);
    phases.total_us = micros(started.elapsed());
    drop(stream);
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
    }
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

fn micros(d: Duration) -> u32 {
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
