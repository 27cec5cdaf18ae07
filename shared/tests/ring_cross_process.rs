//! The ring between two real processes: ten million frames lossless and in order, and
//! `kill -9` of either side with re-attach. The test binary re-executes itself as the peer
//! (the `peer_entry` test does the child's work when `JETMON_RING_PEER` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use jetmon_shared::ring::{Producer, PushError, RingFile};

const ROLE_VAR: &str = "JETMON_RING_PEER";
const PATH_VAR: &str = "JETMON_RING_PATH";
const COUNT_VAR: &str = "JETMON_RING_COUNT";
const LOG_VAR: &str = "JETMON_RING_LOG";
/// Every test here is bounded: a peer that has not finished by then is a failure.
const DEADLINE: Duration = Duration::from_secs(120);

/// Payload for frame `seq`: 8..=136 bytes, starting with the seq and ending with its
/// complement, so reordering, loss, truncation and torn copies are all visible.
fn frame(seq: u64, buf: &mut [u8; 136]) -> usize {
    let len = 16 + (seq.wrapping_mul(0x9E37_79B9) % 121) as usize;
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[len - 8..len].copy_from_slice(&(!seq).to_le_bytes());
    len
}

fn check_frame(seq: u64, payload: &[u8]) {
    let mut expect = [0u8; 136];
    let len = frame(seq, &mut expect);
    assert_eq!(payload.len(), len, "length of frame {seq}");
    assert_eq!(&payload[..8], &expect[..8], "head of frame {seq}");
    assert_eq!(
        &payload[len - 8..],
        &expect[len - 8..len],
        "tail of frame {seq}"
    );
}

fn seq_of(payload: &[u8]) -> u64 {
    u64::from_le_bytes(payload[..8].try_into().unwrap())
}

fn spawn_peer(role: &str, path: &Path, count: u64, log: Option<&Path>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["peer_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role)
        .env(PATH_VAR, path)
        .env(COUNT_VAR, count.to_string())
        // The peer's own harness summary would read like a second test run; panics still
        // reach stderr.
        .stdout(std::process::Stdio::null());
    if let Some(log) = log {
        cmd.env(LOG_VAR, log);
    }
    cmd.spawn().expect("spawn peer")
}

fn wait_ok(mut child: Child, started: Instant) {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "peer failed: {status}");
            return;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("peer did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn push_until_done(p: &mut Producer, count: u64, seq_from_ring: bool) {
    let mut buf = [0u8; 136];
    let mut next = p.frames_pushed();
    let started = Instant::now();
    while next < count {
        let seq = if seq_from_ring {
            p.frames_pushed()
        } else {
            next
        };
        let len = frame(seq, &mut buf);
        match p.try_push(1, &buf[..len]) {
            Ok(()) => next += 1,
            Err(PushError::Full) => {
                assert!(
                    started.elapsed() < DEADLINE,
                    "producer stuck on a full ring"
                );
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) => panic!("push: {e}"),
        }
        if next.is_multiple_of(65_536) {
            p.heartbeat();
        }
    }
    p.flush();
}

/// The child's side. Does nothing in a normal test run.
#[test]
fn peer_entry() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return;
    };
    let path = PathBuf::from(std::env::var(PATH_VAR).unwrap());
    let count: u64 = std::env::var(COUNT_VAR).unwrap().parse().unwrap();
    match role.as_str() {
        "producer" => {
            let mut p = RingFile::open(&path).and_then(RingFile::producer).unwrap();
            push_until_done(&mut p, count, false);
        }
        "producer-seq-from-ring" => {
            let mut p = RingFile::open(&path).and_then(RingFile::producer).unwrap();
            push_until_done(&mut p, count, true);
        }
        "durable-consumer" => {
            durable_consumer(&path, count, Path::new(&std::env::var(LOG_VAR).unwrap()))
        }
        other => panic!("unknown role {other}"),
    }
}

/// A consumer that makes each batch durable (appends its seqs to a log) before committing,
/// like control does with the database. After a restart it skips what the log already has
/// (idempotent by seq) and checks that nothing between the log and the ring was lost.
fn durable_consumer(path: &Path, count: u64, log_path: &Path) {
    let mut existing = Vec::new();
    if let Ok(mut f) = std::fs::File::open(log_path) {
        f.read_to_end(&mut existing).unwrap();
    }
    let durable = existing.len() as u64 / 8; // seqs 0..durable are in the log
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap();
    let mut c = RingFile::open(path).and_then(RingFile::consumer).unwrap();
    let mut next_new = durable;
    let mut expected_from_ring: Option<u64> = None;
    let mut batch = Vec::with_capacity(8 * 1024);
    while next_new < count {
        if !c.wait(Duration::from_secs(5)) {
            continue;
        }
        while let Some(r) = c.pop().unwrap() {
            let seq = seq_of(r.payload);
            check_frame(seq, r.payload);
            match expected_from_ring {
                // Resuming from the commit position: at or before what the log holds.
                None => assert!(
                    seq <= durable,
                    "lost frames: resumed at {seq}, log has {durable}"
                ),
                Some(e) => assert_eq!(seq, e, "out of order"),
            }
            expected_from_ring = Some(seq + 1);
            if seq < next_new {
                continue; // redelivered after a crash: already durable
            }
            batch.extend_from_slice(&seq.to_le_bytes());
            next_new += 1;
            if batch.len() >= 8 * 1024 {
                break;
            }
        }
        log.write_all(&batch).unwrap();
        batch.clear();
        c.commit();
        c.heartbeat();
    }
}

fn temp_ring(capacity: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("jetmon-ring-test")
        .tempdir_in(shm_dir())
        .unwrap();
    let path = dir.path().join("ring");
    RingFile::open_or_create(&path, capacity).unwrap();
    (dir, path)
}

fn shm_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

#[test]
fn ten_million_frames_cross_process_lossless_in_order() {
    const COUNT: u64 = 10_000_000;
    // 1 MiB: small enough that the ring wraps ~1,000 times and fills up often.
    let (_dir, path) = temp_ring(1 << 20);
    let mut c = RingFile::open(&path).and_then(RingFile::consumer).unwrap();
    let started = Instant::now();
    let child = spawn_peer("producer", &path, COUNT, None);
    let mut next = 0u64;
    while next < COUNT {
        assert!(started.elapsed() < DEADLINE, "stalled at frame {next}");
        if !c.wait(Duration::from_millis(100)) {
            continue;
        }
        while let Some(r) = c.pop().unwrap() {
            assert_eq!(r.kind, 1);
            let seq = seq_of(r.payload);
            assert_eq!(seq, next, "frame out of order or lost");
            check_frame(seq, r.payload);
            next += 1;
        }
        c.commit();
    }
    wait_ok(child, started);
    assert_eq!(c.pop().unwrap(), None, "no frame beyond the last");
    let stats = c.ring().stats();
    assert_eq!(stats.frames_published, COUNT);
    assert_eq!(stats.frames_committed, COUNT);
    assert_eq!(stats.corrupt_records, 0);
    eprintln!(
        "10M frames in {:?}, producer stalled {} times",
        started.elapsed(),
        stats.producer_stalls
    );
}

#[test]
fn consumer_killed_with_sigkill_resumes_from_commit_nothing_lost_or_repeated() {
    const COUNT: u64 = 2_000_000;
    let (dir, path) = temp_ring(256 << 10);
    let log = dir.path().join("durable.log");
    let started = Instant::now();
    let producer_path = path.clone();
    let producer = std::thread::spawn(move || {
        let mut p = RingFile::open(&producer_path)
            .and_then(RingFile::producer)
            .unwrap();
        push_until_done(&mut p, COUNT, false);
    });
    let mut kills = 0;
    let mut child = spawn_peer("durable-consumer", &path, COUNT, Some(&log));
    loop {
        std::thread::sleep(Duration::from_millis(8 + 5 * kills));
        if child.try_wait().unwrap().is_some() || kills == 5 {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        child = spawn_peer("durable-consumer", &path, COUNT, Some(&log));
    }
    wait_ok(child, started);
    producer.join().unwrap();
    assert!(
        kills >= 1,
        "the consumer finished before it could be killed"
    );
    let bytes = std::fs::read(&log).unwrap();
    assert_eq!(
        bytes.len() as u64,
        COUNT * 8,
        "every frame durable exactly once"
    );
    for (i, chunk) in bytes.chunks_exact(8).enumerate() {
        assert_eq!(u64::from_le_bytes(chunk.try_into().unwrap()), i as u64);
    }
    eprintln!(
        "{kills} SIGKILLs, {COUNT} frames durable exactly once in {:?}",
        started.elapsed()
    );
}

#[test]
fn producer_killed_with_sigkill_resumes_with_consecutive_seqs() {
    const COUNT: u64 = 2_000_000;
    let (_dir, path) = temp_ring(256 << 10);
    let mut c = RingFile::open(&path).and_then(RingFile::consumer).unwrap();
    let started = Instant::now();
    let mut child = spawn_peer("producer-seq-from-ring", &path, COUNT, None);
    let mut kills = 0u32;
    let mut next = 0u64;
    let mut last_kill = Instant::now();
    while next < COUNT {
        assert!(started.elapsed() < DEADLINE, "stalled at frame {next}");
        if kills < 5 && last_kill.elapsed() > Duration::from_millis(15) && next > 0 {
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            child = spawn_peer("producer-seq-from-ring", &path, COUNT, None);
            last_kill = Instant::now();
        }
        if !c.wait(Duration::from_millis(20)) {
            continue;
        }
        while let Some(r) = c.pop().unwrap() {
            let seq = seq_of(r.payload);
            assert_eq!(
                seq, next,
                "gap or repeat in sequence numbers after a producer crash"
            );
            check_frame(seq, r.payload);
            next += 1;
        }
        c.commit();
    }
    wait_ok(child, started);
    assert!(kills >= 1);
    eprintln!(
        "{kills} producer SIGKILLs, {COUNT} consecutive frames in {:?}",
        started.elapsed()
    );
}
