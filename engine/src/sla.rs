//! SLA statistics, pure: what states-and-events.md says the API returns for a window, from
//! interval lists and histograms. No database, no clock.
//!
//! Time in a window is classified once, by precedence, so the parts never overlap and
//! always add up: Paused > Maintenance > Unknown (these three are not monitored time) > Down >
//! Degraded > Warning > up. Overlapping events of one class are merged (a union, not a sum).

use crate::EventKind;
use crate::stats::Hist;
use jetmon_shared::state::{Reason, State};

/// `[from_us, to_us)`, Unix µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub from_us: u64,
    pub to_us: u64,
}

impl Span {
    pub fn new(from_us: u64, to_us: u64) -> Span {
        Span {
            from_us,
            to_us: to_us.max(from_us),
        }
    }

    fn len(&self) -> u64 {
        self.to_us - self.from_us
    }

    fn clip(&self, w: &Span) -> Option<Span> {
        let s = Span::new(self.from_us.max(w.from_us), self.to_us.min(w.to_us));
        (s.len() > 0).then_some(s)
    }
}

/// A confirmed Down event (an incident) or a false alarm, by its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incident {
    pub started_us: u64,
    /// None while still open.
    pub ended_us: Option<u64>,
}

/// The time spent in each class, and the incidents, for one site and window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaInput {
    pub window: Option<Span>,
    pub paused: Vec<Span>,
    pub maintenance: Vec<Span>,
    pub unknown: Vec<Span>,
    pub down: Vec<Span>,
    pub degraded: Vec<Span>,
    pub warning: Vec<Span>,
    pub incidents: Vec<Incident>,
    pub false_alarms: Vec<Incident>,
}

/// What the API reports (seconds as decimals: µs precision).
#[derive(Debug, Clone, PartialEq)]
pub struct Sla {
    pub window_seconds: f64,
    pub monitored_seconds: f64,
    pub downtime_seconds: f64,
    pub degraded_seconds: f64,
    pub warning_seconds: f64,
    pub unknown_seconds: f64,
    pub maintenance_seconds: f64,
    pub paused_seconds: f64,
    /// None when nothing was monitored.
    pub uptime_percent: Option<f64>,
    pub incidents: u32,
    pub false_alarms: u32,
    /// Mean duration of the incidents that ended in the window.
    pub mttr_seconds: Option<f64>,
    /// Monitored up time per incident.
    pub mtbf_seconds: Option<f64>,
}

/// Sorted, merged, non-empty spans clipped to `w`.
fn union(spans: &[Span], w: &Span) -> Vec<Span> {
    let mut v: Vec<Span> = spans.iter().filter_map(|s| s.clip(w)).collect();
    v.sort_unstable();
    let mut out: Vec<Span> = Vec::with_capacity(v.len());
    for s in v {
        match out.last_mut() {
            Some(last) if s.from_us <= last.to_us => last.to_us = last.to_us.max(s.to_us),
            _ => out.push(s),
        }
    }
    out
}

/// `a \ b` for merged, sorted span lists.
fn subtract(a: &[Span], b: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut j = 0;
    for s in a {
        let mut from = s.from_us;
        while j < b.len() && b[j].to_us <= from {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].from_us < s.to_us {
            if b[k].from_us > from {
                out.push(Span::new(from, b[k].from_us));
            }
            from = from.max(b[k].to_us);
            k += 1;
        }
        if from < s.to_us {
            out.push(Span::new(from, s.to_us));
        }
    }
    out
}

fn merge(a: &[Span], b: &[Span], w: &Span) -> Vec<Span> {
    let mut all = a.to_vec();
    all.extend_from_slice(b);
    union(&all, w)
}

fn total(spans: &[Span]) -> u64 {
    spans.iter().map(Span::len).sum()
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// Computes the SLA figures for `input.window` (None = an empty window).
pub fn compute(input: &SlaInput) -> Sla {
    let w = input.window.unwrap_or(Span::new(0, 0));
    let paused = union(&input.paused, &w);
    let maintenance = subtract(&union(&input.maintenance, &w), &paused);
    let excluded = merge(&paused, &maintenance, &w);
    let unknown = subtract(&union(&input.unknown, &w), &excluded);
    let excluded = merge(&excluded, &unknown, &w);
    let down = subtract(&union(&input.down, &w), &excluded);
    let worse = merge(&excluded, &down, &w);
    let degraded = subtract(&union(&input.degraded, &w), &worse);
    let worse = merge(&worse, &degraded, &w);
    let warning = subtract(&union(&input.warning, &w), &worse);

    let monitored = w.len() - total(&excluded);
    let downtime = total(&down);
    let in_window = |i: &Incident| {
        let end = i.ended_us.unwrap_or(u64::MAX);
        i.started_us < w.to_us && end > w.from_us
    };
    let incidents = input.incidents.iter().filter(|i| in_window(i)).count() as u32;
    let false_alarms = input.false_alarms.iter().filter(|i| in_window(i)).count() as u32;
    let ended: Vec<u64> = input
        .incidents
        .iter()
        .filter_map(|i| {
            i.ended_us
                .filter(|e| (w.from_us..w.to_us).contains(e))
                .map(|e| e - i.started_us)
        })
        .collect();
    Sla {
        window_seconds: secs(w.len()),
        monitored_seconds: secs(monitored),
        downtime_seconds: secs(downtime),
        degraded_seconds: secs(total(&degraded)),
        warning_seconds: secs(total(&warning)),
        unknown_seconds: secs(total(&unknown)),
        maintenance_seconds: secs(total(&maintenance)),
        paused_seconds: secs(total(&paused)),
        uptime_percent: (monitored > 0)
            .then(|| 100.0 * (monitored - downtime) as f64 / monitored as f64),
        incidents,
        false_alarms,
        mttr_seconds: (!ended.is_empty())
            .then(|| ended.iter().map(|d| secs(*d)).sum::<f64>() / ended.len() as f64),
        mtbf_seconds: (incidents > 0).then(|| secs(monitored - downtime) / f64::from(incidents)),
    }
}

/// One event's history as the store keeps it: when it started, each state it entered, and
/// how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHistory {
    pub started_us: u64,
    /// (from, state), in time order; the first is the opening state.
    pub states: Vec<(u64, State)>,
    /// (at, reason) once closed.
    pub closed: Option<(u64, Reason)>,
    /// A non-critical check's Down is its site's Degraded.
    pub critical: bool,
    /// What the event is about: only availability events make downtime and incidents.
    pub kind: EventKind,
}

/// Adds an event's time to the classes it belongs to.
///
/// Downtime comes only from availability: an availability event that reached Down counts as
/// downtime from its first failure (`started_us`) to its end and is one incident; Seems Down
/// that ended as a false alarm or cleared locally is not downtime (it is recorded as a false
/// alarm when a veriflier said so). Every other kind (`tls_expiry`, `performance`,
/// `advisory`) is time in the state it was in, with Down counted as degraded: an expired
/// certificate is downtime through the failing HTTP check's own event, never a second
/// incident, and its 30 days of Warning are warning seconds.
pub fn add_event(input: &mut SlaInput, e: &EventHistory, now_us: u64) {
    let end = e.closed.map_or(now_us, |(at, _)| at);
    let availability = e.kind == EventKind::Availability;
    let reached_down = availability && e.states.iter().any(|(_, s)| *s == State::Down);
    if reached_down {
        let span = Span::new(e.started_us, end);
        if e.critical {
            input.down.push(span);
            input.incidents.push(Incident {
                started_us: e.started_us,
                ended_us: e.closed.map(|(at, _)| at),
            });
        } else {
            input.degraded.push(span);
        }
        return;
    }
    if availability && matches!(e.closed, Some((_, Reason::FalseAlarm))) {
        input.false_alarms.push(Incident {
            started_us: e.started_us,
            ended_us: e.closed.map(|(at, _)| at),
        });
    }
    for (i, (from, state)) in e.states.iter().enumerate() {
        let to = e.states.get(i + 1).map_or(end, |(t, _)| *t);
        let span = Span::new(*from, to);
        match state {
            State::Paused => input.paused.push(span),
            State::Maintenance => input.maintenance.push(span),
            State::Unknown => input.unknown.push(span),
            State::Degraded => input.degraded.push(span),
            State::Warning => input.warning.push(span),
            State::Down | State::SeemsDown if !availability => input.degraded.push(span),
            State::Down | State::SeemsDown | State::Up => {}
        }
    }
}

/// Response-time percentiles over successful checks, from merged histograms (µs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

/// Merges histograms (no cap on sample counts) and reads the percentiles; None when empty.
/// Values are bucket midpoints, within 1% of the true order statistic (`stats`).
pub fn percentiles<'h>(hists: impl IntoIterator<Item = &'h Hist>) -> Option<Percentiles> {
    let mut sum = crate::stats::HistSum::default();
    for h in hists {
        sum.add(h);
    }
    of_hist(&sum.finish())
}

/// The percentiles of one (already merged) histogram; None when empty.
pub fn of_hist(merged: &Hist) -> Option<Percentiles> {
    let q = |q: f64| merged.quantile(q).map(u64::from);
    Some(Percentiles {
        count: merged.count(),
        p50_us: q(0.50)?,
        p90_us: q(0.90)?,
        p95_us: q(0.95)?,
        p99_us: q(0.99)?,
        max_us: merged.max().map(u64::from)?,
        mean_us: merged.mean()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000;

    fn span(a: u64, b: u64) -> Span {
        Span::new(a * S, b * S)
    }

    #[test]
    fn overlapping_downtime_is_a_union_and_exclusions_are_not_monitored() {
        let input = SlaInput {
            window: Some(span(0, 1000)),
            down: vec![span(100, 200), span(150, 250), span(900, 1100)],
            unknown: vec![span(240, 300)],
            maintenance: vec![span(500, 600)],
            paused: vec![span(550, 700)],
            incidents: vec![
                Incident {
                    started_us: 100 * S,
                    ended_us: Some(250 * S),
                },
                Incident {
                    started_us: 900 * S,
                    ended_us: None,
                },
            ],
            ..SlaInput::default()
        };
        let sla = compute(&input);
        assert_eq!(sla.paused_seconds, 150.0);
        assert_eq!(sla.maintenance_seconds, 50.0);
        assert_eq!(sla.unknown_seconds, 60.0);
        assert_eq!(sla.monitored_seconds, 1000.0 - 150.0 - 50.0 - 60.0);
        assert_eq!(
            sla.downtime_seconds,
            140.0 + 100.0,
            "[100,240) + [900,1000)"
        );
        let up = 100.0 * (740.0 - 240.0) / 740.0;
        assert!((sla.uptime_percent.expect("monitored") - up).abs() < 1e-9);
        assert_eq!(sla.incidents, 2);
        assert_eq!(sla.mttr_seconds, Some(150.0));
        assert_eq!(sla.mtbf_seconds, Some((740.0 - 240.0) / 2.0));
        let empty = compute(&SlaInput {
            window: Some(span(0, 10)),
            paused: vec![span(0, 10)],
            ..SlaInput::default()
        });
        assert_eq!(empty.uptime_percent, None, "nothing monitored");
    }

    #[test]
    fn events_become_spans_by_how_they_went() {
        let mut input = SlaInput {
            window: Some(span(0, 1000)),
            ..SlaInput::default()
        };
        // Seems Down confirmed: downtime from the first failure.
        add_event(
            &mut input,
            &EventHistory {
                started_us: 100 * S,
                states: vec![(100 * S, State::SeemsDown), (130 * S, State::Down)],
                closed: Some((200 * S, Reason::VerifierCleared)),
                critical: true,
                kind: EventKind::Availability,
            },
            1000 * S,
        );
        // A false alarm: not downtime, counted apart.
        add_event(
            &mut input,
            &EventHistory {
                started_us: 300 * S,
                states: vec![(300 * S, State::SeemsDown)],
                closed: Some((330 * S, Reason::FalseAlarm)),
                critical: true,
                kind: EventKind::Availability,
            },
            1000 * S,
        );
        // Still open Unknown.
        add_event(
            &mut input,
            &EventHistory {
                started_us: 900 * S,
                states: vec![(900 * S, State::Unknown)],
                closed: None,
                critical: true,
                kind: EventKind::Availability,
            },
            1000 * S,
        );
        // A non-critical check down: degraded.
        add_event(
            &mut input,
            &EventHistory {
                started_us: 400 * S,
                states: vec![(400 * S, State::SeemsDown), (420 * S, State::Down)],
                closed: Some((500 * S, Reason::VerifierCleared)),
                critical: false,
                kind: EventKind::Availability,
            },
            1000 * S,
        );
        let sla = compute(&input);
        assert_eq!(sla.downtime_seconds, 100.0);
        assert_eq!(sla.unknown_seconds, 100.0);
        assert_eq!(sla.degraded_seconds, 100.0);
        assert_eq!((sla.incidents, sla.false_alarms), (1, 1));
    }

    /// states-and-events.md: a certificate that warns for 30 days and then expires is 30
    /// days of Warning (7 of them Degraded) and no downtime of its own; the expiry is
    /// downtime through the failing HTTP check's event, from its first failure: one incident.
    #[test]
    fn an_expiring_certificate_is_downtime_only_through_the_http_failure() {
        const DAY: u64 = 86_400;
        let expiry = 30 * DAY;
        let (from, to) = (0, 31 * DAY);
        let mut input = SlaInput {
            window: Some(span(from, to)),
            ..SlaInput::default()
        };
        add_event(
            &mut input,
            &EventHistory {
                started_us: 0,
                states: vec![
                    (0, State::Warning),
                    ((expiry - 7 * DAY) * S, State::Degraded),
                    (expiry * S, State::Down),
                ],
                closed: Some(((expiry + DAY / 2) * S, Reason::ProbeCleared)),
                critical: true,
                kind: EventKind::TlsExpiry,
            },
            to * S,
        );
        // The HTTP check fails from the expiry (tls_cert_expired) until the renewal.
        let http_fail = expiry + 60;
        add_event(
            &mut input,
            &EventHistory {
                started_us: http_fail * S,
                states: vec![
                    (http_fail * S, State::SeemsDown),
                    ((http_fail + 30) * S, State::Down),
                ],
                closed: Some(((expiry + DAY / 2) * S, Reason::VerifierCleared)),
                critical: true,
                kind: EventKind::Availability,
            },
            to * S,
        );
        let sla = compute(&input);
        assert_eq!(sla.downtime_seconds, (DAY / 2 - 60) as f64);
        assert_eq!(sla.incidents, 1, "the certificate is not a second incident");
        assert_eq!(sla.warning_seconds, (23 * DAY) as f64);
        assert_eq!(sla.degraded_seconds, (7 * DAY + 60) as f64);
        assert_eq!(sla.mttr_seconds, Some((DAY / 2 - 60) as f64));
    }

    #[test]
    fn histograms_merge_without_a_cap() {
        let a = Hist::from_values((1..=1000u32).map(|v| v * 100));
        let b = Hist::from_values((1..=1000u32).map(|v| v * 1000));
        let p = percentiles([&a, &b]).expect("p");
        assert_eq!(p.count, 2000);
        assert!(p.max_us >= 990_000);
        assert!(p.p50_us > 50_000 && p.p50_us < 110_000, "{p:?}");
        assert_eq!(percentiles(std::iter::empty()), None);
    }

    fn spans() -> impl Strategy<Value = Vec<Span>> {
        prop::collection::vec(
            (0u64..120, 0u64..40).prop_map(|(a, l)| span(a, a + l)),
            0..6,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Against a brute-force model: classify every second of the window by precedence.
        #[test]
        fn matches_a_second_by_second_model(
            paused in spans(), maintenance in spans(), unknown in spans(),
            down in spans(), degraded in spans(), warning in spans(),
            from in 0u64..50, len in 0u64..120,
        ) {
            let input = SlaInput {
                window: Some(span(from, from + len)),
                paused: paused.clone(), maintenance: maintenance.clone(), unknown: unknown.clone(),
                down: down.clone(), degraded: degraded.clone(), warning: warning.clone(),
                ..SlaInput::default()
            };
            let sla = compute(&input);
            let inside = |v: &[Span], t: u64| v.iter().any(|s| s.from_us <= t * S && t * S < s.to_us);
            let mut count = [0u64; 7];
            for t in from..from + len {
                let class = if inside(&paused, t) { 0 }
                    else if inside(&maintenance, t) { 1 }
                    else if inside(&unknown, t) { 2 }
                    else if inside(&down, t) { 3 }
                    else if inside(&degraded, t) { 4 }
                    else if inside(&warning, t) { 5 }
                    else { 6 };
                count[class] += 1;
            }
            prop_assert_eq!(sla.paused_seconds, count[0] as f64);
            prop_assert_eq!(sla.maintenance_seconds, count[1] as f64);
            prop_assert_eq!(sla.unknown_seconds, count[2] as f64);
            prop_assert_eq!(sla.downtime_seconds, count[3] as f64);
            prop_assert_eq!(sla.degraded_seconds, count[4] as f64);
            prop_assert_eq!(sla.warning_seconds, count[5] as f64);
            let monitored = len - count[0] - count[1] - count[2];
            prop_assert_eq!(sla.monitored_seconds, monitored as f64);
            if monitored > 0 {
                let expected = 100.0 * (monitored - count[3]) as f64 / monitored as f64;
                prop_assert!((sla.uptime_percent.unwrap_or(-1.0) - expected).abs() < 1e-9);
            } else {
                prop_assert_eq!(sla.uptime_percent, None);
            }
        }
    }

    /// A random event history: when it started, the states it went through (offsets and
    /// states), how it ended, whether its check is critical.
    fn histories() -> impl Strategy<Value = Vec<EventHistory>> {
        let state = prop::sample::select(vec![
            State::SeemsDown,
            State::Down,
            State::Degraded,
            State::Warning,
            State::Unknown,
            State::Maintenance,
            State::Paused,
        ]);
        let reason = prop::sample::select(vec![
            Reason::FalseAlarm,
            Reason::ProbeCleared,
            Reason::VerifierCleared,
            Reason::ManualOverride,
        ]);
        // Availability events go through every state; the other kinds (certificate expiry,
        // performance, advisories) through Warning, Degraded and Down.
        let kind = prop::sample::select(vec![
            EventKind::Availability,
            EventKind::Availability,
            EventKind::TlsExpiry,
            EventKind::Performance,
            EventKind::Advisory,
        ]);
        let event = (
            0u64..150,
            prop::collection::vec((1u64..30, state), 1..4),
            prop::option::of((1u64..60, reason)),
            any::<bool>(),
            kind,
        )
            .prop_map(|(start, steps, closed, critical, kind)| {
                let mut at = start;
                let mut states = Vec::new();
                for (i, (gap, st)) in steps.into_iter().enumerate() {
                    if i > 0 {
                        at += gap;
                    }
                    let st = match st {
                        _ if kind == EventKind::Availability => st,
                        State::Down | State::SeemsDown => State::Down,
                        State::Degraded | State::Unknown => State::Degraded,
                        _ => State::Warning,
                    };
                    states.push((at * S, st));
                }
                EventHistory {
                    started_us: start * S,
                    closed: closed.map(|(after, r)| ((at + after) * S, r)),
                    states,
                    critical,
                    kind,
                }
            });
        prop::collection::vec(event, 0..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whole event histories against a second-by-second model that reads the events
        /// directly: overlapping events are a union, Paused/Maintenance/Unknown are not
        /// monitored time, a Down event counts from its first failure, Seems Down that did not
        /// reach Down is not downtime, a non-critical check's Down is Degraded.
        #[test]
        fn event_histories_match_a_second_by_second_model(
            events in histories(), from in 0u64..100, len in 0u64..200,
        ) {
            let now = 260;
            let mut input = SlaInput {
                window: Some(span(from, from + len)),
                ..SlaInput::default()
            };
            for e in &events {
                add_event(&mut input, e, now * S);
            }
            let sla = compute(&input);
            // 0 paused, 1 maintenance, 2 unknown, 3 down, 4 degraded, 5 warning, 6 up.
            let class_of = |e: &EventHistory, t: u64| -> Option<usize> {
                let end = e.closed.map_or(now * S, |(at, _)| at);
                if t * S < e.started_us || t * S >= end {
                    return None;
                }
                let availability = e.kind == EventKind::Availability;
                if availability && e.states.iter().any(|(_, s)| *s == State::Down) {
                    return Some(if e.critical { 3 } else { 4 });
                }
                let (_, st) = e.states.iter().rev().find(|(at, _)| *at <= t * S)?;
                match st {
                    // Downtime comes only from availability.
                    State::Down | State::SeemsDown if !availability => Some(4),
                    State::Paused => Some(0),
                    State::Maintenance => Some(1),
                    State::Unknown => Some(2),
                    State::Degraded => Some(4),
                    State::Warning => Some(5),
                    _ => None,
                }
            };
            let mut count = [0u64; 7];
            for t in from..from + len {
                let class = events.iter().filter_map(|e| class_of(e, t)).min().unwrap_or(6);
                count[class] += 1;
            }
            prop_assert_eq!(sla.paused_seconds, count[0] as f64);
            prop_assert_eq!(sla.maintenance_seconds, count[1] as f64);
            prop_assert_eq!(sla.unknown_seconds, count[2] as f64);
            prop_assert_eq!(sla.downtime_seconds, count[3] as f64);
            prop_assert_eq!(sla.degraded_seconds, count[4] as f64);
            prop_assert_eq!(sla.warning_seconds, count[5] as f64);
            let monitored = len - count[0] - count[1] - count[2];
            prop_assert_eq!(sla.monitored_seconds, monitored as f64);
            // Incidents: critical events that reached Down and overlap the window.
            let overlaps = |e: &EventHistory| {
                let end = e.closed.map_or(u64::MAX, |(at, _)| at);
                e.started_us < (from + len) * S && end > from * S
            };
            let reached = |e: &EventHistory| {
                e.kind == EventKind::Availability && e.states.iter().any(|(_, s)| *s == State::Down)
            };
            let incidents = events.iter().filter(|e| e.critical && reached(e) && overlaps(e)).count();
            prop_assert_eq!(sla.incidents as usize, incidents);
            let false_alarms = events
                .iter()
                .filter(|e| {
                    e.kind == EventKind::Availability
                        && !reached(e)
                        && matches!(e.closed, Some((_, Reason::FalseAlarm)))
                        && overlaps(e)
                })
                .count();
            prop_assert_eq!(sla.false_alarms as usize, false_alarms);
            if monitored > 0 {
                let expected = 100.0 * (monitored - count[3]) as f64 / monitored as f64;
                prop_assert!((sla.uptime_percent.unwrap_or(-1.0) - expected).abs() < 1e-9);
                if incidents > 0 {
                    let mtbf = (monitored - count[3]) as f64 / incidents as f64;
                    prop_assert!((sla.mtbf_seconds.unwrap_or(-1.0) - mtbf).abs() < 1e-9);
                }
            } else {
                prop_assert_eq!(sla.uptime_percent, None);
            }
        }
    }
}
