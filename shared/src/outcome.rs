//! Stable outcome codes (checks.md): every probe yields exactly one. Codes are stored and
//! exported, so they are never renumbered, only appended.

use std::net::IpAddr;

/// How an outcome counts for the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeClass {
    /// The check passed.
    Up,
    /// The site failed: may open Seems Down.
    SiteFailure,
    /// Worth a warning, not a failure.
    Advisory,
    /// We could not tell: becomes Unknown, never Down, never downtime.
    MonitorSide,
}

macro_rules! outcomes {
    ($($variant:ident = $code:literal, $name:literal, $class:ident;)*) => {
        /// The result of one probe.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum Outcome {
            $($variant = $code,)*
        }

        impl Outcome {
            /// Every outcome, in code order.
            pub const ALL: &'static [Outcome] = &[$(Outcome::$variant,)*];

            /// The stable code stored in frames and the database.
            pub const fn code(self) -> u16 {
                self as u16
            }

            /// The outcome for a stored code; `None` for a code this build does not know.
            pub const fn from_code(code: u16) -> Option<Outcome> {
                match code {
                    $($code => Some(Outcome::$variant),)*
                    _ => None,
                }
            }

            /// The stable snake_case name used in the API, metrics and logs.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Outcome::$variant => $name,)*
                }
            }

            /// How the outcome counts.
            pub const fn class(self) -> OutcomeClass {
                match self {
                    $(Outcome::$variant => OutcomeClass::$class,)*
                }
            }

            /// The outcome with this name.
            pub fn from_name(name: &str) -> Option<Outcome> {
                match name {
                    $($name => Some(Outcome::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

outcomes! {
    Ok = 0, "ok", Up;
    TimeoutConnect = 1, "timeout_connect", SiteFailure;
    TimeoutTtfb = 2, "timeout_ttfb", SiteFailure;
    TimeoutBody = 3, "timeout_body", SiteFailure;
    ConnRefused = 4, "conn_refused", SiteFailure;
    ConnReset = 5, "conn_reset", SiteFailure;
    DnsNxdomain = 6, "dns_nxdomain", SiteFailure;
    DnsServfail = 7, "dns_servfail", SiteFailure;
    DnsNoRecords = 8, "dns_no_records", SiteFailure;
    TlsHandshake = 9, "tls_handshake", SiteFailure;
    TlsCertExpired = 10, "tls_cert_expired", SiteFailure;
    TlsCertNotYetValid = 11, "tls_cert_not_yet_valid", SiteFailure;
    TlsCertHostname = 12, "tls_cert_hostname", SiteFailure;
    TlsCertUntrusted = 13, "tls_cert_untrusted", SiteFailure;
    HttpStatus = 14, "http_status", SiteFailure;
    HttpMalformed = 15, "http_malformed", SiteFailure;
    RedirectLoopOrLimit = 16, "redirect_loop_or_limit", SiteFailure;
    RedirectPolicy = 17, "redirect_policy", SiteFailure;
    KeywordMissing = 18, "keyword_missing", SiteFailure;
    KeywordForbiddenPresent = 19, "keyword_forbidden_present", SiteFailure;
    BodyTruncated = 20, "body_truncated", SiteFailure;
    BodyEmpty = 21, "body_empty", SiteFailure;
    TlsDeprecated = 22, "tls_deprecated", Advisory;
    ProbeSafetyBlocked = 100, "probe_safety_blocked", MonitorSide;
    ResolverUnavailable = 101, "resolver_unavailable", MonitorSide;
    LocalResource = 102, "local_resource", MonitorSide;
    ProberRestart = 103, "prober_restart", MonitorSide;
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why probe safety refused a target: the `detail` of `probe_safety_blocked` (checks.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Blocked {
    Loopback = 1,
    Private = 2,
    LinkLocal = 3,
    SharedAddressSpace = 4,
    Multicast = 5,
    Documentation = 6,
    Benchmarking = 7,
    Reserved = 8,
    Unspecified = 9,
    UniqueLocal = 10,
    /// `.local`, `.internal`, `.localhost`, `localhost`.
    InternalName = 11,
    /// Octal, hex, single-integer or short-form IPv4 literals (`0177.0.0.1`, `0x7f.1`, `2130706433`).
    NonCanonicalIpv4 = 12,
    /// A name resolving to both public and non-public addresses.
    MixedAnswers = 13,
    /// A scheme other than http or https (a redirect to `ftp:`, `file:`, `gopher:`...).
    Scheme = 14,
    /// `user:password@` in a target or a redirect.
    UserInfo = 15,
    /// A target that is not a valid http(s) URL, `host:port` or DNS name.
    Syntax = 16,
}

impl Blocked {
    /// Every reason, in code order.
    pub const ALL: &'static [Blocked] = &[
        Blocked::Loopback,
        Blocked::Private,
        Blocked::LinkLocal,
        Blocked::SharedAddressSpace,
        Blocked::Multicast,
        Blocked::Documentation,
        Blocked::Benchmarking,
        Blocked::Reserved,
        Blocked::Unspecified,
        Blocked::UniqueLocal,
        Blocked::InternalName,
        Blocked::NonCanonicalIpv4,
        Blocked::MixedAnswers,
        Blocked::Scheme,
        Blocked::UserInfo,
        Blocked::Syntax,
    ];

    /// The reason for a stored `detail` code.
    pub fn from_code(code: u16) -> Option<Blocked> {
        Blocked::ALL.iter().copied().find(|b| *b as u16 == code)
    }
}

const ALLOW_HINT: &str = "allow it with prober.allow_cidrs / --allow-cidr";

/// A sentence a person can read about a refusal (carried as the result's `note`): which rule,
/// which address or name, and how to allow it when the operator can. `what` is the name or URL
/// that was judged (the check's host, or "redirect to URL").
pub fn blocked_note(why: Blocked, ip: Option<IpAddr>, what: &str) -> String {
    let addr = |kind: &str, range: &str| match ip {
        Some(ip) => format!("{kind} address {ip} is refused ({range}; {what}); {ALLOW_HINT}"),
        None => format!("{kind} address is refused ({range}; {what}); {ALLOW_HINT}"),
    };
    match why {
        Blocked::Loopback => addr("loopback", "127.0.0.0/8, ::1"),
        Blocked::Private => addr("private", "RFC 1918: 10/8, 172.16/12, 192.168/16"),
        Blocked::LinkLocal => addr(
            "link-local",
            "169.254/16 and fe80::/10, where cloud metadata lives",
        ),
        Blocked::SharedAddressSpace => addr("shared (CGNAT)", "100.64.0.0/10"),
        Blocked::Multicast => addr("multicast", "224/4, ff00::/8"),
        Blocked::Documentation => addr(
            "documentation",
            "192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32",
        ),
        Blocked::Benchmarking => addr("benchmarking", "198.18.0.0/15"),
        Blocked::Reserved => addr("reserved", "0/8, 192.0.0/24, 240/4"),
        Blocked::Unspecified => addr("unspecified", "0.0.0.0, ::"),
        Blocked::UniqueLocal => addr("unique-local", "fc00::/7"),
        Blocked::MixedAnswers => format!(
            "{what} resolves to public and non-public addresses{}; refused as a whole (a \
             rebinding risk); {ALLOW_HINT}",
            ip.map_or(String::new(), |ip| format!(" (such as {ip})"))
        ),
        Blocked::InternalName => format!(
            "internal name ({what}) is refused: localhost, .local, .internal and .localhost names \
             are never probed; use a public name"
        ),
        Blocked::NonCanonicalIpv4 => format!(
            "non-canonical IPv4 literal ({what}) is refused: octal, hex, integer and short forms \
             are never probed; write the address as a dotted quad"
        ),
        Blocked::Scheme => {
            format!("{what}: only http and https are followed or probed")
        }
        Blocked::UserInfo => format!(
            "user:password@ ({what}) is refused in targets and redirects; send credentials as a \
             request header"
        ),
        Blocked::Syntax => format!("invalid target: {what}"),
    }
}

/// A sentence for a stored result's outcome and detail, when the detail has words of its own
/// (today: probe-safety refusals). The exact address travels in the live result's note.
pub fn detail_text(outcome: Outcome, detail: u16) -> Option<String> {
    if outcome != Outcome::ProbeSafetyBlocked {
        return None;
    }
    let why = Blocked::from_code(detail)?;
    Some(blocked_note(why, None, "the check's target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table from checks.md, verbatim. If this test fails, a code was renumbered.
    const SPEC: &[(u16, &str, OutcomeClass)] = &[
        (0, "ok", OutcomeClass::Up),
        (1, "timeout_connect", OutcomeClass::SiteFailure),
        (2, "timeout_ttfb", OutcomeClass::SiteFailure),
        (3, "timeout_body", OutcomeClass::SiteFailure),
        (4, "conn_refused", OutcomeClass::SiteFailure),
        (5, "conn_reset", OutcomeClass::SiteFailure),
        (6, "dns_nxdomain", OutcomeClass::SiteFailure),
        (7, "dns_servfail", OutcomeClass::SiteFailure),
        (8, "dns_no_records", OutcomeClass::SiteFailure),
        (9, "tls_handshake", OutcomeClass::SiteFailure),
        (10, "tls_cert_expired", OutcomeClass::SiteFailure),
        (11, "tls_cert_not_yet_valid", OutcomeClass::SiteFailure),
        (12, "tls_cert_hostname", OutcomeClass::SiteFailure),
        (13, "tls_cert_untrusted", OutcomeClass::SiteFailure),
        (14, "http_status", OutcomeClass::SiteFailure),
        (15, "http_malformed", OutcomeClass::SiteFailure),
        (16, "redirect_loop_or_limit", OutcomeClass::SiteFailure),
        (17, "redirect_policy", OutcomeClass::SiteFailure),
        (18, "keyword_missing", OutcomeClass::SiteFailure),
        (19, "keyword_forbidden_present", OutcomeClass::SiteFailure),
        (20, "body_truncated", OutcomeClass::SiteFailure),
        (21, "body_empty", OutcomeClass::SiteFailure),
        (22, "tls_deprecated", OutcomeClass::Advisory),
        (100, "probe_safety_blocked", OutcomeClass::MonitorSide),
        (101, "resolver_unavailable", OutcomeClass::MonitorSide),
        (102, "local_resource", OutcomeClass::MonitorSide),
        (103, "prober_restart", OutcomeClass::MonitorSide),
    ];

    #[test]
    fn codes_names_and_classes_match_the_spec() {
        assert_eq!(Outcome::ALL.len(), SPEC.len());
        for (outcome, (code, name, class)) in Outcome::ALL.iter().zip(SPEC) {
            assert_eq!(outcome.code(), *code, "{name}");
            assert_eq!(outcome.name(), *name);
            assert_eq!(outcome.class(), *class, "{name}");
            assert_eq!(Outcome::from_code(*code), Some(*outcome));
            assert_eq!(Outcome::from_name(name), Some(*outcome));
        }
    }

    #[test]
    fn unknown_codes_are_none() {
        for code in [23u16, 99, 104, 999, u16::MAX] {
            assert_eq!(Outcome::from_code(code), None);
        }
    }

    #[test]
    fn every_refusal_reads_as_a_sentence_with_its_remedy() {
        for (i, why) in Blocked::ALL.iter().enumerate() {
            assert_eq!(*why as u16, i as u16 + 1, "codes are dense and stable");
            assert_eq!(Blocked::from_code(*why as u16), Some(*why));
            let text = detail_text(Outcome::ProbeSafetyBlocked, *why as u16)
                .unwrap_or_else(|| panic!("{why:?} has no sentence"));
            assert!(
                text.len() > 30 && !text.contains("detail"),
                "{why:?}: {text}"
            );
        }
        let ip = IpAddr::from([10, 0, 0, 7]);
        assert_eq!(
            blocked_note(Blocked::Private, Some(ip), "http://intranet.test/"),
            "private address 10.0.0.7 is refused (RFC 1918: 10/8, 172.16/12, 192.168/16; \
             http://intranet.test/); allow it with prober.allow_cidrs / --allow-cidr"
        );
        assert_eq!(detail_text(Outcome::ProbeSafetyBlocked, 999), None);
        assert_eq!(detail_text(Outcome::HttpStatus, 1), None);
    }
}
