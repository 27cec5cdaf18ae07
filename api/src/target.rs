//! What a monitorable target is, for every way a check comes in (the REST API and
//! `jetmon sites import`): its syntax for the check type as the prober will parse it, probe
//! safety on its host (and on its address when the host is a literal), and the intervals
//! accepted.

use jetmon_prober::proto::safety::{Blocked, ProbeSafety};
use jetmon_prober::target::Target;
use jetmon_shared::check::CheckType;

/// Intervals accepted (seconds).
pub const MIN_INTERVAL_S: u32 = 10;
pub const MAX_INTERVAL_S: u32 = 86_400;
/// Default interval when a request or an import row gives none.
pub const DEFAULT_INTERVAL_S: u32 = 60;

/// Why a target cannot be monitored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetProblem {
    /// Not a target of this check type (the prober's own parser says why).
    Invalid(String),
    /// Refused by probe safety (a private, loopback, internal… address or name).
    Unsafe(Blocked),
}

/// Checks a target the way the prober will see it: its syntax for the check type, then
/// probe safety on its host (and on its address when the host is a literal). Used by
/// `jetmon sites import` and the REST API.
pub fn check_target(safety: &ProbeSafety, t: CheckType, target: &str) -> Result<(), TargetProblem> {
    let (host, port) = match t {
        CheckType::Http => {
            let t = Target::parse_url(target).map_err(|e| TargetProblem::Invalid(e.to_string()))?;
            (t.host, Some(t.port))
        }
        CheckType::Tcp => {
            let t = Target::parse_host_port(target)
                .map_err(|e| TargetProblem::Invalid(e.to_string()))?;
            (t.host, Some(t.port))
        }
        CheckType::Dns => {
            let ok = !target.is_empty()
                && target.len() <= 253
                && target
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !ok {
                return Err(TargetProblem::Invalid("not a DNS name".into()));
            }
            (target, None)
        }
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    safety.check_host(host).map_err(TargetProblem::Unsafe)?;
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        match port {
            Some(p) => safety.check_dial(std::net::SocketAddr::new(ip, p)),
            None => safety.check_addr(ip),
        }
        .map_err(TargetProblem::Unsafe)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_of_each_type_through_syntax_and_probe_safety() {
        let none = ProbeSafety::new(Vec::new());
        let ok = |t, s| check_target(&none, t, s);
        assert_eq!(ok(CheckType::Http, "https://example.com/a?b"), Ok(()));
        assert_eq!(ok(CheckType::Tcp, "example.com:22"), Ok(()));
        assert_eq!(ok(CheckType::Dns, "example.com"), Ok(()));
        for (t, s) in [
            (CheckType::Http, "ftp://example.com/"),
            (CheckType::Http, "http://user@example.com/"),
            (CheckType::Tcp, "example.com"),
            (CheckType::Dns, "exa mple.com"),
            (CheckType::Dns, ""),
        ] {
            assert!(matches!(ok(t, s), Err(TargetProblem::Invalid(_))), "{s}");
        }
        // Bracketed IPv6 literals are checked as addresses too.
        for (t, s) in [
            (CheckType::Http, "http://[::1]/"),
            (CheckType::Http, "http://[fd00::1]:8080/"),
            (CheckType::Http, "http://10.0.0.1/"),
            (CheckType::Http, "http://printer.local/"),
            (CheckType::Tcp, "127.0.0.1:5432"),
            (CheckType::Dns, "localhost"),
        ] {
            assert!(matches!(ok(t, s), Err(TargetProblem::Unsafe(_))), "{s}");
        }
        let loopback = ProbeSafety::new(vec!["127.0.0.0/8".parse().expect("cidr")]);
        assert_eq!(
            check_target(&loopback, CheckType::Tcp, "127.0.0.1:5432"),
            Ok(())
        );
    }
}
