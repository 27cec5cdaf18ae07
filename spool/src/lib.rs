//! `jetmon-spool`: the statistics spool — results of the current hour collected on disk, not
//! in memory, until the hour is flushed to the store as one row per check
//! (docs/statistics.md) — and [`flush`], the thread that moves sealed hours into the store and
//! runs the daily rollup. It owns the spool directory and its file format; it reads the live
//! hour for the API. It depends on the engine's codec and on the store, never on the API or
//! the binary.
//!
//! A million checks at a 300 s interval make 12 million results an hour; kept as histograms in
//! memory that would cost more than the whole density budget, so each result is appended as a
//! fixed 20-byte record — check id, outcome, five phase buckets — to one of [`PARTS`] files of
//! its hour (by check id), written with plain `write(2)`: page cache, not our RSS. When the
//! hour is over (plus [`SEAL_GRACE_S`] for results in flight) its directory is sealed and
//! flushed part by part: a part is ~1/64 of the hour, read, sorted, grouped per check and
//! written as multi-row upserts.
//!
//! Exactly once across `kill -9`: records are written before the rings are committed, and
//! `positions` (replaced atomically by rename) holds, per shard, the next result seq not yet
//! spooled and, per open part file, its length at that point. At start, open parts are cut
//! back to those lengths (records past them belong to frames the ring will deliver again) and
//! frames below the seqs are not spooled twice. A flushed part is recorded in the store in the
//! same transaction as its rows, so a flush interrupted half-way is not counted twice either.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jetmon_shared::check::ProbeOrigin;
use jetmon_shared::frames::ProbeResult;

use jetmon_engine::stats::{NO_SAMPLE, PeriodStats, bucket_of, group};

pub mod flush;

/// Part files per hour.
pub const PARTS: usize = 64;
/// Bytes per spooled result.
pub const RECORD: usize = 20;
/// An hour is sealed this long after it ends (results of its last seconds still arrive).
pub const SEAL_GRACE_S: u64 = 120;
const HOUR_US: u64 = 3_600_000_000;
const POSITIONS: &str = "positions";
const HEADER: &str = "jetmon-spool 1";

struct Part {
    file: Option<File>,
    len: u64,
    buf: Vec<u8>,
}

struct OpenHour {
    hour: u64,
    /// Directory name without the `.open`/`.sealed` suffix: `<hour>-<generation>`.
    name: String,
    parts: Vec<Part>,
}

/// Counters for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpoolStats {
    pub recorded: u64,
    pub bytes_written: u64,
    pub write_errors: u64,
    pub sealed: u64,
}

pub struct Spool {
    dir: PathBuf,
    hours: Vec<OpenHour>,
    next_seq: HashMap<u16, u64>,
    dirty: bool,
    generation: u64,
    /// Held for the spool's lifetime: one writer per spool directory.
    _lock: File,
    pub stats: SpoolStats,
}

impl Spool {
    /// Opens (creating) the spool directory, repairs what a crash left and returns the spool
    /// with the sealed directories waiting to be flushed.
    pub fn open(dir: &Path) -> Result<(Spool, Vec<PathBuf>)> {
        private_dir(dir)
            .with_context(|| format!("creating the statistics spool {}", dir.display()))?;
        let lock = lock(dir)?;
        let (next_seq, lengths) = read_positions(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".open"))
            else {
                continue;
            };
            match lengths.get(name) {
                // Written before the last positions: keep what they cover, seal.
                Some(parts) => {
                    for p in 0..PARTS {
                        let file = path.join(part_name(p));
                        let keep = parts.get(&p).copied().unwrap_or(0);
                        if keep == 0 {
                            let _ = std::fs::remove_file(&file);
                        } else if let Ok(f) = OpenOptions::new().write(true).open(&file) {
                            f.set_len(keep)?;
                        }
                    }
                    std::fs::rename(&path, dir.join(format!("{name}.sealed")))?;
                }
                // Never covered by positions: the ring delivers its results again.
                None => std::fs::remove_dir_all(&path)?,
            }
        }
        let spool = Spool {
            dir: dir.to_owned(),
            hours: Vec::new(),
            next_seq,
            dirty: true,
            generation: 0,
            _lock: lock,
            stats: SpoolStats::default(),
        };
        spool.write_positions()?;
        Ok((spool, sealed_dirs(dir)?))
    }

    /// A shard's ring was recreated (its seqs restart).
    pub fn reset_shard(&mut self, shard: u16) {
        self.next_seq.insert(shard, 0);
        self.dirty = true;
    }

    /// Spools one scheduled result (re-checks and one-offs would bias the sample); a frame
    /// already spooled before a crash is skipped.
    pub fn record(&mut self, shard: u16, r: &ProbeResult) {
        let next = self.next_seq.entry(shard).or_insert(0);
        if r.seq < *next {
            return;
        }
        *next = r.seq + 1;
        self.dirty = true;
        if r.origin != ProbeOrigin::Scheduled {
            return;
        }
        let hour = r.started_at_us / HOUR_US;
        let i = match self.hours.iter().position(|h| h.hour == hour) {
            Some(i) => i,
            None => {
                self.generation += 1;
                let name = format!("{hour}-{}{:04}", unix_us(), self.generation % 10_000);
                self.hours.push(OpenHour {
                    hour,
                    name,
                    parts: (0..PARTS)
                        .map(|_| Part {
                            file: None,
                            len: 0,
                            buf: Vec::new(),
                        })
                        .collect(),
                });
                self.hours.len() - 1
            }
        };
        let p = &r.phases;
        let opt = |v: u32| if v == 0 { NO_SAMPLE } else { bucket_of(v) };
        let buckets = [
            bucket_of(p.total_us),
            opt(p.dns_us),
            opt(p.connect_us),
            opt(p.tls_us),
            opt(p.ttfb_us),
        ];
        let buf = &mut self.hours[i].parts[(r.check_id % PARTS as u64) as usize].buf;
        buf.extend_from_slice(&r.check_id.to_le_bytes());
        buf.extend_from_slice(&r.outcome.code().to_le_bytes());
        for b in buckets {
            buf.extend_from_slice(&b.to_le_bytes());
        }
        self.stats.recorded += 1;
    }

    /// Writes what was recorded, then the positions. Call before committing the rings. A
    /// write error is counted and the records lost (statistics never hold monitoring back).
    pub fn sync(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut first_error = None;
        for h in &mut self.hours {
            let dir = self.dir.join(format!("{}.open", h.name));
            for (i, part) in h.parts.iter_mut().enumerate() {
                if part.buf.is_empty() {
                    continue;
                }
                let written = write_part(&dir, i, part);
                part.buf.clear();
                if let Err(e) = written {
                    self.stats.write_errors += 1;
                    // What is on disk is the truth for the positions.
                    if let Some(f) = &part.file {
                        part.len = f.metadata().map(|m| m.len()).unwrap_or(part.len);
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        self.stats.bytes_written = self
            .hours
            .iter()
            .flat_map(|h| &h.parts)
            .map(|p| p.len)
            .sum();
        self.write_positions()?;
        self.dirty = false;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Seals the hours that ended at least [`SEAL_GRACE_S`] before `now_us` (or every hour
    /// when `all`) and returns their directories, ready to flush.
    pub fn seal(&mut self, now_us: u64, all: bool) -> Result<Vec<PathBuf>> {
        let due = |h: &OpenHour| all || (h.hour + 1) * HOUR_US + SEAL_GRACE_S * 1_000_000 <= now_us;
        if !self.hours.iter().any(due) {
            return Ok(Vec::new());
        }
        self.dirty = true;
        self.sync()?;
        let mut sealed = Vec::new();
        let mut keep = Vec::new();
        for h in std::mem::take(&mut self.hours) {
            if !due(&h) {
                keep.push(h);
                continue;
            }
            let from = self.dir.join(format!("{}.open", h.name));
            let to = self.dir.join(format!("{}.sealed", h.name));
            if from.exists() {
                std::fs::rename(&from, &to)
                    .with_context(|| format!("sealing {}", from.display()))?;
                sealed.push(to);
            }
            self.stats.sealed += 1;
        }
        self.hours = keep;
        self.dirty = true;
        self.sync()?;
        Ok(sealed)
    }

    fn write_positions(&self) -> Result<()> {
        let mut text = format!("{HEADER}\n");
        let mut shards: Vec<_> = self.next_seq.iter().collect();
        shards.sort();
        for (shard, seq) in shards {
            text.push_str(&format!("shard {shard} {seq}\n"));
        }
        for h in &self.hours {
            text.push_str(&format!("open {}", h.name));
            for (i, p) in h.parts.iter().enumerate().filter(|(_, p)| p.len > 0) {
                text.push_str(&format!(" {i}:{}", p.len));
            }
            text.push('\n');
        }
        let tmp = self.dir.join(format!("{POSITIONS}.tmp"));
        private_file(&tmp, true)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, self.dir.join(POSITIONS))
            .with_context(|| format!("replacing {}/{POSITIONS}", self.dir.display()))?;
        Ok(())
    }
}

/// Creates `dir` (and its parents) readable by its owner only, whatever the umask: the spool
/// says which sites are checked and how they answer. An existing directory is left as it is.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A file created (or truncated) mode 0600, whatever the umask.
fn private_file(path: &Path, truncate: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
}

fn part_name(i: usize) -> String {
    format!("p{i:02}.log")
}

fn write_part(dir: &Path, i: usize, part: &mut Part) -> Result<()> {
    if part.file.is_none() {
        private_dir(dir)?;
        let path = dir.join(part_name(i));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        part.file = Some(f);
    }
    if let Some(f) = &mut part.file {
        f.write_all(&part.buf)?;
        part.len += part.buf.len() as u64;
    }
    Ok(())
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

type Lengths = HashMap<String, HashMap<usize, u64>>;

fn read_positions(dir: &Path) -> Result<(HashMap<u16, u64>, Lengths)> {
    let path = dir.join(POSITIONS);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut seqs = HashMap::new();
    let mut lengths = Lengths::new();
    let mut lines = text.lines();
    match lines.next() {
        None => return Ok((seqs, lengths)),
        Some(HEADER) => {}
        Some(other) => bail!(
            "{} starts with {other:?}, not {HEADER:?}: not a jetmon spool (or a newer one)",
            path.display()
        ),
    }
    let bad = || format!("{}: malformed line", path.display());
    for line in lines {
        let mut words = line.split(' ');
        match words.next() {
            Some("shard") => {
                let shard = words.next().and_then(|w| w.parse().ok());
                let seq = words.next().and_then(|w| w.parse().ok());
                let (Some(shard), Some(seq)) = (shard, seq) else {
                    bail!("{}: {line:?}", bad());
                };
                seqs.insert(shard, seq);
            }
            Some("open") => {
                let name = words.next().with_context(bad)?.to_owned();
                let mut parts = HashMap::new();
                for w in words {
                    let (p, len) = w.split_once(':').with_context(bad)?;
                    parts.insert(p.parse().with_context(bad)?, len.parse().with_context(bad)?);
                }
                lengths.insert(name, parts);
            }
            _ => bail!("{}: {line:?}", bad()),
        }
    }
    Ok((seqs, lengths))
}

fn lock(dir: &Path) -> Result<File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "the statistics spool {} is in use by another jetmon (is `jetmon up` running?)",
            dir.display()
        );
    }
    Ok(f)
}

/// Sealed directories in `dir`, oldest hour first.
pub fn sealed_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(hour) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".sealed"))
            .and_then(|n| n.split('-').next())
            .and_then(|h| h.parse().ok())
        {
            out.push((hour, path));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// The hour of a sealed directory and its part files, in order.
pub fn sealed_parts(dir: &Path) -> Result<(u64, Vec<PathBuf>)> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("spool directory without a name")?;
    let hour = name
        .split('-')
        .next()
        .and_then(|h| h.parse().ok())
        .with_context(|| format!("{}: not a spool hour", dir.display()))?;
    let mut parts: Vec<PathBuf> = (0..PARTS)
        .map(|p| dir.join(part_name(p)))
        .filter(|p| p.exists())
        .collect();
    parts.sort();
    Ok((hour, parts))
}

/// Reads one part file into per-check rows of `hour`. A torn last record is ignored.
pub fn read_part(path: &Path, hour: u64) -> Result<Vec<PeriodStats>> {
    read_part_of(path, hour, None)
}

/// Statistics still in the spool: one hour's rows for some checks, from one part file, and
/// the part's name as `stats_flushed` records it once flushed (`<hour>-<gen>/pNN.log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePart {
    pub name: String,
    pub rows: Vec<PeriodStats>,
}

/// The live hours (states-and-events.md: percentiles include "the current, not yet flushed
/// hour"): rows of `checks` for the hours in `[from_hour, to_hour)` that are still in the
/// spool — the open hour being written and sealed hours not yet flushed. Read from the part
/// files (page cache), one part per distinct `check_id % PARTS`, only the wanted checks kept:
/// nothing of it stays in memory after the request. The writer appends whole records, so a
/// torn tail is the only partial state a reader can see, and it is ignored. A part may be
/// flushed at any moment: the caller drops the parts the store already has
/// (`Store::period_stats_snapshot`), so nothing is counted twice.
pub fn live_parts(
    dir: &Path,
    checks: &[u64],
    from_hour: u64,
    to_hour: u64,
) -> Result<Vec<LivePart>> {
    let mut wanted: Vec<u64> = checks.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut parts: Vec<usize> = wanted.iter().map(|c| (c % PARTS as u64) as usize).collect();
    parts.sort_unstable();
    parts.dedup();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut names: Vec<(u64, String)> = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file = entry.file_name();
        let Some(name) = file.to_str().and_then(|n| {
            n.strip_suffix(".open")
                .or_else(|| n.strip_suffix(".sealed"))
        }) else {
            continue;
        };
        let Some(hour) = name.split('-').next().and_then(|h| h.parse::<u64>().ok()) else {
            continue;
        };
        if (from_hour..to_hour).contains(&hour) {
            names.push((hour, name.to_owned()));
        }
    }
    // Seen twice when it was sealed (renamed) while we listed.
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for (hour, name) in names {
        for &p in &parts {
            // Open, or sealed meanwhile: the same records either way.
            for suffix in [".open", ".sealed"] {
                let path = dir.join(format!("{name}{suffix}")).join(part_name(p));
                match read_part_of(&path, hour, Some(&wanted)) {
                    Ok(rows) => {
                        if !rows.is_empty() {
                            out.push(LivePart {
                                name: format!("{name}/{}", part_name(p)),
                                rows,
                            });
                        }
                        break;
                    }
                    Err(e)
                        if e.downcast_ref::<std::io::Error>()
                            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

/// Reads a part file into per-check rows of `hour`, keeping only `only` (sorted) if given.
fn read_part_of(path: &Path, hour: u64, only: Option<&[u64]>) -> Result<Vec<PeriodStats>> {
    let f = File::open(path).map_err(|e| {
        let kind = e.kind();
        anyhow::Error::new(std::io::Error::new(
            kind,
            format!("reading {}: {e}", path.display()),
        ))
    })?;
    let len = f.metadata()?.len() as usize;
    let mut bytes = vec![0u8; len - len % RECORD];
    f.read_exact_at(&mut bytes, 0)?;
    let keep = |r: &&[u8]| {
        only.is_none_or(|ids| {
            let mut id = [0u8; 8];
            id.copy_from_slice(&r[..8]);
            ids.binary_search(&u64::from_le_bytes(id)).is_ok()
        })
    };
    let mut records: Vec<(u64, u16, [u16; 5])> = bytes
        .chunks_exact(RECORD)
        .filter(keep)
        .map(|r| {
            let u16_at = |i: usize| u16::from_le_bytes([r[i], r[i + 1]]);
            let mut id = [0u8; 8];
            id.copy_from_slice(&r[..8]);
            (
                u64::from_le_bytes(id),
                u16_at(8),
                [u16_at(10), u16_at(12), u16_at(14), u16_at(16), u16_at(18)],
            )
        })
        .collect();
    Ok(group(hour, &mut records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetmon_shared::outcome::Outcome;

    fn result(check_id: u64, seq: u64, at_s: u64, total_us: u32) -> ProbeResult {
        let mut r = ProbeResult {
            check_id,
            seq,
            started_at_us: at_s * 1_000_000,
            ..ProbeResult::default()
        };
        r.phases.total_us = total_us;
        r.phases.connect_us = total_us / 4;
        r.outcome = Outcome::Ok;
        r
    }

    fn rows_in(dir: &Path) -> Vec<PeriodStats> {
        let mut rows = Vec::new();
        for sealed in sealed_dirs(dir).expect("list") {
            let (hour, parts) = sealed_parts(&sealed).expect("parts");
            for p in parts {
                rows.extend(read_part(&p, hour).expect("read"));
            }
        }
        rows.sort_by_key(|r| (r.period, r.check_id));
        rows
    }

    #[test]
    fn a_crash_between_write_and_positions_spools_each_result_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("spool");
        let (mut s, sealed) = Spool::open(&dir).expect("open");
        assert!(sealed.is_empty());
        s.record(0, &result(1, 0, 7200, 1000));
        s.record(0, &result(2, 1, 7201, 2000));
        s.sync().expect("sync");
        // Written but not covered by positions: a crash right here.
        s.record(0, &result(1, 2, 7260, 1100));
        for h in &mut s.hours {
            let d = dir.join(format!("{}.open", h.name));
            for (i, p) in h.parts.iter_mut().enumerate() {
                if !p.buf.is_empty() {
                    write_part(&d, i, p).expect("write");
                }
            }
        }
        drop(s);
        // Restart: the part is cut back and sealed; the ring delivers seq 2 again.
        let (mut s, sealed) = Spool::open(&dir).expect("reopen");
        assert_eq!(sealed.len(), 1);
        s.record(0, &result(1, 1, 7201, 9999)); // below the spooled position: skipped
        s.record(0, &result(1, 2, 7260, 1100));
        s.seal(u64::MAX, true).expect("seal");
        let rows = rows_in(&dir);
        let check1: u64 = rows
            .iter()
            .filter(|r| r.check_id == 1)
            .map(|r| r.ok_count)
            .sum();
        let check2: u64 = rows
            .iter()
            .filter(|r| r.check_id == 2)
            .map(|r| r.ok_count)
            .sum();
        assert_eq!((check1, check2), (2, 1), "{rows:?}");
        assert!(rows.iter().all(|r| r.period == 2));
    }

    #[test]
    fn live_parts_read_the_open_and_sealed_hours_of_the_wanted_checks() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("spool");
        assert_eq!(live_parts(&dir, &[1], 0, 10).expect("no spool yet"), vec![]);
        let (mut s, _) = Spool::open(&dir).expect("open");
        // Hour 1 (sealed, not flushed) and hour 2 (open); checks 1, 65 (same part) and 2.
        for (seq, (check, at, us)) in [
            (1, 3600, 1000),
            (65, 3601, 5000),
            (2, 3602, 7000),
            (1, 7200, 2000),
            (1, 7201, 3000),
        ]
        .into_iter()
        .enumerate()
        {
            s.record(0, &result(check, seq as u64, at, us));
        }
        s.sync().expect("sync");
        assert_eq!(
            s.seal((7200 + SEAL_GRACE_S) * 1_000_000, false)
                .expect("seal")
                .len(),
            1
        );
        let live = live_parts(&dir, &[1], 0, 10).expect("live");
        let counts: Vec<(u64, u64, u64)> = live
            .iter()
            .flat_map(|p| p.rows.iter().map(|r| (r.period, r.check_id, r.ok_count)))
            .collect();
        assert_eq!(counts, vec![(1, 1, 1), (2, 1, 2)], "{live:?}");
        assert!(
            live.iter().all(|p| p.name.ends_with("/p01.log")),
            "{live:?}"
        );
        // The window picks hours; an unknown check has nothing.
        let live = live_parts(&dir, &[1, 2], 2, 3).expect("live");
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].rows[0].hists[0].count(), 2);
        assert!(live_parts(&dir, &[999], 0, 10).expect("live").is_empty());
    }

    #[test]
    fn hours_seal_after_the_grace_and_a_second_writer_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("spool");
        let (mut s, _) = Spool::open(&dir).expect("open");
        let err = Spool::open(&dir).err().expect("locked").to_string();
        assert!(err.contains("in use"), "{err}");
        for (seq, at) in [(0, 3599), (1, 3600), (2, 3601)] {
            s.record(3, &result(5, seq, at, 500));
        }
        s.sync().expect("sync");
        assert!(s.seal(3600 * 1_000_000, false).expect("seal").is_empty());
        let sealed = s
            .seal((3600 + SEAL_GRACE_S) * 1_000_000, false)
            .expect("seal");
        assert_eq!(sealed.len(), 1);
        let rows = rows_in(&dir);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].period, rows[0].ok_count), (0, 1));
        assert_eq!(rows[0].hists[2].count(), 1);
        assert_eq!(s.hours.len(), 1);
    }
}
