//! Stable outcome codes (checks.md): every probe yields exactly one. Codes are stored and
//! exported, so they are never renumbered, only appended.

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
}
