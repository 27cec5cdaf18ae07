//! Check targets: `http(s)://host[:port]/path?query` and `host:port`, parsed without
//! allocating (the check table keeps only the string), and resolved from IP literals or
//! `/etc/hosts` (the DNS resolver arrives with its own milestone).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use jetmon_shared::check::MAX_URL_BYTES;

/// Longest host name (RFC 1035).
pub const MAX_HOST_BYTES: usize = 253;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// A parsed target, borrowing the check's string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub scheme: Scheme,
    /// Name or IP literal (IPv6 without brackets).
    pub host: &'a str,
    pub port: u16,
    /// Path and query, starting with '/' (may be empty = "/"); the fragment is dropped.
    pub path: &'a str,
    /// `host[:port]` as it should appear in the Host header (IPv6 bracketed).
    pub authority: &'a str,
}

/// Why a target string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    TooLong,
    Scheme,
    UserInfo,
    Host,
    Port,
    Characters,
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TargetError::TooLong => "longer than 2048 bytes",
            TargetError::Scheme => "scheme must be http or https",
            TargetError::UserInfo => "user:password@ is not allowed in a target",
            TargetError::Host => "invalid host",
            TargetError::Port => "invalid port",
            TargetError::Characters => "spaces or control characters",
        })
    }
}

impl<'a> Target<'a> {
    /// Parses an http(s) URL.
    pub fn parse_url(url: &'a str) -> Result<Target<'a>, TargetError> {
        if url.len() > MAX_URL_BYTES {
            return Err(TargetError::TooLong);
        }
        if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(TargetError::Characters);
        }
        let (scheme, rest) = if let Some(r) = strip_prefix_ci(url, "http://") {
            (Scheme::Http, r)
        } else if let Some(r) = strip_prefix_ci(url, "https://") {
            (Scheme::Https, r)
        } else {
            return Err(TargetError::Scheme);
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(TargetError::UserInfo);
        }
        let default_port = if scheme == Scheme::Http { 80 } else { 443 };
        let (host, port) = split_host_port(authority, Some(default_port))?;
        let path = tail.split('#').next().unwrap_or_default();
        Ok(Target {
            scheme,
            host,
            port,
            path,
            authority,
        })
    }

    /// Parses `host:port` (a tcp check).
    pub fn parse_host_port(s: &'a str) -> Result<Target<'a>, TargetError> {
        if s.len() > MAX_URL_BYTES {
            return Err(TargetError::TooLong);
        }
        let (host, port) = split_host_port(s, None)?;
        Ok(Target {
            scheme: Scheme::Http,
            host,
            port,
            path: "",
            authority: s,
        })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn split_host_port(authority: &str, default_port: Option<u16>) -> Result<(&str, u16), TargetError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let close = rest.find(']').ok_or(TargetError::Host)?;
        let host = &rest[..close];
        host.parse::<Ipv6Addr>().map_err(|_| TargetError::Host)?;
        (host, rest[close + 1..].strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(TargetError::Port);
            }
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(TargetError::Port),
                Ok(n) => n,
            }
        }
        None => default_port.ok_or(TargetError::Port)?,
    };
    if host.is_empty() || host.len() > MAX_HOST_BYTES {
        return Err(TargetError::Host);
    }
    let ok_char =
        |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' || b == b':';
    if !host.bytes().all(ok_char) {
        return Err(TargetError::Host);
    }
    Ok((host, port))
}

/// A check's target as its type reads it: a URL for http (and dns's resolver URL form),
/// `host:port` for tcp.
pub fn parse_for(
    check_type: jetmon_shared::check::CheckType,
    s: &str,
) -> Result<Target<'_>, TargetError> {
    use jetmon_shared::check::CheckType;
    match check_type {
        CheckType::Tcp => Target::parse_host_port(s),
        CheckType::Http | CheckType::Dns => Target::parse_url(s),
    }
}

/// Names from `/etc/hosts` (IPv4 first, in file order).
#[derive(Debug, Clone, Default)]
pub struct HostsFile {
    names: HashMap<String, Vec<IpAddr>>,
}

impl HostsFile {
    /// Reads `/etc/hosts`; an unreadable file gives an empty table.
    pub fn system() -> HostsFile {
        std::fs::read_to_string("/etc/hosts")
            .map(|t| HostsFile::parse(&t))
            .unwrap_or_default()
    }

    pub fn parse(text: &str) -> HostsFile {
        let mut names: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut fields = line.split_whitespace();
            let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
                continue;
            };
            for name in fields {
                let entry = names.entry(name.to_ascii_lowercase()).or_default();
                if !entry.contains(&ip) {
                    entry.push(ip);
                }
            }
        }
        for addrs in names.values_mut() {
            addrs.sort_by_key(|a| a.is_ipv6());
        }
        HostsFile { names }
    }

    /// The first address for `name`.
    pub fn lookup(&self, name: &str) -> Option<IpAddr> {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.names.get(&name.to_ascii_lowercase())?.first().copied()
        } else {
            self.names.get(name)?.first().copied()
        }
    }
}

/// How a target's host became an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// An IP literal.
    Literal(SocketAddr),
    /// From /etc/hosts.
    Hosts(SocketAddr),
    /// Needs DNS, which this build does not have.
    NeedsDns,
}

/// Resolves without the network: IP literal (canonical dotted quad or IPv6) or hosts file.
pub fn resolve_local(target: &Target<'_>, hosts: &HostsFile) -> Resolution {
    if let Ok(v4) = target.host.parse::<Ipv4Addr>() {
        return Resolution::Literal(SocketAddr::new(IpAddr::V4(v4), target.port));
    }
    if let Ok(v6) = target.host.parse::<Ipv6Addr>() {
        return Resolution::Literal(SocketAddr::new(IpAddr::V6(v6), target.port));
    }
    match hosts.lookup(target.host) {
        Some(ip) => Resolution::Hosts(SocketAddr::new(ip, target.port)),
        None => Resolution::NeedsDns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse_url("http://127.0.0.1:8080/wp-login.php?a=1#frag").expect("ok");
        assert_eq!(
            (t.scheme, t.host, t.port, t.path, t.authority),
            (
                Scheme::Http,
                "127.0.0.1",
                8080,
                "/wp-login.php?a=1",
                "127.0.0.1:8080"
            )
        );
        let t = Target::parse_url("HTTPS://Example.test").expect("ok");
        assert_eq!(
            (t.scheme, t.host, t.port, t.path),
            (Scheme::Https, "Example.test", 443, "")
        );
        let t = Target::parse_url("http://[::1]:81/x").expect("ok");
        assert_eq!((t.host, t.port, t.authority), ("::1", 81, "[::1]:81"));
        let t = Target::parse_url("http://a.test?q").expect("ok");
        assert_eq!(t.path, "?q");
    }

    #[test]
    fn refuses_bad_urls() {
        for (url, err) in [
            ("ftp://a.test/", TargetError::Scheme),
            ("http://user:pw@a.test/", TargetError::UserInfo),
            ("http://a.test:0/", TargetError::Port),
            ("http://a.test:65536/", TargetError::Port),
            ("http://a.test:/", TargetError::Port),
            ("http:///x", TargetError::Host),
            ("http://a b/", TargetError::Characters),
            ("http://a\u{7f}/", TargetError::Characters),
            ("http://[::1/", TargetError::Host),
            ("http://exa$mple.test/", TargetError::Host),
        ] {
            assert_eq!(Target::parse_url(url), Err(err), "{url}");
        }
        let long = format!("http://a.test/{}", "x".repeat(MAX_URL_BYTES));
        assert_eq!(Target::parse_url(&long), Err(TargetError::TooLong));
    }

    #[test]
    fn host_port_targets() {
        let t = Target::parse_host_port("127.0.0.2:25").expect("ok");
        assert_eq!((t.host, t.port), ("127.0.0.2", 25));
        assert_eq!(Target::parse_host_port("a.test"), Err(TargetError::Port));
    }

    #[test]
    fn resolves_literals_and_hosts() {
        let hosts = HostsFile::parse(
            "127.0.0.1 localhost\n::1 localhost ip6-localhost\n127.0.1.7 Site-7.fleet.test # comment\n",
        );
        let r = |url: &str| resolve_local(&Target::parse_url(url).expect("url"), &hosts);
        assert_eq!(
            r("http://127.0.0.9:81/"),
            Resolution::Literal("127.0.0.9:81".parse().expect("addr"))
        );
        assert_eq!(
            r("http://[::1]/"),
            Resolution::Literal("[::1]:80".parse().expect("addr"))
        );
        assert_eq!(
            r("http://localhost/"),
            Resolution::Hosts("127.0.0.1:80".parse().expect("addr"))
        );
        assert_eq!(
            r("http://SITE-7.fleet.test:8080/"),
            Resolution::Hosts("127.0.1.7:8080".parse().expect("addr"))
        );
        assert_eq!(r("http://unknown.test/"), Resolution::NeedsDns);
    }
}
