//! The HTTP response machine on arbitrary bytes, split at arbitrary points, under arbitrary
//! rules: it must never panic, never read past its budget, and reach the same verdict (outcome,
//! detail, status) whatever the split.
#![no_main]

use arbitrary::Arbitrary;
use jetmon_prober::proto::http::{Progress, ResponseMachine, ResponseRules, Verdict};
use jetmon_prober::proto::keyword::Keywords;
use jetmon_shared::check::HttpMethod;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    data: Vec<u8>,
    cuts: Vec<u16>,
    head: bool,
    integrity: bool,
    keyword: Option<String>,
    forbidden: Option<String>,
    budget: u16,
    min_body: u8,
    accept_500: bool,
    redirects: bool,
    /// Prefix the body with a gzip header, to reach the content decoder often.
    gzip: bool,
}

fn run(rules: &ResponseRules, pieces: &[&[u8]]) -> Verdict {
    let mut m = ResponseMachine::new(rules, Vec::new(), Vec::new(), Vec::new());
    for p in pieces {
        if let Progress::Done(v) = m.feed(p) {
            return v;
        }
    }
    m.end_of_stream()
}

fuzz_target!(|input: Input| {
    let kw = |k: &Option<String>| k.iter().filter(|s| !s.is_empty() && s.len() < 64).cloned().collect::<Vec<_>>();
    let rules = ResponseRules {
        method: if input.head { HttpMethod::Head } else { HttpMethod::Get },
        accepted: if input.accept_500 { vec![(200, 299), (500, 500)] } else { Vec::new() },
        keywords: Keywords::compile(&kw(&input.keyword), &kw(&input.forbidden), false),
        body_budget: u64::from(input.budget) + 1,
        integrity: input.integrity,
        min_body_bytes: u64::from(input.min_body),
        follow_redirects: input.redirects,
    };
    let mut data = input.data;
    if input.gzip {
        let mut framed = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff".to_vec();
        framed.extend_from_slice(&data);
        data = framed;
    }
    let input = Input { data, ..input };
    let whole = run(&rules, &[&input.data]);
    let mut points: Vec<usize> = input.cuts.iter().map(|c| usize::from(*c) % (input.data.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for p in points.into_iter().chain([input.data.len()]) {
        pieces.push(&input.data[last..p]);
        last = p;
    }
    let split = run(&rules, &pieces);
    assert_eq!((split.outcome, split.detail, split.status), (whole.outcome, whole.detail, whole.status));
    assert!(whole.body_bytes <= rules.body_budget && split.body_bytes <= rules.body_budget);
});
