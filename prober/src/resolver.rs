//! The stub resolver's IO: one query to our recursive resolvers over glommio UDP (a fresh
//! socket, so a fresh random source port, per query), retried over TCP when the answer was
//! truncated. Everything about the bytes is in `proto::dns`; this file only moves them and
//! keeps the deadline.
//!
//! Servers are tried in turn (starting from a rotating index), each with at most
//! [`ATTEMPT_TIMEOUT`], for two rounds or until the deadline. A reply that is not the answer to
//! our question (another id, another question, garbage) is ignored and we keep listening, so a
//! spoofed or late packet can neither poison nor end the query.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::probe::remaining;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpStream, UdpSocket};
use hickory_proto::rr::RecordType;

use crate::proto::dns::{DnsError, build_query};

/// Longest wait for one server's answer before trying the next.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Rounds over the server list.
pub const ROUNDS: usize = 2;
/// Largest UDP answer read (we advertise 1232 bytes; a server may still send more).
pub const MAX_UDP_ANSWER: usize = 4096;
/// Where servers come from when the configuration names none.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// What a parser made of a reply that answers our question.
pub enum Parsed<T> {
    Done(T),
    /// The server set TC: ask the same server again over TCP.
    Truncated,
}

/// No server gave a usable answer by the deadline (all timed out, refused the connection or
/// sent only unusable replies): a monitor-side condition, not the site's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoAnswer;

/// `nameserver` lines of a resolv.conf (port 53). Scoped IPv6 (`fe80::1%eth0`) is skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|w| w.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The servers to use: the configured ones, else those of /etc/resolv.conf.
pub fn servers(configured: &[String]) -> Vec<SocketAddr> {
    let from_config: Vec<SocketAddr> = configured.iter().filter_map(|s| s.parse().ok()).collect();
    if !from_config.is_empty() {
        return from_config;
    }
    std::fs::read_to_string(RESOLV_CONF)
        .map(|t| parse_resolv_conf(&t))
        .unwrap_or_default()
}

/// A query id nobody off-path can predict (the OS-seeded hasher of std, per thread).
pub fn random_id() -> u16 {
    thread_local! {
        static STATE: (RandomState, std::cell::Cell<u64>) =
            (RandomState::new(), std::cell::Cell::new(0));
    }
    STATE.with(|(seed, counter)| {
        counter.set(counter.get().wrapping_add(1));
        let mut h = seed.build_hasher();
        h.write_u64(counter.get());
        h.finish() as u16
    })
}

/// Asks `servers` (starting at `first`) for (`name`, `rtype`) until one answers or `deadline`.
/// `parse(bytes, id)` judges a reply: `Err` = not an answer to us, keep listening.
pub async fn query<T>(
    servers: &[SocketAddr],
    first: usize,
    name: &str,
    rtype: RecordType,
    deadline: Instant,
    parse: impl Fn(&[u8], u16) -> Result<Parsed<T>, DnsError>,
) -> Result<T, NoAnswer> {
    if servers.is_empty() {
        return Err(NoAnswer);
    }
    let mut buf = vec![0u8; MAX_UDP_ANSWER];
    for attempt in 0..servers.len() * ROUNDS {
        let server = servers[(first + attempt) % servers.len()];
        let Some(left) = remaining(deadline) else {
            break;
        };
        let attempt_deadline = Instant::now() + left.min(ATTEMPT_TIMEOUT);
        let id = random_id();
        let Ok(q) = build_query(id, name, rtype) else {
            return Err(NoAnswer);
        };
        match udp(server, &q, attempt_deadline, &mut buf, |b| parse(b, id)).await {
            Ok(Parsed::Done(v)) => return Ok(v),
            Ok(Parsed::Truncated) => {
                if let Ok(Parsed::Done(v)) = tcp(server, &q, deadline, |b| parse(b, id)).await {
                    return Ok(v);
                }
            }
            Err(_) => {}
        }
    }
    Err(NoAnswer)
}

/// Asks for the canary name's NS records: true when a server gives a real answer (NOERROR or
/// NXDOMAIN), which proves our resolvers work even if some other name fails.
pub async fn canary(servers: &[SocketAddr], first: usize, name: &str, deadline: Instant) -> bool {
    use crate::proto::dns::{Answer, Values, parse_values};
    let answered = query(
        servers,
        first,
        name,
        RecordType::NS,
        deadline,
        |b, id| match parse_values(b, id, name, RecordType::NS) {
            Ok(Values::Found(_)) => Ok(Parsed::Done(true)),
            Ok(Values::Negative(a)) => Ok(Parsed::Done(matches!(
                a,
                Answer::NxDomain { .. } | Answer::NoRecords { .. } | Answer::Truncated
            ))),
            Err(e) => e.as_answer().map(|_| Parsed::Done(true)).ok_or(e),
        },
    )
    .await;
    answered == Ok(true)
}

async fn udp<T>(
    server: SocketAddr,
    q: &[u8],
    deadline: Instant,
    buf: &mut [u8],
    parse: impl Fn(&[u8]) -> Result<Parsed<T>, DnsError>,
) -> io::Result<Parsed<T>> {
    let local: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server).await?;
    socket.send(q).await?;
    loop {
        let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
        socket.set_read_timeout(Some(left))?;
        let n = socket.recv(buf).await?;
        if let Ok(parsed) = parse(&buf[..n]) {
            return Ok(parsed);
        }
    }
}

async fn tcp<T>(
    server: SocketAddr,
    q: &[u8],
    deadline: Instant,
    parse: impl Fn(&[u8]) -> Result<Parsed<T>, DnsError>,
) -> io::Result<Parsed<T>> {
    let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
    let mut stream = TcpStream::connect_timeout(server, left).await?;
    let mut framed = Vec::with_capacity(q.len() + 2);
    framed.extend_from_slice(&(q.len() as u16).to_be_bytes());
    framed.extend_from_slice(q);
    stream.set_write_timeout(Some(left))?;
    stream.write_all(&framed).await?;
    let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
    stream.set_read_timeout(Some(left))?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await?;
    parse(&answer).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_in_order() {
        let text = "# comment\nsearch example.test\nnameserver 10.0.0.53\nnameserver  ::1\n\
                    nameserver fe80::1%eth0\nnameserver\noptions ndots:2\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "10.0.0.53:53".parse::<SocketAddr>().expect("addr"),
                "[::1]:53".parse().expect("addr"),
            ]
        );
    }

    #[test]
    fn configured_servers_win_over_resolv_conf() {
        assert_eq!(
            servers(&["127.0.0.1:15353".to_owned()]),
            vec!["127.0.0.1:15353".parse::<SocketAddr>().expect("addr")]
        );
    }

    #[test]
    fn query_ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_id()).collect();
        assert!(ids.len() > 48, "{} distinct ids of 64", ids.len());
    }
}
