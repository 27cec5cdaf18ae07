use super::*;
use proptest::prelude::*;

fn rules() -> ResponseRules {
    ResponseRules {
        method: HttpMethod::Get,
        accepted: Vec::new(),
        keywords: None,
        body_budget: 256 * 1024,
        integrity: false,
        min_body_bytes: 0,
        follow_redirects: false,
    }
}

fn integrity() -> ResponseRules {
    ResponseRules {
        integrity: true,
        ..rules()
    }
}

fn with_keywords(required: &[&str], forbidden: &[&str]) -> ResponseRules {
    let s = |v: &[&str]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    ResponseRules {
        keywords: Keywords::compile(&s(required), &s(forbidden), false),
        ..rules()
    }
}

/// Feeds `wire` in pieces of `step` bytes, then end-of-stream if still undecided.
fn run(rules: &ResponseRules, wire: &[u8], step: usize) -> Verdict {
    let mut m = ResponseMachine::new(rules, Vec::new(), Vec::new(), Vec::new());
    for piece in wire.chunks(step.max(1)) {
        if let Progress::Done(v) = m.feed(piece) {
            return v;
        }
    }
    m.end_of_stream()
}

/// What must not depend on how the bytes were split. (`body_bytes` may: a verdict reached
/// early counts only what was consumed before it.)
fn key(v: Verdict) -> (Outcome, Detail, u16) {
    (v.outcome, v.detail, v.status)
}

/// Same verdict whatever the split; returns the one-piece verdict.
fn run_all_splits(rules: &ResponseRules, wire: &[u8]) -> Verdict {
    let whole = run(rules, wire, wire.len());
    for step in [1, 2, 3, 7, 64, 1000] {
        assert_eq!(key(run(rules, wire, step)), key(whole), "step {step}");
    }
    whole
}

fn v(outcome: Outcome, detail: Detail, status: u16, body_bytes: u64) -> Verdict {
    Verdict {
        outcome,
        detail,
        status,
        body_bytes,
        redirect: false,
    }
}

#[test]
fn ok_without_reading_the_body_when_nothing_needs_it() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(
        run_all_splits(&rules(), wire),
        v(Outcome::Ok, Detail::None, 200, 0)
    );
    // Decided as soon as the head is complete: no need to wait for the body or EOF.
    let r = rules();
    let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
    assert!(matches!(
        m.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        Progress::Done(_)
    ));
}

#[test]
fn content_length_body_complete_and_short() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(
        run_all_splits(&integrity(), wire),
        v(Outcome::Ok, Detail::None, 200, 5)
    );
    let short = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello";
    assert_eq!(
        run_all_splits(&integrity(), short),
        v(Outcome::BodyTruncated, Detail::ShortBody, 200, 5)
    );
    // Without integrity checking a short body is not a failure.
    let kw = with_keywords(&["hell"], &[]);
    assert_eq!(run_all_splits(&kw, short).outcome, Outcome::Ok);
}

#[test]
fn status_outside_the_accepted_set() {
    let wire = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nerr";
    assert_eq!(
        run_all_splits(&integrity(), wire),
        v(Outcome::HttpStatus, Detail::None, 500, 0)
    );
    let accepted = ResponseRules {
        accepted: vec![(200, 299), (404, 404)],
        ..rules()
    };
    let nf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(run_all_splits(&accepted, nf).outcome, Outcome::Ok);
    let moved = b"HTTP/1.1 301 Moved\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        run_all_splits(&accepted, moved).outcome,
        Outcome::HttpStatus
    );
    assert_eq!(
        run_all_splits(&rules(), moved).outcome,
        Outcome::Ok,
        "1..=399 by default"
    );
}

#[test]
fn chunked_body_with_keyword_across_chunks() {
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHello\r\n6\r\n World\r\n0\r\n\r\n";
    let r = ResponseRules {
        integrity: true,
        ..with_keywords(&["lo wor"], &[])
    };
    assert_eq!(
        run_all_splits(&r, wire),
        v(Outcome::Ok, Detail::None, 200, 11)
    );
}

#[test]
fn chunked_stream_ended_early_or_malformed() {
    let early = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHello\r\n";
    assert_eq!(
        run_all_splits(&integrity(), early),
        v(Outcome::BodyTruncated, Detail::UnterminatedChunks, 200, 5)
    );
    let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nXYZ\r\nHello\r\n";
    assert_eq!(
        run_all_splits(&integrity(), bad),
        v(Outcome::HttpMalformed, Detail::BadChunking, 200, 0)
    );
}

#[test]
fn transfer_encoding_overrides_content_length() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    assert_eq!(
        run_all_splits(&integrity(), wire),
        v(Outcome::Ok, Detail::None, 200, 2)
    );
}

#[test]
fn close_delimited_body() {
    let wire = b"HTTP/1.0 200 OK\r\n\r\n<html>welcome home</html>";
    assert_eq!(
        run_all_splits(&integrity(), wire),
        v(Outcome::Ok, Detail::None, 200, 25)
    );
    let r = ResponseRules {
        integrity: true,
        ..with_keywords(&["goodbye"], &[])
    };
    assert_eq!(run_all_splits(&r, wire).outcome, Outcome::KeywordMissing);
}

#[test]
fn forbidden_keyword_and_early_stop() {
    let wire = b"HTTP/1.1 200 OK\r\n\r\nWelcome! Fatal error: Allowed memory size exhausted";
    let r = with_keywords(&["welcome"], &["fatal error"]);
    assert_eq!(
        run_all_splits(&r, wire).outcome,
        Outcome::KeywordForbiddenPresent
    );
    // Only a required keyword and no integrity: decided as soon as it is seen.
    let r = with_keywords(&["welcome"], &[]);
    let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
    assert_eq!(
        m.feed(b"HTTP/1.1 200 OK\r\n\r\n<p>Welcome"),
        Progress::Done(v(Outcome::Ok, Detail::None, 200, 10))
    );
}

#[test]
fn informational_responses_are_skipped() {
    let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(
        run_all_splits(&integrity(), wire),
        v(Outcome::Ok, Detail::None, 200, 2)
    );
    let many = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(usize::from(MAX_INFORMATIONAL) + 1);
    assert_eq!(
        run_all_splits(&rules(), &many).detail,
        Detail::TooManyInformational
    );
}

#[test]
fn responses_without_a_body() {
    let head = ResponseRules {
        method: HttpMethod::Head,
        ..integrity()
    };
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    assert_eq!(
        run_all_splits(&head, wire),
        v(Outcome::Ok, Detail::None, 200, 0)
    );
    for status in ["204 No Content", "304 Not Modified"] {
        let wire = format!("HTTP/1.1 {status}\r\n\r\n");
        assert_eq!(
            run_all_splits(&integrity(), wire.as_bytes()).outcome,
            Outcome::Ok,
            "{status}"
        );
    }
}

#[test]
fn empty_body_on_200() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        run_all_splits(&integrity(), wire),
        v(Outcome::BodyEmpty, Detail::None, 200, 0)
    );
    let r = ResponseRules {
        min_body_bytes: 100,
        ..integrity()
    };
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"
        .iter()
        .copied()
        .chain([b'x'; 50])
        .collect::<Vec<_>>();
    assert_eq!(run_all_splits(&r, &wire).outcome, Outcome::BodyEmpty);
    // Not an integrity check: an empty 200 is fine.
    assert_eq!(
        run_all_splits(&rules(), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").outcome,
        Outcome::Ok
    );
}

#[test]
fn malformed_heads() {
    let big = [
        b"HTTP/1.1 200 OK\r\nX: ".as_slice(),
        &vec![b'a'; MAX_HEAD_BYTES],
        b"\r\n\r\n",
    ]
    .concat();
    assert_eq!(run_all_splits(&rules(), &big).detail, Detail::HeadTooLarge);
    let many: Vec<u8> = [
        b"HTTP/1.1 200 OK\r\n".as_slice(),
        &b"A: b\r\n".repeat(MAX_HEADERS + 1),
        b"\r\n",
    ]
    .concat();
    assert_eq!(
        run_all_splits(&rules(), &many).detail,
        Detail::TooManyHeaders
    );
    let long_line = [
        b"HTTP/1.1 200 ".as_slice(),
        &vec![b'O'; MAX_STATUS_LINE_BYTES],
    ]
    .concat();
    assert_eq!(
        run_all_splits(&rules(), &long_line).detail,
        Detail::StatusLineTooLong
    );
    assert_eq!(
        run_all_splits(&rules(), b"SSH-2.0-OpenSSH_9.2\r\n").detail,
        Detail::BadSyntax
    );
    for cl in [
        "12a",
        "-1",
        "",
        "99999999999999999999",
        "5\r\nContent-Length: 6",
    ] {
        let wire = format!("HTTP/1.1 200 OK\r\nContent-Length: {cl}\r\n\r\n");
        let got = run_all_splits(&rules(), wire.as_bytes());
        assert_eq!(
            (got.outcome, got.detail),
            (Outcome::HttpMalformed, Detail::BadContentLength),
            "{cl:?}"
        );
    }
    // Identical duplicates are fine.
    let dup = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(run_all_splits(&integrity(), dup).outcome, Outcome::Ok);
}

#[test]
fn a_head_dribbled_byte_by_byte_is_parsed_once() {
    let wire = [
        b"HTTP/1.1 200 OK\r\nX: ".as_slice(),
        &vec![b'a'; 60_000],
        b"\r\nY: b\r\n\r\n",
    ]
    .concat();
    let r = rules();
    let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
    let mut verdict = None;
    for b in wire.chunks(1) {
        if let Progress::Done(v) = m.feed(b) {
            verdict = Some(v);
        }
    }
    assert_eq!(verdict.map(|v| v.outcome), Some(Outcome::Ok));
    // The first byte is tried by the fast path; afterwards only at line ends.
    assert!(m.head_parses <= 4, "{} parses", m.head_parses);
}

#[test]
fn end_of_stream_before_a_response() {
    assert_eq!(
        run(&rules(), b"", 1),
        v(Outcome::HttpMalformed, Detail::EmptyResponse, 0, 0)
    );
    assert_eq!(
        run_all_splits(&rules(), b"HTTP/1.1 200 OK\r\nConte"),
        v(Outcome::HttpMalformed, Detail::TruncatedHead, 0, 0)
    );
}

#[test]
fn body_budget_caps_reading() {
    let r = ResponseRules {
        body_budget: 1000,
        ..with_keywords(&["needle"], &[])
    };
    let mut wire = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    wire.extend(std::iter::repeat_n(b'x', 1500));
    wire.extend_from_slice(b"needle");
    assert_eq!(
        run_all_splits(&r, &wire),
        v(Outcome::KeywordMissing, Detail::BodyBudget, 200, 1000)
    );
    // Integrity cannot judge a body longer than the budget: not truncated, not empty.
    let r = ResponseRules {
        body_budget: 10,
        ..integrity()
    };
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789abc";
    assert_eq!(
        run_all_splits(&r, wire),
        v(Outcome::Ok, Detail::BodyBudget, 200, 10)
    );
}

#[test]
fn deadlines_name_the_phase() {
    let r = integrity();
    let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
    assert_eq!(m.feed(b"HTTP/1.1 200"), Progress::NeedMore);
    assert_eq!(m.deadline().outcome, Outcome::TimeoutTtfb);
    let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
    assert_eq!(
        m.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
        Progress::NeedMore
    );
    assert!(m.head_complete());
    assert_eq!(m.deadline(), v(Outcome::TimeoutBody, Detail::None, 200, 3));
}

#[test]
fn pooled_buffers_come_back() {
    let r = integrity();
    let m = ResponseMachine::new(
        &r,
        Vec::with_capacity(4096),
        Vec::with_capacity(10),
        Vec::with_capacity(20),
    );
    let (head, fold, carry) = m.into_buffers();
    assert!(head.capacity() >= 4096 && fold.capacity() >= 10 && carry.capacity() >= 20);
}

#[test]
fn request_is_well_formed_and_headers_are_filtered() {
    let mut out = Vec::new();
    let headers = vec![
        ("X-Probe".to_string(), "jetmon".to_string()),
        ("Host".to_string(), "evil.test".to_string()),
        ("Connection".to_string(), "keep-alive".to_string()),
        ("X-Inject".to_string(), "a\r\nEvil: 1".to_string()),
        ("Bad Name".to_string(), "x".to_string()),
    ];
    write_request(
        &mut out,
        HttpMethod::Head,
        "example.test:8080",
        "/wp-login.php?x=1",
        "jetmon/2.0",
        &headers,
    );
    assert_eq!(
        String::from_utf8(out).expect("ascii"),
        "HEAD /wp-login.php?x=1 HTTP/1.1\r\nHost: example.test:8080\r\nUser-Agent: jetmon/2.0\r\n\
         Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: close\r\nX-Probe: jetmon\r\n\r\n"
    );
    let mut out = Vec::new();
    write_request(&mut out, HttpMethod::Get, "a.test", "", "ua", &[]);
    assert!(out.starts_with(b"GET / HTTP/1.1\r\n"));
}

// --- property: any split of any response gives the same verdict ---

fn response() -> impl Strategy<Value = (Vec<u8>, ResponseRules)> {
    let status = prop::sample::select(vec![200u16, 201, 204, 301, 404, 500, 503]);
    let body = prop::collection::vec(
        prop::sample::select(b"abcdefgh needle\r\n".to_vec()),
        0..300,
    );
    let framing = 0u8..4;
    let chunk = 1usize..40;
    let rules = (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        1u64..400,
        any::<bool>(),
    );
    (status, body, framing, chunk, rules, any::<bool>()).prop_map(
        |(status, body, framing, chunk, (integ, kw, forbid, budget, head), informational)| {
            let mut wire = Vec::new();
            if informational {
                wire.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            wire.extend_from_slice(format!("HTTP/1.1 {status} X\r\nServer: t\r\n").as_bytes());
            match framing {
                0 => {
                    wire.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                    );
                    wire.extend_from_slice(&body);
                }
                1 => {
                    wire.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    for c in body.chunks(chunk) {
                        wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                        wire.extend_from_slice(c);
                        wire.extend_from_slice(b"\r\n");
                    }
                    wire.extend_from_slice(b"0\r\n\r\n");
                }
                2 => {
                    // truncated Content-Length
                    wire.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", body.len() + 5).as_bytes(),
                    );
                    wire.extend_from_slice(&body);
                }
                _ => {
                    wire.extend_from_slice(b"\r\n");
                    wire.extend_from_slice(&body);
                }
            }
            let words = |on: bool, w: &str| if on { vec![w.to_string()] } else { Vec::new() };
            let rules = ResponseRules {
                method: if head {
                    HttpMethod::Head
                } else {
                    HttpMethod::Get
                },
                accepted: Vec::new(),
                keywords: Keywords::compile(&words(kw, "needle"), &words(forbid, "ah n"), false),
                body_budget: budget,
                integrity: integ,
                follow_redirects: false,
                min_body_bytes: 0,
            };
            (wire, rules)
        },
    )
}

proptest! {
    #[test]
    fn any_split_gives_the_same_verdict((wire, rules) in response(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let whole = run(&rules, &wire, wire.len());
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut m = ResponseMachine::new(&rules, Vec::new(), Vec::new(), Vec::new());
        let mut last = 0;
        let mut got = None;
        for p in points.into_iter().chain([wire.len()]) {
            if let Progress::Done(v) = m.feed(&wire[last..p]) {
                got = Some(v);
                break;
            }
            last = p;
        }
        let got = got.unwrap_or_else(|| m.end_of_stream());
        prop_assert_eq!(key(got), key(whole));
        prop_assert!(got.body_bytes <= whole.body_bytes.max(rules.body_budget));
    }

    #[test]
    fn garbage_is_classified_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000), step in 1usize..100) {
        let r = ResponseRules { integrity: true, ..with_keywords(&["x"], &["y"]) };
        let v = run(&r, &bytes, step);
        prop_assert!(v.body_bytes <= r.body_budget);
    }
}

#[test]
fn redirects_stop_at_the_head_with_their_location() {
    let r = ResponseRules {
        follow_redirects: true,
        ..integrity()
    };
    let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
    let p = m.feed(b"HTTP/1.1 301 Moved\r\nLocation:  /new?a=1 \r\nContent-Length: 5\r\n\r\nmoved");
    match p {
        Progress::Done(v) => {
            assert!(v.redirect);
            assert_eq!((v.outcome, v.status), (Outcome::Ok, 301));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.location(), b"/new?a=1");
    // No Location: judged as a final response (3xx is in the default accepted range).
    let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
    let p = m.feed(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(p, Progress::Done(v(Outcome::Ok, Detail::None, 302, 0)));
    // 304 is not a redirect; with follow_redirects off nothing is.
    let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
    let p = m.feed(b"HTTP/1.1 304 Not Modified\r\nLocation: /x\r\n\r\n");
    assert!(matches!(p, Progress::Done(v) if !v.redirect));
    let off = integrity();
    let mut m = ResponseMachine::new(&off, Vec::new(), Vec::new(), Vec::new());
    let p = m.feed(b"HTTP/1.1 307 T\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n");
    assert!(matches!(p, Progress::Done(v) if !v.redirect && v.status == 307));
}

fn gzip_body(data: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut c = Compress::new(Compression::default(), false);
    let mut deflated = Vec::with_capacity(data.len() / 2 + 1024);
    c.compress_vec(data, &mut deflated, FlushCompress::Finish)
        .expect("compress");
    out.extend(deflated);
    out.extend_from_slice(&[0; 8]);
    out
}

fn gzip_response(body: &[u8], declared_len: Option<usize>) -> Vec<u8> {
    let mut wire = format!(
        "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        declared_len.unwrap_or(body.len())
    )
    .into_bytes();
    wire.extend_from_slice(body);
    wire
}

#[test]
fn gzip_bodies_are_searched_decoded_and_capped_after_decompression() {
    let page = b"<html><body>".repeat(2000);
    let mut page_with_word = page.clone();
    page_with_word.extend_from_slice(b"Powered by WordPress</body></html>");
    let gz = gzip_body(&page_with_word);
    let r = with_keywords(&["wordpress"], &[]);
    let r = ResponseRules {
        integrity: true,
        ..r
    };
    for step in [1, 13, 4096, 1 << 20] {
        let wire = gzip_response(&gz, None);
        let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
        let mut verdict = None;
        for chunk in wire.chunks(step) {
            if let Progress::Done(v) = m.feed(chunk) {
                verdict = Some(v);
                break;
            }
        }
        let v = verdict.unwrap_or_else(|| m.end_of_stream());
        assert_eq!(
            (v.outcome, v.detail),
            (Outcome::Ok, Detail::None),
            "step {step}"
        );
        assert_eq!(
            v.body_bytes,
            page_with_word.len() as u64,
            "decoded bytes counted"
        );
    }
    // A bomb: 64 MiB of zeros in ~64 KiB. The budget (256 KiB) applies to decoded bytes.
    let bomb = gzip_body(&vec![0u8; 64 << 20]);
    let wire = gzip_response(&bomb, None);
    let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
    let v = match m.feed(&wire) {
        Progress::Done(v) => v,
        Progress::NeedMore => m.end_of_stream(),
    };
    assert_eq!(
        (v.outcome, v.detail),
        (Outcome::KeywordMissing, Detail::BodyBudget)
    );
    assert!(v.body_bytes <= r.body_budget, "{}", v.body_bytes);
}

#[test]
fn broken_or_truncated_gzip_is_reported() {
    let r = integrity();
    let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
    let v = match m.feed(&gzip_response(b"this is not gzip", None)) {
        Progress::Done(v) => v,
        Progress::NeedMore => m.end_of_stream(),
    };
    assert_eq!(
        (v.outcome, v.detail),
        (Outcome::HttpMalformed, Detail::BadEncoding)
    );
    // Content-Length counts compressed bytes: a short compressed body is truncated.
    let gz = gzip_body(&b"hello world ".repeat(100));
    let wire = gzip_response(&gz[..gz.len() / 2], Some(gz.len()));
    let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
    assert_eq!(m.feed(&wire), Progress::NeedMore);
    let v = m.end_of_stream();
    assert_eq!(
        (v.outcome, v.detail),
        (Outcome::BodyTruncated, Detail::ShortBody)
    );
    // An empty page, compressed, is still empty.
    let wire = gzip_response(&gzip_body(b""), None);
    let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
    let v = match m.feed(&wire) {
        Progress::Done(v) => v,
        Progress::NeedMore => m.end_of_stream(),
    };
    assert_eq!(v.outcome, Outcome::BodyEmpty);
}

#[test]
fn a_gzip_error_past_the_budget_gives_the_same_verdict_for_any_split() {
    // Found by the http_response fuzzer: fed whole, the decoder used to reach a corrupt byte
    // beyond the wire budget that a split read never reached.
    let mut gz = gzip_body(&b"abcdefgh".repeat(4000));
    let corrupt_at = gz.len() - 20;
    gz[corrupt_at] ^= 0xff;
    let wire = gzip_response(&gz, None);
    let r = ResponseRules {
        body_budget: 64,
        ..integrity()
    };
    let run = |step: usize| {
        let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
        for chunk in wire.chunks(step) {
            if let Progress::Done(v) = m.feed(chunk) {
                return (v.outcome, v.detail);
            }
        }
        let v = m.end_of_stream();
        (v.outcome, v.detail)
    };
    let whole = run(wire.len());
    assert_eq!(whole, (Outcome::Ok, Detail::BodyBudget));
    for step in [1, 3, 50, 90, 200] {
        assert_eq!(run(step), whole, "step {step}");
    }
}

#[test]
fn decoding_stops_at_the_same_point_whatever_the_reads() {
    // Found by the http_response fuzzer: raw deflate that decodes a few bytes and then fails.
    // Once the page is known not to be empty (and no keyword is searched), decoding stops —
    // at the same decoded byte whether the body came in one read or many.
    let mut wire = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff".to_vec();
    wire.extend_from_slice(b"\x0a\x0a\x48\x48\x54\x54\x50\x2f\x31\x2e\x31\x20\x32\x36\x39\x0a\x55\x51\x73\x73\x60\x73\x73\x73\x73\x73\x73\x73\x73\x73\x73\x3a\x73\x31\x2e\x31\x20\x0a\x0a\x54\x50\x2f\x31\x2e\x31\x20\x32\x36\x31\x20\x32\x36\x39\x0a\x55\x51\x73\x73\x60\x73\x73\x73\x73\x73\x73\x73\x73\x73\x73\x3a\x73\x31\xff\xff\xff\xff\xff\xff\xff\xff\xff\x2e\x31\x20\x0a\x60\x73\x73\x73\x73\x73\x73\x73\x73\x73\x73\x3a\x73\x31\x2e\x31\x20\x0a\x0a\x54\x50\x2f\x31\x2e\x31\x20\x32\x36\x31\x20\x32\x36\x39\x0a\x55\x51\x73\x73\x60\x73\x73\x73\x73\x73\x73\x73\x73\x73\x73\x3a\x73\x31\xff\xff\xff\xff\xff\xff\xff\xff\xff\x2e\x31\x20\x0a\x55\x51\x73\x73\x60\x73\x73\x73\x73\x73\x73\x73\x73\x73\x73\x3a\x73\x31\xff\xff\xff\xff\xff\xff\xff\xff\xff\x2e\xff\xff\xff\xff\xff\x04\x9f\x9f\x9f\x9f\x9f\x9f\x9f\x9f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x55\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x9f\x9f\x9f\x9f\x9f\x9f\x9f\x9f\x9f\x9f\x9f\x9f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x31\x20\x0b\x0a\x41\x0a\x0a\x9f");
    let r = ResponseRules {
        min_body_bytes: 13,
        body_budget: 2626,
        follow_redirects: true,
        ..integrity()
    };
    let run = |step: usize| {
        let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
        for chunk in wire.chunks(step) {
            if let Progress::Done(v) = m.feed(chunk) {
                return (v.outcome, v.detail);
            }
        }
        let v = m.end_of_stream();
        (v.outcome, v.detail)
    };
    let whole = run(wire.len());
    for step in [1, 2, 5, 17, 64, 100] {
        assert_eq!(run(step), whole, "step {step}");
    }
}

#[test]
fn how_much_one_inflate_call_yields_cannot_change_the_verdict() {
    // Third http_response fuzzer finding: 35 bytes of raw deflate that expand past the 258-byte
    // budget in one inflate call when read whole, but in smaller pieces when split.
    let mut wire = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff".to_vec();
    wire.extend_from_slice(b"\x0a\x55\x73\x3a\x73\x39\x0a\x0a\x51\x48\x41\x73\x2f\x31\x2e\x31\x20\x31\x32\x39\x0a\x55\x73\x2f\x01\x01\x01\x01\x01");
    let r = ResponseRules {
        min_body_bytes: 1,
        body_budget: 258,
        ..integrity()
    };
    let run = |step: usize| {
        let mut m = ResponseMachine::new(&r, Vec::new(), Vec::new(), Vec::new());
        for chunk in wire.chunks(step) {
            if let Progress::Done(v) = m.feed(chunk) {
                return (v.outcome, v.detail);
            }
        }
        let v = m.end_of_stream();
        (v.outcome, v.detail)
    };
    let whole = run(wire.len());
    for step in [1, 2, 5, 17, 50] {
        assert_eq!(run(step), whole, "step {step}");
    }
}
