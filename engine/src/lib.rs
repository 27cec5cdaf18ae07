//! `jetmon-engine`: what Jetmon decides, with no IO. It owns
//!
//! - the **event engine** (this file): results, verdicts and configuration go in, effects come
//!   out — durable transitions, re-check and verification requests, site projections;
//! - the **SLA arithmetic** ([`sla`]): uptime, incidents, MTTR/MTBF and percentiles from
//!   events and statistics rows;
//! - the **statistics codec** ([`stats`]): the sparse log-linear histograms and their stored
//!   encoding.
//!
//! Invariants: no IO and no clock — time is an argument (`now_us`, Unix µs), inputs are values.
//! It must not depend on sqlx, tokio, actix, axum, tonic, hyper, glommio or sockets (the
//! compiler keeps it so: they are not in its `Cargo.toml`). The store (`jetmon-control::store`)
//! makes its effects durable; ingest decides what goes in. See docs/events.md for the rules.
//!
//! One engine owns a partition of sites (all checks of a site live in one partition), so a
//! site's transitions are produced by exactly one writer, in order.

pub mod sla;
pub mod stats;

pub mod dense;
mod rules;
mod window;

use rules::{advisory, change, close, close_with, open, performance, site_failure, tls_expiry};

use dense::DenseMap;

use jetmon_shared::check::ProbeOrigin;
use jetmon_shared::outcome::{Outcome, OutcomeClass};
use jetmon_shared::state::{Reason, Severity, State};

pub use window::Window;

/// Seconds in a day, for certificate thresholds.
const DAY_S: i64 = 86_400;
/// A check that produced no result for this many intervals is Unknown (`no result`).
pub const SILENCE_INTERVALS: u64 = 2;

/// What an event is about, besides its site and check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventKind {
    /// Is the check passing: Seems Down → Down → closed, or Maintenance.
    Availability = 0,
    /// We could not tell (monitor-side outcomes, silence).
    Unknown = 1,
    /// The leaf certificate's expiry (30 / 14 / 7 / 0 days).
    TlsExpiry = 2,
    /// The check is paused: not monitored time.
    Paused = 3,
    /// Response time over a threshold (median of the last 3 successes): Warning / Degraded.
    Performance = 4,
    /// Passing but worth a look (TLS 1.0/1.1, a redirect the policy `alert` flags): Warning.
    Advisory = 5,
}

/// How many event kinds there are (the size of a check's open-event slots).
const KINDS: usize = 6;

impl EventKind {
    /// Every kind, in code order (the stored `events.kind`).
    pub const ALL: [EventKind; KINDS] = [
        EventKind::Availability,
        EventKind::Unknown,
        EventKind::TlsExpiry,
        EventKind::Paused,
        EventKind::Performance,
        EventKind::Advisory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Availability => "availability",
            EventKind::Unknown => "unknown",
            EventKind::TlsExpiry => "tls_expiry",
            EventKind::Paused => "paused",
            EventKind::Performance => "performance",
            EventKind::Advisory => "advisory",
        }
    }

    /// The kind stored as `code`; None for a code this build does not know.
    pub fn from_code(code: u8) -> Option<EventKind> {
        EventKind::ALL.get(usize::from(code)).copied()
    }
}

/// An event's identity: at most one open event per identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub site_id: u64,
    pub check_id: u64,
    pub kind: EventKind,
}

/// Who caused a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// This host's prober (`local:<host>`, the host filled in by the store).
    Local,
    Veriflier(String),
    Operator(String),
    System(&'static str),
}

/// What the engine knows of a check (from its configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    pub check_id: u64,
    pub site_id: u64,
    pub interval_ms: u32,
    /// Fast local re-checks after a first failure, and their spacing.
    pub retries: u8,
    pub retry_spacing_ms: u32,
    /// A non-critical check's Down makes its site Degraded, not Down.
    pub critical: bool,
    pub paused: bool,
    /// Maintenance windows (failures inside are swallowed).
    pub maintenance: Vec<Window>,
    /// Response-time thresholds of `performance` events (all 0 = none).
    pub thresholds: Thresholds,
}

/// Response-time thresholds of one check, ms; 0 = that threshold is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    pub ttfb_warn_ms: u32,
    pub ttfb_degrade_ms: u32,
    pub total_warn_ms: u32,
    pub total_degrade_ms: u32,
}

impl Thresholds {
    pub fn is_off(&self) -> bool {
        *self == Thresholds::default()
    }

    /// 0 under every threshold, 1 over a warn threshold, 2 over a degrade threshold.
    pub fn level(&self, ttfb_us: u32, total_us: u32) -> u8 {
        let over = |v_us: u32, ms: u32| ms > 0 && u64::from(v_us) > u64::from(ms) * 1000;
        if over(ttfb_us, self.ttfb_degrade_ms) || over(total_us, self.total_degrade_ms) {
            2
        } else if over(ttfb_us, self.ttfb_warn_ms) || over(total_us, self.total_warn_ms) {
            1
        } else {
            0
        }
    }
}

/// How many recent successful results a `performance` event is judged on (their median).
pub const PERFORMANCE_SAMPLES: usize = 3;

/// One probe result, as the engine needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultIn {
    pub check_id: u64,
    pub outcome: Outcome,
    /// When the probe started (Unix µs).
    pub at_us: u64,
    pub origin: ProbeOrigin,
    /// The leaf certificate's notAfter (Unix s); 0 = no certificate.
    pub cert_not_after_s: i64,
    /// Time to first byte and total time (µs), for `performance` events.
    pub ttfb_us: u32,
    pub total_us: u32,
    /// The result's flags (`FLAG_REDIRECT_ALERT` opens an `advisory` event).
    pub flags: u8,
}

/// A veriflier round's outcome for a Seems Down event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub check_id: u64,
    pub event_id: u64,
    /// Verifliers that saw the check fail; the quorum that was required.
    pub down_votes: u8,
    pub quorum: u8,
    pub source: String,
    /// Every veriflier's answer, kept with the transition.
    pub votes: Vec<Vote>,
}

/// How a veriflier answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteKind {
    /// The check failed from there (a site failure).
    Down,
    /// The check passed from there.
    Up,
    /// No say: an error, a timeout, or a monitor-side outcome (probe safety, its resolver…).
    Abstain,
}

impl VoteKind {
    pub fn name(self) -> &'static str {
        match self {
            VoteKind::Down => "down",
            VoteKind::Up => "up",
            VoteKind::Abstain => "abstain",
        }
    }
}

/// One veriflier's answer about one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub veriflier: String,
    pub kind: VoteKind,
    /// The outcome code it reported, if it reported one.
    pub outcome: Option<u16>,
    pub http_status: u16,
    pub total_us: u32,
    /// Why it abstained without a result (error or timeout).
    pub error: Option<String>,
}

/// What the engine is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A check's configuration, new or changed.
    Configure(CheckConfig),
    /// The check is gone (deleted, or its site deactivated): its open events close
    /// (`manual_override`: an operator took it out of monitoring).
    Remove {
        check_id: u64,
    },
    Result(ResultIn),
    Verified(Verdict),
    /// An operator closes an open event (`manual_override`); nothing when it is not open.
    Close {
        check_id: u64,
        event_id: u64,
        source: Source,
        note: Option<Box<str>>,
    },
    /// Time passes: silent checks become Unknown.
    Tick,
}

/// One durable change to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub event_id: u64,
    pub identity: Identity,
    /// None when this transition opens the event.
    pub before: Option<(State, Severity)>,
    /// None when this transition closes the event.
    pub after: Option<(State, Severity)>,
    pub reason: Reason,
    pub source: Source,
    pub at_us: u64,
    /// When the incident started (its first failure); never moves.
    pub started_at_us: u64,
    /// Small facts worth keeping with the transition (outcome code, days left, votes…).
    pub detail: Vec<(&'static str, i64)>,
    /// The verifliers' answers, on a transition a verdict made.
    pub votes: Vec<Vote>,
    /// An operator's words, on a manual close.
    pub note: Option<Box<str>>,
}

/// The site row's projection (fast reads and the legacy `site_status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    pub site_id: u64,
    pub state: State,
    pub severity: Severity,
    pub active_event_id: Option<u64>,
    pub active_event_count: u32,
    pub site_status: u8,
    /// The earliest certificate expiry among the site's checks (Unix s).
    pub ssl_expiry_s: Option<i64>,
    pub last_status_change_us: u64,
}

/// What the engine asks the world to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Transition(Transition),
    /// Probe the check again soon (fast local re-checks).
    Recheck {
        check_id: u64,
        count: u8,
        spacing_ms: u32,
    },
    /// Ask the verifliers about a Seems Down event.
    Verify {
        check_id: u64,
        event_id: u64,
    },
    Projection(Projection),
}

/// An open event as the engine tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenEvent {
    pub id: u64,
    pub state: State,
    pub severity: Severity,
    pub started_at_us: u64,
    /// Failed local attempts (first failure + re-checks) of a Seems Down event.
    pub failures: u8,
    /// Waiting for a veriflier verdict.
    pub verifying: bool,
    /// TLS expiry: the threshold (days) currently reported.
    pub threshold_days: i64,
}

/// A check as the engine keeps it: `CheckConfig` flattened (72 bytes; a million of these are
/// most of control's memory), plus what the engine learnt from results.
#[derive(Debug, Clone)]
struct CheckEntry {
    check_id: u64,
    site_id: u64,
    /// Start of the latest result (Unix µs); 0 = none since start.
    last_result_us: u64,
    open: OpenSet,
    /// Maintenance windows and response-time thresholds; None for the many checks with
    /// neither. Boxed on purpose: 8 bytes in every entry, for settings most checks never have.
    extra: Option<Box<Extra>>,
    /// Opaque to the engine: the owner's fingerprint of the check's full settings.
    tag: u64,
    /// Leaf certificate notAfter, Unix seconds; 0 = none seen.
    cert_not_after_s: i64,
    interval_ms: u32,
    retry_spacing_ms: u32,
    retries: u8,
    critical: bool,
    paused: bool,
}

impl CheckEntry {
    fn new(cfg: CheckConfig, last_result_us: u64) -> CheckEntry {
        let mut e = CheckEntry {
            check_id: cfg.check_id,
            site_id: cfg.site_id,
            last_result_us,
            open: OpenSet::default(),
            extra: None,
            tag: 0,
            cert_not_after_s: 0,
            interval_ms: 0,
            retry_spacing_ms: 0,
            retries: 0,
            critical: false,
            paused: false,
        };
        e.set_config(cfg);
        e
    }

    fn set_config(&mut self, cfg: CheckConfig) {
        self.check_id = cfg.check_id;
        self.site_id = cfg.site_id;
        self.interval_ms = cfg.interval_ms;
        self.retries = cfg.retries;
        self.retry_spacing_ms = cfg.retry_spacing_ms;
        self.critical = cfg.critical;
        self.paused = cfg.paused;
        if cfg.maintenance.is_empty() && cfg.thresholds.is_off() {
            self.extra = None;
            return;
        }
        let extra = self.extra.get_or_insert_with(Box::default);
        extra.maintenance = cfg.maintenance;
        if extra.thresholds != cfg.thresholds {
            // New thresholds judge new results.
            extra.thresholds = cfg.thresholds;
            extra.samples = Samples::default();
        }
    }

    fn maintenance(&self) -> &[Window] {
        self.extra
            .as_deref()
            .map_or(&[], |x| x.maintenance.as_slice())
    }

    fn in_maintenance(&self, at_us: u64) -> bool {
        self.maintenance().iter().any(|w| w.contains(at_us))
    }
}

/// What few checks have: maintenance windows, response-time thresholds and the recent
/// successful timings those are judged on.
#[derive(Debug, Clone, Default)]
struct Extra {
    maintenance: Vec<Window>,
    thresholds: Thresholds,
    samples: Samples,
}

/// The last `PERFORMANCE_SAMPLES` successful (ttfb, total) timings, a ring.
#[derive(Debug, Clone, Copy, Default)]
struct Samples {
    ttfb_us: [u32; PERFORMANCE_SAMPLES],
    total_us: [u32; PERFORMANCE_SAMPLES],
    len: u8,
    next: u8,
}

impl Samples {
    fn push(&mut self, ttfb_us: u32, total_us: u32) {
        let i = usize::from(self.next);
        self.ttfb_us[i] = ttfb_us;
        self.total_us[i] = total_us;
        self.next = ((i + 1) % PERFORMANCE_SAMPLES) as u8;
        self.len = (usize::from(self.len) + 1).min(PERFORMANCE_SAMPLES) as u8;
    }

    /// The medians of (ttfb, total) once the ring is full.
    fn medians(&self) -> Option<(u32, u32)> {
        (usize::from(self.len) == PERFORMANCE_SAMPLES)
            .then(|| (median(self.ttfb_us), median(self.total_us)))
    }
}

fn median(mut v: [u32; PERFORMANCE_SAMPLES]) -> u32 {
    v.sort_unstable();
    v[PERFORMANCE_SAMPLES / 2]
}

/// A check's open events, at most one per kind. Most checks have none open: then this is a
/// null pointer (8 bytes, no allocation), not a map.
#[derive(Debug, Clone, Default)]
struct OpenSet(Option<Box<[Option<OpenEvent>; KINDS]>>);

impl OpenSet {
    fn from_iter(events: impl IntoIterator<Item = (EventKind, OpenEvent)>) -> OpenSet {
        let mut set = OpenSet::default();
        for (k, e) in events {
            set.insert(k, e);
        }
        set
    }

    fn get(&self, kind: &EventKind) -> Option<&OpenEvent> {
        self.0.as_ref()?[*kind as usize].as_ref()
    }

    fn get_mut(&mut self, kind: &EventKind) -> Option<&mut OpenEvent> {
        self.0.as_mut()?[*kind as usize].as_mut()
    }

    fn contains_key(&self, kind: &EventKind) -> bool {
        self.get(kind).is_some()
    }

    fn insert(&mut self, kind: EventKind, e: OpenEvent) {
        self.0.get_or_insert_with(|| Box::new([None; KINDS]))[kind as usize] = Some(e);
    }

    fn remove(&mut self, kind: &EventKind) -> Option<OpenEvent> {
        let slots = self.0.as_mut()?;
        let e = slots[*kind as usize].take();
        if slots.iter().all(Option::is_none) {
            self.0 = None;
        }
        e
    }

    /// Open events in kind order.
    fn iter(&self) -> impl Iterator<Item = (EventKind, &OpenEvent)> {
        self.0.iter().flat_map(|slots| {
            EventKind::ALL
                .iter()
                .zip(slots.iter())
                .filter_map(|(k, e)| e.as_ref().map(|e| (*k, e)))
        })
    }

    fn keys(&self) -> impl Iterator<Item = EventKind> + '_ {
        self.iter().map(|(k, _)| k)
    }

    fn values(&self) -> impl Iterator<Item = &OpenEvent> {
        self.iter().map(|(_, e)| e)
    }
}

/// A site's checks. Most sites have one: it is kept inline, so a million single-check sites
/// cost no allocation of their own.
#[derive(Debug, Clone, Default)]
struct SiteChecks {
    /// 0 = none.
    first: u64,
    more: Vec<u64>,
}

impl SiteChecks {
    fn contains(&self, id: &u64) -> bool {
        self.first == *id || self.more.contains(id)
    }

    fn push(&mut self, id: u64) {
        if self.first == 0 {
            self.first = id;
        } else {
            self.more.push(id);
        }
    }

    fn remove(&mut self, id: u64) {
        if self.first == id {
            self.first = if self.more.is_empty() {
                0
            } else {
                self.more.remove(0)
            };
        } else {
            self.more.retain(|c| *c != id);
        }
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (self.first != 0)
            .then_some(self.first)
            .into_iter()
            .chain(self.more.iter().copied())
    }
}

/// Allocates event ids that no other partition allocates: `next`, `next + stride`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventIds {
    pub next: u64,
    pub stride: u64,
}

impl EventIds {
    fn take(&mut self) -> u64 {
        let id = self.next;
        self.next += self.stride;
        id
    }
}

/// One partition's state.
#[derive(Debug, Clone)]
pub struct Engine {
    checks: DenseMap<CheckEntry>,
    sites: DenseMap<(SiteChecks, Packed)>,
    ids: EventIds,
    /// Verifliers configured; 0 = local attempts alone confirm.
    verifliers: usize,
}

impl Engine {
    pub fn new(ids: EventIds, verifliers: usize) -> Engine {
        Engine {
            checks: DenseMap::default(),
            sites: DenseMap::default(),
            ids,
            verifliers,
        }
    }

    /// The open events of a check, by kind.
    pub fn open_events(&self, check_id: u64) -> impl Iterator<Item = (EventKind, &OpenEvent)> {
        self.checks
            .get(&check_id)
            .into_iter()
            .flat_map(|c| c.open.iter())
    }

    /// The tag stored with a check (0 until set); None for an unknown check.
    pub fn tag(&self, check_id: u64) -> Option<u64> {
        self.checks.get(&check_id).map(|c| c.tag)
    }

    /// Stores an opaque tag with a check (its owner's fingerprint of the settings), so the
    /// owner needs no table of its own; false for an unknown check.
    pub fn set_tag(&mut self, check_id: u64, tag: u64) -> bool {
        self.checks
            .get_mut(&check_id)
            .map(|c| c.tag = tag)
            .is_some()
    }

    /// Every configured check id.
    pub fn check_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.checks.iter().map(|(id, _)| *id)
    }

    /// Walks up to `max` checks from table position `from`, appending (site, latest result
    /// time) for those with a result after `since_us`; returns the next position, 0 once the
    /// walk reached the end. For `last_checked_at`, written in batches.
    pub fn checked_since(
        &self,
        since_us: u64,
        from: usize,
        max: usize,
        out: &mut Vec<(u64, u64)>,
    ) -> usize {
        let slots = self.checks.slots_from(from);
        for (_, e) in slots.iter().take(max) {
            if e.last_result_us > since_us {
                out.push((e.site_id, e.last_result_us));
            }
        }
        if slots.len() <= max { 0 } else { from + max }
    }

    pub fn check_count(&self) -> usize {
        self.checks.len()
    }

    /// The site's current projection.
    pub fn projection(&self, site_id: u64) -> Option<Projection> {
        self.sites.get(&site_id).map(|(_, p)| p.unpack(site_id))
    }

    /// Restores a check and its open events (after a restart, from the store).
    pub fn restore(&mut self, cfg: CheckConfig, open: Vec<(EventKind, OpenEvent)>) {
        for (_, e) in &open {
            if e.id >= self.ids.next {
                let steps = (e.id - self.ids.next) / self.ids.stride + 1;
                self.ids.next += steps * self.ids.stride;
            }
        }
        let site_id = cfg.site_id;
        let check_id = cfg.check_id;
        let mut entry = CheckEntry::new(cfg, 0);
        entry.open = OpenSet::from_iter(open);
        if let Some(old) = self.checks.get(&check_id) {
            entry.tag = old.tag;
        }
        self.checks.insert(check_id, entry);
        let site = self
            .sites
            .get_or_insert_with(site_id, || (SiteChecks::default(), Packed::UP));
        if !site.0.contains(&check_id) {
            site.0.push(check_id);
        }
        // The stored projection already says this: recompute it without emitting it, so the
        // next change is measured against the truth (not against "Up").
        let mut scratch = Vec::new();
        let since = open_since(self.checks.get(&check_id));
        self.project(site_id, since, &mut scratch);
    }

    /// Applies one input at `now_us`, appending what must happen to `out`.
    pub fn apply(&mut self, input: Input, now_us: u64, out: &mut Vec<Effect>) {
        match input {
            Input::Configure(cfg) => self.configure(cfg, now_us, out),
            Input::Remove { check_id } => {
                if let Some(mut entry) = self.checks.remove(&check_id) {
                    let site_id = entry.site_id;
                    let kinds: Vec<EventKind> = entry.open.keys().collect();
                    for kind in kinds {
                        close(
                            &mut entry,
                            kind,
                            Reason::ManualOverride,
                            Source::System("config"),
                            now_us,
                            out,
                        );
                    }
                    if let Some(site) = self.sites.get_mut(&site_id) {
                        site.0.remove(check_id);
                    }
                    self.project(site_id, now_us, out);
                }
            }
            Input::Result(r) => self.result(r, now_us, out),
            Input::Verified(v) => self.verified(v, now_us, out),
            Input::Close {
                check_id,
                event_id,
                source,
                note,
            } => {
                let Some(entry) = self.checks.get_mut(&check_id) else {
                    return;
                };
                let Some(kind) = entry
                    .open
                    .iter()
                    .find(|(_, e)| e.id == event_id)
                    .map(|(k, _)| k)
                else {
                    return;
                };
                let site_id = entry.site_id;
                let from = out.len();
                close(entry, kind, Reason::ManualOverride, source, now_us, out);
                if let Some(Effect::Transition(t)) = out.get_mut(from) {
                    t.note = note;
                }
                self.project(site_id, now_us, out);
            }
            Input::Tick => self.tick(now_us, out),
        }
    }

    fn next_id(&mut self) -> u64 {
        self.ids.take()
    }

    fn configure(&mut self, cfg: CheckConfig, now_us: u64, out: &mut Vec<Effect>) {
        let site_id = cfg.site_id;
        let check_id = cfg.check_id;
        let paused = cfg.paused;
        match self.checks.get_mut(&check_id) {
            Some(entry) => entry.set_config(cfg),
            None => {
                self.checks.insert(check_id, CheckEntry::new(cfg, now_us));
            }
        }
        let site = self
            .sites
            .get_or_insert_with(site_id, || (SiteChecks::default(), Packed::UP));
        if !site.0.contains(&check_id) {
            site.0.push(check_id);
        }
        let Engine { checks, ids, .. } = self;
        let Some(entry) = checks.get_mut(&check_id) else {
            return;
        };
        if entry.extra.as_ref().is_none_or(|x| x.thresholds.is_off()) {
            // The thresholds were taken away: nothing judges the event any more.
            close(
                entry,
                EventKind::Performance,
                Reason::ManualOverride,
                Source::System("config"),
                now_us,
                out,
            );
        }
        let was_paused = entry.open.contains_key(&EventKind::Paused);
        if paused && !was_paused {
            // Paused is not monitored time: whatever was open is closed by the operator.
            for kind in [EventKind::Availability, EventKind::Unknown] {
                close(
                    entry,
                    kind,
                    Reason::ManualOverride,
                    Source::System("pause"),
                    now_us,
                    out,
                );
            }
            open(
                entry,
                ids.take(),
                EventKind::Paused,
                State::Paused,
                Severity::UP,
                now_us,
                now_us,
                Source::System("pause"),
                Reason::Opened,
                vec![],
                out,
            );
        } else if !paused && was_paused {
            close(
                entry,
                EventKind::Paused,
                Reason::ManualOverride,
                Source::System("resume"),
                now_us,
                out,
            );
            entry.last_result_us = now_us;
        }
        self.project(site_id, now_us, out);
    }

    fn result(&mut self, r: ResultIn, now_us: u64, out: &mut Vec<Effect>) {
        let verifliers = self.verifliers;
        let Some(site_id) = self.checks.get(&r.check_id).map(|c| c.site_id) else {
            return; // a result for a check removed meanwhile
        };
        let Engine { checks, ids, .. } = self;
        let Some(entry) = checks.get_mut(&r.check_id) else {
            return;
        };
        if entry.open.contains_key(&EventKind::Paused) {
            return; // results in flight when the check was paused
        }
        entry.last_result_us = entry.last_result_us.max(r.at_us);
        let mut take_id = || ids.take();
        let source = Source::Local;
        // Built only when a transition is made: healthy results allocate nothing.
        let outcome_code = i64::from(r.outcome.code());
        let detail = || vec![("outcome", outcome_code)];
        let in_maintenance = entry.in_maintenance(r.at_us);

        // Certificate expiry, from every HTTPS result.
        if r.cert_not_after_s != 0 {
            entry.cert_not_after_s = r.cert_not_after_s;
            tls_expiry(entry, r.cert_not_after_s, now_us, &mut take_id, out);
        }

        match r.outcome.class() {
            OutcomeClass::MonitorSide => {
                if !entry.open.contains_key(&EventKind::Unknown) {
                    let id = take_id();
                    open(
                        entry,
                        id,
                        EventKind::Unknown,
                        State::Unknown,
                        Severity::UP,
                        r.at_us,
                        now_us,
                        Source::System("prober"),
                        Reason::Opened,
                        detail(),
                        out,
                    );
                }
            }
            OutcomeClass::Up | OutcomeClass::Advisory => {
                close(
                    entry,
                    EventKind::Unknown,
                    Reason::ProbeCleared,
                    source.clone(),
                    now_us,
                    out,
                );
                let reason = match entry.open.get(&EventKind::Availability).map(|e| e.state) {
                    Some(State::Down) => Reason::VerifierCleared,
                    _ => Reason::ProbeCleared,
                };
                close(
                    entry,
                    EventKind::Availability,
                    reason,
                    source.clone(),
                    now_us,
                    out,
                );
                performance(entry, &r, in_maintenance, now_us, &mut take_id, out);
                advisory(entry, &r, in_maintenance, now_us, &mut take_id, out);
            }
            OutcomeClass::SiteFailure => site_failure(
                entry,
                &r,
                in_maintenance,
                verifliers,
                source,
                now_us,
                &mut take_id,
                out,
            ),
        }
        self.project(site_id, now_us, out);
    }

    fn verified(&mut self, v: Verdict, now_us: u64, out: &mut Vec<Effect>) {
        let Some(entry) = self.checks.get_mut(&v.check_id) else {
            return;
        };
        let site_id = entry.site_id;
        let Some(e) = entry.open.get(&EventKind::Availability).copied() else {
            return; // cleared meanwhile
        };
        if e.id != v.event_id || !e.verifying || e.state != State::SeemsDown {
            return; // a late verdict about another incident
        }
        let detail = vec![
            ("down_votes", i64::from(v.down_votes)),
            ("quorum", i64::from(v.quorum)),
        ];
        if v.down_votes >= v.quorum && v.quorum > 0 {
            change(
                entry,
                EventKind::Availability,
                State::Down,
                Severity::DOWN,
                Reason::VerifierConfirmed,
                Source::Veriflier(v.source),
                now_us,
                detail,
                out,
            );
            if let Some(open) = entry.open.get_mut(&EventKind::Availability) {
                open.verifying = false;
            }
        } else {
            close_with(
                entry,
                EventKind::Availability,
                Reason::FalseAlarm,
                Source::Veriflier(v.source),
                now_us,
                detail,
                out,
            );
        }
        // The votes go with the transition the verdict made.
        if let Some(Effect::Transition(t)) = out
            .iter_mut()
            .rev()
            .find(|e| matches!(e, Effect::Transition(_)))
        {
            t.votes = v.votes;
        }
        self.project(site_id, now_us, out);
    }

    fn tick(&mut self, now_us: u64, out: &mut Vec<Effect>) {
        let mut silent = Vec::new();
        // Sites with maintenance windows: a window that began or ended changes their state
        // (a healthy check in an active window shows Maintenance).
        let mut windowed = Vec::new();
        for (id, entry) in self.checks.iter() {
            if !entry.maintenance().is_empty() {
                windowed.push(entry.site_id);
            }
            if entry.paused || entry.open.contains_key(&EventKind::Unknown) {
                continue;
            }
            let limit = u64::from(entry.interval_ms) * 1000 * SILENCE_INTERVALS;
            let last = entry.last_result_us;
            if last != 0 && now_us.saturating_sub(last) > limit {
                silent.push(*id);
            }
        }
        silent.sort_unstable();
        for check_id in silent {
            let id = self.next_id();
            if let Some(entry) = self.checks.get_mut(&check_id) {
                let site_id = entry.site_id;
                let since = match entry.last_result_us {
                    0 => now_us,
                    t => t,
                };
                open(
                    entry,
                    id,
                    EventKind::Unknown,
                    State::Unknown,
                    Severity::UP,
                    since,
                    now_us,
                    Source::System("silence"),
                    Reason::Opened,
                    vec![("no_result_for_ms", ((now_us - since) / 1000) as i64)],
                    out,
                );
                self.project(site_id, now_us, out);
            }
        }
        windowed.sort_unstable();
        windowed.dedup();
        for site_id in windowed {
            self.project(site_id, now_us, out);
        }
    }

    /// Recomputes the site's projection; emits it when it changed.
    fn project(&mut self, site_id: u64, now_us: u64, out: &mut Vec<Effect>) {
        let Some((checks, packed)) = self.sites.get(&site_id) else {
            return;
        };
        let old = packed.unpack(site_id);
        let mut worst: Option<(u8, State, Severity, u64)> = None;
        let mut count = 0u32;
        let mut expiry: Option<i64> = None;
        for c in checks.iter() {
            let Some(entry) = self.checks.get(&c) else {
                continue;
            };
            if entry.cert_not_after_s != 0 {
                expiry =
                    Some(expiry.map_or(entry.cert_not_after_s, |e| e.min(entry.cert_not_after_s)));
            }
            // A healthy check inside an active window shows Maintenance (an open event of its
            // own, worse than that, still wins); a paused one stays Paused.
            if !entry.paused && entry.in_maintenance(now_us) {
                let rank = rank(State::Maintenance);
                if worst.is_none_or(|w| rank > w.0) {
                    worst = Some((rank, State::Maintenance, Severity::UP, 0));
                }
            }
            for (kind, e) in entry.open.iter() {
                count += 1;
                // Rollup: a non-critical check's Down is its site's Degraded.
                let (state, severity) = if !entry.critical
                    && kind == EventKind::Availability
                    && matches!(e.state, State::Down | State::SeemsDown)
                {
                    (State::Degraded, Severity::DEGRADED)
                } else {
                    (e.state, e.severity)
                };
                let rank = rank(state);
                if worst.is_none_or(|w| rank > w.0 || (rank == w.0 && (w.3 == 0 || e.id < w.3))) {
                    worst = Some((rank, state, severity, e.id));
                }
            }
        }
        let (state, severity, active) = match worst {
            Some((_, s, sev, id)) => (s, sev, (id != 0).then_some(id)),
            None => (State::Up, Severity::UP, None),
        };
        let changed_state = state != old.state;
        let p = Projection {
            site_id,
            state,
            severity,
            active_event_id: active,
            active_event_count: count,
            site_status: state.legacy_site_status(),
            ssl_expiry_s: expiry,
            last_status_change_us: if changed_state {
                now_us
            } else {
                old.last_status_change_us
            },
        };
        if p != old {
            if let Some(site) = self.sites.get_mut(&site_id) {
                site.1 = Packed::pack(&p);
            }
            out.push(Effect::Projection(p));
        }
    }
}

/// When the latest of a check's open events started (0 when none).
fn open_since(entry: Option<&CheckEntry>) -> u64 {
    entry
        .into_iter()
        .flat_map(|e| e.open.values())
        .map(|e| e.started_at_us)
        .max()
        .unwrap_or(0)
}

/// Why a passing result is still worth a warning (states-and-events.md), as the advisory
/// event's `detail` code: 1 TLS 1.0/1.1 negotiated (`tls_deprecated`), 2 the redirect chain
/// ended on another host or on plain http under redirect policy `alert`.
pub mod advisory_reason {
    pub const TLS_DEPRECATED: i64 = 1;
    pub const REDIRECT_ALERT: i64 = 2;
}

/// Site-rollup order: Down > Seems Down > Degraded > Warning > Maintenance > Unknown > Paused > Up.
fn rank(s: State) -> u8 {
    match s {
        State::Down => 8,
        State::SeemsDown => 7,
        State::Degraded => 6,
        State::Warning => 5,
        State::Maintenance => 4,
        State::Unknown => 3,
        State::Paused => 2,
        State::Up => 0,
    }
}

/// A site's projection as the engine keeps it: 32 bytes instead of 56 (the site id is the
/// map's key; "none" is 0 for the event id and the expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed {
    active_event_id: u64,
    ssl_expiry_s: i64,
    last_status_change_us: u64,
    active_event_count: u32,
    state: State,
    severity: Severity,
}

impl Packed {
    const UP: Packed = Packed {
        active_event_id: 0,
        ssl_expiry_s: 0,
        last_status_change_us: 0,
        active_event_count: 0,
        state: State::Up,
        severity: Severity::UP,
    };

    fn pack(p: &Projection) -> Packed {
        Packed {
            active_event_id: p.active_event_id.unwrap_or(0),
            ssl_expiry_s: p.ssl_expiry_s.unwrap_or(0),
            last_status_change_us: p.last_status_change_us,
            active_event_count: p.active_event_count,
            state: p.state,
            severity: p.severity,
        }
    }

    fn unpack(&self, site_id: u64) -> Projection {
        Projection {
            site_id,
            state: self.state,
            severity: self.severity,
            active_event_id: (self.active_event_id != 0).then_some(self.active_event_id),
            active_event_count: self.active_event_count,
            site_status: self.state.legacy_site_status(),
            ssl_expiry_s: (self.ssl_expiry_s != 0).then_some(self.ssl_expiry_s),
            last_status_change_us: self.last_status_change_us,
        }
    }
}

const _: () = assert!(std::mem::size_of::<Packed>() <= 32);

#[cfg(test)]
mod tests;
