//! Random push / pop / commit / rewind / re-attach sequences against a `VecDeque` model: the
//! ring must deliver exactly what the model says, refuse only when it is really full, and
//! redeliver exactly the uncommitted records after a consumer crash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;

use jetmon_shared::ring::{PushError, RECORD_HEADER_BYTES, RingFile};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Push { len: usize, kind: u16 },
    Flush,
    Pop,
    Commit,
    Rewind,
    ReattachConsumer,
    ReattachProducer,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..700, 1u16..5).prop_map(|(len, kind)| Op::Push { len, kind }),
        2 => Just(Op::Flush),
        6 => Just(Op::Pop),
        2 => Just(Op::Commit),
        1 => Just(Op::Rewind),
        1 => Just(Op::ReattachConsumer),
        1 => Just(Op::ReattachProducer),
    ]
}

fn record_bytes(len: usize) -> usize {
    RECORD_HEADER_BYTES + len.next_multiple_of(8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn ring_matches_model(ops in proptest::collection::vec(op(), 1..400)) {
        const CAP: usize = 4096;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        RingFile::open_or_create(&path, CAP).unwrap();
        let mut p = Some(RingFile::open(&path).and_then(RingFile::producer).unwrap());
        let mut c = Some(RingFile::open(&path).and_then(RingFile::consumer).unwrap());

        // Model: records pushed but unpublished, published-unread, read-uncommitted, each
        // with the byte position where it ends; plus the byte positions of docs/ring.md.
        type Rec = (u16, Vec<u8>, u64);
        let mut unpublished: VecDeque<Rec> = VecDeque::new();
        let mut unread: VecDeque<Rec> = VecDeque::new();
        let mut uncommitted: VecDeque<Rec> = VecDeque::new();
        let (mut head, mut commit) = (0u64, 0u64);
        let mut counter = 0u32;

        for op in ops {
            match op {
                Op::Push { len, kind } => {
                    counter += 1;
                    let payload: Vec<u8> = (0..len).map(|i| (counter as usize * 31 + i) as u8).collect();
                    let max = p.as_ref().unwrap().ring().max_record();
                    // A record that does not fit before the end starts at offset 0 after a
                    // wrap marker filling the rest.
                    let rec = record_bytes(len) as u64;
                    let to_end = CAP as u64 - head % CAP as u64;
                    let need = if rec > to_end { to_end + rec } else { rec };
                    let fits = need <= CAP as u64 - (head - commit);
                    match p.as_mut().unwrap().try_push(kind, &payload) {
                        Ok(()) => {
                            prop_assert!(len <= max && fits);
                            head += need;
                            // Unpublished records become visible on every 32nd push.
                            unpublished.push_back((kind, payload, head));
                            if unpublished.len() == 32 {
                                unread.extend(unpublished.drain(..));
                            }
                        }
                        Err(PushError::Full) => {
                            prop_assert!(len <= max && !fits, "refused with room");
                            unread.extend(unpublished.drain(..)); // Full publishes
                        }
                        Err(PushError::TooLarge { .. }) => prop_assert!(len > max),
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Flush => {
                    p.as_mut().unwrap().flush();
                    unread.extend(unpublished.drain(..));
                }
                Op::Pop => {
                    let got = c.as_mut().unwrap().pop().unwrap().map(|r| (r.kind, r.payload.to_vec()));
                    let want = unread.pop_front();
                    prop_assert_eq!(&got, &want.as_ref().map(|(k, p, _)| (*k, p.clone())));
                    if let Some(r) = want {
                        uncommitted.push_back(r);
                    }
                }
                Op::Commit => {
                    c.as_mut().unwrap().commit();
                    if let Some((_, _, end)) = uncommitted.back() {
                        commit = *end;
                    }
                    uncommitted.clear();
                }
                Op::Rewind | Op::ReattachConsumer => {
                    if matches!(op, Op::Rewind) {
                        c.as_mut().unwrap().rewind();
                    } else {
                        drop(c.take());
                        c = Some(RingFile::open(&path).and_then(RingFile::consumer).unwrap());
                    }
                    while let Some(r) = uncommitted.pop_back() {
                        unread.push_front(r);
                    }
                }
                Op::ReattachProducer => {
                    drop(p.take()); // a clean detach flushes
                    unread.extend(unpublished.drain(..));
                    p = Some(RingFile::open(&path).and_then(RingFile::producer).unwrap());
                }
            }
        }
        // Drain: everything pushed comes out, once, in order.
        p.as_mut().unwrap().flush();
        unread.extend(unpublished.drain(..));
        let c = c.as_mut().unwrap();
        while let Some((kind, payload, _)) = unread.pop_front() {
            let got = c.pop().unwrap().map(|r| (r.kind, r.payload.to_vec()));
            prop_assert_eq!(got, Some((kind, payload)));
        }
        prop_assert_eq!(c.pop().unwrap(), None);
        prop_assert_eq!(c.ring().stats().corrupt_records, 0);
    }
}
