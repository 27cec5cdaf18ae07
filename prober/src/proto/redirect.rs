//! Redirects, sans-IO: where a Location leads from the URL that answered with it, and what
//! the hop changed. Relative references are resolved by the `url` crate (RFC 3986, already in
//! our tree through hickory-proto); the result must then pass our own target rules (http or
//! https, no user:password@, ≤ 2 KiB), and its fragment is dropped.

use jetmon_shared::check::MAX_URL_BYTES;
use url::{Host, Url};

use crate::proto::safety::{Blocked, check_name};

use crate::target::{Scheme, Target};

/// Most hops a check follows (checks.md); a check may ask for fewer.
pub use jetmon_shared::check::MAX_REDIRECTS;

/// Detail codes of `redirect_loop_or_limit`.
pub mod detail {
    pub const TOO_MANY_HOPS: u16 = 1;
    /// A hop led back to a URL already visited.
    pub const LOOP: u16 = 2;
    /// The next URL is longer than 2 KiB.
    pub const URL_TOO_LONG: u16 = 3;
}

/// Why a Location could not be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadLocation {
    /// Not UTF-8 or not a URL.
    Invalid,
    TooLong,
    /// A URL that breaks a target rule (checks.md): another scheme, user:password@, a
    /// non-canonical IPv4 literal, an internal name. Ends the check `probe_safety_blocked`
    /// before anything is resolved or dialled.
    Unsafe(Blocked),
}

/// The next URL of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub url: String,
    /// https → http.
    pub downgrade: bool,
}

/// Resolves `location` (raw header bytes) against `base`, the URL that answered with it, and
/// holds the result to every rule a configured target passes.
///
/// The `url` crate follows the WHATWG parser, which quietly turns `http://0x7f.1/`,
/// `http://2130706433/` or `http://127%2E0.0.1/` into `http://127.0.0.1/`. So the host is judged
/// twice: as the server wrote it (a literal that is not the canonical dotted quad is refused)
/// and as it will be resolved.
pub fn next_hop(base: &str, location: &[u8]) -> Result<NextHop, BadLocation> {
    let location = std::str::from_utf8(location).map_err(|_| BadLocation::Invalid)?;
    let base_url = Url::parse(base).map_err(|_| BadLocation::Invalid)?;
    let mut next = base_url.join(location).map_err(|_| BadLocation::Invalid)?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(BadLocation::Unsafe(Blocked::Scheme));
    }
    if !next.username().is_empty() || next.password().is_some() {
        return Err(BadLocation::Unsafe(Blocked::UserInfo));
    }
    if let Some(written) = written_host(location, base_url.scheme()) {
        if written.contains('@') {
            return Err(BadLocation::Unsafe(Blocked::UserInfo));
        }
        check_name(&written).map_err(BadLocation::Unsafe)?;
        if let Some(Host::Ipv4(ip)) = next.host()
            && written.trim_end_matches('.') != ip.to_string()
        {
            return Err(BadLocation::Unsafe(Blocked::NonCanonicalIpv4));
        }
    }
    if let Some(Host::Domain(name)) = next.host() {
        check_name(name).map_err(BadLocation::Unsafe)?;
    }
    next.set_fragment(None);
    let url = String::from(next);
    if url.len() > MAX_URL_BYTES {
        return Err(BadLocation::TooLong);
    }
    let target = Target::parse_url(&url).map_err(|_| BadLocation::Invalid)?;
    let downgrade = base_url.scheme() == "https" && target.scheme == Scheme::Http;
    Ok(NextHop { url, downgrade })
}

/// The host a Location names as the server wrote it (lowercased, port and brackets off), or
/// `None` for a reference that keeps the base's host. Lenient the way the WHATWG parser is:
/// tabs and newlines are dropped, `\` counts as `/`, and `http:host` with a different base
/// scheme still names a host.
fn written_host(location: &str, base_scheme: &str) -> Option<String> {
    let cleaned: String = location
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let slash = |c: char| c == '/' || c == '\\';
    let s = cleaned.as_str();
    let scheme_end = s.find(':').filter(|&i| {
        i > 0
            && s.as_bytes()[0].is_ascii_alphabetic()
            && s[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    let rest = match scheme_end {
        Some(i) => {
            let rest = &s[i + 1..];
            if s[..i].eq_ignore_ascii_case(base_scheme) && !rest.starts_with(slash) {
                return None; // "http:path": relative to a base of the same scheme
            }
            rest.trim_start_matches(slash)
        }
        None if s.chars().take(2).filter(|c| slash(*c)).count() == 2 => s.trim_start_matches(slash),
        None => return None,
    };
    let authority = &rest[..rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len())];
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else if authority.contains('@') {
        authority
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    Some(host.to_ascii_lowercase())
}

/// The host of a URL we already accepted (empty if it does not parse).
pub fn host_of(url: &str) -> &str {
    Target::parse_url(url).map_or("", |t| t.host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(base: &str, loc: &str) -> Result<NextHop, BadLocation> {
        next_hop(base, loc.as_bytes())
    }

    #[test]
    fn relative_locations_resolve_against_the_answering_url() {
        let base = "https://example.test/a/b?q=1";
        let url = |loc: &str| hop(base, loc).map(|h| h.url);
        assert_eq!(url("/c"), Ok("https://example.test/c".into()));
        assert_eq!(url("c"), Ok("https://example.test/a/c".into()));
        assert_eq!(url("../c"), Ok("https://example.test/c".into()));
        assert_eq!(url("?x=2"), Ok("https://example.test/a/b?x=2".into()));
        assert_eq!(url("//other.test/p"), Ok("https://other.test/p".into()));
        assert_eq!(
            url("https://example.test/d#frag"),
            Ok("https://example.test/d".into())
        );
        assert_eq!(
            url("HTTPS://Example.TEST:443/e"),
            Ok("https://example.test/e".into())
        );
    }

    #[test]
    fn downgrades_are_seen_and_bad_locations_refused() {
        assert!(
            hop("https://a.test/", "http://a.test/")
                .expect("hop")
                .downgrade
        );
        assert!(
            !hop("http://a.test/", "https://a.test/")
                .expect("hop")
                .downgrade
        );
        assert_eq!(
            hop("http://a.test/", "ftp://a.test/"),
            Err(BadLocation::Unsafe(Blocked::Scheme))
        );
        assert_eq!(
            hop("http://a.test/", "javascript:alert(1)"),
            Err(BadLocation::Unsafe(Blocked::Scheme))
        );
        assert_eq!(
            hop("http://a.test/", "http://user:pw@a.test/"),
            Err(BadLocation::Unsafe(Blocked::UserInfo))
        );
        assert_eq!(
            hop("http://a.test/", "http://[::1/"),
            Err(BadLocation::Invalid)
        );
        assert_eq!(
            next_hop("http://a.test/", b"/\xff"),
            Err(BadLocation::Invalid)
        );
        let long = format!("/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(hop("http://a.test/", &long), Err(BadLocation::TooLong));
        assert_eq!(host_of("http://b.test:81/x"), "b.test");
    }

    /// checks.md: a Location passes every rule a configured target passes, judged on what the
    /// server wrote, not on what the WHATWG parser made of it.
    #[test]
    fn hostile_locations_are_refused_for_the_rule_they_break() {
        use Blocked::*;
        let cases: &[(&str, Blocked)] = &[
            ("http://2130706433/", NonCanonicalIpv4),
            ("http://0177.0.0.1/", NonCanonicalIpv4),
            ("http://0x7f.0.0.1/", NonCanonicalIpv4),
            ("http://0x7f000001:8080/", NonCanonicalIpv4),
            ("http://127.1/", NonCanonicalIpv4),
            ("http://127.0.1/", NonCanonicalIpv4),
            ("//0x7f.1/x", NonCanonicalIpv4),
            ("http:\\\\0177.1\\", NonCanonicalIpv4),
            ("https:0x7f.1/", NonCanonicalIpv4),
            ("http://127%2E0%2E0%2E1/", NonCanonicalIpv4),
            ("http://\u{ff11}\u{ff12}\u{ff17}.0.0.1/", NonCanonicalIpv4),
            (" http://0x7f.1/", NonCanonicalIpv4),
            ("http://0x7f\t.1/", NonCanonicalIpv4),
            ("ftp://127.0.0.1/", Scheme),
            ("gopher://127.0.0.1:70/_x", Scheme),
            ("file:///etc/passwd", Scheme),
            ("data:text/html,hi", Scheme),
            ("http://user:pw@127.0.0.1/", UserInfo),
            ("http://user@a.test/", UserInfo),
            ("//user:pw@a.test/", UserInfo),
            ("http://localhost:8080/", InternalName),
            ("http://LOCALHOST./", InternalName),
            ("http://foo.localhost/", InternalName),
            ("http://metadata.google.internal/x", InternalName),
            ("http://printer.local/", InternalName),
        ];
        for (loc, why) in cases {
            assert_eq!(
                hop("http://a.test/", loc),
                Err(BadLocation::Unsafe(*why)),
                "{loc:?}"
            );
        }
        // Canonical literals, names and relative references pass (the address rules apply
        // when the hop is dialled).
        for loc in [
            "http://127.0.0.1:8080/",
            "http://127.0.0.1./",
            "http://[::1]:8080/",
            "http://b.test/x",
            "/0x7f.1",
            "0x7f.1",
            "http:path",
            "?q=0177.1",
        ] {
            assert!(hop("http://a.test/", loc).is_ok(), "{loc:?}");
        }
    }
}
