//! DNS replies as hostile bytes: the response classifier, the value extractor of `dns` checks,
//! the cache and probe safety's answer-set check never panic, and every accepted answer keeps
//! our limits. When the bytes parse as a message, its own id and question are used, so the
//! fuzzer gets past the "not an answer to us" checks into the answer sections.
#![no_main]

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use jetmon_prober::proto::dns::{
    Answer, DnsCache, MAX_ANSWERS, MAX_CNAME_CHAIN, Values, check_values, parse_response,
    parse_values,
};
use jetmon_prober::proto::safety::ProbeSafety;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let (id, name, rtype) = match Message::from_vec(input) {
        Ok(m) => match m.queries.first() {
            Some(q) => (m.metadata.id, q.name().to_ascii(), q.query_type()),
            None => (m.metadata.id, "site-1.fleet.test".to_owned(), RecordType::A),
        },
        Err(_) => (0, "site-1.fleet.test".to_owned(), RecordType::A),
    };
    let mut cache = DnsCache::default();
    for t in [RecordType::A, RecordType::AAAA] {
        if let Ok(answer) = parse_response(input, id, &name, t) {
            if let Answer::Addresses { ips, cname_hops, .. } = &answer {
                assert!(!ips.is_empty() && ips.len() <= MAX_ANSWERS);
                assert!(usize::from(*cname_hops) <= MAX_CNAME_CHAIN);
                let _ = ProbeSafety::default().check_answers(ips);
            }
            cache.put(&name, t, &answer, 1_000);
            let _ = cache.get(&name, t, 1_001);
        }
    }
    for t in [rtype, RecordType::MX, RecordType::TXT, RecordType::CNAME] {
        if let Ok(values) = parse_values(input, id, &name, t) {
            if let Values::Found(found) = &values {
                assert!(found.len() <= MAX_ANSWERS);
            }
            let _ = check_values(&values, &["10 mail.example".to_owned(), "::1".to_owned()], t);
        }
    }
});
