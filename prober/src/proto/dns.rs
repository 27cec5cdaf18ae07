//! DNS stub-resolver logic, sans-IO: builds queries and classifies responses (hickory-proto
//! for the wire format), follows CNAME chains inside a response, and caches answers with
//! clamped TTLs, expiry jitter and negative caching. The driver sends bytes over UDP (TCP on
//! truncation) and keeps the clock; nothing here does IO or reads time.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use jetmon_shared::check::stable_hash;
use jetmon_shared::outcome::Outcome;

/// Most records we accept in one answer section.
pub const MAX_ANSWERS: usize = 64;
/// Most CNAME hops followed inside a response.
pub const MAX_CNAME_CHAIN: usize = 8;
/// TTLs are clamped into this range (seconds) before caching.
pub const MIN_TTL_S: u32 = 5;
pub const MAX_TTL_S: u32 = 3_600;
/// How long a negative answer (NXDOMAIN, no records) is cached when the zone does not say.
pub const DEFAULT_NEGATIVE_TTL_S: u32 = 30;
/// EDNS UDP payload we advertise (the DNS flag day value: no fragmentation).
pub const UDP_PAYLOAD_BYTES: u16 = 1232;
/// Entries a shard's cache holds at most.
pub const MAX_CACHE_ENTRIES: usize = 1 << 20;

/// What one response says about the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Addresses (at most [`MAX_ANSWERS`]), the smallest TTL along the chain, CNAME hops taken.
    Addresses {
        ips: Vec<IpAddr>,
        ttl_s: u32,
        cname_hops: u8,
    },
    NxDomain {
        ttl_s: u32,
    },
    /// The name exists but has no record of the type asked.
    NoRecords {
        ttl_s: u32,
    },
    ServFail,
    Refused,
    /// The answer did not fit in UDP: ask again over TCP.
    Truncated,
    /// An answer to our question that we refuse to use (a CNAME chain or an answer set over
    /// our limits): the site's DNS is broken, reported as `dns_servfail` with this detail.
    Unusable {
        detail: u16,
    },
}

/// Detail codes of DNS outcomes (the result's `detail`), telling apart what shares a code.
pub mod detail {
    pub const SERVFAIL: u16 = 1;
    pub const REFUSED: u16 = 2;
    /// Our resolvers answer other names but not this one, in time.
    pub const TIMEOUT: u16 = 3;
    /// A `dns` check got records, but not every expected value.
    pub const UNEXPECTED_VALUES: u16 = 4;
    pub const CNAME_CHAIN_TOO_LONG: u16 = 5;
    pub const TOO_MANY_ANSWERS: u16 = 6;
}

impl Answer {
    /// The detail code that goes with [`Answer::failure`].
    pub fn detail(&self) -> u16 {
        match self {
            Answer::ServFail => detail::SERVFAIL,
            Answer::Refused => detail::REFUSED,
            Answer::Unusable { detail } => *detail,
            _ => 0,
        }
    }

    /// The site-failure outcome of a negative answer (None for addresses and truncation).
    pub fn failure(&self) -> Option<Outcome> {
        match self {
            Answer::NxDomain { .. } => Some(Outcome::DnsNxdomain),
            Answer::NoRecords { .. } => Some(Outcome::DnsNoRecords),
            Answer::ServFail | Answer::Refused | Answer::Unusable { .. } => {
                Some(Outcome::DnsServfail)
            }
            Answer::Addresses { .. } | Answer::Truncated => None,
        }
    }
}

/// Why a response was not usable at all (treated like a resolver that did not answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsError {
    Malformed,
    NotAResponse,
    /// Another query's id: a late answer or a spoofing attempt.
    IdMismatch,
    /// The question section does not echo ours.
    QuestionMismatch,
    CnameChainTooLong,
    TooManyAnswers,
    BadName,
}

impl DnsError {
    /// A reply to our question that breaks our limits: the server's answer, to be reported
    /// (as [`Answer::Unusable`]), unlike replies that are not answers to us at all.
    pub fn as_answer(self) -> Option<Answer> {
        match self {
            DnsError::CnameChainTooLong => Some(Answer::Unusable {
                detail: detail::CNAME_CHAIN_TOO_LONG,
            }),
            DnsError::TooManyAnswers => Some(Answer::Unusable {
                detail: detail::TOO_MANY_ANSWERS,
            }),
            _ => None,
        }
    }
}

/// Builds a recursive query for `name` (A or AAAA) with EDNS.
pub fn build_query(id: u16, name: &str, rtype: RecordType) -> Result<Vec<u8>, DnsError> {
    let name = fqdn(name)?;
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD_BYTES);
    m.edns = Some(edns);
    m.to_vec().map_err(|_| DnsError::BadName)
}

fn fqdn(name: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_ascii(name).map_err(|_| DnsError::BadName)?;
    n.set_fqdn(true);
    Ok(n)
}

/// Classifies a response to an address query (`id`, `name`, `rtype` = A or AAAA).
pub fn parse_response(
    buf: &[u8],
    id: u16,
    name: &str,
    rtype: RecordType,
) -> Result<Answer, DnsError> {
    let m = Message::from_vec(buf).map_err(|_| DnsError::Malformed)?;
    let (records, ttl_s, cname_hops) = match classify(&m, id, name, rtype)? {
        Ok(found) => found,
        Err(negative) => return Ok(negative),
    };
    let ips = records
        .iter()
        .filter_map(|d| match d {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    Ok(Answer::Addresses {
        ips,
        ttl_s,
        cname_hops,
    })
}

/// What a `dns` check found: the records of the asked type, as text, or a negative answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Values {
    /// A/AAAA as addresses, CNAME as the target name, MX as `preference exchange`, TXT as
    /// its strings concatenated. Names without the trailing dot, lower-cased.
    Found(Vec<String>),
    Negative(Answer),
}

/// Classifies a response to a `dns` check's query, for any supported record type.
pub fn parse_values(
    buf: &[u8],
    id: u16,
    name: &str,
    rtype: RecordType,
) -> Result<Values, DnsError> {
    let m = Message::from_vec(buf).map_err(|_| DnsError::Malformed)?;
    let (records, _, _) = match classify(&m, id, name, rtype)? {
        Ok(found) => found,
        Err(negative) => return Ok(Values::Negative(negative)),
    };
    Ok(Values::Found(
        records.iter().filter_map(|d| value_text(d)).collect(),
    ))
}

/// The verdict of a `dns` check on what its query found: every expected value must be among
/// the records (addresses compared as addresses, names case-insensitively without the final
/// dot, TXT exactly); with no expected values, any record of the type is enough.
pub fn check_values(values: &Values, expected: &[String], rtype: RecordType) -> (Outcome, u16) {
    let found = match values {
        Values::Negative(negative) => {
            return (
                negative.failure().unwrap_or(Outcome::DnsServfail),
                negative.detail(),
            );
        }
        Values::Found(found) => found,
    };
    let matches = |want: &str| {
        found.iter().any(|have| match rtype {
            RecordType::A | RecordType::AAAA => {
                match (want.trim().parse::<IpAddr>(), have.parse::<IpAddr>()) {
                    (Ok(w), Ok(h)) => w == h,
                    _ => false,
                }
            }
            RecordType::TXT => have == want,
            _ => have.eq_ignore_ascii_case(want.trim().trim_end_matches('.')),
        })
    };
    if expected.iter().all(|w| matches(w)) {
        (Outcome::Ok, 0)
    } else {
        (Outcome::KeywordMissing, detail::UNEXPECTED_VALUES)
    }
}

fn value_text(d: &RData) -> Option<String> {
    Some(match d {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(c) => name_text(&c.0),
        RData::MX(mx) => format!("{} {}", mx.preference, name_text(&mx.exchange)),
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|part| String::from_utf8_lossy(part))
            .collect(),
        _ => return None,
    })
}

fn name_text(n: &Name) -> String {
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// Checks a response against our query and either finds the records of `rtype` (following
/// the CNAME chain from the question's name; records for other names are ignored) with the
/// smallest TTL along the chain and the hops taken, or says which negative answer it is.
#[allow(clippy::type_complexity)]
fn classify<'m>(
    m: &'m Message,
    id: u16,
    name: &str,
    rtype: RecordType,
) -> Result<Result<(Vec<&'m RData>, u32, u8), Answer>, DnsError> {
    if m.metadata.message_type != MessageType::Response {
        return Err(DnsError::NotAResponse);
    }
    if m.metadata.id != id {
        return Err(DnsError::IdMismatch);
    }
    let qname = fqdn(name)?;
    match m.queries.first() {
        Some(q) if q.name() == &qname && q.query_type() == rtype => {}
        _ => return Err(DnsError::QuestionMismatch),
    }
    if m.metadata.truncation {
        return Ok(Err(Answer::Truncated));
    }
    let negative_ttl = negative_ttl(m);
    match m.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => {
            return Ok(Err(Answer::NxDomain {
                ttl_s: negative_ttl,
            }));
        }
        ResponseCode::Refused => return Ok(Err(Answer::Refused)),
        _ => return Ok(Err(Answer::ServFail)),
    }
    if m.answers.len() > MAX_ANSWERS {
        return Err(DnsError::TooManyAnswers);
    }
    let mut current = qname;
    let mut ttl = u32::MAX;
    for hop in 0..=MAX_CNAME_CHAIN {
        let mut found = Vec::new();
        let mut next = None;
        for r in m.answers.iter().filter(|r| r.name == current) {
            if r.record_type() == rtype {
                found.push(&r.data);
                ttl = ttl.min(r.ttl);
            } else if let RData::CNAME(c) = &r.data {
                next = Some(c.0.clone());
                ttl = ttl.min(r.ttl);
            }
        }
        if !found.is_empty() {
            return Ok(Ok((found, ttl, hop as u8)));
        }
        match next {
            Some(target) => current = target,
            None => {
                return Ok(Err(Answer::NoRecords {
                    ttl_s: negative_ttl,
                }));
            }
        }
    }
    Err(DnsError::CnameChainTooLong)
}

/// The negative-caching TTL: the SOA's minimum (RFC 2308), else the default.
fn negative_ttl(m: &Message) -> u32 {
    m.authorities
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.minimum.min(r.ttl)),
            _ => None,
        })
        .unwrap_or(DEFAULT_NEGATIVE_TTL_S)
}

/// A cached outcome of resolving one (name, type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    Addresses(Vec<IpAddr>),
    /// A negative answer, as its site-failure outcome and detail code.
    Negative(Outcome, u16),
}

#[derive(Debug, Clone)]
struct Entry {
    value: Cached,
    expires_ms: u64,
}

/// A shard's resolver cache. Time is an argument; capacity is bounded.
#[derive(Debug, Default)]
pub struct DnsCache {
    entries: HashMap<(String, u16), Entry>,
}

impl DnsCache {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The live entry for (name, type), if any.
    pub fn get(&self, name: &str, rtype: RecordType, now_ms: u64) -> Option<&Cached> {
        let key = (
            name.trim_end_matches('.').to_ascii_lowercase(),
            u16::from(rtype),
        );
        self.entries
            .get(&key)
            .filter(|e| e.expires_ms > now_ms)
            .map(|e| &e.value)
    }

    /// Stores an answer. TTLs are clamped to [MIN_TTL_S, MAX_TTL_S] and shortened by up to 10%
    /// (a per-name jitter) so that names loaded together do not all expire together.
    /// Truncated answers are not cached (the TCP retry's answer is).
    pub fn put(&mut self, name: &str, rtype: RecordType, answer: &Answer, now_ms: u64) {
        let (value, ttl) = match answer {
            Answer::Addresses { ips, ttl_s, .. } => (Cached::Addresses(ips.clone()), *ttl_s),
            Answer::Truncated => return,
            negative => match negative.failure() {
                Some(outcome) => {
                    let ttl = match negative {
                        Answer::NxDomain { ttl_s } | Answer::NoRecords { ttl_s } => *ttl_s,
                        _ => MIN_TTL_S, // SERVFAIL / REFUSED: retry soon
                    };
                    (Cached::Negative(outcome, negative.detail()), ttl)
                }
                None => return,
            },
        };
        let key = (
            name.trim_end_matches('.').to_ascii_lowercase(),
            u16::from(rtype),
        );
        let ttl_ms = u64::from(ttl.clamp(MIN_TTL_S, MAX_TTL_S)) * 1000;
        let jitter = stable_hash(hash_name(&key.0)) % (ttl_ms / 10 + 1);
        if self.entries.len() >= MAX_CACHE_ENTRIES && !self.entries.contains_key(&key) {
            self.evict(now_ms);
        }
        self.entries.insert(
            key,
            Entry {
                value,
                expires_ms: now_ms + ttl_ms - jitter,
            },
        );
    }

    /// Caches a failure that is not a DNS answer (a name our resolvers do not answer in time
    /// while they answer others) for the shortest TTL, so it is retried soon but not hammered.
    pub fn put_failure(
        &mut self,
        name: &str,
        rtype: RecordType,
        outcome: Outcome,
        detail: u16,
        now_ms: u64,
    ) {
        let key = (
            name.trim_end_matches('.').to_ascii_lowercase(),
            u16::from(rtype),
        );
        if self.entries.len() >= MAX_CACHE_ENTRIES && !self.entries.contains_key(&key) {
            self.evict(now_ms);
        }
        self.entries.insert(
            key,
            Entry {
                value: Cached::Negative(outcome, detail),
                expires_ms: now_ms + u64::from(MIN_TTL_S) * 1000,
            },
        );
    }

    /// Drops expired entries; if that frees too little, drops about half of the rest.
    fn evict(&mut self, now_ms: u64) {
        self.entries.retain(|_, e| e.expires_ms > now_ms);
        if self.entries.len() >= MAX_CACHE_ENTRIES * 3 / 4 {
            self.entries.retain(|k, _| hash_name(&k.0) & 1 == 0);
        }
    }
}

fn hash_name(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn response(id: u16, name: &str, rtype: RecordType, rcode: ResponseCode) -> Message {
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        m.add_query(Query::query(fqdn(name).expect("name"), rtype));
        m
    }

    fn a(name: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(
            fqdn(name).expect("name"),
            ttl,
            RData::A(A(Ipv4Addr::from(ip))),
        )
    }

    fn cname(name: &str, ttl: u32, target: &str) -> Record {
        Record::from_rdata(
            fqdn(name).expect("name"),
            ttl,
            RData::CNAME(CNAME(fqdn(target).expect("t"))),
        )
    }

    fn wire(m: &Message) -> Vec<u8> {
        m.to_vec().expect("encode")
    }

    #[test]
    fn a_query_round_trips_through_the_wire_format() {
        let q = build_query(7, "site-1.fleet.test", RecordType::A).expect("query");
        let m = Message::from_vec(&q).expect("decode");
        assert_eq!(m.metadata.id, 7);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.queries[0].query_type(), RecordType::A);
        assert_eq!(
            m.edns.as_ref().map(|e| e.max_payload()),
            Some(UDP_PAYLOAD_BYTES)
        );
        assert_eq!(
            build_query(1, "bad..name", RecordType::A),
            Err(DnsError::BadName)
        );
    }

    #[test]
    fn addresses_with_the_smallest_ttl_along_a_cname_chain() {
        let mut m = response(9, "www.example.test", RecordType::A, ResponseCode::NoError);
        m.add_answer(cname("www.example.test", 300, "edge.cdn.test"));
        m.add_answer(a("edge.cdn.test", 60, [93, 184, 216, 34]));
        m.add_answer(a("edge.cdn.test", 120, [93, 184, 216, 35]));
        m.add_answer(a("unrelated.test", 1, [6, 6, 6, 6])); // not on the chain: ignored
        let got = parse_response(&wire(&m), 9, "www.example.test", RecordType::A).expect("ok");
        assert_eq!(
            got,
            Answer::Addresses {
                ips: vec![
                    IpAddr::from([93, 184, 216, 34]),
                    IpAddr::from([93, 184, 216, 35])
                ],
                ttl_s: 60,
                cname_hops: 1
            }
        );
    }

    #[test]
    fn aaaa_answers() {
        let mut m = response(3, "v6.test", RecordType::AAAA, ResponseCode::NoError);
        m.add_answer(Record::from_rdata(
            fqdn("v6.test").expect("n"),
            30,
            RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
        ));
        let got = parse_response(&wire(&m), 3, "v6.test", RecordType::AAAA).expect("ok");
        assert!(
            matches!(got, Answer::Addresses { ref ips, .. } if ips == &[IpAddr::V6(Ipv6Addr::LOCALHOST)])
        );
    }

    #[test]
    fn negative_answers_map_to_their_codes() {
        let mut nx = response(1, "gone.test", RecordType::A, ResponseCode::NXDomain);
        let soa = SOA::new(
            fqdn("test").expect("n"),
            fqdn("admin.test").expect("n"),
            1,
            60,
            60,
            600,
            45,
        );
        nx.add_authority(Record::from_rdata(
            fqdn("test").expect("n"),
            900,
            RData::SOA(soa),
        ));
        let got = parse_response(&wire(&nx), 1, "gone.test", RecordType::A).expect("ok");
        assert_eq!(got, Answer::NxDomain { ttl_s: 45 });
        assert_eq!(got.failure(), Some(Outcome::DnsNxdomain));

        let empty = response(2, "empty.test", RecordType::A, ResponseCode::NoError);
        let got = parse_response(&wire(&empty), 2, "empty.test", RecordType::A).expect("ok");
        assert_eq!(
            got,
            Answer::NoRecords {
                ttl_s: DEFAULT_NEGATIVE_TTL_S
            }
        );
        assert_eq!(got.failure(), Some(Outcome::DnsNoRecords));

        for (rcode, want) in [
            (ResponseCode::ServFail, Answer::ServFail),
            (ResponseCode::Refused, Answer::Refused),
        ] {
            let m = response(4, "x.test", RecordType::A, rcode);
            let got = parse_response(&wire(&m), 4, "x.test", RecordType::A).expect("ok");
            assert_eq!(got, want);
            assert_eq!(got.failure(), Some(Outcome::DnsServfail));
        }
    }

    #[test]
    fn spoofed_late_and_broken_responses_are_rejected() {
        let m = response(5, "a.test", RecordType::A, ResponseCode::NoError);
        assert_eq!(
            parse_response(&wire(&m), 6, "a.test", RecordType::A),
            Err(DnsError::IdMismatch)
        );
        assert_eq!(
            parse_response(&wire(&m), 5, "b.test", RecordType::A),
            Err(DnsError::QuestionMismatch)
        );
        assert_eq!(
            parse_response(&wire(&m), 5, "a.test", RecordType::AAAA),
            Err(DnsError::QuestionMismatch)
        );
        let q = Message::new(5, MessageType::Query, OpCode::Query);
        assert_eq!(
            parse_response(&wire(&q), 5, "a.test", RecordType::A),
            Err(DnsError::NotAResponse)
        );
        assert_eq!(
            parse_response(b"\x00\x05garbage", 5, "a.test", RecordType::A),
            Err(DnsError::Malformed)
        );
        let mut tc = response(5, "a.test", RecordType::A, ResponseCode::NoError);
        tc.metadata.truncation = true;
        assert_eq!(
            parse_response(&wire(&tc), 5, "a.test", RecordType::A),
            Ok(Answer::Truncated)
        );
    }

    #[test]
    fn limits_on_chains_and_answer_counts() {
        let mut m = response(8, "c0.test", RecordType::A, ResponseCode::NoError);
        for i in 0..=MAX_CNAME_CHAIN {
            m.add_answer(cname(
                &format!("c{i}.test"),
                60,
                &format!("c{}.test", i + 1),
            ));
        }
        m.add_answer(a(
            &format!("c{}.test", MAX_CNAME_CHAIN + 1),
            60,
            [1, 2, 3, 4],
        ));
        assert_eq!(
            parse_response(&wire(&m), 8, "c0.test", RecordType::A),
            Err(DnsError::CnameChainTooLong)
        );
        let mut big = response(8, "big.test", RecordType::A, ResponseCode::NoError);
        for i in 0..=MAX_ANSWERS {
            big.add_answer(a("big.test", 60, [1, 1, 1, i as u8]));
        }
        assert_eq!(
            parse_response(&wire(&big), 8, "big.test", RecordType::A),
            Err(DnsError::TooManyAnswers)
        );
    }

    #[test]
    fn cache_clamps_ttls_jitters_and_caches_negatives() {
        let mut c = DnsCache::default();
        let ips = vec![IpAddr::from([1, 2, 3, 4])];
        c.put(
            "Site.Test.",
            RecordType::A,
            &Answer::Addresses {
                ips: ips.clone(),
                ttl_s: 1,
                cname_hops: 0,
            },
            0,
        );
        // A 1 s TTL is clamped up to 5 s (less up to 10% jitter).
        assert_eq!(
            c.get("site.test", RecordType::A, 4_400),
            Some(&Cached::Addresses(ips.clone()))
        );
        assert_eq!(c.get("site.test", RecordType::A, 5_000), None);
        assert_eq!(
            c.get("site.test", RecordType::AAAA, 0),
            None,
            "per record type"
        );
        c.put(
            "huge.test",
            RecordType::A,
            &Answer::Addresses {
                ips,
                ttl_s: 999_999,
                cname_hops: 0,
            },
            0,
        );
        assert!(c.get("huge.test", RecordType::A, 3_239_000).is_some());
        assert!(
            c.get("huge.test", RecordType::A, 3_600_000).is_none(),
            "clamped to an hour"
        );
        c.put(
            "gone.test",
            RecordType::A,
            &Answer::NxDomain { ttl_s: 60 },
            0,
        );
        assert_eq!(
            c.get("gone.test", RecordType::A, 1_000),
            Some(&Cached::Negative(Outcome::DnsNxdomain, 0))
        );
        c.put("tc.test", RecordType::A, &Answer::Truncated, 0);
        assert_eq!(c.get("tc.test", RecordType::A, 0), None);
    }

    #[test]
    fn dns_check_values_and_their_verdicts() {
        use hickory_proto::rr::rdata::{MX, TXT};
        let mut m = response(5, "example.test", RecordType::MX, ResponseCode::NoError);
        m.add_answer(Record::from_rdata(
            fqdn("example.test").expect("n"),
            60,
            RData::MX(MX::new(10, fqdn("Mail.Example.test").expect("n"))),
        ));
        let v = parse_values(&wire(&m), 5, "example.test", RecordType::MX).expect("parse");
        assert_eq!(v, Values::Found(vec!["10 mail.example.test".into()]));
        let want = |w: &[&str]| -> Vec<String> { w.iter().map(|s| s.to_string()).collect() };
        assert_eq!(
            check_values(&v, &want(&["10 MAIL.example.test."]), RecordType::MX),
            (Outcome::Ok, 0)
        );
        assert_eq!(
            check_values(&v, &want(&["20 mail.example.test"]), RecordType::MX),
            (Outcome::KeywordMissing, detail::UNEXPECTED_VALUES)
        );
        assert_eq!(check_values(&v, &[], RecordType::MX), (Outcome::Ok, 0));

        let mut t = response(6, "example.test", RecordType::TXT, ResponseCode::NoError);
        t.add_answer(Record::from_rdata(
            fqdn("example.test").expect("n"),
            60,
            RData::TXT(TXT::new(vec!["v=spf1 ".into(), "-all".into()])),
        ));
        let v = parse_values(&wire(&t), 6, "example.test", RecordType::TXT).expect("parse");
        assert_eq!(v, Values::Found(vec!["v=spf1 -all".into()]));
        assert_eq!(
            check_values(&v, &want(&["V=SPF1 -ALL"]), RecordType::TXT).0,
            Outcome::KeywordMissing,
            "TXT compares exactly"
        );

        let mut aaaa = response(7, "v6.test", RecordType::AAAA, ResponseCode::NoError);
        aaaa.add_answer(Record::from_rdata(
            fqdn("v6.test").expect("n"),
            60,
            RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
        ));
        let v = parse_values(&wire(&aaaa), 7, "v6.test", RecordType::AAAA).expect("parse");
        assert_eq!(
            check_values(&v, &want(&["0:0:0::1"]), RecordType::AAAA),
            (Outcome::Ok, 0),
            "addresses compare as addresses"
        );
        let nx = response(8, "gone.test", RecordType::A, ResponseCode::NXDomain);
        let v = parse_values(&wire(&nx), 8, "gone.test", RecordType::A).expect("parse");
        assert_eq!(
            check_values(&v, &[], RecordType::A),
            (Outcome::DnsNxdomain, 0)
        );
        let refused = response(9, "x.test", RecordType::A, ResponseCode::Refused);
        let v = parse_values(&wire(&refused), 9, "x.test", RecordType::A).expect("parse");
        assert_eq!(
            check_values(&v, &[], RecordType::A),
            (Outcome::DnsServfail, detail::REFUSED)
        );
    }

    #[test]
    fn over_limit_answers_are_reported_not_dropped() {
        assert_eq!(
            DnsError::CnameChainTooLong
                .as_answer()
                .map(|a| (a.failure(), a.detail())),
            Some((Some(Outcome::DnsServfail), detail::CNAME_CHAIN_TOO_LONG))
        );
        assert_eq!(
            DnsError::IdMismatch.as_answer(),
            None,
            "not an answer to us"
        );
        let mut cache = DnsCache::default();
        cache.put_failure(
            "slow.test",
            RecordType::A,
            Outcome::DnsServfail,
            detail::TIMEOUT,
            0,
        );
        assert_eq!(
            cache.get("slow.test", RecordType::A, 1_000),
            Some(&Cached::Negative(Outcome::DnsServfail, detail::TIMEOUT))
        );
        assert_eq!(
            cache.get("slow.test", RecordType::A, u64::from(MIN_TTL_S) * 1000),
            None,
            "kept for the shortest TTL only"
        );
    }

    #[test]
    fn garbage_never_panics() {
        use proptest::prelude::*;
        proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..600), id in any::<u16>())| {
            let _ = parse_response(&bytes, id, "a.test", RecordType::A);
        });
    }
}
