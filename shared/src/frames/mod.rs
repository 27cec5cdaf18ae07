//! Frames: what crosses the process boundary between control and the prober, as flatbuffers
//! (schemas in `flatbuffers/`, rules in `docs/frames.md`).
//!
//! Results are hot (millions per second): they encode from a `Copy` struct and decode into a
//! view that borrows the buffer. Commands are rare: they encode from and decode into owned
//! values. Every decode verifies the buffer first — a frame is input, not trusted memory.

#[allow(
    clippy::all,
    clippy::unwrap_used,
    clippy::pedantic,
    unused_imports,
    dead_code,
    non_camel_case_types,
    unsafe_op_in_unsafe_fn,
    mismatched_lifetime_syntaxes
)]
#[path = "generated/mod.rs"]
mod generated;

/// The raw generated bindings, for code that needs them (tests, benches).
pub use generated::jetmon::frames as fb;

use flatbuffers::{FlatBufferBuilder, VerifierOptions, WIPOffset};

use crate::check::{
    CheckSpec, CheckType, DnsRecordType, HttpMethod, IpPreference, MAX_REDIRECTS, MAX_URL_BYTES,
    PhaseTimings, ProbeOrigin, RedirectPolicy,
};
use crate::outcome::Outcome;

/// Ring record kind of a `CheckResult` frame.
pub const KIND_CHECK_RESULT: u16 = 1;
/// Ring record kind of a `Command` frame.
pub const KIND_COMMAND: u16 = 2;
/// file_identifier of `CheckResult`; a breaking schema change gets a new one.
pub const CHECK_RESULT_IDENTIFIER: &str = "JMR1";
/// file_identifier of `Command`.
pub const COMMAND_IDENTIFIER: &str = "JMC1";
/// Schema revision this build writes into `CheckResult.version`.
pub const CHECK_RESULT_REVISION: u16 = 2;
/// Schema revision this build writes into `Command.version`.
pub const COMMAND_REVISION: u16 = 1;
/// Largest frame we write or accept (a command carries up to ~14 KiB of strings).
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// Longest certificate issuer name carried in a result.
pub const MAX_ISSUER_BYTES: usize = 1024;
/// Longest note (a sentence for a person) carried in a result.
pub const MAX_NOTE_BYTES: usize = 512;
/// Result flag: the probe started later than the prober's lateness threshold.
pub const FLAG_LATE: u8 = 1;
/// A redirect in the chain went from https to http.
pub const FLAG_REDIRECT_DOWNGRADE: u8 = 2;
/// The chain ended on another host than the check's.
pub const FLAG_REDIRECT_HOST_CHANGED: u8 = 4;
/// The check's redirect policy is `alert` and the chain it completed ended on another host
/// or went from https to http (checks.md): an `advisory` Warning, never downtime.
pub const FLAG_REDIRECT_ALERT: u8 = 8;

const VERIFIER: VerifierOptions = VerifierOptions {
    max_depth: 16,
    max_tables: 512,
    max_apparent_size: MAX_FRAME_BYTES,
    ignore_missing_null_terminator: false,
};

/// Why a frame was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is outside 8..={MAX_FRAME_BYTES}")]
    BadLength { len: usize },
    #[error(
        "frame identifier {found:?}, expected {expected:?} (wrong frame type or incompatible schema)"
    )]
    WrongIdentifier {
        expected: &'static str,
        found: [u8; 4],
    },
    #[error("frame does not verify: {0}")]
    Invalid(#[from] flatbuffers::InvalidFlatbuffer),
    #[error("frame carries no schema version")]
    MissingVersion,
    #[error("frame field `{field}` has value {value} unknown to this build")]
    UnknownValue { field: &'static str, value: u32 },
    #[error("frame field `{field}` is {len} bytes, more than {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("command: {0}")]
    Spec(#[from] crate::check::SpecError),
}

/// The fixed part of a probe result: everything but the rare strings. `Copy`, so the prober
/// fills one on the stack and the encoder copies it into the frame in one go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeResult {
    pub check_id: u64,
    pub site_id: u64,
    pub seq: u64,
    pub scheduled_at_us: u64,
    pub started_at_us: u64,
    pub request_id: u64,
    /// Leaf certificate notAfter, Unix seconds; 0 = none seen.
    pub cert_not_after_s: i64,
    pub phases: PhaseTimings,
    pub bytes_read: u32,
    pub vantage_id: u32,
    pub generation: u32,
    pub http_status: u16,
    pub outcome: Outcome,
    pub detail: u16,
    /// As on the wire: 0x0303 = TLS 1.2, 0x0304 = TLS 1.3; 0 = none.
    pub tls_version: u16,
    pub shard: u16,
    pub redirect_count: u8,
    pub origin: ProbeOrigin,
    pub check_type: CheckType,
    pub flags: u8,
}

impl Default for ProbeResult {
    fn default() -> Self {
        ProbeResult {
            check_id: 0,
            site_id: 0,
            seq: 0,
            scheduled_at_us: 0,
            started_at_us: 0,
            request_id: 0,
            cert_not_after_s: 0,
            phases: PhaseTimings::default(),
            bytes_read: 0,
            vantage_id: 0,
            generation: 0,
            http_status: 0,
            outcome: Outcome::Ok,
            detail: 0,
            tls_version: 0,
            shard: 0,
            redirect_count: 0,
            origin: ProbeOrigin::Scheduled,
            check_type: CheckType::Http,
            flags: 0,
        }
    }
}

impl ProbeResult {
    fn to_core(self) -> fb::ResultCore {
        let p = self.phases;
        fb::ResultCore::new(
            self.check_id,
            self.site_id,
            self.seq,
            self.scheduled_at_us,
            self.started_at_us,
            self.request_id,
            self.cert_not_after_s,
            p.dns_us,
            p.connect_us,
            p.tls_us,
            p.ttfb_us,
            p.total_us,
            self.bytes_read,
            self.vantage_id,
            self.generation,
            self.http_status,
            self.outcome.code(),
            self.detail,
            self.tls_version,
            self.shard,
            self.redirect_count,
            fb::ProbeOrigin(self.origin.code()),
            fb::CheckType(self.check_type.code()),
            self.flags,
            0,
        )
    }

    fn from_core(c: &fb::ResultCore) -> Result<ProbeResult, FrameError> {
        let unknown = |field, value| FrameError::UnknownValue { field, value };
        Ok(ProbeResult {
            check_id: c.check_id(),
            site_id: c.site_id(),
            seq: c.seq(),
            scheduled_at_us: c.scheduled_at_us(),
            started_at_us: c.started_at_us(),
            request_id: c.request_id(),
            cert_not_after_s: c.cert_not_after_s(),
            phases: PhaseTimings {
                dns_us: c.dns_us(),
                connect_us: c.connect_us(),
                tls_us: c.tls_us(),
                ttfb_us: c.ttfb_us(),
                total_us: c.total_us(),
            },
            bytes_read: c.bytes_read(),
            vantage_id: c.vantage_id(),
            generation: c.generation(),
            http_status: c.http_status(),
            outcome: Outcome::from_code(c.outcome())
                .ok_or_else(|| unknown("outcome", u32::from(c.outcome())))?,
            detail: c.detail(),
            tls_version: c.tls_version(),
            shard: c.shard(),
            redirect_count: c.redirect_count(),
            origin: ProbeOrigin::from_code(c.origin().0)
                .ok_or_else(|| unknown("origin", u32::from(c.origin().0)))?,
            check_type: CheckType::from_code(c.check_type().0)
                .ok_or_else(|| unknown("check_type", u32::from(c.check_type().0)))?,
            flags: c.flags(),
        })
    }
}

/// One redirect a probe followed: the status that redirected and where it led.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectHop<'a> {
    pub status: u16,
    pub url: &'a str,
}

/// The rare, variable-length parts of a result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultExtras<'a> {
    /// Final URL after redirects, when it differs from the target.
    pub final_url: Option<&'a str>,
    /// Leaf certificate issuer.
    pub cert_issuer: Option<&'a str>,
    pub cert_san_count: u16,
    pub tls_cipher: u16,
    /// (revision 2) A sentence a person can read about the outcome: which rule refused the
    /// target, which address, how to allow it.
    pub note: Option<&'a str>,
    /// (revision 2) Each redirect followed, in order (at most `MAX_REDIRECTS`).
    pub redirect_chain: Vec<RedirectHop<'a>>,
}

/// A verified `CheckResult` frame: the fixed part copied out, the strings borrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFrame<'a> {
    /// The writer's schema revision (>= 1; may be newer than ours).
    pub version: u16,
    pub result: ProbeResult,
    pub extras: ResultExtras<'a>,
}

/// Reuses one builder for every frame a thread writes: no allocation per frame once warm.
pub struct FrameEncoder {
    fbb: FlatBufferBuilder<'static>,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        FrameEncoder::new()
    }
}

impl FrameEncoder {
    pub fn new() -> FrameEncoder {
        FrameEncoder {
            fbb: FlatBufferBuilder::with_capacity(1024),
        }
    }

    /// Encodes one result; the bytes are valid until the next call.
    pub fn result(&mut self, result: &ProbeResult, extras: &ResultExtras<'_>) -> &[u8] {
        let fbb = &mut self.fbb;
        fbb.reset();
        let final_url = extras
            .final_url
            .map(|s| fbb.create_string(clip(s, MAX_URL_BYTES)));
        let cert_issuer = extras
            .cert_issuer
            .map(|s| fbb.create_string(clip(s, MAX_ISSUER_BYTES)));
        let note = extras
            .note
            .map(|s| fbb.create_string(clip(s, MAX_NOTE_BYTES)));
        let redirect_chain = (!extras.redirect_chain.is_empty()).then(|| {
            let hops: Vec<_> = extras
                .redirect_chain
                .iter()
                .take(usize::from(MAX_REDIRECTS))
                .map(|h| {
                    let url = fbb.create_string(clip(h.url, MAX_URL_BYTES));
                    fb::RedirectHop::create(
                        fbb,
                        &fb::RedirectHopArgs {
                            status: h.status,
                            url: Some(url),
                        },
                    )
                })
                .collect();
            fbb.create_vector(&hops)
        });
        let core = result.to_core();
        let root = fb::CheckResult::create(
            fbb,
            &fb::CheckResultArgs {
                version: CHECK_RESULT_REVISION,
                core: Some(&core),
                final_url,
                cert_issuer,
                cert_san_count: extras.cert_san_count,
                tls_cipher: extras.tls_cipher,
                note,
                redirect_chain,
            },
        );
        fbb.finish(root, Some(CHECK_RESULT_IDENTIFIER));
        fbb.finished_data()
    }

    /// Encodes one command; the bytes are valid until the next call.
    pub fn command(&mut self, command: &Command) -> &[u8] {
        let fbb = &mut self.fbb;
        fbb.reset();
        let (body_type, body) = match command {
            Command::Upsert(spec) => (
                fb::CommandBody::UpsertCheck,
                upsert(fbb, spec).as_union_value(),
            ),
            Command::Remove { check_id } => (
                fb::CommandBody::RemoveCheck,
                fb::RemoveCheck::create(
                    fbb,
                    &fb::RemoveCheckArgs {
                        check_id: *check_id,
                    },
                )
                .as_union_value(),
            ),
            Command::TriggerNow {
                check_id,
                request_id,
            } => (
                fb::CommandBody::TriggerNow,
                fb::TriggerNow::create(
                    fbb,
                    &fb::TriggerNowArgs {
                        check_id: *check_id,
                        request_id: *request_id,
                    },
                )
                .as_union_value(),
            ),
            Command::Recheck {
                check_id,
                request_id,
                count,
                spacing_ms,
            } => (
                fb::CommandBody::Recheck,
                fb::Recheck::create(
                    fbb,
                    &fb::RecheckArgs {
                        check_id: *check_id,
                        request_id: *request_id,
                        count: *count,
                        spacing_ms: *spacing_ms,
                    },
                )
                .as_union_value(),
            ),
            Command::Pause { check_id, paused } => (
                fb::CommandBody::Pause,
                fb::Pause::create(
                    fbb,
                    &fb::PauseArgs {
                        check_id: *check_id,
                        paused: *paused,
                    },
                )
                .as_union_value(),
            ),
            Command::Drain { deadline_ms } => (
                fb::CommandBody::Drain,
                fb::Drain::create(
                    fbb,
                    &fb::DrainArgs {
                        deadline_ms: *deadline_ms,
                    },
                )
                .as_union_value(),
            ),
        };
        let root = fb::Command::create(
            fbb,
            &fb::CommandArgs {
                version: COMMAND_REVISION,
                body_type,
                body: Some(body),
            },
        );
        fbb.finish(root, Some(COMMAND_IDENTIFIER));
        fbb.finished_data()
    }
}

fn upsert<'b>(fbb: &mut FlatBufferBuilder<'b>, s: &CheckSpec) -> WIPOffset<fb::UpsertCheck<'b>> {
    let target = fbb.create_string(&s.target);
    let headers: Vec<_> = s
        .headers
        .iter()
        .map(|(n, v)| {
            let (name, value) = (fbb.create_string(n), fbb.create_string(v));
            fb::Header::create(
                fbb,
                &fb::HeaderArgs {
                    name: Some(name),
                    value: Some(value),
                },
            )
        })
        .collect();
    let headers = (!headers.is_empty()).then(|| fbb.create_vector(&headers));
    let ranges: Vec<_> = s
        .accepted_statuses
        .iter()
        .map(|(lo, hi)| fb::StatusRange::new(*lo, *hi))
        .collect();
    let accepted_statuses = (!ranges.is_empty()).then(|| fbb.create_vector(&ranges));
    let keywords = strings(fbb, &s.keywords);
    let forbidden_keywords = strings(fbb, &s.forbidden_keywords);
    let dns_expected = strings(fbb, &s.dns_expected);
    let tcp_banner = s.tcp_banner.as_deref().map(|b| fbb.create_string(b));
    fb::UpsertCheck::create(
        fbb,
        &fb::UpsertCheckArgs {
            check_id: s.check_id,
            site_id: s.site_id,
            generation: s.generation,
            check_type: fb::CheckType(s.check_type.code()),
            target: Some(target),
            interval_ms: s.interval_ms,
            timeout_ms: s.timeout_ms,
            phase_ms: s.phase_ms,
            retries: s.retries,
            retry_spacing_ms: s.retry_spacing_ms,
            method: fb::HttpMethod(s.method.code()),
            headers,
            redirect_policy: fb::RedirectPolicy(s.redirect_policy.code()),
            max_redirects: s.max_redirects,
            accepted_statuses,
            keywords,
            forbidden_keywords,
            keyword_case_sensitive: s.keyword_case_sensitive,
            body_budget_bytes: s.body_budget_bytes,
            min_body_bytes: s.min_body_bytes,
            check_integrity: s.check_integrity,
            ttfb_warn_ms: s.ttfb_warn_ms,
            ttfb_degrade_ms: s.ttfb_degrade_ms,
            total_warn_ms: s.total_warn_ms,
            total_degrade_ms: s.total_degrade_ms,
            ip_preference: fb::IpPreference(s.ip_preference.code()),
            dns_record_type: fb::DnsRecordType(s.dns_record_type.code()),
            dns_expected,
            tcp_banner,
            paused: s.paused,
        },
    )
}

type StringVector<'b> = WIPOffset<flatbuffers::Vector<'b, flatbuffers::ForwardsUOffset<&'b str>>>;

fn strings<'b>(fbb: &mut FlatBufferBuilder<'b>, items: &[String]) -> Option<StringVector<'b>> {
    if items.is_empty() {
        return None;
    }
    let offsets: Vec<_> = items.iter().map(|s| fbb.create_string(s)).collect();
    Some(fbb.create_vector(&offsets))
}

/// Cuts `s` to at most `max` bytes on a char boundary (the prober never produces longer
/// strings; this keeps a frame bounded even if it did).
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn check_envelope(buf: &[u8], identifier: &'static str) -> Result<(), FrameError> {
    if buf.len() < 8 || buf.len() > MAX_FRAME_BYTES {
        return Err(FrameError::BadLength { len: buf.len() });
    }
    if !flatbuffers::buffer_has_identifier(buf, identifier, false) {
        let mut found = [0u8; 4];
        found.copy_from_slice(&buf[4..8]);
        return Err(FrameError::WrongIdentifier {
            expected: identifier,
            found,
        });
    }
    Ok(())
}

/// Verifies and reads a `CheckResult` frame.
pub fn decode_result(buf: &[u8]) -> Result<ResultFrame<'_>, FrameError> {
    check_envelope(buf, CHECK_RESULT_IDENTIFIER)?;
    let frame = flatbuffers::root_with_opts::<fb::CheckResult>(&VERIFIER, buf)?;
    let version = frame.version();
    if version == 0 {
        return Err(FrameError::MissingVersion);
    }
    let final_url = frame.final_url();
    if let Some(url) = final_url.filter(|u| u.len() > MAX_URL_BYTES) {
        return Err(FrameError::TooLong {
            field: "final_url",
            len: url.len(),
            max: MAX_URL_BYTES,
        });
    }
    let cert_issuer = frame.cert_issuer();
    if let Some(issuer) = cert_issuer.filter(|u| u.len() > MAX_ISSUER_BYTES) {
        return Err(FrameError::TooLong {
            field: "cert_issuer",
            len: issuer.len(),
            max: MAX_ISSUER_BYTES,
        });
    }
    let note = frame.note();
    if let Some(n) = note.filter(|n| n.len() > MAX_NOTE_BYTES) {
        return Err(FrameError::TooLong {
            field: "note",
            len: n.len(),
            max: MAX_NOTE_BYTES,
        });
    }
    let mut redirect_chain = Vec::new();
    if let Some(hops) = frame.redirect_chain() {
        if hops.len() > usize::from(MAX_REDIRECTS) {
            return Err(FrameError::TooLong {
                field: "redirect_chain",
                len: hops.len(),
                max: usize::from(MAX_REDIRECTS),
            });
        }
        redirect_chain.reserve(hops.len());
        for h in hops {
            let url = h.url().unwrap_or_default();
            if url.len() > MAX_URL_BYTES {
                return Err(FrameError::TooLong {
                    field: "redirect_chain.url",
                    len: url.len(),
                    max: MAX_URL_BYTES,
                });
            }
            redirect_chain.push(RedirectHop {
                status: h.status(),
                url,
            });
        }
    }
    Ok(ResultFrame {
        version,
        result: ProbeResult::from_core(frame.core())?,
        extras: ResultExtras {
            final_url,
            cert_issuer,
            cert_san_count: frame.cert_san_count(),
            tls_cipher: frame.tls_cipher(),
            note,
            redirect_chain,
        },
    })
}

/// A command to a prober shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create or replace a check (boxed: it is large and rare).
    Upsert(Box<CheckSpec>),
    Remove {
        check_id: u64,
    },
    /// Probe now; the result carries `request_id`.
    TriggerNow {
        check_id: u64,
        request_id: u64,
    },
    /// `count` fast re-checks `spacing_ms` apart.
    Recheck {
        check_id: u64,
        request_id: u64,
        count: u8,
        spacing_ms: u32,
    },
    /// Suspend or resume one check (0 = all of the shard's).
    Pause {
        check_id: u64,
        paused: bool,
    },
    /// Stop starting probes and flush by the deadline.
    Drain {
        deadline_ms: u32,
    },
}

/// Verifies and reads a `Command` frame into owned values (commands are rare).
pub fn decode_command(buf: &[u8]) -> Result<Command, FrameError> {
    check_envelope(buf, COMMAND_IDENTIFIER)?;
    let frame = flatbuffers::root_with_opts::<fb::Command>(&VERIFIER, buf)?;
    if frame.version() == 0 {
        return Err(FrameError::MissingVersion);
    }
    let unknown = |field, value: u8| FrameError::UnknownValue {
        field,
        value: u32::from(value),
    };
    let body_type = frame.body_type();
    let missing = || FrameError::UnknownValue {
        field: "body",
        value: u32::from(body_type.0),
    };
    Ok(match body_type {
        fb::CommandBody::UpsertCheck => {
            let u = frame.body_as_upsert_check().ok_or_else(missing)?;
            let strings =
                |v: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>>| {
                    v.map(|v| v.iter().map(str::to_owned).collect())
                        .unwrap_or_default()
                };
            let spec = CheckSpec {
                check_id: u.check_id(),
                site_id: u.site_id(),
                generation: u.generation(),
                check_type: CheckType::from_code(u.check_type().0)
                    .ok_or_else(|| unknown("check_type", u.check_type().0))?,
                target: u.target().to_owned(),
                interval_ms: u.interval_ms(),
                timeout_ms: u.timeout_ms(),
                phase_ms: u.phase_ms(),
                retries: u.retries(),
                retry_spacing_ms: u.retry_spacing_ms(),
                method: HttpMethod::from_code(u.method().0)
                    .ok_or_else(|| unknown("method", u.method().0))?,
                headers: u
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.name().to_owned(), h.value().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default(),
                redirect_policy: RedirectPolicy::from_code(u.redirect_policy().0)
                    .ok_or_else(|| unknown("redirect_policy", u.redirect_policy().0))?,
                max_redirects: u.max_redirects(),
                accepted_statuses: u
                    .accepted_statuses()
                    .map(|rs| rs.iter().map(|r| (r.lo(), r.hi())).collect())
                    .unwrap_or_default(),
                keywords: strings(u.keywords()),
                forbidden_keywords: strings(u.forbidden_keywords()),
                keyword_case_sensitive: u.keyword_case_sensitive(),
                body_budget_bytes: u.body_budget_bytes(),
                min_body_bytes: u.min_body_bytes(),
                check_integrity: u.check_integrity(),
                ttfb_warn_ms: u.ttfb_warn_ms(),
                ttfb_degrade_ms: u.ttfb_degrade_ms(),
                total_warn_ms: u.total_warn_ms(),
                total_degrade_ms: u.total_degrade_ms(),
                ip_preference: IpPreference::from_code(u.ip_preference().0)
                    .ok_or_else(|| unknown("ip_preference", u.ip_preference().0))?,
                dns_record_type: DnsRecordType::from_code(u.dns_record_type().0)
                    .ok_or_else(|| unknown("dns_record_type", u.dns_record_type().0))?,
                dns_expected: strings(u.dns_expected()),
                tcp_banner: u.tcp_banner().map(str::to_owned),
                paused: u.paused(),
            };
            spec.validate()?;
            Command::Upsert(Box::new(spec))
        }
        fb::CommandBody::RemoveCheck => {
            let r = frame.body_as_remove_check().ok_or_else(missing)?;
            Command::Remove {
                check_id: r.check_id(),
            }
        }
        fb::CommandBody::TriggerNow => {
            let t = frame.body_as_trigger_now().ok_or_else(missing)?;
            Command::TriggerNow {
                check_id: t.check_id(),
                request_id: t.request_id(),
            }
        }
        fb::CommandBody::Recheck => {
            let r = frame.body_as_recheck().ok_or_else(missing)?;
            Command::Recheck {
                check_id: r.check_id(),
                request_id: r.request_id(),
                count: r.count(),
                spacing_ms: r.spacing_ms(),
            }
        }
        fb::CommandBody::Pause => {
            let p = frame.body_as_pause().ok_or_else(missing)?;
            Command::Pause {
                check_id: p.check_id(),
                paused: p.paused(),
            }
        }
        fb::CommandBody::Drain => {
            let d = frame.body_as_drain().ok_or_else(missing)?;
            Command::Drain {
                deadline_ms: d.deadline_ms(),
            }
        }
        _ => return Err(missing()),
    })
}

/// Ring record kind of a `ShardStats` frame.
pub const KIND_SHARD_STATS: u16 = 3;
/// file_identifier of `ShardStats`.
pub const SHARD_STATS_IDENTIFIER: &str = "JMS1";
/// Schema revision this build writes into `ShardStats.version`.
pub const SHARD_STATS_REVISION: u16 = 1;

/// A shard's counters (see `flatbuffers/stats.fbs` for each field's meaning).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardStats {
    pub shard: u16,
    pub at_us: u64,
    pub checks: u64,
    pub started: u64,
    /// (outcome, count) for every outcome seen at least once.
    pub completed: Vec<(Outcome, u64)>,
    pub in_flight: u32,
    pub ready: u32,
    pub missed: u64,
    pub overlapping: u64,
    pub deferred_ip_cap: u64,
    pub ring_stalls: u64,
    pub lateness_count: u64,
    pub lateness_p50_us: u64,
    pub lateness_p99_us: u64,
    pub lateness_max_us: u64,
    pub buffers_in_use: u32,
    pub buffers_pooled: u32,
    pub table_bytes: u64,
}

impl FrameEncoder {
    /// Encodes a shard's counters; the bytes are valid until the next call.
    pub fn stats(&mut self, s: &ShardStats) -> &[u8] {
        let fbb = &mut self.fbb;
        fbb.reset();
        let counts: Vec<_> = s
            .completed
            .iter()
            .map(|(o, n)| fb::OutcomeCount::new(o.code(), 0, 0, *n))
            .collect();
        let completed = fbb.create_vector(&counts);
        let root = fb::ShardStats::create(
            fbb,
            &fb::ShardStatsArgs {
                version: SHARD_STATS_REVISION,
                shard: s.shard,
                at_us: s.at_us,
                checks: s.checks,
                started: s.started,
                completed: Some(completed),
                in_flight: s.in_flight,
                ready: s.ready,
                missed: s.missed,
                overlapping: s.overlapping,
                deferred_ip_cap: s.deferred_ip_cap,
                ring_stalls: s.ring_stalls,
                lateness_count: s.lateness_count,
                lateness_p50_us: s.lateness_p50_us,
                lateness_p99_us: s.lateness_p99_us,
                lateness_max_us: s.lateness_max_us,
                buffers_in_use: s.buffers_in_use,
                buffers_pooled: s.buffers_pooled,
                table_bytes: s.table_bytes,
            },
        );
        fbb.finish(root, Some(SHARD_STATS_IDENTIFIER));
        fbb.finished_data()
    }
}

/// Verifies and reads a `ShardStats` frame.
pub fn decode_stats(buf: &[u8]) -> Result<ShardStats, FrameError> {
    check_envelope(buf, SHARD_STATS_IDENTIFIER)?;
    let f = flatbuffers::root_with_opts::<fb::ShardStats>(&VERIFIER, buf)?;
    if f.version() == 0 {
        return Err(FrameError::MissingVersion);
    }
    let completed = f
        .completed()
        .map(|v| {
            v.iter()
                .map(|c| {
                    Outcome::from_code(c.code()).map(|o| (o, c.count())).ok_or(
                        FrameError::UnknownValue {
                            field: "completed.code",
                            value: u32::from(c.code()),
                        },
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(ShardStats {
        shard: f.shard(),
        at_us: f.at_us(),
        checks: f.checks(),
        started: f.started(),
        completed,
        in_flight: f.in_flight(),
        ready: f.ready(),
        missed: f.missed(),
        overlapping: f.overlapping(),
        deferred_ip_cap: f.deferred_ip_cap(),
        ring_stalls: f.ring_stalls(),
        lateness_count: f.lateness_count(),
        lateness_p50_us: f.lateness_p50_us(),
        lateness_p99_us: f.lateness_p99_us(),
        lateness_max_us: f.lateness_max_us(),
        buffers_in_use: f.buffers_in_use(),
        buffers_pooled: f.buffers_pooled(),
        table_bytes: f.table_bytes(),
    })
}
