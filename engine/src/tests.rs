use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const S: u64 = 1_000_000;
const T0: u64 = 1_795_996_800 * S; // a Monday, 00:00 UTC

fn cfg(check_id: u64, site_id: u64) -> CheckConfig {
    CheckConfig {
        check_id,
        site_id,
        interval_ms: 60_000,
        retries: 2,
        retry_spacing_ms: 10_000,
        critical: true,
        paused: false,
        maintenance: Vec::new(),
        thresholds: Default::default(),
    }
}

fn result(check_id: u64, outcome: Outcome, at_us: u64, origin: ProbeOrigin) -> Input {
    Input::Result(ResultIn {
        check_id,
        outcome,
        at_us,
        origin,
        cert_not_after_s: 0,
        ttfb_us: 0,
        total_us: 0,
        flags: 0,
    })
}

fn engine(verifliers: usize) -> Engine {
    Engine::new(EventIds { next: 1, stride: 1 }, verifliers)
}

/// Applies inputs in order, each at its own time; returns every effect.
fn run(e: &mut Engine, inputs: &[(u64, Input)]) -> Vec<Effect> {
    let mut out = Vec::new();
    for (at, input) in inputs {
        e.apply(input.clone(), *at, &mut out);
    }
    out
}

fn transitions(effects: &[Effect]) -> Vec<&Transition> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Transition(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn summary(effects: &[Effect]) -> Vec<(EventKind, Option<State>, Option<State>, Reason)> {
    transitions(effects)
        .iter()
        .map(|t| {
            (
                t.identity.kind,
                t.before.map(|b| b.0),
                t.after.map(|a| a.0),
                t.reason,
            )
        })
        .collect()
}

#[test]
fn failure_rechecks_then_confirms_locally_without_verifliers() {
    let mut e = engine(0);
    let mut out = run(&mut e, &[(T0, Input::Configure(cfg(1, 10)))]);
    out.clear();
    out = run(
        &mut e,
        &[(
            T0 + S,
            result(1, Outcome::HttpStatus, T0 + S, ProbeOrigin::Scheduled),
        )],
    );
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Availability,
            None,
            Some(State::SeemsDown),
            Reason::Opened
        )]
    );
    assert!(out.contains(&Effect::Recheck {
        check_id: 1,
        count: 2,
        spacing_ms: 10_000
    }));
    let p = e.projection(10).expect("projection");
    assert_eq!((p.state, p.site_status), (State::SeemsDown, 0));
    let out = run(
        &mut e,
        &[
            (
                T0 + 11 * S,
                result(1, Outcome::HttpStatus, T0 + 11 * S, ProbeOrigin::Recheck),
            ),
            (
                T0 + 21 * S,
                result(1, Outcome::HttpStatus, T0 + 21 * S, ProbeOrigin::Recheck),
            ),
        ],
    );
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Availability,
            Some(State::SeemsDown),
            Some(State::Down),
            Reason::VerifierConfirmed
        )]
    );
    let t = transitions(&out)[0];
    assert_eq!(
        t.started_at_us,
        T0 + S,
        "duration counts from the first failure"
    );
    assert_eq!(e.projection(10).map(|p| p.site_status), Some(2));
    // Recovery: one success closes it.
    let out = run(
        &mut e,
        &[(
            T0 + 81 * S,
            result(1, Outcome::Ok, T0 + 81 * S, ProbeOrigin::Scheduled),
        )],
    );
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Availability,
            Some(State::Down),
            None,
            Reason::VerifierCleared
        )]
    );
    let p = e.projection(10).expect("projection");
    assert_eq!(
        (p.state, p.active_event_count, p.site_status),
        (State::Up, 0, 1)
    );
}

#[test]
fn a_success_during_rechecks_is_probe_cleared() {
    let mut e = engine(0);
    let out = run(
        &mut e,
        &[
            (T0, Input::Configure(cfg(1, 10))),
            (
                T0 + S,
                result(1, Outcome::TimeoutTtfb, T0 + S, ProbeOrigin::Scheduled),
            ),
            (
                T0 + 11 * S,
                result(1, Outcome::Ok, T0 + 11 * S, ProbeOrigin::Recheck),
            ),
        ],
    );
    assert_eq!(
        summary(&out),
        vec![
            (
                EventKind::Availability,
                None,
                Some(State::SeemsDown),
                Reason::Opened
            ),
            (
                EventKind::Availability,
                Some(State::SeemsDown),
                None,
                Reason::ProbeCleared
            ),
        ]
    );
}

#[test]
fn verifliers_confirm_or_call_a_false_alarm() {
    let mut e = engine(2);
    let mut inputs = vec![
        (T0, Input::Configure(cfg(1, 10))),
        (T0, Input::Configure(cfg(2, 20))),
    ];
    for check in [1, 2] {
        inputs.push((
            T0 + S,
            result(check, Outcome::ConnRefused, T0 + S, ProbeOrigin::Scheduled),
        ));
        inputs.push((
            T0 + 11 * S,
            result(
                check,
                Outcome::ConnRefused,
                T0 + 11 * S,
                ProbeOrigin::Recheck,
            ),
        ));
        inputs.push((
            T0 + 21 * S,
            result(
                check,
                Outcome::ConnRefused,
                T0 + 21 * S,
                ProbeOrigin::Recheck,
            ),
        ));
    }
    let out = run(&mut e, &inputs);
    let verifies: Vec<_> = out
        .iter()
        .filter_map(|x| match x {
            Effect::Verify { check_id, event_id } => Some((*check_id, *event_id)),
            _ => None,
        })
        .collect();
    assert_eq!(verifies.len(), 2, "one verification per event: {out:?}");
    let verdict = |(check_id, event_id): (u64, u64), down_votes| {
        Input::Verified(Verdict {
            check_id,
            event_id,
            down_votes,
            quorum: 2,
            source: "v1,v2".into(),
            votes: Vec::new(),
        })
    };
    let out = run(
        &mut e,
        &[
            (T0 + 25 * S, verdict(verifies[0], 2)),
            (T0 + 25 * S, verdict(verifies[1], 1)),
        ],
    );
    assert_eq!(
        summary(&out),
        vec![
            (
                EventKind::Availability,
                Some(State::SeemsDown),
                Some(State::Down),
                Reason::VerifierConfirmed
            ),
            (
                EventKind::Availability,
                Some(State::SeemsDown),
                None,
                Reason::FalseAlarm
            ),
        ]
    );
    // A late verdict about a closed incident changes nothing.
    let out = run(&mut e, &[(T0 + 30 * S, verdict(verifies[1], 2))]);
    assert!(transitions(&out).is_empty());
}

#[test]
fn monitor_side_outcomes_are_unknown_never_down() {
    let mut e = engine(0);
    let mut inputs = vec![(T0, Input::Configure(cfg(1, 10)))];
    for i in 1..10 {
        inputs.push((
            T0 + i * S,
            result(
                1,
                Outcome::ResolverUnavailable,
                T0 + i * S,
                ProbeOrigin::Scheduled,
            ),
        ));
    }
    inputs.push((
        T0 + 20 * S,
        result(
            1,
            Outcome::ProberRestart,
            T0 + 20 * S,
            ProbeOrigin::Scheduled,
        ),
    ));
    let out = run(&mut e, &inputs);
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Unknown,
            None,
            Some(State::Unknown),
            Reason::Opened
        )],
        "one Unknown event, opened once"
    );
    assert_eq!(
        e.projection(10).map(|p| (p.state, p.site_status)),
        Some((State::Unknown, 1))
    );
    let out = run(
        &mut e,
        &[(
            T0 + 30 * S,
            result(1, Outcome::Ok, T0 + 30 * S, ProbeOrigin::Scheduled),
        )],
    );
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Unknown,
            Some(State::Unknown),
            None,
            Reason::ProbeCleared
        )]
    );
}

#[test]
fn silence_for_two_intervals_is_unknown() {
    let mut e = engine(0);
    let out = run(
        &mut e,
        &[
            (T0, Input::Configure(cfg(1, 10))),
            (
                T0 + 60 * S,
                result(1, Outcome::Ok, T0 + 60 * S, ProbeOrigin::Scheduled),
            ),
            (T0 + 150 * S, Input::Tick),
            (T0 + 181 * S, Input::Tick),
            (T0 + 200 * S, Input::Tick),
        ],
    );
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Unknown,
            None,
            Some(State::Unknown),
            Reason::Opened
        )]
    );
    assert_eq!(
        transitions(&out)[0].started_at_us,
        T0 + 60 * S,
        "Unknown since the last result"
    );
}

#[test]
fn maintenance_swallows_failures_and_a_failure_outliving_it_is_an_incident() {
    let mut e = engine(0);
    let mut c = cfg(1, 10);
    c.maintenance = vec![Window::OneOff {
        from_us: T0,
        to_us: T0 + 100 * S,
    }];
    let out = run(
        &mut e,
        &[
            (T0, Input::Configure(c)),
            (
                T0 + S,
                result(1, Outcome::HttpStatus, T0 + S, ProbeOrigin::Scheduled),
            ),
            (
                T0 + 61 * S,
                result(1, Outcome::HttpStatus, T0 + 61 * S, ProbeOrigin::Scheduled),
            ),
            (
                T0 + 121 * S,
                result(1, Outcome::HttpStatus, T0 + 121 * S, ProbeOrigin::Scheduled),
            ),
        ],
    );
    assert_eq!(
        summary(&out),
        vec![
            (
                EventKind::Availability,
                None,
                Some(State::Maintenance),
                Reason::MaintenanceSwallowed
            ),
            (
                EventKind::Availability,
                Some(State::Maintenance),
                Some(State::SeemsDown),
                Reason::StateChange
            ),
        ]
    );
    assert!(out.iter().any(|x| matches!(x, Effect::Recheck { .. })));
}

#[test]
fn pause_closes_what_was_open_and_results_in_flight_are_ignored() {
    let mut e = engine(0);
    let mut paused = cfg(1, 10);
    paused.paused = true;
    let out = run(
        &mut e,
        &[
            (T0, Input::Configure(cfg(1, 10))),
            (
                T0 + S,
                result(1, Outcome::HttpStatus, T0 + S, ProbeOrigin::Scheduled),
            ),
            (T0 + 2 * S, Input::Configure(paused)),
            (
                T0 + 3 * S,
                result(1, Outcome::HttpStatus, T0 + 3 * S, ProbeOrigin::Recheck),
            ),
            (T0 + 500 * S, Input::Tick),
            (T0 + 600 * S, Input::Configure(cfg(1, 10))),
        ],
    );
    assert_eq!(
        summary(&out),
        vec![
            (
                EventKind::Availability,
                None,
                Some(State::SeemsDown),
                Reason::Opened
            ),
            (
                EventKind::Availability,
                Some(State::SeemsDown),
                None,
                Reason::ManualOverride
            ),
            (EventKind::Paused, None, Some(State::Paused), Reason::Opened),
            (
                EventKind::Paused,
                Some(State::Paused),
                None,
                Reason::ManualOverride
            ),
        ]
    );
}

#[test]
fn certificate_expiry_walks_the_thresholds_and_renewal_closes() {
    let mut e = engine(0);
    let now_s = (T0 / S) as i64;
    let day = 86_400;
    let https = |at: u64, not_after: i64| {
        Input::Result(ResultIn {
            check_id: 1,
            outcome: Outcome::Ok,
            at_us: at,
            origin: ProbeOrigin::Scheduled,
            cert_not_after_s: not_after,
            ttfb_us: 0,
            total_us: 0,
            flags: 0,
        })
    };
    let out = run(
        &mut e,
        &[
            (T0, Input::Configure(cfg(1, 10))),
            (T0, https(T0, now_s + 60 * day)),
            (T0, https(T0, now_s + 29 * day)),
            (T0, https(T0, now_s + 13 * day)),
            (T0, https(T0, now_s + 6 * day)),
            (T0, https(T0, now_s - 1)),
            (T0, https(T0, now_s + 90 * day)),
        ],
    );
    let tls: Vec<_> = summary(&out)
        .into_iter()
        .filter(|s| s.0 == EventKind::TlsExpiry)
        .collect();
    assert_eq!(
        tls,
        vec![
            (
                EventKind::TlsExpiry,
                None,
                Some(State::Warning),
                Reason::Opened
            ),
            (
                EventKind::TlsExpiry,
                Some(State::Warning),
                Some(State::Warning),
                Reason::SeverityEscalation
            ),
            (
                EventKind::TlsExpiry,
                Some(State::Warning),
                Some(State::Degraded),
                Reason::SeverityEscalation
            ),
            (
                EventKind::TlsExpiry,
                Some(State::Degraded),
                Some(State::Down),
                Reason::SeverityEscalation
            ),
            (
                EventKind::TlsExpiry,
                Some(State::Down),
                None,
                Reason::ProbeCleared
            ),
        ]
    );
    assert_eq!(
        e.projection(10).and_then(|p| p.ssl_expiry_s),
        Some(now_s + 90 * day)
    );
}

#[test]
fn a_non_critical_check_down_degrades_its_site() {
    let mut e = engine(0);
    let mut login = cfg(2, 10);
    login.critical = false;
    login.retries = 0;
    let out = run(
        &mut e,
        &[
            (T0, Input::Configure(cfg(1, 10))),
            (T0, Input::Configure(login)),
            (
                T0 + S,
                result(2, Outcome::HttpStatus, T0 + S, ProbeOrigin::Scheduled),
            ),
        ],
    );
    assert!(summary(&out).contains(&(
        EventKind::Availability,
        Some(State::SeemsDown),
        Some(State::Down),
        Reason::VerifierConfirmed
    )));
    let p = e.projection(10).expect("projection");
    assert_eq!(
        (p.state, p.site_status, p.active_event_count),
        (State::Degraded, 1, 1)
    );
}

// ---- properties -------------------------------------------------------------------------

/// An event rebuilt from transitions alone.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rebuilt {
    identity: Identity,
    state: State,
    severity: Severity,
    started_at_us: u64,
    closed: bool,
}

/// Replays transitions into events, checking the invariants on the way: at most one open event
/// per identity, nothing after a close, `started_at` never moves, `before` matches the event.
fn replay(effects: &[Effect]) -> BTreeMap<u64, Rebuilt> {
    let mut events: BTreeMap<u64, Rebuilt> = BTreeMap::new();
    for t in transitions(effects) {
        match (events.get_mut(&t.event_id), t.before) {
            (None, None) => {
                let clash = events
                    .values()
                    .any(|e| !e.closed && e.identity == t.identity);
                assert!(!clash, "a second open event for {:?}", t.identity);
                let (state, severity) = t.after.expect("an opening has an after-state");
                events.insert(
                    t.event_id,
                    Rebuilt {
                        identity: t.identity,
                        state,
                        severity,
                        started_at_us: t.started_at_us,
                        closed: false,
                    },
                );
            }
            (Some(e), Some(before)) => {
                assert!(!e.closed, "transition on closed event {}", t.event_id);
                assert_eq!(
                    (e.state, e.severity),
                    before,
                    "before-state of {}",
                    t.event_id
                );
                assert_eq!(e.started_at_us, t.started_at_us, "started_at moved");
                assert_eq!(e.identity, t.identity);
                match t.after {
                    Some((s, sev)) => (e.state, e.severity) = (s, sev),
                    None => e.closed = true,
                }
            }
            (None, Some(_)) => panic!("transition on unknown event {}", t.event_id),
            (Some(_), None) => panic!("event {} opened twice", t.event_id),
        }
    }
    events
}

fn outcome_strategy() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Ok),
        3 => Just(Outcome::HttpStatus),
        1 => Just(Outcome::TimeoutTtfb),
        1 => Just(Outcome::ResolverUnavailable),
        1 => Just(Outcome::TlsDeprecated),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Result {
        check: u64,
        outcome: Outcome,
        recheck: bool,
        cert_days: Option<i64>,
        /// Time to first byte and total, ms.
        ttfb_ms: u32,
        total_ms: u32,
    },
    Verify {
        check: u64,
        down_votes: u8,
    },
    Pause {
        check: u64,
        paused: bool,
    },
    Tick,
}

fn step_strategy(checks: u64) -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => (1..=checks, outcome_strategy(), any::<bool>(), prop::option::weighted(0.2, -5i64..60), 0u32..400, 0u32..400)
            .prop_map(|(check, outcome, recheck, cert_days, ttfb_ms, extra_ms)| Step::Result {
                check, outcome, recheck, cert_days, ttfb_ms, total_ms: ttfb_ms + extra_ms,
            }),
        2 => (1..=checks, 0u8..4).prop_map(|(check, down_votes)| Step::Verify { check, down_votes }),
        1 => (1..=checks, any::<bool>()).prop_map(|(check, paused)| Step::Pause { check, paused }),
        1 => Just(Step::Tick),
    ]
}

/// The property tests' checks: check c belongs to site c % 3, and odd checks have
/// response-time thresholds (so `performance` events come and go).
fn prop_cfg(c: u64) -> CheckConfig {
    let mut cfg = cfg(c, c % 3);
    if c % 2 == 1 {
        cfg.thresholds = Thresholds {
            ttfb_warn_ms: 150,
            ttfb_degrade_ms: 300,
            total_warn_ms: 400,
            total_degrade_ms: 0,
        };
    }
    cfg
}

/// Turns steps into timed inputs (5 s apart); checks 1..=n (`prop_cfg`).
fn inputs(e: &Engine, steps: &[Step], n: u64) -> Vec<(u64, Input)> {
    let mut out: Vec<(u64, Input)> = (1..=n)
        .map(|c| (T0, Input::Configure(prop_cfg(c))))
        .collect();
    let mut at = T0;
    for s in steps {
        at += 5 * S;
        let input = match s {
            Step::Result {
                check,
                outcome,
                recheck,
                cert_days,
                ttfb_ms,
                total_ms,
            } => Input::Result(ResultIn {
                check_id: *check,
                outcome: *outcome,
                at_us: at,
                origin: if *recheck {
                    ProbeOrigin::Recheck
                } else {
                    ProbeOrigin::Scheduled
                },
                cert_not_after_s: cert_days.map_or(0, |d| (at / S) as i64 + d * 86_400),
                ttfb_us: ttfb_ms * 1000,
                total_us: total_ms * 1000,
                flags: 0,
            }),
            Step::Verify { check, down_votes } => {
                // Ask about whatever is open now (possibly nothing: a late verdict).
                let event_id = e
                    .open_events(*check)
                    .find(|(k, _)| *k == EventKind::Availability)
                    .map_or(0, |(_, ev)| ev.id);
                Input::Verified(Verdict {
                    check_id: *check,
                    event_id,
                    down_votes: *down_votes,
                    quorum: 2,
                    source: "v".into(),
                    votes: Vec::new(),
                })
            }
            Step::Pause { check, paused } => {
                let mut c = prop_cfg(*check);
                c.paused = *paused;
                Input::Configure(c)
            }
            Step::Tick => Input::Tick,
        };
        out.push((at, input));
    }
    out
}

/// Runs steps one by one (verdicts refer to the engine's state at that point).
fn drive(verifliers: usize, steps: &[Step], n: u64) -> (Engine, Vec<Effect>) {
    let mut e = engine(verifliers);
    let mut effects = Vec::new();
    let configure = inputs(&e, &[], n);
    for (at, input) in configure {
        e.apply(input, at, &mut effects);
    }
    for (i, s) in steps.iter().enumerate() {
        let timed = inputs(&e, std::slice::from_ref(s), n);
        let (_, input) = timed.last().cloned().expect("one input");
        let at = T0 + (i as u64 + 1) * 5 * S;
        e.apply(input, at, &mut effects);
    }
    (e, effects)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn replaying_transitions_rebuilds_every_open_event(
        steps in prop::collection::vec(step_strategy(4), 0..120),
        verifliers in 0usize..3,
    ) {
        let (e, effects) = drive(verifliers, &steps, 4);
        let rebuilt = replay(&effects);
        let mut from_engine = BTreeMap::new();
        for check in 1..=4u64 {
            for (kind, ev) in e.open_events(check) {
                from_engine.insert(ev.id, (Identity { site_id: check % 3, check_id: check, kind }, ev.state, ev.severity, ev.started_at_us));
            }
        }
        let from_log: BTreeMap<u64, _> = rebuilt
            .iter()
            .filter(|(_, r)| !r.closed)
            .map(|(id, r)| (*id, (r.identity, r.state, r.severity, r.started_at_us)))
            .collect();
        prop_assert_eq!(&from_engine, &from_log);
        // Unknown, Paused and Maintenance are never Down.
        for t in transitions(&effects) {
            if matches!(t.identity.kind, EventKind::Unknown | EventKind::Paused) {
                prop_assert!(t.after.is_none_or(|(s, _)| s != State::Down && s != State::SeemsDown));
            }
        }
        // The projection agrees with the open events.
        for site in 0..3u64 {
            if let Some(p) = e.projection(site) {
                let open = from_engine.values().filter(|(i, ..)| i.site_id == site).count() as u32;
                prop_assert_eq!(p.active_event_count, open);
                prop_assert_eq!(p.site_status, p.state.legacy_site_status());
            }
        }
    }

    #[test]
    fn results_for_different_sites_commute(
        steps in prop::collection::vec(step_strategy(6), 0..80),
        seed in any::<u64>(),
    ) {
        // Only results and ticks: verdicts refer to ids, which depend on the global order.
        let steps: Vec<Step> = steps.into_iter().filter(|s| matches!(s, Step::Result { .. })).collect();
        let timed = inputs(&engine(0), &steps, 6);
        // Another order: a stable shuffle that keeps each site's inputs in their order.
        let mut by_site: BTreeMap<u64, Vec<(u64, Input)>> = BTreeMap::new();
        for (at, input) in &timed {
            let site = match input {
                Input::Configure(c) => c.site_id,
                Input::Result(r) => r.check_id % 3,
                _ => 99,
            };
            by_site.entry(site).or_default().push((*at, input.clone()));
        }
        let mut queues: Vec<std::collections::VecDeque<(u64, Input)>> = by_site.into_values().map(Into::into).collect();
        let mut shuffled = Vec::new();
        let mut rng = seed | 1;
        while queues.iter().any(|q| !q.is_empty()) {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            let live: Vec<usize> = (0..queues.len()).filter(|i| !queues[*i].is_empty()).collect();
            let pick = live[(rng % live.len() as u64) as usize];
            if let Some(x) = queues[pick].pop_front() { shuffled.push(x); }
        }
        let per_site = |inputs: &[(u64, Input)]| {
            let mut e = engine(0);
            let effects = run(&mut e, inputs);
            // Event ids depend on the global order: compare them renamed per site.
            let mut names: BTreeMap<(u64, u64), usize> = BTreeMap::new();
            let mut out: BTreeMap<u64, Vec<_>> = BTreeMap::new();
            for t in transitions(&effects) {
                let site = t.identity.site_id;
                let n = names.len();
                let name = *names.entry((site, t.event_id)).or_insert(n);
                out.entry(site).or_default().push((t.identity, name, t.before, t.after, t.reason, t.at_us));
            }
            // Names are per site in order of appearance.
            out.into_iter().map(|(site, ts)| {
                let mut local: BTreeMap<usize, usize> = BTreeMap::new();
                let ts: Vec<_> = ts.into_iter().map(|(i, n, b, a, r, at)| {
                    let k = local.len();
                    let l = *local.entry(n).or_insert(k);
                    (i, l, b, a, r, at)
                }).collect();
                (site, ts)
            }).collect::<BTreeMap<_, _>>()
        };
        prop_assert_eq!(per_site(&timed), per_site(&shuffled));
    }
}

fn timed(check_id: u64, outcome: Outcome, at_us: u64, ttfb_ms: u32, total_ms: u32) -> Input {
    Input::Result(ResultIn {
        check_id,
        outcome,
        at_us,
        origin: ProbeOrigin::Scheduled,
        cert_not_after_s: 0,
        ttfb_us: ttfb_ms * 1000,
        total_us: total_ms * 1000,
        flags: 0,
    })
}

fn slow_cfg() -> CheckConfig {
    let mut c = cfg(1, 10);
    c.thresholds = Thresholds {
        ttfb_warn_ms: 200,
        ttfb_degrade_ms: 0,
        total_warn_ms: 500,
        total_degrade_ms: 1000,
    };
    c
}

/// Feeds (ttfb, total) results a minute apart, from T0 + 1 min; returns the transitions'
/// summaries and the site's state after each result.
fn feed(e: &mut Engine, timings: &[(u32, u32)], from_min: u64) -> Vec<Effect> {
    let inputs: Vec<(u64, Input)> = timings
        .iter()
        .enumerate()
        .map(|(i, (ttfb, total))| {
            let at = T0 + (from_min + i as u64) * 60 * S;
            (at, timed(1, Outcome::Ok, at, *ttfb, *total))
        })
        .collect();
    run(e, &inputs)
}

#[test]
fn performance_opens_on_the_median_of_three_and_never_on_one_slow_probe() {
    let mut e = engine(0);
    run(&mut e, &[(T0, Input::Configure(slow_cfg()))]);
    // One slow probe among fast ones: the median never moves.
    let out = feed(
        &mut e,
        &[(50, 100), (900, 2000), (50, 100), (50, 100), (900, 2000)],
        1,
    );
    assert!(transitions(&out).is_empty(), "{:?}", summary(&out));
    assert_eq!(e.projection(10).map(|p| p.state), Some(State::Up));
    // Two slow in a row: the median of the last three is slow → Warning (ttfb over 200 ms).
    let out = feed(&mut e, &[(300, 400)], 6);
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Performance,
            None,
            Some(State::Warning),
            Reason::Opened
        )]
    );
    let t = transitions(&out)[0];
    assert!(
        t.detail.contains(&("median_ttfb_ms", 300)),
        "{:?}",
        t.detail
    );
    let p = e.projection(10).expect("projection");
    assert_eq!(
        (p.state, p.severity, p.site_status),
        (State::Warning, Severity::WARNING, 1)
    );
    // Totals over the degrade threshold → Degraded (an escalation of the same event).
    let out = feed(&mut e, &[(300, 1500), (300, 1500)], 7);
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Performance,
            Some(State::Warning),
            Some(State::Degraded),
            Reason::SeverityEscalation
        )]
    );
    assert_eq!(e.projection(10).map(|p| p.state), Some(State::Degraded));
    // One fast probe in a slow spell closes nothing; two bring the median back: closed.
    let out = feed(&mut e, &[(50, 100)], 9);
    assert!(transitions(&out).is_empty(), "{:?}", summary(&out));
    let out = feed(&mut e, &[(50, 100)], 10);
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Performance,
            Some(State::Degraded),
            None,
            Reason::ProbeCleared
        )]
    );
    assert_eq!(e.projection(10).map(|p| p.state), Some(State::Up));
}

#[test]
fn performance_steps_down_a_severity_and_ignores_failures() {
    let mut e = engine(0);
    run(&mut e, &[(T0, Input::Configure(slow_cfg()))]);
    let out = feed(&mut e, &[(100, 1500), (100, 1500), (100, 1500)], 1);
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Performance,
            None,
            Some(State::Degraded),
            Reason::Opened
        )]
    );
    // Failed results carry no timing worth judging: they change nothing here.
    let at = T0 + 4 * 60 * S;
    let out = run(&mut e, &[(at, timed(1, Outcome::HttpStatus, at, 5, 5))]);
    assert!(
        summary(&out).iter().all(|s| s.0 == EventKind::Availability),
        "{:?}",
        summary(&out)
    );
    // Totals between warn and degrade: back to Warning (a de-escalation).
    let out = feed(&mut e, &[(100, 700), (100, 700)], 5);
    assert_eq!(
        summary(&out),
        vec![
            (
                EventKind::Availability,
                Some(State::SeemsDown),
                None,
                Reason::ProbeCleared
            ),
            (
                EventKind::Performance,
                Some(State::Degraded),
                Some(State::Warning),
                Reason::SeverityDeescalation
            ),
        ]
    );
}

#[test]
fn performance_needs_thresholds_and_opens_nothing_in_maintenance() {
    // No thresholds: slow results are just slow.
    let mut e = engine(0);
    run(&mut e, &[(T0, Input::Configure(cfg(1, 10)))]);
    let out = feed(&mut e, &[(5000, 9000); 5], 1);
    assert!(transitions(&out).is_empty());
    // Inside a maintenance window nothing opens; after it, the slow spell does.
    let mut e = engine(0);
    let mut c = slow_cfg();
    c.maintenance = vec![Window::OneOff {
        from_us: T0,
        to_us: T0 + 10 * 60 * S,
    }];
    run(&mut e, &[(T0, Input::Configure(c))]);
    let out = feed(&mut e, &[(900, 900); 5], 1);
    assert!(
        !summary(&out).iter().any(|s| s.0 == EventKind::Performance),
        "{:?}",
        summary(&out)
    );
    let out = feed(&mut e, &[(900, 900)], 11);
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Performance,
            None,
            Some(State::Warning),
            Reason::Opened
        )]
    );
    // Changing the thresholds starts the judgement afresh: three results under the new
    // threshold close the event.
    let mut c = slow_cfg();
    c.thresholds = Thresholds {
        ttfb_warn_ms: 2000,
        ..Thresholds::default()
    };
    run(&mut e, &[(T0 + 12 * 60 * S, Input::Configure(c))]);
    let out = feed(&mut e, &[(900, 900), (900, 900)], 12);
    assert!(transitions(&out).is_empty(), "{:?}", summary(&out));
    let out = feed(&mut e, &[(900, 900)], 14);
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Performance,
            Some(State::Warning),
            None,
            Reason::ProbeCleared
        )]
    );
    // Taking the thresholds away closes what they opened.
    let out = feed(&mut e, &[(2500, 2500); 3], 15);
    assert_eq!(summary(&out).len(), 1, "{:?}", summary(&out));
    let at = T0 + 20 * 60 * S;
    let out = run(&mut e, &[(at, Input::Configure(cfg(1, 10)))]);
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Performance,
            Some(State::Warning),
            None,
            Reason::ManualOverride
        )]
    );
}

/// states-and-events.md: a healthy check inside an active window shows Maintenance in the
/// projection, from the window's start to its end, as ticks pass.
#[test]
fn a_healthy_check_in_an_active_window_shows_maintenance() {
    let mut e = engine(0);
    let mut c = cfg(1, 10);
    c.maintenance = vec![Window::OneOff {
        from_us: T0 + 100 * S,
        to_us: T0 + 200 * S,
    }];
    let state = |e: &Engine| e.projection(10).map(|p| (p.state, p.active_event_id));
    run(
        &mut e,
        &[
            (T0, Input::Configure(c)),
            (
                T0 + S,
                result(1, Outcome::Ok, T0 + S, ProbeOrigin::Scheduled),
            ),
            (T0 + 50 * S, Input::Tick),
        ],
    );
    assert_eq!(state(&e), Some((State::Up, None)));
    let out = run(&mut e, &[(T0 + 100 * S, Input::Tick)]);
    assert_eq!(state(&e), Some((State::Maintenance, None)));
    assert!(
        out.iter()
            .any(|x| matches!(x, Effect::Projection(p) if p.state == State::Maintenance)),
        "the projection is written when the window starts"
    );
    assert!(transitions(&out).is_empty(), "no event for a healthy check");
    run(
        &mut e,
        &[(
            T0 + 120 * S,
            result(1, Outcome::Ok, T0 + 120 * S, ProbeOrigin::Scheduled),
        )],
    );
    assert_eq!(state(&e), Some((State::Maintenance, None)));
    // A failure inside is its Maintenance event, which becomes the active one.
    run(
        &mut e,
        &[(
            T0 + 130 * S,
            result(1, Outcome::HttpStatus, T0 + 130 * S, ProbeOrigin::Scheduled),
        )],
    );
    let p = e.projection(10).expect("projection");
    assert_eq!(p.state, State::Maintenance);
    assert!(p.active_event_id.is_some());
    run(
        &mut e,
        &[
            (
                T0 + 140 * S,
                result(1, Outcome::Ok, T0 + 140 * S, ProbeOrigin::Scheduled),
            ),
            (T0 + 200 * S, Input::Tick),
        ],
    );
    assert_eq!(state(&e), Some((State::Up, None)), "the window is over");
}

/// states-and-events.md: `tls_deprecated` and redirect policy `alert` open an `advisory`
/// event in Warning (the site shows Warning, never Down); the first passing result without an
/// advisory closes it; an advisory never touches availability.
#[test]
fn advisories_are_warning_events_not_up() {
    let mut e = engine(0);
    let alert = |at: u64| {
        Input::Result(ResultIn {
            flags: jetmon_shared::frames::FLAG_REDIRECT_ALERT,
            ..match result(1, Outcome::Ok, at, ProbeOrigin::Scheduled) {
                Input::Result(r) => r,
                _ => unreachable!(),
            }
        })
    };
    let out = run(
        &mut e,
        &[
            (T0, Input::Configure(cfg(1, 10))),
            (
                T0 + S,
                result(1, Outcome::TlsDeprecated, T0 + S, ProbeOrigin::Scheduled),
            ),
        ],
    );
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Advisory,
            None,
            Some(State::Warning),
            Reason::Opened
        )]
    );
    let t = transitions(&out)[0];
    assert!(
        t.detail
            .contains(&("reason", advisory_reason::TLS_DEPRECATED)),
        "{:?}",
        t.detail
    );
    let p = e.projection(10).expect("projection");
    assert_eq!((p.state, p.site_status), (State::Warning, 1));
    // Still deprecated: nothing new; the same event stays open.
    let out = run(
        &mut e,
        &[(
            T0 + 61 * S,
            result(
                1,
                Outcome::TlsDeprecated,
                T0 + 61 * S,
                ProbeOrigin::Scheduled,
            ),
        )],
    );
    assert!(transitions(&out).is_empty());
    // Upgraded: closed probe_cleared, the site is Up.
    let out = run(
        &mut e,
        &[(
            T0 + 121 * S,
            result(1, Outcome::Ok, T0 + 121 * S, ProbeOrigin::Scheduled),
        )],
    );
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Advisory,
            Some(State::Warning),
            None,
            Reason::ProbeCleared
        )]
    );
    assert_eq!(e.projection(10).expect("projection").state, State::Up);
    // A redirect chain that ended elsewhere under policy alert: the same kind of event.
    let out = run(&mut e, &[(T0 + 181 * S, alert(T0 + 181 * S))]);
    let t = transitions(&out)[0];
    assert_eq!(
        (t.identity.kind, t.after.map(|a| a.0)),
        (EventKind::Advisory, Some(State::Warning))
    );
    assert!(
        t.detail
            .contains(&("reason", advisory_reason::REDIRECT_ALERT))
    );
    // A failure meanwhile is availability's business; the advisory stays as it was.
    let out = run(
        &mut e,
        &[(
            T0 + 241 * S,
            result(1, Outcome::HttpStatus, T0 + 241 * S, ProbeOrigin::Scheduled),
        )],
    );
    assert_eq!(
        summary(&out),
        vec![(
            EventKind::Availability,
            None,
            Some(State::SeemsDown),
            Reason::Opened
        )]
    );
}
