//! Ring push/pop in one thread: the per-record cost of the protocol itself, with no second
//! core involved (the two-process figure is `perf/bench ring`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jetmon_shared::ring::RingFile;
use std::hint::black_box;

const BATCH: u64 = 1024;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    RingFile::open_or_create(&path, 1 << 20).unwrap();
    let mut p = RingFile::open(&path).unwrap().producer().unwrap();
    let mut cons = RingFile::open(&path).unwrap().consumer().unwrap();
    let payload = [7u8; 128];
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("push_pop_commit_128B_x1024", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                p.try_push(1, black_box(&payload)).unwrap();
            }
            p.flush();
            let mut n = 0;
            while let Some(r) = cons.pop().unwrap() {
                n += r.payload.len();
            }
            cons.commit();
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
