//! Single-producer / single-consumer byte ring over a file in `/dev/shm`.
//!
//! The design, invariants and crash semantics are in `docs/ring.md`. In short: the producer
//! publishes `head` in batches; the consumer reads ahead privately and releases space only when
//! it calls [`Consumer::commit`]; a full ring refuses (never overwrites); either side may die
//! and a new one re-attaches where the ring says it should.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use memmap2::MmapRaw;

/// "JETMRING" in little-endian bytes.
pub const RING_MAGIC: u64 = u64::from_le_bytes(*b"JETMRING");
/// Bumped on any change to the header or record layout; attach refuses another version.
pub const RING_LAYOUT_VERSION: u32 = 1;
/// The header occupies one page so the data region starts page-aligned.
pub const HEADER_BYTES: usize = 4096;
/// Smallest data region (a power of two).
pub const MIN_CAPACITY: usize = 4096;
/// Largest data region (a power of two).
pub const MAX_CAPACITY: usize = 1 << 30;
/// Largest payload of one record; also bounded by a quarter of the capacity.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Bytes before each payload: length, kind, seal.
pub const RECORD_HEADER_BYTES: usize = 8;
/// The producer publishes `head` at least every this many records.
pub const PUBLISH_BATCH: u32 = 32;
/// A role holder whose heartbeat is older than this is presumed dead.
pub const ROLE_STALE_AFTER: Duration = Duration::from_secs(10);
/// Record kind reserved for the wrap marker.
const WRAP_KIND: u16 = 0;
const SEAL_SALT: u16 = 0x4A4D;
/// How long [`Consumer::wait`] spins before it sleeps on the futex.
const WAIT_SPIN: Duration = Duration::from_micros(20);
/// [`Consumer::wait_batch`] stops lingering once the head has not moved for this many polls.
const LINGER_STILL_POLLS: u32 = 64;
/// [`Consumer::wait_batch`] never lingers longer than this.
const LINGER_MAX: Duration = Duration::from_micros(200);

/// Errors from creating, attaching to or reading a ring. Each displays as one line that names
/// the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("ring {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("ring {path}: not a jetmon ring (bad magic); refusing to touch it")]
    NotARing { path: PathBuf },
    #[error(
        "ring {path}: layout version {found}, this build reads version {expected}; \
         drain it with the jetmon that wrote it, or delete the file"
    )]
    LayoutVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("ring {path}: corrupt header: {reason}; delete the file to start a new ring")]
    CorruptHeader { path: PathBuf, reason: String },
    #[error(
        "ring {path}: holds {found} bytes but {requested} were configured; \
         drain it first or delete the file"
    )]
    CapacityMismatch {
        path: PathBuf,
        found: usize,
        requested: usize,
    },
    #[error(
        "ring capacity {requested} is invalid: must be a power of two from {MIN_CAPACITY} to \
         {MAX_CAPACITY} bytes"
    )]
    InvalidCapacity { requested: usize },
    #[error("ring {path}: the {role} role is held by live process {pid}")]
    RoleTaken { path: PathBuf, role: Role, pid: u32 },
    #[error("ring corrupt record at position {position}: {reason}; skipped {skipped_bytes} bytes")]
    CorruptRecord {
        position: u64,
        reason: &'static str,
        skipped_bytes: u64,
    },
}

/// Why a push was refused. Nothing was written in either case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Not enough free space until the consumer commits: apply backpressure and retry.
    #[error("ring full")]
    Full,
    /// The payload exceeds the ring's maximum record size.
    #[error("record of {len} bytes exceeds the ring's maximum of {max}")]
    TooLarge { len: usize, max: usize },
    /// Kind 0 is the wrap marker.
    #[error("record kind 0 is reserved")]
    ReservedKind,
}

/// The two roles of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Producer,
    Consumer,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        })
    }
}

#[repr(C, align(64))]
struct Fixed {
    magic: AtomicU64,
    layout_version: AtomicU32,
    header_bytes: AtomicU32,
    capacity: AtomicU64,
    max_record: AtomicU32,
    _pad: AtomicU32,
    created_unix_us: AtomicU64,
}

#[repr(C, align(64))]
struct ProducerLine {
    head: AtomicU64,
    frames_published: AtomicU64,
}

#[repr(C, align(64))]
struct ConsumerLine {
    commit: AtomicU64,
    frames_committed: AtomicU64,
}

#[repr(C, align(64))]
struct WakeLine {
    consumer_waiting: AtomicU32,
}

#[repr(C, align(64))]
struct SlowLine {
    producer_pid: AtomicU32,
    consumer_pid: AtomicU32,
    producer_heartbeat_us: AtomicU64,
    consumer_heartbeat_us: AtomicU64,
    producer_stalls: AtomicU64,
    corrupt_records: AtomicU64,
}

/// The header as it lies in the first page of the file. Every field is atomic: the other
/// process may write it at any time.
#[repr(C)]
struct Header {
    fixed: Fixed,
    producer: ProducerLine,
    consumer: ConsumerLine,
    wake: WakeLine,
    slow: SlowLine,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_BYTES);

/// A mapped ring file, not yet attached to a role. Open it once per role.
pub struct RingFile {
    path: PathBuf,
    map: MmapRaw,
    capacity: usize,
    max_record: usize,
}

// SAFETY: the mapping is only accessed through atomics (header) or under the ring protocol
// (data); moving the handle to another thread is fine.
unsafe impl Send for RingFile {}

impl RingFile {
    /// Attaches to the ring at `path`, creating it with `capacity` data bytes if it does not
    /// exist. An existing ring must have exactly that capacity.
    pub fn open_or_create(path: &Path, capacity: usize) -> Result<RingFile, RingError> {
        check_capacity(capacity)?;
        match Self::open(path) {
            Ok(ring) if ring.capacity == capacity => return Ok(ring),
            Ok(ring) => {
                return Err(RingError::CapacityMismatch {
                    path: path.to_owned(),
                    found: ring.capacity,
                    requested: capacity,
                });
            }
            Err(RingError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let io_err = |source| RingError::Io {
            path: path.to_owned(),
            source,
        };
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err)?;
        let init = (|| {
            file.set_len((HEADER_BYTES + capacity) as u64)?;
            let map = MmapRaw::map_raw(&file)?;
            // SAFETY: fresh private file of the right size, page-aligned mapping.
            let header = unsafe { &*(map.as_mut_ptr() as *const Header) };
            let fixed = &header.fixed;
            fixed
                .layout_version
                .store(RING_LAYOUT_VERSION, Ordering::Relaxed);
            fixed
                .header_bytes
                .store(HEADER_BYTES as u32, Ordering::Relaxed);
            fixed.capacity.store(capacity as u64, Ordering::Relaxed);
            fixed
                .max_record
                .store(max_record_for(capacity) as u32, Ordering::Relaxed);
            fixed.created_unix_us.store(unix_us(), Ordering::Relaxed);
            fixed.magic.store(RING_MAGIC, Ordering::Release);
            map.flush()?;
            // Publish atomically: link fails if someone else created the ring meanwhile.
            std::fs::hard_link(&tmp, path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match init {
            Ok(()) => Self::open(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::open(path),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Attaches to an existing ring, validating its header.
    pub fn open(path: &Path) -> Result<RingFile, RingError> {
        let io_err = |source| RingError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let corrupt = |reason: String| RingError::CorruptHeader {
            path: path.to_owned(),
            reason,
        };
        if len < HEADER_BYTES as u64 {
            return Err(corrupt(format!(
                "file is {len} bytes, smaller than the header"
            )));
        }
        let map = map_file(&file).map_err(io_err)?;
        // SAFETY: the mapping is at least HEADER_BYTES long and page-aligned.
        let header = unsafe { &*(map.as_mut_ptr() as *const Header) };
        let fixed = &header.fixed;
        if fixed.magic.load(Ordering::Acquire) != RING_MAGIC {
            return Err(RingError::NotARing {
                path: path.to_owned(),
            });
        }
        let version = fixed.layout_version.load(Ordering::Relaxed);
        if version != RING_LAYOUT_VERSION {
            return Err(RingError::LayoutVersion {
                path: path.to_owned(),
                found: version,
                expected: RING_LAYOUT_VERSION,
            });
        }
        let header_bytes = fixed.header_bytes.load(Ordering::Relaxed);
        if header_bytes as usize != HEADER_BYTES {
            return Err(corrupt(format!(
                "header size {header_bytes}, expected {HEADER_BYTES}"
            )));
        }
        let capacity = fixed.capacity.load(Ordering::Relaxed);
        let capacity = usize::try_from(capacity)
            .ok()
            .filter(|c| check_capacity(*c).is_ok())
            .ok_or_else(|| corrupt(format!("capacity {capacity} is not a valid ring size")))?;
        if len != (HEADER_BYTES + capacity) as u64 {
            return Err(corrupt(format!(
                "file is {len} bytes but the header says {}",
                HEADER_BYTES + capacity
            )));
        }
        let max_record = fixed.max_record.load(Ordering::Relaxed) as usize;
        if max_record == 0 || max_record > max_record_for(capacity) {
            return Err(corrupt(format!(
                "max record {max_record} too large for the capacity"
            )));
        }
        Ok(RingFile {
            path: path.to_owned(),
            map,
            capacity,
            max_record,
        })
    }

    /// Where the ring lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Data bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Largest payload a record may carry.
    pub fn max_record(&self) -> usize {
        self.max_record
    }

    /// A snapshot of the header's counters, for metrics; needs no role.
    pub fn stats(&self) -> RingStats {
        let h = self.header();
        let now = monotonic_us();
        let age = |hb: u64| (hb != 0).then(|| Duration::from_micros(now.saturating_sub(hb)));
        let head = h.producer.head.load(Ordering::Acquire);
        let commit = h.consumer.commit.load(Ordering::Acquire);
        RingStats {
            capacity: self.capacity,
            used_bytes: head.saturating_sub(commit).min(self.capacity as u64) as usize,
            frames_published: h.producer.frames_published.load(Ordering::Relaxed),
            frames_committed: h.consumer.frames_committed.load(Ordering::Relaxed),
            producer_pid: h.slow.producer_pid.load(Ordering::Relaxed),
            consumer_pid: h.slow.consumer_pid.load(Ordering::Relaxed),
            producer_heartbeat_age: age(h.slow.producer_heartbeat_us.load(Ordering::Relaxed)),
            consumer_heartbeat_age: age(h.slow.consumer_heartbeat_us.load(Ordering::Relaxed)),
            producer_stalls: h.slow.producer_stalls.load(Ordering::Relaxed),
            corrupt_records: h.slow.corrupt_records.load(Ordering::Relaxed),
        }
    }

    /// Attaches as the ring's only producer.
    pub fn producer(self) -> Result<Producer, RingError> {
        self.claim(Role::Producer)?;
        let h = self.header();
        let head = h.producer.head.load(Ordering::Acquire);
        let frames = h.producer.frames_published.load(Ordering::Relaxed);
        let commit = h.consumer.commit.load(Ordering::Acquire);
        Ok(Producer {
            head,
            cached_commit: commit,
            frames,
            unpublished: 0,
            stalled: false,
            mask: self.capacity as u64 - 1,
            ring: self,
        })
    }

    /// Attaches as the ring's only consumer; reading resumes at the commit position.
    pub fn consumer(self) -> Result<Consumer, RingError> {
        self.claim(Role::Consumer)?;
        let h = self.header();
        let commit = h.consumer.commit.load(Ordering::Acquire);
        let frames = h.consumer.frames_committed.load(Ordering::Relaxed);
        Ok(Consumer {
            read: commit,
            committed: commit,
            cached_head: commit,
            frames_read: frames,
            frames_committed: frames,
            mask: self.capacity as u64 - 1,
            ring: self,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: validated at open: mapping is page-aligned and longer than the header.
        unsafe { &*(self.map.as_mut_ptr() as *const Header) }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the data region starts right after the header, inside the mapping.
        unsafe { self.map.as_mut_ptr().add(HEADER_BYTES) }
    }

    fn role_words(&self, role: Role) -> (&AtomicU32, &AtomicU64) {
        let s = &self.header().slow;
        match role {
            Role::Producer => (&s.producer_pid, &s.producer_heartbeat_us),
            Role::Consumer => (&s.consumer_pid, &s.consumer_heartbeat_us),
        }
    }

    fn claim(&self, role: Role) -> Result<(), RingError> {
        let (pid_word, heartbeat) = self.role_words(role);
        let me = std::process::id();
        let mut current = pid_word.load(Ordering::Acquire);
        loop {
            if current != 0 {
                let age = monotonic_us().saturating_sub(heartbeat.load(Ordering::Relaxed));
                let fresh = Duration::from_micros(age) < ROLE_STALE_AFTER;
                if fresh && process_alive(current) {
                    return Err(RingError::RoleTaken {
                        path: self.path.clone(),
                        role,
                        pid: current,
                    });
                }
            }
            heartbeat.store(monotonic_us(), Ordering::Relaxed);
            match pid_word.compare_exchange(current, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(other) => current = other,
            }
        }
    }

    fn release(&self, role: Role) {
        let (pid_word, _) = self.role_words(role);
        let _ =
            pid_word.compare_exchange(std::process::id(), 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    fn heartbeat(&self, role: Role) {
        self.role_words(role)
            .1
            .store(monotonic_us(), Ordering::Relaxed);
    }

    fn peer(&self, role: Role) -> PeerStatus {
        let (pid_word, heartbeat) = self.role_words(role);
        let pid = pid_word.load(Ordering::Acquire);
        let hb = heartbeat.load(Ordering::Relaxed);
        let heartbeat_age = Duration::from_micros(monotonic_us().saturating_sub(hb));
        PeerStatus {
            pid,
            heartbeat_age,
            alive: pid != 0 && process_alive(pid),
        }
    }
}

/// Counters read from a ring header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingStats {
    pub capacity: usize,
    /// Bytes between commit and head: published but not yet released by the consumer.
    pub used_bytes: usize,
    pub frames_published: u64,
    pub frames_committed: u64,
    pub producer_pid: u32,
    pub consumer_pid: u32,
    pub producer_heartbeat_age: Option<Duration>,
    pub consumer_heartbeat_age: Option<Duration>,
    /// Full episodes: times the producer found no room.
    pub producer_stalls: u64,
    /// Records the consumer rejected as corrupt.
    pub corrupt_records: u64,
}

/// What one side knows about the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    /// 0 when no process holds the role.
    pub pid: u32,
    pub heartbeat_age: Duration,
    /// The pid exists (it may still be hung: look at `heartbeat_age`).
    pub alive: bool,
}

/// The writing side. Not `Sync`: exactly one thread of one process pushes.
pub struct Producer {
    ring: RingFile,
    head: u64,
    cached_commit: u64,
    frames: u64,
    unpublished: u32,
    stalled: bool,
    mask: u64,
}

impl Producer {
    /// Appends one record. Visible to the consumer at the next publish: every
    /// [`PUBLISH_BATCH`] records, on `Full`, or on [`Producer::flush`].
    #[inline]
    pub fn try_push(&mut self, kind: u16, payload: &[u8]) -> Result<(), PushError> {
        self.try_push_with(kind, payload.len(), |buf| buf.copy_from_slice(payload))
    }

    /// Appends one record of `len` bytes written in place by `fill` (which must write all of
    /// the slice it is given).
    #[inline]
    pub fn try_push_with(
        &mut self,
        kind: u16,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), PushError> {
        if kind == WRAP_KIND {
            return Err(PushError::ReservedKind);
        }
        if len > self.ring.max_record {
            return Err(PushError::TooLarge {
                len,
                max: self.ring.max_record,
            });
        }
        let cap = self.ring.capacity as u64;
        let rec = record_bytes(len);
        let off = self.head & self.mask;
        let to_end = cap - off;
        let need = if rec > to_end { to_end + rec } else { rec };
        if need > cap - (self.head - self.cached_commit) {
            self.cached_commit = self.ring.header().consumer.commit.load(Ordering::Acquire);
            if need > cap - (self.head - self.cached_commit) {
                if !self.stalled {
                    self.stalled = true;
                    self.ring
                        .header()
                        .slow
                        .producer_stalls
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.publish();
                return Err(PushError::Full);
            }
        }
        self.stalled = false;
        let data = self.ring.data();
        let mut off = off as usize;
        if rec > to_end {
            // SAFETY: `off` is 8-aligned and at least 8 bytes before the end; the space from
            // head to the end is free (checked above), so the consumer is not reading it.
            unsafe { write_record_header(data.add(off), 0, WRAP_KIND) };
            self.head += to_end;
            off = 0;
        }
        // SAFETY: [off, off + rec) lies inside the data region (rec <= to_end or off == 0 and
        // rec <= cap / 4) and behind no uncommitted byte, as checked above.
        unsafe {
            write_record_header(data.add(off), len as u32, kind);
            fill(std::slice::from_raw_parts_mut(
                data.add(off + RECORD_HEADER_BYTES),
                len,
            ));
        }
        self.head += rec;
        self.frames += 1;
        self.unpublished += 1;
        if self.unpublished >= PUBLISH_BATCH {
            self.publish();
        }
        Ok(())
    }

    /// Makes every pushed record visible and wakes a sleeping consumer. Call it before idling.
    #[inline]
    pub fn flush(&mut self) {
        if self.unpublished > 0 {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let h = self.ring.header();
        h.producer
            .frames_published
            .store(self.frames, Ordering::Relaxed);
        h.producer.head.store(self.head, Ordering::Release);
        self.unpublished = 0;
        // Pairs with the fence in Consumer::wait: either we see its flag or it sees our head.
        fence(Ordering::SeqCst);
        if h.wake.consumer_waiting.load(Ordering::Relaxed) != 0 {
            h.wake.consumer_waiting.store(0, Ordering::Relaxed);
            futex_wake(&h.wake.consumer_waiting);
        }
    }

    /// Records pushed so far over the ring's whole life (published or not): the next record's
    /// index. The prober's per-shard sequence numbers come from it.
    pub fn frames_pushed(&self) -> u64 {
        self.frames
    }

    /// Free bytes as last seen (conservative: the consumer may have committed more since).
    pub fn free_bytes_hint(&self) -> usize {
        (self.ring.capacity as u64 - (self.head - self.cached_commit)) as usize
    }

    /// Records that this process is alive; call at least every second.
    pub fn heartbeat(&self) {
        self.ring.heartbeat(Role::Producer);
    }

    /// The consumer's pid and heartbeat.
    pub fn consumer_status(&self) -> PeerStatus {
        self.ring.peer(Role::Consumer)
    }

    /// The mapped file (for stats).
    pub fn ring(&self) -> &RingFile {
        &self.ring
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.flush();
        self.ring.release(Role::Producer);
    }
}

/// One record borrowed from the ring; valid until the consumer is used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: u16,
    pub payload: &'a [u8],
}

/// The reading side. Not `Sync`: exactly one thread of one process pops.
pub struct Consumer {
    ring: RingFile,
    read: u64,
    committed: u64,
    cached_head: u64,
    frames_read: u64,
    frames_committed: u64,
    mask: u64,
}

impl Consumer {
    /// The next record, or `None` when nothing published is left. A corrupt record is
    /// counted, skipped together with everything up to the published head, and reported.
    #[inline]
    pub fn pop(&mut self) -> Result<Option<Record<'_>>, RingError> {
        let cap = self.ring.capacity as u64;
        loop {
            if self.read == self.cached_head && !self.refresh_head()? {
                return Ok(None);
            }
            let off = self.read & self.mask;
            // SAFETY: off is 8-aligned inside the data region, and [read, cached_head) was
            // published by the producer (acquire load of head).
            let word = unsafe { (self.ring.data().add(off as usize) as *const u64).read() };
            let word = u64::from_le(word);
            let (len, kind, seal) = (word as u32, (word >> 32) as u16, (word >> 48) as u16);
            if seal != seal_of(len, kind) {
                return Err(self.corrupt("record header seal mismatch"));
            }
            if kind == WRAP_KIND {
                let to_end = cap - off;
                if len != 0 || self.read + to_end > self.cached_head {
                    return Err(self.corrupt("bad wrap marker"));
                }
                self.read += to_end;
                continue;
            }
            let len = len as usize;
            let rec = record_bytes(len);
            if len > self.ring.max_record || off + rec > cap || self.read + rec > self.cached_head {
                return Err(self.corrupt("record length out of bounds"));
            }
            self.read += rec;
            self.frames_read += 1;
            // SAFETY: bounds checked above; the producer does not write behind commit's
            // successor until we commit, which needs `&mut self`.
            let payload = unsafe {
                std::slice::from_raw_parts(
                    self.ring.data().add(off as usize + RECORD_HEADER_BYTES),
                    len,
                )
            };
            return Ok(Some(Record { kind, payload }));
        }
    }

    /// Loads the producer's head; false when there is nothing new.
    fn refresh_head(&mut self) -> Result<bool, RingError> {
        let head = self.ring.header().producer.head.load(Ordering::Acquire);
        if head == self.cached_head {
            return Ok(false);
        }
        if head < self.read || head - self.committed > self.ring.capacity as u64 {
            // The only thing we can trust is our own commit: skip nothing, report.
            self.ring
                .header()
                .slow
                .corrupt_records
                .fetch_add(1, Ordering::Relaxed);
            return Err(RingError::CorruptRecord {
                position: self.read,
                reason: "producer head out of range",
                skipped_bytes: 0,
            });
        }
        self.cached_head = head;
        Ok(true)
    }

    fn corrupt(&mut self, reason: &'static str) -> RingError {
        self.ring
            .header()
            .slow
            .corrupt_records
            .fetch_add(1, Ordering::Relaxed);
        let position = self.read;
        let skipped_bytes = self.cached_head - self.read;
        self.read = self.cached_head;
        RingError::CorruptRecord {
            position,
            reason,
            skipped_bytes,
        }
    }

    /// Releases everything read so far: the producer may now reuse that space, and a consumer
    /// attaching after a crash will start after it. Call only once it is durable.
    #[inline]
    pub fn commit(&mut self) {
        if self.committed == self.read {
            return;
        }
        let h = self.ring.header();
        self.committed = self.read;
        self.frames_committed = self.frames_read;
        h.consumer
            .frames_committed
            .store(self.frames_committed, Ordering::Relaxed);
        h.consumer.commit.store(self.committed, Ordering::Release);
    }

    /// Forgets what was read since the last commit: the next pop starts at the commit
    /// position again (for a batch that could not be made durable).
    pub fn rewind(&mut self) {
        self.read = self.committed;
        self.frames_read = self.frames_committed;
    }

    /// True when a published record is waiting to be popped.
    #[inline]
    pub fn has_data(&self) -> bool {
        self.read != self.cached_head
            || self.ring.header().producer.head.load(Ordering::Acquire) != self.cached_head
    }

    /// Blocks until a record is published or `timeout` passes; true when data is ready.
    /// Sleeps on a futex, so an idle consumer costs no CPU.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < WAIT_SPIN {
            if self.has_data() {
                return true;
            }
            std::hint::spin_loop();
        }
        let h = self.ring.header();
        loop {
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return self.has_data();
            }
            h.wake.consumer_waiting.store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if self.has_data() {
                h.wake.consumer_waiting.store(0, Ordering::Relaxed);
                return true;
            }
            futex_wait(&h.wake.consumer_waiting, 1, timeout - elapsed);
            if self.has_data() {
                h.wake.consumer_waiting.store(0, Ordering::Relaxed);
                return true;
            }
        }
    }

    /// Like [`Consumer::wait`], then lingers while fewer than `min_bytes` are waiting and the
    /// producer is still publishing (at most [`LINGER_MAX`]). Reading a few KiB behind the
    /// producer keeps the two cores off each other's cache lines (about 1.5x throughput when
    /// they do not share a cache); a lone frame is still delivered within microseconds.
    pub fn wait_batch(&mut self, min_bytes: u64, timeout: Duration) -> bool {
        if !self.wait(timeout) {
            return false;
        }
        let mut last = self.backlog_bytes();
        let mut still = 0;
        let start = Instant::now();
        while last < min_bytes && still < LINGER_STILL_POLLS {
            std::hint::spin_loop();
            let now = self.backlog_bytes();
            if now == last {
                still += 1;
            } else {
                (still, last) = (0, now);
                if start.elapsed() > LINGER_MAX {
                    break;
                }
            }
        }
        true
    }

    /// Bytes published by the producer and not yet read.
    #[inline]
    pub fn backlog_bytes(&self) -> u64 {
        self.ring
            .header()
            .producer
            .head
            .load(Ordering::Acquire)
            .saturating_sub(self.read)
    }

    /// Records read since this ring was created (committed or not).
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// Bytes read but not yet committed.
    pub fn uncommitted_bytes(&self) -> u64 {
        self.read - self.committed
    }

    /// Records that this process is alive; call at least every second.
    pub fn heartbeat(&self) {
        self.ring.heartbeat(Role::Consumer);
    }

    /// The producer's pid and heartbeat: how control notices a dead prober.
    pub fn producer_status(&self) -> PeerStatus {
        self.ring.peer(Role::Producer)
    }

    /// The mapped file (for stats).
    pub fn ring(&self) -> &RingFile {
        &self.ring
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Not a commit: what was read but not committed is delivered again.
        self.ring.release(Role::Consumer);
    }
}

fn check_capacity(capacity: usize) -> Result<(), RingError> {
    if capacity.is_power_of_two() && (MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        Ok(())
    } else {
        Err(RingError::InvalidCapacity {
            requested: capacity,
        })
    }
}

fn max_record_for(capacity: usize) -> usize {
    MAX_RECORD_BYTES.min(capacity / 4 - RECORD_HEADER_BYTES)
}

#[inline]
fn record_bytes(len: usize) -> u64 {
    (RECORD_HEADER_BYTES + len.next_multiple_of(8)) as u64
}

#[inline]
fn seal_of(len: u32, kind: u16) -> u16 {
    (len as u16) ^ ((len >> 16) as u16) ^ kind ^ SEAL_SALT
}

/// # Safety
/// `at` must be 8-aligned and valid for an 8-byte write.
#[inline]
unsafe fn write_record_header(at: *mut u8, len: u32, kind: u16) {
    let word = len as u64 | (kind as u64) << 32 | (seal_of(len, kind) as u64) << 48;
    // SAFETY: per the contract.
    unsafe { (at as *mut u64).write(word.to_le()) };
}

fn map_file(file: &File) -> io::Result<MmapRaw> {
    MmapRaw::map_raw(file)
}

/// True when a process with this pid exists and has not exited (a zombie — killed but not
/// yet reaped by its parent — counts as gone). It may belong to another user.
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
        return false;
    }
    // /proc/PID/stat: "pid (comm) S ..."; comm may contain anything, so look after the last ')'.
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .iter()
                .rposition(|b| *b == b')')
                .and_then(|i| stat.get(i + 2));
            !matches!(state, Some(b'Z' | b'X'))
        }
        Err(_) => true, // no procfs: trust kill(2)
    }
}

/// Microseconds on the system-wide monotonic clock (comparable across processes).
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` lives in a shared mapping for the duration of the call; FUTEX_WAIT
    // (not PRIVATE) keys on the backing file so the other process can wake us.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: see futex_wait.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_ring(capacity: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ring");
        RingFile::open_or_create(&path, capacity).expect("create");
        (dir, path)
    }

    fn pair(path: &Path) -> (Producer, Consumer) {
        let p = RingFile::open(path)
            .and_then(RingFile::producer)
            .expect("producer");
        let c = RingFile::open(path)
            .and_then(RingFile::consumer)
            .expect("consumer");
        (p, c)
    }

    #[test]
    fn push_pop_in_order_with_kinds() {
        let (_d, path) = temp_ring(4096);
        let (mut p, mut c) = pair(&path);
        for i in 0..10u8 {
            p.try_push(u16::from(i) + 1, &[i; 13]).expect("push");
        }
        assert_eq!(
            c.pop().expect("pop"),
            None,
            "nothing visible before a publish"
        );
        p.flush();
        for i in 0..10u8 {
            let r = c.pop().expect("pop").expect("record");
            assert_eq!((r.kind, r.payload), (u16::from(i) + 1, &[i; 13][..]));
        }
        assert_eq!(c.pop().expect("pop"), None);
    }

    #[test]
    fn full_refuses_and_counts_one_stall_per_episode() {
        let (_d, path) = temp_ring(4096);
        let (mut p, mut c) = pair(&path);
        let mut pushed = 0;
        while p.try_push(1, &[7; 120]).is_ok() {
            pushed += 1;
        }
        assert_eq!(p.try_push(1, &[7; 120]), Err(PushError::Full));
        assert_eq!(pushed, 4096 / 128);
        assert_eq!(c.ring().stats().producer_stalls, 1);
        // Reading alone frees nothing; committing does.
        while c.pop().expect("pop").is_some() {}
        assert_eq!(p.try_push(1, &[7; 120]), Err(PushError::Full));
        c.commit();
        p.try_push(1, &[7; 120]).expect("space after commit");
        assert_eq!(c.ring().stats().producer_stalls, 1);
    }

    #[test]
    fn rejects_oversized_and_reserved_kind() {
        let (_d, path) = temp_ring(4096);
        let (mut p, _c) = pair(&path);
        let max = p.ring().max_record();
        assert_eq!(max, 1024 - RECORD_HEADER_BYTES);
        assert_eq!(
            p.try_push(1, &vec![0; max + 1]),
            Err(PushError::TooLarge { len: max + 1, max })
        );
        assert_eq!(p.try_push(0, b"x"), Err(PushError::ReservedKind));
        p.try_push(1, &vec![0; max]).expect("max size fits");
    }

    #[test]
    fn wraps_with_odd_sizes() {
        let (_d, path) = temp_ring(4096);
        let (mut p, mut c) = pair(&path);
        let mut next_pop = 0u32;
        for i in 0..5000u32 {
            let len = (i * 37 % 301) as usize;
            let payload: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            while p.try_push(2, &payload).is_err() {
                while let Some(r) = c.pop().expect("pop") {
                    let l = (next_pop * 37 % 301) as usize;
                    assert_eq!(r.payload.len(), l);
                    assert!(
                        r.payload
                            .iter()
                            .enumerate()
                            .all(|(j, b)| *b == (next_pop as usize + j) as u8)
                    );
                    next_pop += 1;
                }
                c.commit();
            }
        }
        p.flush();
        while c.pop().expect("pop").is_some() {
            next_pop += 1;
        }
        assert_eq!(next_pop, 5000);
    }

    #[test]
    fn rewind_and_reattach_redeliver_uncommitted() {
        let (_d, path) = temp_ring(8192);
        let (mut p, mut c) = pair(&path);
        for i in 0..6u8 {
            p.try_push(1, &[i]).expect("push");
        }
        p.flush();
        assert_eq!(c.pop().expect("pop").map(|r| r.payload[0]), Some(0));
        assert_eq!(c.pop().expect("pop").map(|r| r.payload[0]), Some(1));
        c.commit();
        assert_eq!(c.pop().expect("pop").map(|r| r.payload[0]), Some(2));
        c.rewind();
        assert_eq!(c.pop().expect("pop").map(|r| r.payload[0]), Some(2));
        drop(c); // a crash from the ring's point of view: read 2, committed up to 1
        let mut c = RingFile::open(&path)
            .and_then(RingFile::consumer)
            .expect("reattach");
        let rest: Vec<u8> =
            std::iter::from_fn(|| c.pop().expect("pop").map(|r| r.payload[0])).collect();
        assert_eq!(rest, vec![2, 3, 4, 5]);
    }

    #[test]
    fn second_live_holder_of_a_role_is_refused() {
        let (_d, path) = temp_ring(4096);
        let (_p, _c) = pair(&path);
        let err = RingFile::open(&path)
            .and_then(RingFile::producer)
            .err()
            .expect("refused");
        assert!(
            matches!(
                err,
                RingError::RoleTaken {
                    role: Role::Producer,
                    ..
                }
            ),
            "{err}"
        );
        let err = RingFile::open(&path)
            .and_then(RingFile::consumer)
            .err()
            .expect("refused");
        assert!(
            matches!(
                err,
                RingError::RoleTaken {
                    role: Role::Consumer,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn producer_reattach_continues_frame_count() {
        let (_d, path) = temp_ring(4096);
        let (mut p, mut c) = pair(&path);
        p.try_push(1, b"a").expect("push");
        p.try_push(1, b"b").expect("push");
        drop(p);
        let mut p = RingFile::open(&path)
            .and_then(RingFile::producer)
            .expect("reattach");
        assert_eq!(p.frames_pushed(), 2);
        p.try_push(1, b"c").expect("push");
        p.flush();
        let got: Vec<u8> =
            std::iter::from_fn(|| c.pop().expect("pop").map(|r| r.payload[0])).collect();
        assert_eq!(got, b"abc");
    }

    #[test]
    fn attach_validates_the_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ring");
        std::fs::write(&path, vec![0u8; 100]).expect("write");
        let e = RingFile::open(&path).err().expect("too small");
        assert!(e.to_string().contains("smaller than the header"), "{e}");

        std::fs::write(&path, vec![0u8; 8192]).expect("write");
        assert!(matches!(
            RingFile::open(&path),
            Err(RingError::NotARing { .. })
        ));

        std::fs::remove_file(&path).expect("rm");
        RingFile::open_or_create(&path, 4096).expect("create");
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[8] = 9; // layout version
        std::fs::write(&path, &bytes).expect("write");
        let e = RingFile::open(&path).err().expect("version");
        assert!(
            matches!(
                e,
                RingError::LayoutVersion {
                    found: 9,
                    expected: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.to_string().contains('\n'));

        bytes[8] = 1;
        bytes[16] = 3; // capacity 4096 -> 4099
        std::fs::write(&path, &bytes).expect("write");
        let e = RingFile::open(&path).err().expect("capacity");
        assert!(e.to_string().contains("not a valid ring size"), "{e}");

        bytes[16] = 0;
        std::fs::write(&path, &bytes).expect("write");
        let e = RingFile::open_or_create(&path, 8192)
            .err()
            .expect("mismatch");
        assert!(matches!(
            e,
            RingError::CapacityMismatch {
                found: 4096,
                requested: 8192,
                ..
            }
        ));
        assert!(matches!(
            RingFile::open_or_create(&path, 5000),
            Err(RingError::InvalidCapacity { requested: 5000 })
        ));
    }

    #[test]
    fn corrupt_record_is_counted_and_skipped() {
        let (_d, path) = temp_ring(4096);
        let (mut p, mut c) = pair(&path);
        p.try_push(1, b"first").expect("push");
        p.try_push(1, b"second").expect("push");
        p.flush();
        // Damage the second record's length field in the data region.
        let ring = RingFile::open(&path).expect("open");
        // SAFETY: test-only poke inside the data region: offset 16 is the second header.
        unsafe { *ring.data().add(16) ^= 0x40 };
        assert_eq!(
            c.pop().expect("pop").map(|r| r.payload),
            Some(&b"first"[..])
        );
        let e = c.pop().expect_err("corrupt");
        assert!(matches!(
            e,
            RingError::CorruptRecord {
                position: 16,
                skipped_bytes: 16,
                ..
            }
        ));
        assert_eq!(c.ring().stats().corrupt_records, 1);
        p.try_push(1, b"third").expect("push");
        p.flush();
        assert_eq!(
            c.pop().expect("pop").map(|r| r.payload),
            Some(&b"third"[..])
        );
    }

    #[test]
    fn sleeping_consumer_is_woken_by_flush() {
        let (_d, path) = temp_ring(4096);
        let (mut p, mut c) = pair(&path);
        let waiter = std::thread::spawn(move || {
            let woke = c.wait(Duration::from_secs(30));
            (woke, c.pop().expect("pop").map(|r| r.payload.to_vec()))
        });
        std::thread::sleep(Duration::from_millis(50));
        p.try_push(1, b"wake").expect("push");
        p.flush();
        let started = Instant::now();
        let (woke, got) = waiter.join().expect("join");
        assert!(woke);
        assert_eq!(got.as_deref(), Some(&b"wake"[..]));
        // Not a speed assertion: only that the futex wake, not the 30 s timeout, ended it.
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn wait_batch_delivers_a_lone_frame() {
        let (_d, path) = temp_ring(1 << 16);
        let (mut p, mut c) = pair(&path);
        p.try_push(1, b"lone").expect("push");
        p.flush();
        // Far fewer bytes than asked for, and the producer is idle: it must not wait for more.
        assert!(c.wait_batch(16 * 1024, Duration::from_secs(30)));
        assert_eq!(c.pop().expect("pop").map(|r| r.payload), Some(&b"lone"[..]));
    }

    #[test]
    fn zombies_are_not_alive() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        // Not reaped yet: a zombie once it has exited.
        let start = Instant::now();
        while process_alive(pid) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!process_alive(pid), "exited child (zombie) reported alive");
        child.wait().expect("reap");
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn wait_times_out_without_data() {
        let (_d, path) = temp_ring(4096);
        let (_p, mut c) = pair(&path);
        assert!(!c.wait(Duration::from_millis(5)));
    }
}
