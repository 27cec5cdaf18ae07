//! What an invalid token costs (docs/api.md, "Bad tokens"). A request with an unknown,
//! revoked or expired token is not a key's request: it has no rate limit of its own, and each
//! one would cost a database lookup on the API's small pool. So an invalid token's hash is
//! remembered for [`NEGATIVE_TTL_US`] (the next try costs a map lookup), each client address
//! may present [`FAILURES_PER_MINUTE`] invalid tokens a minute before its token-bearing
//! requests get 429 without a lookup — except tokens that were valid within the last
//! [`GOOD_TTL_US`] (remembered by hash: they earn a lookup, which still authenticates them, so a
//! revocation still takes effect at once), so one bad client behind a shared address does not
//! lock out the good ones already working there. Every failure is counted, and one in
//! [`AUDIT_ONE_IN`] is audited. The address is the TCP peer's: behind a proxy, the proxy's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Invalid tokens an address may present per minute (and at once).
pub const FAILURES_PER_MINUTE: u32 = 30;
/// How long an invalid token's hash is remembered.
pub const NEGATIVE_TTL_US: u64 = 30 * 1_000_000;
/// How long a valid token's hash earns a lookup from an address over its budget.
pub const GOOD_TTL_US: u64 = 10 * 60 * 1_000_000;
/// One failure in this many is written to the audit log (the first one included).
pub const AUDIT_ONE_IN: u64 = 100;
/// Entries kept in each map before expired ones are swept (and, if still full, all of them).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct BadTokens {
    /// sha256(token) → remembered until.
    unknown: Mutex<HashMap<[u8; 32], u64>>,
    /// sha256(token) of recently valid tokens → remembered until.
    good: Mutex<HashMap<[u8; 32], u64>>,
    /// Address → (milli-tokens left, at).
    addresses: Mutex<HashMap<IpAddr, (i64, u64)>>,
    failures: AtomicU64,
    refused: AtomicU64,
}

const CAP_MILLI: i64 = FAILURES_PER_MINUTE as i64 * 1000;
const PER_S_MILLI: i64 = CAP_MILLI / 60;

fn refilled((milli, at): (i64, u64), now: u64) -> i64 {
    let secs_milli = i64::try_from(now.saturating_sub(at) / 1000).unwrap_or(i64::MAX);
    milli
        .saturating_add(secs_milli.saturating_mul(PER_S_MILLI) / 1000)
        .min(CAP_MILLI)
}

fn bounded<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, live: impl Fn(&V) -> bool) {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, v| live(v));
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
    }
}

impl BadTokens {
    /// Seconds until `addr` may try again, when it has used up its invalid tokens.
    pub fn refuse(&self, addr: Option<IpAddr>, now: u64) -> Option<u64> {
        let addr = addr?;
        let map = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        let left = refilled(*map.get(&addr)?, now);
        if left >= 1000 {
            return None;
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Some(((1000 - left) as u64).div_ceil(PER_S_MILLI as u64).max(1))
    }

    /// Whether this token hash was valid within the last [`GOOD_TTL_US`].
    pub fn known_good(&self, hash: &[u8; 32], now: u64) -> bool {
        let map = self.good.lock().unwrap_or_else(|p| p.into_inner());
        map.get(hash).is_some_and(|&until| now < until)
    }

    /// Records a valid token.
    pub fn succeeded(&self, hash: [u8; 32], now: u64) {
        let mut map = self.good.lock().unwrap_or_else(|p| p.into_inner());
        bounded(&mut map, |&until| now < until);
        map.insert(hash, now + GOOD_TTL_US);
    }

    /// Whether this token hash was found invalid within the last [`NEGATIVE_TTL_US`].
    pub fn known_bad(&self, hash: &[u8; 32], now: u64) -> bool {
        let map = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        map.get(hash).is_some_and(|&until| now < until)
    }

    /// Records an invalid token from `addr`; true when this one is to be audited.
    pub fn failed(&self, hash: [u8; 32], addr: Option<IpAddr>, now: u64) -> bool {
        {
            let mut map = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
            bounded(&mut map, |&until| now < until);
            map.insert(hash, now + NEGATIVE_TTL_US);
        }
        if let Some(addr) = addr {
            let mut map = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
            bounded(&mut map, |&b| refilled(b, now) < CAP_MILLI);
            let b = map.entry(addr).or_insert((CAP_MILLI, now));
            *b = (refilled(*b, now) - 1000, now);
        }
        self.failures
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(AUDIT_ONE_IN)
    }

    /// Prometheus text.
    pub fn metrics(&self) -> String {
        format!(
            "# HELP jetmon_api_auth_failures_total API requests with an unknown, revoked or expired token.\n\
             # TYPE jetmon_api_auth_failures_total counter\njetmon_api_auth_failures_total {}\n\
             # HELP jetmon_api_auth_refused_total Token-bearing API requests refused with 429 because their address presented too many invalid tokens.\n\
             # TYPE jetmon_api_auth_refused_total counter\njetmon_api_auth_refused_total {}\n",
            self.failures.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_runs_out_and_refills() {
        let b = BadTokens::default();
        let a = Some(IpAddr::from([127, 0, 0, 9]));
        let other = Some(IpAddr::from([127, 0, 0, 10]));
        for i in 0..FAILURES_PER_MINUTE {
            assert_eq!(b.refuse(a, 0), None, "try {i}");
            b.failed([i as u8; 32], a, 0);
        }
        assert_eq!(b.refuse(a, 0), Some(2));
        assert_eq!(b.refuse(other, 0), None);
        assert_eq!(b.refuse(a, 2_000_000), None);
    }

    #[test]
    fn a_good_token_is_remembered_longer() {
        let b = BadTokens::default();
        b.succeeded([7; 32], 0);
        assert!(b.known_good(&[7; 32], GOOD_TTL_US - 1));
        assert!(!b.known_good(&[7; 32], GOOD_TTL_US));
        assert!(!b.known_good(&[8; 32], 0));
    }

    #[test]
    fn a_bad_token_is_remembered_for_a_while() {
        let b = BadTokens::default();
        assert!(b.failed([1; 32], None, 0), "the first failure is audited");
        assert!(!b.failed([2; 32], None, 0));
        assert!(b.known_bad(&[1; 32], NEGATIVE_TTL_US - 1));
        assert!(!b.known_bad(&[1; 32], NEGATIVE_TTL_US));
        assert!(!b.known_bad(&[3; 32], 0));
    }
}
