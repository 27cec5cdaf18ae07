//! Probe safety (checks.md): customers give us URLs, and we must not become a way into private
//! networks. Sans-IO: the driver asks before it dials, on the exact address it will connect to
//! (no DNS-rebinding gap), for every redirect hop. Refusals are `probe_safety_blocked`:
//! monitor-side (Unknown), never Down, never a veriflier's down vote.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::cidr::Cidr;

pub use crate::outcome::{Blocked, blocked_note as note};

/// The filter, with the operator's allow-list (empty by default in production; the test fleet
/// allows 127.0.0.0/8 explicitly) and single `ip:port` targets (the demo's own, and nothing
/// else of loopback).
#[derive(Debug, Clone, Default)]
pub struct ProbeSafety {
    allow: Vec<Cidr>,
    sockets: Vec<SocketAddr>,
}

/// What a command line adds to `prober.allow_cidrs`: ranges (`--allow-cidr`) and single
/// `ip:port` targets (`--allow-target`).
#[derive(Debug, Clone, Default)]
pub struct ExtraAllow {
    pub cidrs: Vec<Cidr>,
    pub sockets: Vec<SocketAddr>,
}

impl ProbeSafety {
    pub fn new(allow: Vec<Cidr>) -> ProbeSafety {
        ProbeSafety {
            allow,
            sockets: Vec::new(),
        }
    }

    /// Also allows exactly these `ip:port` targets, whatever their address.
    pub fn allowing_sockets(mut self, sockets: Vec<SocketAddr>) -> ProbeSafety {
        self.sockets = sockets;
        self
    }

    /// Checks the exact address and port about to be dialled.
    pub fn check_dial(&self, to: SocketAddr) -> Result<(), Blocked> {
        if self.sockets.contains(&to) {
            return Ok(());
        }
        self.check_addr(to.ip())
    }

    /// Checks a host as written in the target, before resolution.
    pub fn check_host(&self, host: &str) -> Result<(), Blocked> {
        check_name(host)
    }

    /// Checks the exact address about to be dialled.
    pub fn check_addr(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        match classify(ip) {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    /// The first address of an answer set that is not allowed on `port` (for the refusal's
    /// note).
    pub fn first_refused(&self, ips: &[IpAddr], port: u16) -> Option<IpAddr> {
        ips.iter()
            .copied()
            .find(|ip| self.check_dial(SocketAddr::new(*ip, port)).is_err())
    }

    /// Checks a whole answer set to be dialled on `port`: any non-public address refuses it,
    /// and so does a mix.
    pub fn check_answers(&self, ips: &[IpAddr], port: u16) -> Result<(), Blocked> {
        let verdicts: Vec<_> = ips
            .iter()
            .map(|ip| self.check_dial(SocketAddr::new(*ip, port)))
            .collect();
        let blocked = verdicts.iter().filter(|v| v.is_err()).count();
        match blocked {
            0 => Ok(()),
            n if n == verdicts.len() => verdicts
                .into_iter()
                .find_map(Result::err)
                .map_or(Ok(()), Err),
            _ => Err(Blocked::MixedAnswers),
        }
    }
}

/// Checks a host name as written (a target's or a redirect's), before resolution: internal
/// names and non-canonical IPv4 literals are refused whatever the allow-list says.
pub fn check_name(host: &str) -> Result<(), Blocked> {
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    if lower == "localhost"
        || [".local", ".internal", ".localhost"]
            .iter()
            .any(|s| lower.ends_with(s))
    {
        return Err(Blocked::InternalName);
    }
    if looks_like_ipv4_number(&lower) && lower.parse::<Ipv4Addr>().is_err() {
        return Err(Blocked::NonCanonicalIpv4);
    }
    Ok(())
}

/// True for strings made only of what IPv4 number forms use: digits, dots and hex prefixes.
fn looks_like_ipv4_number(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let digits = part.strip_prefix("0x").unwrap_or(part);
            !part.is_empty()
                && (part.bytes().all(|b| b.is_ascii_digit())
                    || (part.starts_with("0x") && digits.bytes().all(|b| b.is_ascii_hexdigit())))
        })
}

/// Why an address is not public, or `None` when it is.
pub fn classify(ip: IpAddr) -> Option<Blocked> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Blocked> {
    let o = ip.octets();
    let n = u32::from(ip);
    let in_net = |net: u32, prefix: u32| n >> (32 - prefix) == net >> (32 - prefix);
    Some(match () {
        _ if ip.is_unspecified() => Blocked::Unspecified,
        _ if o[0] == 0 => Blocked::Reserved, // 0.0.0.0/8 "this network"
        _ if ip.is_loopback() => Blocked::Loopback,
        _ if ip.is_private() => Blocked::Private,
        _ if ip.is_link_local() => Blocked::LinkLocal, // includes 169.254.169.254
        _ if in_net(0x6440_0000, 10) => Blocked::SharedAddressSpace, // 100.64.0.0/10
        _ if ip.is_multicast() => Blocked::Multicast,
        _ if in_net(0xC000_0200, 24) || in_net(0xC633_6400, 24) || in_net(0xCB00_7100, 24) => {
            Blocked::Documentation // 192.0.2/24, 198.51.100/24, 203.0.113/24
        }
        _ if in_net(0xC612_0000, 15) => Blocked::Benchmarking, // 198.18.0.0/15
        _ if in_net(0xC000_0000, 24) => Blocked::Reserved,     // 192.0.0.0/24 protocol assignments
        _ if o[0] >= 240 => Blocked::Reserved,                 // 240/4 and broadcast
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Blocked> {
    let s = ip.segments();
    // Addresses that embed an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4); // ::ffff:a.b.c.d
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return classify_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        )); // NAT64
    }
    if s[0] == 0x2002 {
        return classify_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        )); // 6to4
    }
    Some(match () {
        _ if ip.is_unspecified() => Blocked::Unspecified,
        _ if ip.is_loopback() => Blocked::Loopback,
        _ if s[0] & 0xfe00 == 0xfc00 => Blocked::UniqueLocal, // fc00::/7
        _ if s[0] & 0xffc0 == 0xfe80 => Blocked::LinkLocal,   // fe80::/10
        _ if s[0] & 0xff00 == 0xff00 => Blocked::Multicast,   // ff00::/8
        _ if s[0] == 0x2001 && s[1] == 0x0db8 => Blocked::Documentation,
        _ if s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0 => Blocked::Benchmarking, // 2001:2::/48
        _ if s[0..6] == [0, 0, 0, 0, 0, 0] => Blocked::Reserved, // IPv4-compatible (deprecated)
        _ if s[0] == 0x0100 && s[1..4] == [0, 0, 0] => Blocked::Reserved, // discard-only 100::/64
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn every_non_public_range_is_refused() {
        let safety = ProbeSafety::default();
        for (addr, why) in [
            ("127.0.0.1", Blocked::Loopback),
            ("127.255.1.2", Blocked::Loopback),
            ("10.1.2.3", Blocked::Private),
            ("172.16.0.1", Blocked::Private),
            ("172.31.255.255", Blocked::Private),
            ("192.168.1.1", Blocked::Private),
            ("169.254.169.254", Blocked::LinkLocal),
            ("100.64.0.1", Blocked::SharedAddressSpace),
            ("100.127.255.254", Blocked::SharedAddressSpace),
            ("224.0.0.1", Blocked::Multicast),
            ("192.0.2.7", Blocked::Documentation),
            ("198.51.100.7", Blocked::Documentation),
            ("203.0.113.7", Blocked::Documentation),
            ("198.18.0.1", Blocked::Benchmarking),
            ("198.19.255.1", Blocked::Benchmarking),
            ("240.0.0.1", Blocked::Reserved),
            ("255.255.255.255", Blocked::Reserved),
            ("0.0.0.0", Blocked::Unspecified),
            ("0.1.2.3", Blocked::Reserved),
            ("::1", Blocked::Loopback),
            ("::", Blocked::Unspecified),
            ("fd00::1", Blocked::UniqueLocal),
            ("fc00::1", Blocked::UniqueLocal),
            ("fe80::1", Blocked::LinkLocal),
            ("ff02::1", Blocked::Multicast),
            ("2001:db8::1", Blocked::Documentation),
            ("::ffff:10.0.0.1", Blocked::Private),
            ("::ffff:127.0.0.1", Blocked::Loopback),
            ("64:ff9b::a9fe:a9fe", Blocked::LinkLocal), // NAT64 of 169.254.169.254
            ("2002:c0a8:0101::1", Blocked::Private),    // 6to4 of 192.168.1.1
        ] {
            assert_eq!(safety.check_addr(ip(addr)), Err(why), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let safety = ProbeSafety::default();
        for addr in [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.3.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(safety.check_addr(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn a_single_target_opens_its_port_only() {
        let s = ProbeSafety::default().allowing_sockets(vec!["127.0.0.1:18090".parse().unwrap()]);
        assert_eq!(s.check_dial("127.0.0.1:18090".parse().unwrap()), Ok(()));
        assert_eq!(
            s.check_dial("127.0.0.1:22".parse().unwrap()),
            Err(Blocked::Loopback)
        );
        assert_eq!(
            s.check_dial("127.0.0.2:18090".parse().unwrap()),
            Err(Blocked::Loopback)
        );
        assert_eq!(s.check_answers(&[ip("127.0.0.1")], 18090), Ok(()));
        assert_eq!(
            s.first_refused(&[ip("127.0.0.1")], 6379),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn the_allow_list_opens_ranges_explicitly() {
        let safety = ProbeSafety::new(vec!["127.0.0.0/8".parse().expect("cidr")]);
        assert_eq!(safety.check_addr(ip("127.0.1.5")), Ok(()));
        assert_eq!(safety.check_addr(ip("10.0.0.1")), Err(Blocked::Private));
        assert_eq!(safety.check_addr(ip("::1")), Err(Blocked::Loopback));
    }

    #[test]
    fn names_and_literal_tricks() {
        let s = ProbeSafety::default();
        for host in [
            "localhost",
            "LOCALHOST.",
            "printer.local",
            "db.internal",
            "x.localhost",
        ] {
            assert_eq!(s.check_host(host), Err(Blocked::InternalName), "{host}");
        }
        for host in [
            "0177.0.0.1",
            "0x7f.0.0.1",
            "2130706433",
            "127.1",
            "0x7f000001",
            "127.0.0.01",
        ] {
            assert_eq!(s.check_host(host), Err(Blocked::NonCanonicalIpv4), "{host}");
        }
        for host in [
            "example.com",
            "127.0.0.1",
            "site-1.fleet.test",
            "1password.com",
            "2001.example",
        ] {
            assert_eq!(s.check_host(host), Ok(()), "{host}");
        }
    }

    #[test]
    fn mixed_answer_sets_are_refused() {
        let s = ProbeSafety::default();
        assert_eq!(
            s.check_answers(&[ip("1.1.1.1"), ip("8.8.8.8")], 443),
            Ok(())
        );
        assert_eq!(
            s.check_answers(&[ip("1.1.1.1"), ip("10.0.0.1")], 443),
            Err(Blocked::MixedAnswers)
        );
        assert_eq!(
            s.check_answers(&[ip("10.0.0.1")], 443),
            Err(Blocked::Private)
        );
    }
}
