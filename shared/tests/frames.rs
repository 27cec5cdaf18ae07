//! Frames: round trips of every field, rejection of damaged or foreign buffers without a
//! panic, and schema evolution (frames of revision N read in N+1 and back).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(
    clippy::all,
    unused_imports,
    dead_code,
    unsafe_op_in_unsafe_fn,
    mismatched_lifetime_syntaxes
)]
#[path = "compat/r1/mod.rs"]
mod r1;
#[allow(
    clippy::all,
    unused_imports,
    dead_code,
    unsafe_op_in_unsafe_fn,
    mismatched_lifetime_syntaxes
)]
#[path = "compat/r2/mod.rs"]
mod r2;
#[allow(
    clippy::all,
    unused_imports,
    dead_code,
    unsafe_op_in_unsafe_fn,
    mismatched_lifetime_syntaxes
)]
#[path = "compat/r3_preview/mod.rs"]
mod r3;

use jetmon_shared::check::{
    CheckSpec, CheckType, DnsRecordType, HttpMethod, IpPreference, MAX_URL_BYTES, PhaseTimings,
    ProbeOrigin, RedirectPolicy,
};
use jetmon_shared::frames::{
    CHECK_RESULT_IDENTIFIER, COMMAND_IDENTIFIER, Command, FrameEncoder, FrameError, ProbeResult,
    RedirectHop, ResultExtras, decode_command, decode_result,
};
use jetmon_shared::outcome::Outcome;
use proptest::prelude::*;

fn probe_result() -> impl Strategy<Value = ProbeResult> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            any::<i64>(),
            any::<[u32; 5]>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (
            any::<u16>(),
            proptest::sample::select(Outcome::ALL),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
        ),
        (
            any::<u8>(),
            proptest::sample::select(ProbeOrigin::ALL),
            proptest::sample::select(CheckType::ALL),
            any::<u8>(),
        ),
    )
        .prop_map(|(ids, nums, codes, small)| ProbeResult {
            check_id: ids.0,
            site_id: ids.1,
            seq: ids.2,
            scheduled_at_us: ids.3,
            started_at_us: ids.4,
            request_id: ids.5,
            cert_not_after_s: nums.0,
            phases: PhaseTimings {
                dns_us: nums.1[0],
                connect_us: nums.1[1],
                tls_us: nums.1[2],
                ttfb_us: nums.1[3],
                total_us: nums.1[4],
            },
            bytes_read: nums.2,
            vantage_id: nums.3,
            generation: nums.4,
            http_status: codes.0,
            outcome: codes.1,
            detail: codes.2,
            tls_version: codes.3,
            shard: codes.4,
            redirect_count: small.0,
            origin: small.1,
            check_type: small.2,
            flags: small.3,
        })
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 1..max)
        .prop_map(|c| c.into_iter().collect::<String>())
        .prop_filter("fits", move |s| !s.is_empty() && s.len() <= max * 4)
}

fn check_spec() -> impl Strategy<Value = CheckSpec> {
    (
        (
            1u64..,
            any::<u64>(),
            any::<u32>(),
            proptest::sample::select(CheckType::ALL),
            text(200),
        ),
        (
            1_000u32..=86_400_000,
            1u32..=120_000,
            any::<Option<u16>>(),
            any::<u8>(),
            any::<u32>(),
        ),
        (
            proptest::sample::select(HttpMethod::ALL),
            proptest::collection::vec((text(20), text(40)), 0..5),
            proptest::sample::select(RedirectPolicy::ALL),
            0u8..=10,
            proptest::collection::vec((0u16..500, 500u16..=999), 0..4),
        ),
        (
            proptest::collection::vec(text(30), 0..4),
            proptest::collection::vec(text(30), 0..4),
            any::<bool>(),
            0u32..=1_048_576,
            any::<u32>(),
            any::<bool>(),
        ),
        (
            any::<[u32; 4]>(),
            proptest::sample::select(IpPreference::ALL),
            proptest::sample::select(DnsRecordType::ALL),
        ),
        (
            proptest::collection::vec(text(20), 0..4),
            proptest::option::of(text(30)),
            any::<bool>(),
        ),
    )
        .prop_map(|(a, b, c, d, e, f)| CheckSpec {
            check_id: a.0,
            site_id: a.1,
            generation: a.2,
            check_type: a.3,
            target: a.4,
            interval_ms: b.0,
            timeout_ms: b.1,
            phase_ms: b.2.map(|p| u32::from(p) % b.0),
            retries: b.3,
            retry_spacing_ms: b.4,
            method: c.0,
            headers: c.1,
            redirect_policy: c.2,
            max_redirects: c.3,
            accepted_statuses: c.4,
            keywords: d.0,
            forbidden_keywords: d.1,
            keyword_case_sensitive: d.2,
            body_budget_bytes: d.3,
            min_body_bytes: d.4,
            check_integrity: d.5,
            ttfb_warn_ms: e.0[0],
            ttfb_degrade_ms: e.0[1],
            total_warn_ms: e.0[2],
            total_degrade_ms: e.0[3],
            ip_preference: e.1,
            dns_record_type: e.2,
            dns_expected: f.0,
            tcp_banner: f.1,
            paused: f.2,
        })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        check_spec().prop_map(|s| Command::Upsert(Box::new(s))),
        any::<u64>().prop_map(|check_id| Command::Remove { check_id }),
        (any::<u64>(), any::<u64>()).prop_map(|(check_id, request_id)| Command::TriggerNow {
            check_id,
            request_id
        }),
        (any::<u64>(), any::<u64>(), any::<u8>(), any::<u32>()).prop_map(
            |(check_id, request_id, count, spacing_ms)| Command::Recheck {
                check_id,
                request_id,
                count,
                spacing_ms
            }
        ),
        (any::<u64>(), any::<bool>())
            .prop_map(|(check_id, paused)| Command::Pause { check_id, paused }),
        any::<u32>().prop_map(|deadline_ms| Command::Drain { deadline_ms }),
    ]
}

proptest! {
    #[test]
    fn result_round_trips(r in probe_result(), url in proptest::option::of(text(100)),
                          issuer in proptest::option::of(text(100)), sans in any::<u16>(), cipher in any::<u16>(),
                          note in proptest::option::of(text(100)),
                          hops in proptest::collection::vec((any::<u16>(), text(60)), 0..=10)) {
        let extras = ResultExtras {
            final_url: url.as_deref(),
            cert_issuer: issuer.as_deref(),
            cert_san_count: sans,
            tls_cipher: cipher,
            note: note.as_deref(),
            redirect_chain: hops.iter().map(|(status, url)| RedirectHop { status: *status, url }).collect(),
        };
        let mut enc = FrameEncoder::new();
        let bytes = enc.result(&r, &extras).to_vec();
        let frame = decode_result(&bytes).unwrap();
        prop_assert_eq!(frame.version, 2);
        prop_assert_eq!(frame.result, r);
        prop_assert_eq!(frame.extras, extras);
    }

    #[test]
    fn command_round_trips(c in command()) {
        let mut enc = FrameEncoder::new();
        let bytes = enc.command(&c).to_vec();
        prop_assert_eq!(decode_command(&bytes).unwrap(), c);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_result(&bytes);
        let _ = decode_command(&bytes);
        // Also with a valid identifier, so the verifier itself is exercised.
        let mut with_id = bytes.clone();
        if with_id.len() >= 8 {
            with_id[4..8].copy_from_slice(CHECK_RESULT_IDENTIFIER.as_bytes());
            let _ = decode_result(&with_id);
            with_id[4..8].copy_from_slice(COMMAND_IDENTIFIER.as_bytes());
            let _ = decode_command(&with_id);
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_is_rejected_or_read_safely(r in probe_result(), cut in 0usize..200, flip in 0usize..2000) {
        let mut enc = FrameEncoder::new();
        let bytes = enc.result(&r, &ResultExtras { final_url: Some("https://a.test/x"), ..Default::default() }).to_vec();
        let cut = cut % bytes.len();
        // Rejected, or (when only trailing padding went) read back unchanged: never wrong data.
        if let Ok(frame) = decode_result(&bytes[..cut]) {
            prop_assert_eq!(frame.result, r);
            prop_assert_eq!(frame.extras.final_url, Some("https://a.test/x"));
        }
        let mut flipped = bytes.clone();
        let bit = flip % (bytes.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        let _ = decode_result(&flipped); // may still verify (a flipped scalar); must not panic
    }
}

#[test]
fn a_result_frame_is_small() {
    let mut enc = FrameEncoder::new();
    let len = enc
        .result(&ProbeResult::default(), &ResultExtras::default())
        .len();
    assert!(len <= 160, "result frame is {len} bytes");
}

#[test]
fn wrong_type_missing_version_and_unknown_values_are_rejected() {
    let mut enc = FrameEncoder::new();
    let result = enc
        .result(&ProbeResult::default(), &ResultExtras::default())
        .to_vec();
    let command = enc.command(&Command::Remove { check_id: 7 }).to_vec();
    assert!(matches!(
        decode_command(&result),
        Err(FrameError::WrongIdentifier { .. })
    ));
    assert!(matches!(
        decode_result(&command),
        Err(FrameError::WrongIdentifier { .. })
    ));
    assert!(matches!(
        decode_result(&[]),
        Err(FrameError::BadLength { len: 0 })
    ));
    assert!(matches!(
        decode_result(&vec![0; 40_000]),
        Err(FrameError::BadLength { .. })
    ));

    // A frame without a version (written by something that is not a jetmon build).
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let core = r1::jetmon::frames::ResultCore::default();
    let root = r1::jetmon::frames::CheckResult::create(
        &mut fbb,
        &r1::jetmon::frames::CheckResultArgs {
            core: Some(&core),
            ..Default::default()
        },
    );
    fbb.finish(root, Some(CHECK_RESULT_IDENTIFIER));
    assert_eq!(
        decode_result(fbb.finished_data()),
        Err(FrameError::MissingVersion)
    );

    // An outcome code this build does not know.
    let mut core = r1::jetmon::frames::ResultCore::default();
    core.set_outcome(999);
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let root = r1::jetmon::frames::CheckResult::create(
        &mut fbb,
        &r1::jetmon::frames::CheckResultArgs {
            version: 1,
            core: Some(&core),
            ..Default::default()
        },
    );
    fbb.finish(root, Some(CHECK_RESULT_IDENTIFIER));
    assert_eq!(
        decode_result(fbb.finished_data()),
        Err(FrameError::UnknownValue {
            field: "outcome",
            value: 999
        })
    );
}

#[test]
fn an_upsert_outside_its_limits_is_rejected() {
    let mut spec = CheckSpec::new(1, 1, CheckType::Http, "http://127.0.0.1/");
    spec.target = "x".repeat(MAX_URL_BYTES + 1);
    let bytes = FrameEncoder::new()
        .command(&Command::Upsert(Box::new(spec)))
        .to_vec();
    let err = decode_command(&bytes).unwrap_err();
    assert!(err.to_string().contains("`target`"), "{err}");
}

/// Revision N (frozen r1 bindings) writes, the current build reads.
#[test]
fn revision_1_frames_read_in_the_current_build() {
    use r1::jetmon::frames as old;
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut core = old::ResultCore::default();
    core.set_check_id(42);
    core.set_seq(7);
    core.set_http_status(503);
    core.set_outcome(Outcome::HttpStatus.code());
    core.set_total_us(1234);
    let url = fbb.create_string("https://b.test/");
    let root = old::CheckResult::create(
        &mut fbb,
        &old::CheckResultArgs {
            version: 1,
            core: Some(&core),
            final_url: Some(url),
            ..Default::default()
        },
    );
    fbb.finish(root, Some("JMR1"));
    let frame = decode_result(fbb.finished_data()).unwrap();
    assert_eq!(frame.version, 1);
    assert_eq!(frame.result.check_id, 42);
    assert_eq!(frame.result.seq, 7);
    assert_eq!(frame.result.http_status, 503);
    assert_eq!(frame.result.outcome, Outcome::HttpStatus);
    assert_eq!(frame.result.phases.total_us, 1234);
    assert_eq!(frame.extras.final_url, Some("https://b.test/"));

    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let target = fbb.create_string("http://127.0.0.1:8080/");
    let up = old::UpsertCheck::create(
        &mut fbb,
        &old::UpsertCheckArgs {
            check_id: 9,
            site_id: 3,
            target: Some(target),
            interval_ms: 30_000,
            timeout_ms: 5_000,
            ..Default::default()
        },
    );
    let root = old::Command::create(
        &mut fbb,
        &old::CommandArgs {
            version: 1,
            body_type: old::CommandBody::UpsertCheck,
            body: Some(up.as_union_value()),
        },
    );
    fbb.finish(root, Some("JMC1"));
    let Command::Upsert(spec) = decode_command(fbb.finished_data()).unwrap() else {
        panic!()
    };
    assert_eq!(
        (spec.check_id, spec.site_id, spec.interval_ms),
        (9, 3, 30_000)
    );
    assert_eq!(spec.retries, 2, "schema default");
    assert_eq!(spec.redirect_policy, RedirectPolicy::Follow);
}

/// Revision N+1 (an append-only change) reads revision N's frames with defaults for the new
/// fields, and revision N reads N+1's frames ignoring them.
#[test]
fn appended_fields_read_both_ways() {
    use r3::jetmon::frames as next;
    // N -> N+1
    let mut enc = FrameEncoder::new();
    let r = ProbeResult {
        check_id: 5,
        outcome: Outcome::ConnRefused,
        ..ProbeResult::default()
    };
    let bytes = enc.result(&r, &ResultExtras::default()).to_vec();
    let frame = flatbuffers::root::<next::CheckResult>(&bytes).unwrap();
    assert_eq!(frame.core().check_id(), 5);
    assert_eq!(frame.core().outcome(), Outcome::ConnRefused.code());
    assert_eq!(frame.peer_addr(), None);
    assert_eq!(frame.http_version(), 0);

    // N+1 -> N
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut core = next::ResultCore::default();
    core.set_check_id(6);
    core.set_outcome(Outcome::Ok.code());
    let peer = fbb.create_string("127.0.0.1:80");
    let root = next::CheckResult::create(
        &mut fbb,
        &next::CheckResultArgs {
            version: 3,
            core: Some(&core),
            peer_addr: Some(peer),
            http_version: 11,
            ..Default::default()
        },
    );
    fbb.finish(root, Some("JMR1"));
    let frame = decode_result(fbb.finished_data()).unwrap();
    assert_eq!(frame.version, 3);
    assert_eq!(frame.result.check_id, 6);

    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let target = fbb.create_string("http://127.0.0.1/");
    let up = next::UpsertCheck::create(
        &mut fbb,
        &next::UpsertCheckArgs {
            check_id: 1,
            target: Some(target),
            interval_ms: 60_000,
            timeout_ms: 10_000,
            down_interval_ms: 5_000,
            ..Default::default()
        },
    );
    let root = next::Command::create(
        &mut fbb,
        &next::CommandArgs {
            version: 3,
            body_type: next::CommandBody::UpsertCheck,
            body: Some(up.as_union_value()),
        },
    );
    fbb.finish(root, Some("JMC1"));
    let Command::Upsert(spec) = decode_command(fbb.finished_data()).unwrap() else {
        panic!()
    };
    assert_eq!(spec.check_id, 1);
}

/// Revision 2 (`note`, `redirect_chain`): its frozen bindings write, the current build reads
/// both fields; the current build writes them and revision 1 reads the rest, ignoring them.
#[test]
fn revision_2_notes_and_chains_read_both_ways() {
    use r2::jetmon::frames as r2fb;
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut core = r2fb::ResultCore::default();
    core.set_check_id(8);
    core.set_outcome(Outcome::ProbeSafetyBlocked.code());
    let note = fbb.create_string("loopback address 127.0.0.1 is refused");
    let url = fbb.create_string("https://b.test/");
    let hop = r2fb::RedirectHop::create(
        &mut fbb,
        &r2fb::RedirectHopArgs {
            status: 301,
            url: Some(url),
        },
    );
    let chain = fbb.create_vector(&[hop]);
    let root = r2fb::CheckResult::create(
        &mut fbb,
        &r2fb::CheckResultArgs {
            version: 2,
            core: Some(&core),
            note: Some(note),
            redirect_chain: Some(chain),
            ..Default::default()
        },
    );
    fbb.finish(root, Some("JMR1"));
    let frame = decode_result(fbb.finished_data()).unwrap();
    assert_eq!(frame.version, 2);
    assert_eq!(
        frame.extras.note,
        Some("loopback address 127.0.0.1 is refused")
    );
    assert_eq!(
        frame.extras.redirect_chain,
        vec![RedirectHop {
            status: 301,
            url: "https://b.test/"
        }]
    );

    use r1::jetmon::frames as old;
    let r = ProbeResult {
        check_id: 9,
        outcome: Outcome::Ok,
        redirect_count: 1,
        ..ProbeResult::default()
    };
    let extras = ResultExtras {
        final_url: Some("https://c.test/"),
        note: Some("a note"),
        redirect_chain: vec![RedirectHop {
            status: 302,
            url: "https://c.test/",
        }],
        ..ResultExtras::default()
    };
    let bytes = FrameEncoder::new().result(&r, &extras).to_vec();
    let frame = flatbuffers::root::<old::CheckResult>(&bytes).unwrap();
    assert_eq!(frame.version(), 2);
    assert_eq!(frame.core().check_id(), 9);
    assert_eq!(frame.final_url(), Some("https://c.test/"));
}

/// A chain longer than a check may follow, or a note over its limit, is refused.
#[test]
fn oversized_chains_and_notes_are_refused() {
    use r2::jetmon::frames as r2fb;
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let core = r2fb::ResultCore::default();
    let hops: Vec<_> = (0..11)
        .map(|_| {
            let url = fbb.create_string("https://b.test/");
            r2fb::RedirectHop::create(
                &mut fbb,
                &r2fb::RedirectHopArgs {
                    status: 301,
                    url: Some(url),
                },
            )
        })
        .collect();
    let chain = fbb.create_vector(&hops);
    let root = r2fb::CheckResult::create(
        &mut fbb,
        &r2fb::CheckResultArgs {
            version: 2,
            core: Some(&core),
            redirect_chain: Some(chain),
            ..Default::default()
        },
    );
    fbb.finish(root, Some("JMR1"));
    let err = decode_result(fbb.finished_data()).unwrap_err();
    assert!(err.to_string().contains("redirect_chain"), "{err}");

    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let note = fbb.create_string(&"n".repeat(513));
    let root = r2fb::CheckResult::create(
        &mut fbb,
        &r2fb::CheckResultArgs {
            version: 2,
            core: Some(&core),
            note: Some(note),
            ..Default::default()
        },
    );
    fbb.finish(root, Some("JMR1"));
    let err = decode_result(fbb.finished_data()).unwrap_err();
    assert!(err.to_string().contains("note"), "{err}");
    // The encoder clips what it writes, so its own frames always read back.
    let long = "é".repeat(400);
    let bytes = FrameEncoder::new()
        .result(
            &ProbeResult::default(),
            &ResultExtras {
                note: Some(&long),
                ..ResultExtras::default()
            },
        )
        .to_vec();
    let note = decode_result(&bytes)
        .unwrap()
        .extras
        .note
        .unwrap()
        .to_owned();
    assert!(note.len() <= 512 && long.starts_with(&note));
}

#[test]
fn shard_stats_round_trip() {
    use jetmon_shared::frames::{ShardStats, decode_stats};
    let s = ShardStats {
        shard: 3,
        at_us: 1_700_000_000_000_000,
        checks: 1_000_000,
        started: 42,
        completed: vec![(Outcome::Ok, 40), (Outcome::TimeoutConnect, 2)],
        in_flight: 7,
        lateness_p99_us: 900,
        table_bytes: 127_000_000,
        ..ShardStats::default()
    };
    let bytes = FrameEncoder::new().stats(&s).to_vec();
    assert_eq!(decode_stats(&bytes).unwrap(), s);
    assert!(matches!(
        decode_result(&bytes),
        Err(FrameError::WrongIdentifier { .. })
    ));
}
