//! Frame codec: what the prober pays to encode a result and control pays to verify and read it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jetmon_shared::check::{CheckSpec, CheckType};
use jetmon_shared::frames::{
    Command, FrameEncoder, ProbeResult, ResultExtras, decode_command, decode_result,
};
use jetmon_shared::outcome::Outcome;
use std::hint::black_box;

fn result() -> ProbeResult {
    let mut r = ProbeResult {
        check_id: 123_456,
        site_id: 99,
        seq: 1,
        http_status: 200,
        outcome: Outcome::Ok,
        ..ProbeResult::default()
    };
    r.phases.total_us = 2_500;
    r
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Elements(1));
    let mut enc = FrameEncoder::new();
    let r = result();
    g.bench_function("encode_result", |b| {
        b.iter(|| black_box(enc.result(black_box(&r), &ResultExtras::default()).len()))
    });
    let extras = ResultExtras {
        final_url: Some("https://www.example.test/after/redirect"),
        cert_issuer: Some("CN=Jetmon Test CA,O=Jetmon"),
        cert_san_count: 2,
        tls_cipher: 0x1301,
        ..ResultExtras::default()
    };
    g.bench_function("encode_result_with_strings", |b| {
        b.iter(|| black_box(enc.result(black_box(&r), &extras).len()))
    });
    let bytes = enc.result(&r, &ResultExtras::default()).to_vec();
    g.bench_function("decode_result_verified", |b| {
        b.iter(|| black_box(decode_result(black_box(&bytes)).unwrap().result.seq))
    });
    let mut spec = CheckSpec::new(
        1,
        1,
        CheckType::Http,
        "https://www.example.test/wp-login.php",
    );
    spec.keywords = vec!["Welcome".into()];
    spec.headers = vec![("X-Probe".into(), "jetmon".into())];
    let cmd = Command::Upsert(Box::new(spec));
    g.bench_function("encode_upsert", |b| {
        b.iter(|| black_box(enc.command(black_box(&cmd)).len()))
    });
    let bytes = enc.command(&cmd).to_vec();
    g.bench_function("decode_upsert", |b| {
        b.iter(|| black_box(decode_command(black_box(&bytes)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches, split_benches);

/// Where decode time goes: flatbuffers' verifier alone vs reading the core unverified.
fn split(c: &mut Criterion) {
    use jetmon_shared::frames::fb;
    let mut enc = FrameEncoder::new();
    let bytes = enc.result(&result(), &ResultExtras::default()).to_vec();
    c.bench_function("split/verify_only", |b| {
        b.iter(|| {
            black_box(
                flatbuffers::root::<fb::CheckResult>(black_box(&bytes))
                    .unwrap()
                    .version(),
            )
        })
    });
    c.bench_function("split/unchecked_core", |b| {
        // SAFETY: `bytes` came from our own encoder just above.
        b.iter(|| {
            black_box(
                unsafe { flatbuffers::root_unchecked::<fb::CheckResult>(black_box(&bytes)) }
                    .core()
                    .seq(),
            )
        })
    });
}
criterion_group!(split_benches, split);
