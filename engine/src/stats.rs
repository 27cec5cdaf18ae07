//! Response-time statistics: per check per hour, histograms of total time and of each phase
//! plus counts by outcome (states-and-events.md, "Statistics storage"). Designed in
//! docs/statistics.md.
//!
//! A histogram here is a sparse list of log-linear buckets: values below 128 µs exactly, above
//! that 64 buckets per power of two, so a bucket's midpoint is within 1/128 (0.78%) of any
//! value in it — the ≤ 1% relative error the spec asks of hdrhistogram, at a fraction of its
//! serialized size. Histograms merge by adding counts (no cap on samples). Stored encoding, per
//! histogram (a NULL column when empty): for each non-empty bucket in increasing order,
//! `varint(gap << 1 | many)` where `gap` = bucket − (previous bucket + 1) (the first: bucket),
//! then `varint(count − 2)` when `many`. Twelve samples of a healthy check take ~14 bytes.
//!
//! This module is sans-IO; the disk spool that collects samples between flushes is
//! `jetmon_control::stats::spool`, the rows go to the store (`Store::put_hourly`).

use jetmon_shared::outcome::{Outcome, OutcomeClass};

/// Buckets: 0..128 exact, then 64 per octave up to `u32::MAX`.
pub const BUCKETS: u16 = 128 + 25 * 64;
/// A phase that was not measured (spool records).
pub const NO_SAMPLE: u16 = u16::MAX;

/// The phases kept, in column order.
pub const PHASES: [&str; 5] = ["total", "dns", "connect", "tls", "ttfb"];

/// The bucket holding `v` (µs).
pub fn bucket_of(v: u32) -> u16 {
    if v < 128 {
        return v as u16;
    }
    let k = 31 - v.leading_zeros(); // 7..=31
    let sub = (v >> (k - 6)) - 64; // 0..64
    (128 + (k - 7) * 64 + sub) as u16
}

/// The values a bucket holds, inclusive.
pub fn bucket_range(b: u16) -> (u32, u32) {
    if b < 128 {
        return (u32::from(b), u32::from(b));
    }
    let b = u32::from(b.min(BUCKETS - 1)) - 128;
    let k = 7 + b / 64;
    let width = 1u64 << (k - 6);
    let lo = (64 + u64::from(b % 64)) << (k - 6);
    (lo as u32, (lo + width - 1).min(u64::from(u32::MAX)) as u32)
}

/// The value reported for a bucket: its midpoint.
pub fn bucket_value(b: u16) -> u32 {
    let (lo, hi) = bucket_range(b);
    lo + (hi - lo) / 2
}

/// A stored blob that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("corrupt statistics blob")
    }
}

impl std::error::Error for Corrupt {}

/// Sums many histograms into one: a dense array of counts, made sparse once at the end.
/// Merging hundreds of sparse histograms pairwise allocates a new vector for each; an SLA over
/// 30 days sums ~350 rows per phase (Hist::merge was 13% of the SLA route's CPU).
#[derive(Debug, Clone, Default)]
pub struct HistSum {
    counts: Vec<u64>,
}

impl HistSum {
    pub fn add(&mut self, h: &Hist) {
        if h.entries.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; usize::from(BUCKETS)];
        }
        for &(b, c) in &h.entries {
            if let Some(slot) = self.counts.get_mut(usize::from(b)) {
                *slot = slot.saturating_add(c);
            }
        }
    }

    pub fn finish(&self) -> Hist {
        Hist {
            entries: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(b, c)| (b as u16, *c))
                .collect(),
        }
    }
}

/// A sparse histogram: (bucket, count), buckets strictly increasing, counts > 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hist {
    entries: Vec<(u16, u64)>,
}

impl Hist {
    /// From bucket indices in any order ([`NO_SAMPLE`] ignored); sorts `buckets`.
    pub fn from_buckets(buckets: &mut [u16]) -> Hist {
        buckets.sort_unstable();
        let mut entries: Vec<(u16, u64)> = Vec::new();
        for &b in buckets.iter().filter(|&&b| b < BUCKETS) {
            match entries.last_mut() {
                Some((last, n)) if *last == b => *n += 1,
                _ => entries.push((b, 1)),
            }
        }
        Hist { entries }
    }

    /// From values in µs.
    pub fn from_values(values: impl IntoIterator<Item = u32>) -> Hist {
        let mut b: Vec<u16> = values.into_iter().map(bucket_of).collect();
        Hist::from_buckets(&mut b)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[(u16, u64)] {
        &self.entries
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.entries.iter().map(|e| e.1).sum()
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Hist) {
        if other.entries.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.entries.len() + other.entries.len());
        let (mut a, mut b) = (
            self.entries.iter().peekable(),
            other.entries.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    out.push((x.0, x.1.saturating_add(y.1)));
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    out.push(**x);
                    a.next();
                }
                (Some(_), Some(y)) => {
                    out.push(**y);
                    b.next();
                }
                (Some(x), None) => {
                    out.push(**x);
                    a.next();
                }
                (None, Some(y)) => {
                    out.push(**y);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.entries = out;
    }

    /// The value at quantile `q` (0..=1): the midpoint of the bucket holding the sample of rank
    /// ⌈q·n⌉ (at least the first). None when empty.
    pub fn quantile(&self, q: f64) -> Option<u32> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(b, c) in &self.entries {
            seen += c;
            if seen >= rank {
                return Some(bucket_value(b));
            }
        }
        self.entries.last().map(|e| bucket_value(e.0))
    }

    /// The largest value's bucket midpoint.
    pub fn max(&self) -> Option<u32> {
        self.entries.last().map(|e| bucket_value(e.0))
    }

    /// Mean of the bucket midpoints.
    pub fn mean(&self) -> Option<f64> {
        let n = self.count();
        (n > 0).then(|| {
            self.entries
                .iter()
                .map(|&(b, c)| f64::from(bucket_value(b)) * c as f64)
                .sum::<f64>()
                / n as f64
        })
    }

    /// The stored form; None when empty (stored as NULL).
    pub fn encode(&self) -> Option<Vec<u8>> {
        if self.entries.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(self.entries.len() + 2);
        let mut next = 0u64;
        for &(b, c) in &self.entries {
            let gap = u64::from(b) - next;
            next = u64::from(b) + 1;
            put_varint(&mut out, gap << 1 | u64::from(c > 1));
            if c > 1 {
                put_varint(&mut out, c - 2);
            }
        }
        Some(out)
    }

    /// Reads the stored form back; never panics on bad bytes.
    pub fn decode(mut bytes: &[u8]) -> Result<Hist, Corrupt> {
        let mut entries = Vec::new();
        let mut next = 0u64;
        while !bytes.is_empty() {
            let v = get_varint(&mut bytes)?;
            let b = next.checked_add(v >> 1).ok_or(Corrupt)?;
            if b >= u64::from(BUCKETS) {
                return Err(Corrupt);
            }
            let c = if v & 1 == 1 {
                get_varint(&mut bytes)?.checked_add(2).ok_or(Corrupt)?
            } else {
                1
            };
            entries.push((b as u16, c));
            next = b + 1;
        }
        Ok(Hist { entries })
    }
}

/// LEB128.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn get_varint(bytes: &mut &[u8]) -> Result<u64, Corrupt> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or(Corrupt)?;
        *bytes = rest;
        v |= u64::from(byte & 0x7f).checked_shl(shift).ok_or(Corrupt)?;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Corrupt)
}

/// One check's statistics for one period (an hour, or a day after rollup).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodStats {
    pub check_id: u64,
    /// Hours (or days) since the Unix epoch.
    pub period: u64,
    /// Results that passed (up or advisory).
    pub ok_count: u64,
    /// Results that failed or could not be judged.
    pub fail_count: u64,
    /// Count per outcome code, codes increasing.
    pub outcomes: Vec<(u16, u64)>,
    /// Successful checks only, in [`PHASES`] order.
    pub hists: [Hist; 5],
}

impl PeriodStats {
    /// Counts one result's outcome.
    pub fn add(&mut self, outcome: u16) {
        match self.outcomes.binary_search_by_key(&outcome, |o| o.0) {
            Ok(i) => self.outcomes[i].1 += 1,
            Err(i) => self.outcomes.insert(i, (outcome, 1)),
        }
        if counts_as_ok(outcome) {
            self.ok_count += 1;
        } else {
            self.fail_count += 1;
        }
    }

    /// Adds everything in `other` (same check; any period).
    pub fn merge(&mut self, other: &PeriodStats) {
        self.ok_count += other.ok_count;
        self.fail_count += other.fail_count;
        for &(code, n) in &other.outcomes {
            match self.outcomes.binary_search_by_key(&code, |o| o.0) {
                Ok(i) => self.outcomes[i].1 += n,
                Err(i) => self.outcomes.insert(i, (code, n)),
            }
        }
        for (h, o) in self.hists.iter_mut().zip(&other.hists) {
            h.merge(o);
        }
    }

    pub fn encode_outcomes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.outcomes.len() * 2);
        for &(code, n) in &self.outcomes {
            put_varint(&mut out, u64::from(code));
            put_varint(&mut out, n);
        }
        out
    }

    pub fn decode_outcomes(mut bytes: &[u8]) -> Result<Vec<(u16, u64)>, Corrupt> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let code = u16::try_from(get_varint(&mut bytes)?).map_err(|_| Corrupt)?;
            out.push((code, get_varint(&mut bytes)?));
        }
        Ok(out)
    }

    /// Stored bytes of this row's blobs (outcomes and histograms).
    pub fn blob_bytes(&self) -> usize {
        self.encode_outcomes().len()
            + self
                .hists
                .iter()
                .map(|h| h.encode().map_or(0, |b| b.len()))
                .sum::<usize>()
    }
}

/// Whether a result with this code passed (its timings go into the histograms).
pub fn counts_as_ok(code: u16) -> bool {
    matches!(
        Outcome::from_code(code).map(Outcome::class),
        Some(OutcomeClass::Up | OutcomeClass::Advisory)
    )
}

/// Groups spool records of one period into per-check statistics. `records` are
/// (check_id, outcome, buckets); they are sorted here.
pub fn group(period: u64, records: &mut [(u64, u16, [u16; 5])]) -> Vec<PeriodStats> {
    records.sort_unstable_by_key(|r| r.0);
    let mut out = Vec::new();
    let mut scratch: [Vec<u16>; 5] = Default::default();
    for chunk in records.chunk_by(|a, b| a.0 == b.0) {
        let mut s = PeriodStats {
            check_id: chunk[0].0,
            period,
            ..PeriodStats::default()
        };
        for v in &mut scratch {
            v.clear();
        }
        for (_, outcome, buckets) in chunk.iter() {
            s.add(*outcome);
            if counts_as_ok(*outcome) {
                for (v, &b) in scratch.iter_mut().zip(buckets) {
                    if b != NO_SAMPLE {
                        v.push(b);
                    }
                }
            }
        }
        for (h, v) in s.hists.iter_mut().zip(&mut scratch) {
            *h = Hist::from_buckets(v);
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_cover_every_value_within_one_percent() {
        let mut prev_hi = None;
        for b in 0..BUCKETS {
            let (lo, hi) = bucket_range(b);
            assert!(lo <= hi);
            if let Some(p) = prev_hi {
                assert_eq!(lo, p + 1, "bucket {b} leaves a gap");
            }
            prev_hi = Some(hi);
            assert_eq!(bucket_of(lo), b);
            assert_eq!(bucket_of(hi), b);
            let mid = f64::from(bucket_value(b));
            for v in [lo, hi] {
                assert!((mid - f64::from(v)).abs() <= f64::from(v) / 128.0 + 0.5);
            }
        }
        assert_eq!(prev_hi, Some(u32::MAX));
    }

    #[test]
    fn a_healthy_hour_is_small() {
        // Twelve samples spread ±20% around 80 ms: one byte per distinct bucket.
        let h = Hist::from_values((0..12).map(|i| 64_000 + i * 2_900));
        let bytes = h.encode().expect("not empty");
        assert!(bytes.len() <= 14, "{} bytes", bytes.len());
        assert_eq!(Hist::decode(&bytes), Ok(h));
        assert_eq!(Hist::default().encode(), None);
    }

    proptest! {
        #[test]
        fn encoding_round_trips_and_merging_adds(
            a in prop::collection::vec(any::<u32>(), 0..200),
            b in prop::collection::vec(0u32..5_000_000, 0..200),
        ) {
            let (ha, hb) = (Hist::from_values(a.iter().copied()), Hist::from_values(b.iter().copied()));
            for h in [&ha, &hb] {
                let back = h.encode().map(|e| Hist::decode(&e)).unwrap_or(Ok(Hist::default()));
                prop_assert_eq!(back.as_ref(), Ok(h));
            }
            let mut m = ha.clone();
            m.merge(&hb);
            let all = Hist::from_values(a.iter().chain(&b).copied());
            prop_assert_eq!(&m, &all);
            // The dense sum is the same merge.
            let mut sum = HistSum::default();
            sum.add(&ha);
            sum.add(&Hist::default());
            sum.add(&hb);
            prop_assert_eq!(&sum.finish(), &all);
            prop_assert_eq!(m.count(), (a.len() + b.len()) as u64);
            // Quantiles within 1% of the exact order statistic.
            let mut sorted: Vec<u32> = a.iter().chain(&b).copied().collect();
            sorted.sort_unstable();
            for q in [0.5, 0.9, 0.99, 1.0] {
                if let Some(v) = m.quantile(q) {
                    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
                    let exact = f64::from(sorted[rank - 1]);
                    prop_assert!((f64::from(v) - exact).abs() <= exact / 128.0 + 0.5, "q{} {} vs {}", q, v, exact);
                }
            }
        }

        #[test]
        fn bad_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Hist::decode(&bytes);
            let _ = PeriodStats::decode_outcomes(&bytes);
        }
    }

    #[test]
    fn grouping_counts_outcomes_and_keeps_failures_out_of_histograms() {
        let ok = Outcome::Ok.code();
        let bad = Outcome::HttpStatus.code();
        let b = |v: u32| {
            [
                bucket_of(v),
                NO_SAMPLE,
                bucket_of(v / 2),
                NO_SAMPLE,
                bucket_of(v / 3),
            ]
        };
        let mut recs = vec![
            (7, ok, b(1000)),
            (3, ok, b(2000)),
            (7, bad, b(90)),
            (7, ok, b(1100)),
        ];
        let rows = group(10, &mut recs);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].check_id, rows[0].ok_count), (3, 1));
        let r = &rows[1];
        assert_eq!(
            (r.check_id, r.period, r.ok_count, r.fail_count),
            (7, 10, 2, 1)
        );
        assert_eq!(r.outcomes, vec![(ok, 2), (bad, 1)]);
        assert_eq!(r.hists[0].count(), 2);
        assert!(r.hists[1].is_empty() && r.hists[3].is_empty());
        let out = r.encode_outcomes();
        assert_eq!(PeriodStats::decode_outcomes(&out), Ok(r.outcomes.clone()));
    }
}
