//! Redirects, sans-IO: where a Location leads from the URL that answered with it, and what
//! the hop changed. Relative references are resolved by the `url` crate (RFC 3986, already in
//! our tree through hickory-proto); the result must then pass our own target rules (http or
//! https, no user:password@, ≤ 2 KiB), and its fragment is dropped.

use jetmon_shared::check::MAX_URL_BYTES;
use url::Url;

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
    /// Not UTF-8, not a URL, another scheme, or user:password@.
    Invalid,
    TooLong,
}

/// The next URL of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub url: String,
    /// https → http.
    pub downgrade: bool,
}

/// Resolves `location` (raw header bytes) against `base`, the URL that answered with it.
pub fn next_hop(base: &str, location: &[u8]) -> Result<NextHop, BadLocation> {
    let location = std::str::from_utf8(location).map_err(|_| BadLocation::Invalid)?;
    let base_url = Url::parse(base).map_err(|_| BadLocation::Invalid)?;
    let mut next = base_url.join(location).map_err(|_| BadLocation::Invalid)?;
    next.set_fragment(None);
    if !next.username().is_empty() || next.password().is_some() {
        return Err(BadLocation::Invalid);
    }
    let url = String::from(next);
    if url.len() > MAX_URL_BYTES {
        return Err(BadLocation::TooLong);
    }
    let target = Target::parse_url(&url).map_err(|_| BadLocation::Invalid)?;
    let downgrade = base_url.scheme() == "https" && target.scheme == Scheme::Http;
    Ok(NextHop { url, downgrade })
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
            Err(BadLocation::Invalid)
        );
        assert_eq!(
            hop("http://a.test/", "javascript:alert(1)"),
            Err(BadLocation::Invalid)
        );
        assert_eq!(
            hop("http://a.test/", "http://user:pw@a.test/"),
            Err(BadLocation::Invalid)
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
}
