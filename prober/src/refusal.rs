//! Probe-safety refusals as results (checks.md: a probe never goes silent). A check whose
//! target breaks a rule that can be judged from its spec alone (scheme, user info, syntax)
//! is refused when it is configured and yields a `probe_safety_blocked` result at once, and
//! again for every trigger-now or re-check, without touching the network. Refusals judged
//! while probing (an address, a redirect hop) become results the same way, with a sentence
//! naming the rule and what was judged.

use std::collections::HashMap;

use hickory_proto::rr::RecordType;
use jetmon_shared::check::{CheckSpec, CheckType, ProbeOrigin, redact_userinfo};
use jetmon_shared::frames::ProbeResult;
use jetmon_shared::outcome::Outcome;

use crate::probe::{ProbeReport, monitor_side};
use crate::proto::dns;
use crate::proto::safety::{Blocked, note};
use crate::target::{TargetError, parse_for};

/// A check refused at configuration, with what its results need.
#[derive(Debug, Clone)]
pub struct Refused {
    site_id: u64,
    generation: u32,
    check_type: CheckType,
    why: Blocked,
    /// The sentence for a person, carried by every result of this check.
    pub note: String,
}

impl Refused {
    /// Why a check's target cannot be probed at all, judged when it is configured: the rule
    /// it breaks and a sentence for a person. Names and addresses are judged when probed.
    pub fn judge(spec: &CheckSpec) -> Option<Refused> {
        let target = format!(
            "{} target {:?}",
            spec.check_type.name(),
            redact_userinfo(&spec.target)
        );
        let (why, note) = match spec.check_type {
            CheckType::Http | CheckType::Tcp => match parse_for(spec.check_type, &spec.target) {
                Ok(_) => return None,
                Err(TargetError::Scheme) => (Blocked::Scheme, note(Blocked::Scheme, None, &target)),
                Err(TargetError::UserInfo) => {
                    (Blocked::UserInfo, note(Blocked::UserInfo, None, &target))
                }
                Err(e) => (
                    Blocked::Syntax,
                    note(Blocked::Syntax, None, &format!("{target}: {e}")),
                ),
            },
            CheckType::Dns => match dns::build_query(0, &spec.target, RecordType::A) {
                Ok(_) => return None,
                Err(_) => (
                    Blocked::Syntax,
                    note(
                        Blocked::Syntax,
                        None,
                        &format!("{target}: not a valid DNS name"),
                    ),
                ),
            },
        };
        Some(Refused {
            site_id: spec.site_id,
            generation: spec.generation,
            check_type: spec.check_type,
            why,
            note,
        })
    }

    /// The result this refused check yields now, for `origin`.
    pub fn result(
        &self,
        check_id: u64,
        origin: ProbeOrigin,
        request_id: u64,
        now_us: u64,
        vantage_id: u32,
        shard: u16,
    ) -> ProbeResult {
        ProbeResult {
            check_id,
            site_id: self.site_id,
            seq: 0,
            scheduled_at_us: now_us,
            started_at_us: now_us,
            request_id,
            cert_not_after_s: 0,
            phases: Default::default(),
            bytes_read: 0,
            vantage_id,
            generation: self.generation,
            http_status: 0,
            outcome: Outcome::ProbeSafetyBlocked,
            detail: self.why as u16,
            tls_version: 0,
            shard,
            redirect_count: 0,
            origin,
            check_type: self.check_type,
            flags: 0,
        }
    }
}

/// The checks of one shard refused at configuration, by check id.
#[derive(Debug, Default)]
pub struct Refusals(HashMap<u64, Refused>);

impl Refusals {
    pub fn insert(&mut self, check_id: u64, refused: Refused) {
        self.0.insert(check_id, refused);
    }
    pub fn remove(&mut self, check_id: u64) {
        self.0.remove(&check_id);
    }
    pub fn contains(&self, check_id: u64) -> bool {
        self.0.contains_key(&check_id)
    }
    pub fn get(&self, check_id: u64) -> Option<&Refused> {
        self.0.get(&check_id)
    }
}

/// The readable note of a probe-safety refusal judged while probing; `what` names the
/// judged target (the check's own, or a redirect hop).
pub fn refusal_note(report: &ProbeReport, what: &str) -> Option<String> {
    if report.outcome != Outcome::ProbeSafetyBlocked {
        return None;
    }
    let why = Blocked::from_code(report.detail)?;
    Some(note(why, report.blocked_ip, what))
}

/// The report of a probe that safety refused for `why`.
pub fn blocked(why: Blocked) -> ProbeReport {
    ProbeReport {
        detail: why as u16,
        ..monitor_side(Outcome::ProbeSafetyBlocked)
    }
}
