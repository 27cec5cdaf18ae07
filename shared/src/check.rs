//! A check's settings as plain Rust values: what control sends in `UpsertCheck` and what the
//! prober compiles into its check table. Limits from checks.md are named here.

/// Longest check target or final URL.
pub const MAX_URL_BYTES: usize = 2048;
/// Most custom request headers per check.
pub const MAX_CUSTOM_HEADERS: usize = 20;
/// Most bytes of custom request headers (names + values) per check.
pub const MAX_CUSTOM_HEADER_BYTES: usize = 8 * 1024;
/// Most required plus forbidden keywords per check.
pub const MAX_KEYWORDS: usize = 32;
/// Longest keyword.
pub const MAX_KEYWORD_BYTES: usize = 1024;
/// Most expected DNS values per check.
pub const MAX_DNS_EXPECTED: usize = 64;
/// Most accepted-status ranges per check.
pub const MAX_STATUS_RANGES: usize = 16;
/// Most redirect hops followed.
pub const MAX_REDIRECTS: u8 = 10;
/// Shortest interval between scheduled probes.
pub const MIN_INTERVAL_MS: u32 = 1_000;
/// Longest interval between scheduled probes (one day).
pub const MAX_INTERVAL_MS: u32 = 86_400_000;
/// Longest probe deadline.
pub const MAX_TIMEOUT_MS: u32 = 120_000;
/// Default probe deadline.
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;
/// Default body bytes read for keyword and integrity checks.
pub const DEFAULT_BODY_BUDGET_BYTES: u32 = 256 * 1024;
/// Most body bytes read (after decompression).
pub const MAX_BODY_BUDGET_BYTES: u32 = 1024 * 1024;

/// Buckets checks are spread over unless configured otherwise.
pub const DEFAULT_BUCKETS: u16 = 1024;

/// A stable 64-bit mix of a check id (splitmix64's finalizer): the same on every build and
/// host, so phases and buckets survive restarts and agree between control and the prober.
pub const fn stable_hash(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The bucket of a check: `stable_hash(check_id) % buckets`.
pub const fn bucket_of(check_id: u64, buckets: u16) -> u16 {
    (stable_hash(check_id) % buckets as u64) as u16
}

/// The shard that owns a bucket.
pub const fn shard_of_bucket(bucket: u16, shards: u16) -> u16 {
    bucket % shards
}

/// Where in its interval a check fires: `stable_hash(check_id) % interval`, unless pinned.
pub const fn phase_ms(check_id: u64, interval_ms: u32) -> u32 {
    (stable_hash(check_id) % interval_ms as u64) as u32
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $ty:ident { $($variant:ident = $code:literal, $name:literal;)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[repr(u8)]
        pub enum $ty {
            #[default]
            $($variant = $code,)*
        }

        impl $ty {
            /// Every value, in code order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)*];

            /// The wire value.
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The value for a wire code; `None` for one this build does not know.
            pub const fn from_code(code: u8) -> Option<$ty> {
                match code {
                    $($code => Some($ty::$variant),)*
                    _ => None,
                }
            }

            /// The name used in config, CLI and API.
            pub const fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)*
                }
            }

            /// The value with this name (case-sensitive, as `name` spells it).
            pub fn from_name(name: &str) -> Option<$ty> {
                match name {
                    $($name => Some($ty::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

// `#[default]` lands on the first variant of each list.
wire_enum! {
    /// The kind of test a check runs.
    CheckType { Http = 0, "http"; Tcp = 1, "tcp"; Dns = 2, "dns"; }
}
wire_enum! {
    /// HTTP request method.
    HttpMethod { Get = 0, "GET"; Head = 1, "HEAD"; }
}
wire_enum! {
    /// What a redirect means for the check.
    RedirectPolicy { Follow = 0, "follow"; Fail = 1, "fail"; Alert = 2, "alert"; }
}
wire_enum! {
    /// Which address family to dial first.
    IpPreference { V4First = 0, "v4_first"; V6First = 1, "v6_first"; V4Only = 2, "v4_only"; V6Only = 3, "v6_only"; }
}
wire_enum! {
    /// Record type of a `dns` check.
    DnsRecordType { A = 0, "A"; Aaaa = 1, "AAAA"; Cname = 2, "CNAME"; Mx = 3, "MX"; Txt = 4, "TXT"; }
}
wire_enum! {
    /// Why a probe ran.
    ProbeOrigin { Scheduled = 0, "scheduled"; Recheck = 1, "recheck"; TriggerNow = 2, "trigger_now"; }
}

/// Every setting of one check. Zero-valued limits mean "the default from checks.md".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckSpec {
    pub check_id: u64,
    pub site_id: u64,
    /// Increases with each change; echoed in results.
    pub generation: u32,
    pub check_type: CheckType,
    /// `http(s)://host[:port]/path` for http, `host:port` for tcp, the name for dns.
    pub target: String,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    /// Offset inside the interval; `None` = derived from the check id.
    pub phase_ms: Option<u32>,
    pub retries: u8,
    pub retry_spacing_ms: u32,
    pub method: HttpMethod,
    pub headers: Vec<(String, String)>,
    pub redirect_policy: RedirectPolicy,
    pub max_redirects: u8,
    /// Inclusive ranges; empty = 1..=399.
    pub accepted_statuses: Vec<(u16, u16)>,
    pub keywords: Vec<String>,
    pub forbidden_keywords: Vec<String>,
    pub keyword_case_sensitive: bool,
    pub body_budget_bytes: u32,
    pub min_body_bytes: u32,
    pub check_integrity: bool,
    pub ttfb_warn_ms: u32,
    pub ttfb_degrade_ms: u32,
    pub total_warn_ms: u32,
    pub total_degrade_ms: u32,
    pub ip_preference: IpPreference,
    pub dns_record_type: DnsRecordType,
    pub dns_expected: Vec<String>,
    pub tcp_banner: Option<String>,
    pub paused: bool,
}

/// A setting outside its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("check setting `{field}`: {problem}")]
pub struct SpecError {
    pub field: &'static str,
    pub problem: String,
}

impl CheckSpec {
    /// A check of `target` with the defaults of checks.md.
    pub fn new(check_id: u64, site_id: u64, check_type: CheckType, target: &str) -> CheckSpec {
        CheckSpec {
            check_id,
            site_id,
            generation: 1,
            check_type,
            target: target.to_owned(),
            interval_ms: 60_000,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retries: 2,
            retry_spacing_ms: 10_000,
            max_redirects: MAX_REDIRECTS,
            check_integrity: true,
            ..CheckSpec::default()
        }
    }

    /// Checks every size and range limit. Semantic checks (URL syntax, probe safety, header
    /// names) belong to the prober and the API, which know more.
    pub fn validate(&self) -> Result<(), SpecError> {
        let err = |field, problem: String| Err(SpecError { field, problem });
        if self.check_id == 0 {
            return err("check_id", "must not be 0".into());
        }
        if self.target.is_empty() || self.target.len() > MAX_URL_BYTES {
            return err("target", format!("must be 1 to {MAX_URL_BYTES} bytes"));
        }
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&self.interval_ms) {
            return err(
                "interval_ms",
                format!(
                    "{} is outside {MIN_INTERVAL_MS}..={MAX_INTERVAL_MS}",
                    self.interval_ms
                ),
            );
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return err(
                "timeout_ms",
                format!("{} is outside 1..={MAX_TIMEOUT_MS}", self.timeout_ms),
            );
        }
        if let Some(phase) = self.phase_ms.filter(|p| *p >= self.interval_ms) {
            return err("phase_ms", format!("{phase} is not below the interval"));
        }
        if self.max_redirects > MAX_REDIRECTS {
            return err("max_redirects", format!("at most {MAX_REDIRECTS}"));
        }
        if self.body_budget_bytes > MAX_BODY_BUDGET_BYTES {
            return err(
                "body_budget_bytes",
                format!("at most {MAX_BODY_BUDGET_BYTES}"),
            );
        }
        if self.headers.len() > MAX_CUSTOM_HEADERS {
            return err("headers", format!("at most {MAX_CUSTOM_HEADERS} headers"));
        }
        let header_bytes: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        if header_bytes > MAX_CUSTOM_HEADER_BYTES {
            return err(
                "headers",
                format!("at most {MAX_CUSTOM_HEADER_BYTES} bytes in all"),
            );
        }
        if self.keywords.len() + self.forbidden_keywords.len() > MAX_KEYWORDS {
            return err(
                "keywords",
                format!("at most {MAX_KEYWORDS} keywords in all"),
            );
        }
        if self
            .keywords
            .iter()
            .chain(&self.forbidden_keywords)
            .any(|k| k.is_empty() || k.len() > MAX_KEYWORD_BYTES)
        {
            return err(
                "keywords",
                format!("each must be 1 to {MAX_KEYWORD_BYTES} bytes"),
            );
        }
        if self.accepted_statuses.len() > MAX_STATUS_RANGES {
            return err(
                "accepted_statuses",
                format!("at most {MAX_STATUS_RANGES} ranges"),
            );
        }
        if self
            .accepted_statuses
            .iter()
            .any(|(lo, hi)| lo > hi || *hi > 999)
        {
            return err(
                "accepted_statuses",
                "each range must be lo <= hi <= 999".into(),
            );
        }
        if self.dns_expected.len() > MAX_DNS_EXPECTED {
            return err("dns_expected", format!("at most {MAX_DNS_EXPECTED} values"));
        }
        if self
            .tcp_banner
            .as_ref()
            .is_some_and(|b| b.len() > MAX_KEYWORD_BYTES)
        {
            return err("tcp_banner", format!("at most {MAX_KEYWORD_BYTES} bytes"));
        }
        Ok(())
    }
}

/// Per-phase durations of one probe, microseconds; 0 = phase not reached or not applicable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhaseTimings {
    pub dns_us: u32,
    pub connect_us: u32,
    pub tls_us: u32,
    pub ttfb_us: u32,
    pub total_us: u32,
}

/// The target with any `user:password@` replaced by `***@`: a refusal's note and log line
/// never carry the credentials (a lone user name may be a token, so it goes too).
pub fn redact_userinfo(target: &str) -> String {
    redact_credentials(target, false)
}

/// A URL with its credentials replaced by `***`, the one redaction every message, log line
/// and answer uses: the whole userinfo, or (with `keep_user`) only the password, so
/// `postgres://jetmon:***@db/jetmon` still says who connects; and the values of `password`
/// and `sslpassword` query parameters (libpq's). The userinfo ends at the authority's last
/// `@` (as WHATWG URLs parse it: a password may hold a raw `@`); an `@` in the path or query is
/// left alone.
pub fn redact_credentials(url: &str, keep_user: bool) -> String {
    let start = match url.find("://") {
        Some(i) => i + 3,
        None if url.starts_with("//") => 2,
        None => 0,
    };
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let mut out = match url[start..end].rfind('@').map(|at| start + at) {
        None => url[..end].to_owned(),
        Some(at) => match url[start..at].find(':') {
            Some(colon) if keep_user => format!("{}:***{}", &url[..start + colon], &url[at..end]),
            None if keep_user => url[..end].to_owned(),
            _ => format!("{}***{}", &url[..start], &url[at..end]),
        },
    };
    let rest = &url[end..];
    let (before_fragment, fragment) = rest.split_at(rest.find('#').unwrap_or(rest.len()));
    match before_fragment.split_once('?') {
        None => out.push_str(before_fragment),
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _))
                        if k.eq_ignore_ascii_case("password")
                            || k.eq_ignore_ascii_case("sslpassword") =>
                    {
                        format!("{k}=***")
                    }
                    _ => p.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
    }
    out.push_str(fragment);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn userinfo_is_redacted_and_nothing_else_changes() {
        assert_eq!(
            redact_userinfo("http://admin:hunter2@a.test/x?u=b@c"),
            "http://***@a.test/x?u=b@c"
        );
        assert_eq!(redact_userinfo("//u:p@a.test"), "//***@a.test");
        assert_eq!(redact_userinfo("http://a.test/p@x"), "http://a.test/p@x");
        assert_eq!(redact_userinfo("a.test:22"), "a.test:22");
        // Keeping the user name (database URLs in logs).
        let keep = |u: &str| redact_credentials(u, true);
        assert_eq!(
            keep("postgres://jetmon:s3cret@db:5432/jm"),
            "postgres://jetmon:***@db:5432/jm"
        );
        assert_eq!(keep("postgres://jetmon@db/jm"), "postgres://jetmon@db/jm");
        assert_eq!(
            keep("postgres://u:p@db/jm?opt=a@b"),
            "postgres://u:***@db/jm?opt=a@b"
        );
        assert_eq!(keep("sqlite:jetmon.db"), "sqlite:jetmon.db");
        // A raw `@` in the password: the last one in the authority ends the userinfo.
        assert_eq!(
            keep("postgres://jm:p@ss@db:5432/x"),
            "postgres://jm:***@db:5432/x"
        );
        assert_eq!(
            redact_userinfo("http://u:p@ss@a.test/"),
            "http://***@a.test/"
        );
        // libpq's password parameters, in any case, and nothing else of the query.
        assert_eq!(
            keep("postgres://db/x?user=jm&Password=s3cret&sslmode=require&sslpassword=k#f"),
            "postgres://db/x?user=jm&Password=***&sslmode=require&sslpassword=***#f"
        );
        assert_eq!(
            redact_userinfo("https://a.test/@alice?password=x"),
            "https://a.test/@alice?password=***"
        );
    }

    use super::*;

    #[test]
    fn hash_is_pinned() {
        // Stored phases and bucket leases depend on these values: never change the function.
        assert_eq!(stable_hash(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(stable_hash(1), 0x910A_2DEC_8902_5CC1);
        assert_eq!(bucket_of(1, 1024), (0x910A_2DEC_8902_5CC1u64 % 1024) as u16);
        assert_eq!(
            phase_ms(1, 300_000),
            (0x910A_2DEC_8902_5CC1u64 % 300_000) as u32
        );
    }

    #[test]
    fn phases_spread_evenly() {
        let mut per_second = [0u32; 300];
        for id in 1..=300_000u64 {
            per_second[(phase_ms(id, 300_000) / 1000) as usize] += 1;
        }
        let (min, max) = (
            per_second.iter().min().copied(),
            per_second.iter().max().copied(),
        );
        assert!(min >= Some(850) && max <= Some(1150), "{min:?}..{max:?}");
    }
}
