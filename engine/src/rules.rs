//! The rules a result or a verdict applies to one check's open events: site failures (Seems
//! Down, re-checks, escalation to the verifliers), performance and advisory warnings,
//! certificate expiry, and the three moves every rule is made of — open, change, close — each
//! of which emits its transition. Pure functions over a `CheckEntry`; the engine (lib.rs)
//! finds the entry, calls them, and projects the site afterwards.

use super::*;

/// `advisory` events: Warning while passing results carry an advisory, closed
/// (`probe_cleared`) by the first passing result without one. Never downtime; nothing opens
/// inside a maintenance window.
pub(crate) fn advisory(
    entry: &mut CheckEntry,
    r: &ResultIn,
    in_maintenance: bool,
    now_us: u64,
    take_id: &mut impl FnMut() -> u64,
    out: &mut Vec<Effect>,
) {
    let reason = if r.outcome == Outcome::TlsDeprecated {
        Some(advisory_reason::TLS_DEPRECATED)
    } else if r.flags & jetmon_shared::frames::FLAG_REDIRECT_ALERT != 0 {
        Some(advisory_reason::REDIRECT_ALERT)
    } else {
        None
    };
    let open_now = entry.open.contains_key(&EventKind::Advisory);
    match reason {
        None if open_now => close_with(
            entry,
            EventKind::Advisory,
            Reason::ProbeCleared,
            Source::Local,
            now_us,
            vec![("outcome", i64::from(r.outcome.code()))],
            out,
        ),
        Some(reason) if !open_now && !in_maintenance => {
            let id = take_id();
            open(
                entry,
                id,
                EventKind::Advisory,
                State::Warning,
                Severity::WARNING,
                r.at_us,
                now_us,
                Source::Local,
                Reason::Opened,
                vec![("reason", reason), ("outcome", i64::from(r.outcome.code()))],
                out,
            );
        }
        _ => {}
    }
}

/// A site-side failure: Seems Down (re-checks first, then the verifliers), swallowed into
/// Maintenance inside a window, confirmed once the first failure and every re-check failed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn site_failure(
    entry: &mut CheckEntry,
    r: &ResultIn,
    in_maintenance: bool,
    verifliers: usize,
    source: Source,
    now_us: u64,
    take_id: &mut impl FnMut() -> u64,
    out: &mut Vec<Effect>,
) {
    let outcome_code = i64::from(r.outcome.code());
    let detail = || vec![("outcome", outcome_code)];
    close(
        entry,
        EventKind::Unknown,
        Reason::ProbeCleared,
        source.clone(),
        now_us,
        out,
    );
    let retries = entry.retries;
    match entry.open.get(&EventKind::Availability).copied() {
        None if in_maintenance => {
            let id = take_id();
            open(
                entry,
                id,
                EventKind::Availability,
                State::Maintenance,
                Severity::UP,
                r.at_us,
                now_us,
                source,
                Reason::MaintenanceSwallowed,
                detail(),
                out,
            );
        }
        None => {
            let id = take_id();
            open(
                entry,
                id,
                EventKind::Availability,
                State::SeemsDown,
                Severity::SEEMS_DOWN,
                r.at_us,
                now_us,
                source,
                Reason::Opened,
                detail(),
                out,
            );
            recheck_or_escalate(entry, r.check_id, verifliers, now_us, out);
        }
        Some(e) if e.state == State::SeemsDown && in_maintenance => {
            change(
                entry,
                EventKind::Availability,
                State::Maintenance,
                Severity::UP,
                Reason::MaintenanceSwallowed,
                source,
                now_us,
                detail(),
                out,
            );
        }
        Some(e) if e.state == State::SeemsDown && !e.verifying => {
            if let Some(open) = entry.open.get_mut(&EventKind::Availability) {
                open.failures = open.failures.saturating_add(1);
            }
            // The first failure plus every re-check failed: confirm.
            let failures = entry
                .open
                .get(&EventKind::Availability)
                .map_or(0, |e| e.failures);
            if failures > retries
                && matches!(
                    r.origin,
                    ProbeOrigin::Recheck | ProbeOrigin::Scheduled | ProbeOrigin::TriggerNow
                )
            {
                escalate(entry, r.check_id, verifliers, now_us, out);
            }
        }
        Some(e) if e.state == State::Maintenance && !in_maintenance => {
            // The window ended with the site still failing: a real incident now.
            change(
                entry,
                EventKind::Availability,
                State::SeemsDown,
                Severity::SEEMS_DOWN,
                Reason::StateChange,
                source,
                now_us,
                detail(),
                out,
            );
            if let Some(open) = entry.open.get_mut(&EventKind::Availability) {
                open.failures = 1;
            }
            recheck_or_escalate(entry, r.check_id, verifliers, now_us, out);
        }
        Some(_) => {} // already Down, verifying, or swallowed
    }
}

/// A failure just opened (or reopened) Seems Down: re-check locally when the check has
/// re-checks, else go straight to the verifliers.
fn recheck_or_escalate(
    entry: &mut CheckEntry,
    check_id: u64,
    verifliers: usize,
    now_us: u64,
    out: &mut Vec<Effect>,
) {
    if entry.retries > 0 {
        out.push(Effect::Recheck {
            check_id,
            count: entry.retries,
            spacing_ms: entry.retry_spacing_ms,
        });
    } else {
        escalate(entry, check_id, verifliers, now_us, out);
    }
}

/// All local attempts failed: ask the verifliers, or confirm alone when there are none.
pub(crate) fn escalate(
    entry: &mut CheckEntry,
    check_id: u64,
    verifliers: usize,
    now_us: u64,
    out: &mut Vec<Effect>,
) {
    let Some(e) = entry.open.get_mut(&EventKind::Availability) else {
        return;
    };
    if verifliers > 0 {
        e.verifying = true;
        out.push(Effect::Verify {
            check_id,
            event_id: e.id,
        });
    } else {
        let failures = i64::from(e.failures);
        change(
            entry,
            EventKind::Availability,
            State::Down,
            Severity::DOWN,
            Reason::VerifierConfirmed,
            Source::Local,
            now_us,
            vec![("local_failures", failures)],
            out,
        );
    }
}

/// Response-time thresholds, on each successful result of a check that has any: the median
/// of the last `PERFORMANCE_SAMPLES` successes over a degrade threshold is Degraded, over a
/// warn threshold Warning, under both closes the event (`probe_cleared`). One slow probe
/// among fast ones moves no median, so a lone blip opens nothing and a lone fast probe in a
/// slow spell closes nothing. Inside a maintenance window nothing opens.
pub(crate) fn performance(
    entry: &mut CheckEntry,
    r: &ResultIn,
    in_maintenance: bool,
    now_us: u64,
    take_id: &mut impl FnMut() -> u64,
    out: &mut Vec<Effect>,
) {
    let Some(extra) = entry.extra.as_deref_mut() else {
        return;
    };
    if extra.thresholds.is_off() {
        return;
    }
    extra.samples.push(r.ttfb_us, r.total_us);
    let Some((ttfb, total)) = extra.samples.medians() else {
        return;
    };
    let level = extra.thresholds.level(ttfb, total);
    let detail = vec![
        ("median_ttfb_ms", i64::from(ttfb / 1000)),
        ("median_total_ms", i64::from(total / 1000)),
    ];
    let (state, severity) = match level {
        2 => (State::Degraded, Severity::DEGRADED),
        1 => (State::Warning, Severity::WARNING),
        _ => {
            close_with(
                entry,
                EventKind::Performance,
                Reason::ProbeCleared,
                Source::Local,
                now_us,
                detail,
                out,
            );
            return;
        }
    };
    match entry.open.get(&EventKind::Performance).copied() {
        None if in_maintenance => {}
        None => {
            let id = take_id();
            open(
                entry,
                id,
                EventKind::Performance,
                state,
                severity,
                r.at_us,
                now_us,
                Source::Local,
                Reason::Opened,
                detail,
                out,
            );
        }
        Some(e) if e.severity != severity => {
            let reason = if severity > e.severity {
                Reason::SeverityEscalation
            } else {
                Reason::SeverityDeescalation
            };
            change(
                entry,
                EventKind::Performance,
                state,
                severity,
                reason,
                Source::Local,
                now_us,
                detail,
                out,
            );
        }
        Some(_) => {}
    }
}

/// TLS expiry thresholds: ≤ 30 days Warning, ≤ 14 Warning again (a new notification), ≤ 7
/// Degraded, expired Down; a renewal (> 30 days) closes the event.
pub(crate) fn tls_expiry(
    entry: &mut CheckEntry,
    not_after_s: i64,
    now_us: u64,
    take_id: &mut impl FnMut() -> u64,
    out: &mut Vec<Effect>,
) {
    let now_s = (now_us / 1_000_000) as i64;
    let days_left = (not_after_s - now_s).div_euclid(DAY_S);
    let (threshold, state, severity) = if not_after_s <= now_s {
        (0, State::Down, Severity::DOWN)
    } else if days_left < 7 {
        (7, State::Degraded, Severity::DEGRADED)
    } else if days_left < 14 {
        (14, State::Warning, Severity::WARNING)
    } else if days_left < 30 {
        (30, State::Warning, Severity::WARNING)
    } else {
        close_with(
            entry,
            EventKind::TlsExpiry,
            Reason::ProbeCleared,
            Source::Local,
            now_us,
            vec![("days_left", days_left)],
            out,
        );
        return;
    };
    let detail = vec![("days_left", days_left), ("threshold_days", threshold)];
    match entry.open.get(&EventKind::TlsExpiry).copied() {
        None => {
            let id = take_id();
            open(
                entry,
                id,
                EventKind::TlsExpiry,
                state,
                severity,
                now_us,
                now_us,
                Source::Local,
                Reason::Opened,
                detail,
                out,
            );
            if let Some(e) = entry.open.get_mut(&EventKind::TlsExpiry) {
                e.threshold_days = threshold;
            }
        }
        Some(e) if e.threshold_days != threshold => {
            let reason = if threshold < e.threshold_days {
                Reason::SeverityEscalation
            } else {
                Reason::SeverityDeescalation
            };
            change(
                entry,
                EventKind::TlsExpiry,
                state,
                severity,
                reason,
                Source::Local,
                now_us,
                detail,
                out,
            );
            if let Some(e) = entry.open.get_mut(&EventKind::TlsExpiry) {
                e.threshold_days = threshold;
            }
        }
        Some(_) => {}
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn open(
    entry: &mut CheckEntry,
    id: u64,
    kind: EventKind,
    state: State,
    severity: Severity,
    started_at_us: u64,
    now_us: u64,
    source: Source,
    reason: Reason,
    detail: Vec<(&'static str, i64)>,
    out: &mut Vec<Effect>,
) {
    let e = OpenEvent {
        id,
        state,
        severity,
        started_at_us,
        failures: 1,
        verifying: false,
        threshold_days: 0,
    };
    entry.open.insert(kind, e);
    out.push(Effect::Transition(Transition {
        event_id: id,
        identity: Identity {
            site_id: entry.site_id,
            check_id: entry.check_id,
            kind,
        },
        before: None,
        after: Some((state, severity)),
        reason,
        source,
        at_us: now_us,
        started_at_us,
        detail,
        votes: Vec::new(),
        note: None,
    }));
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn change(
    entry: &mut CheckEntry,
    kind: EventKind,
    state: State,
    severity: Severity,
    reason: Reason,
    source: Source,
    now_us: u64,
    detail: Vec<(&'static str, i64)>,
    out: &mut Vec<Effect>,
) {
    let identity = Identity {
        site_id: entry.site_id,
        check_id: entry.check_id,
        kind,
    };
    let Some(e) = entry.open.get_mut(&kind) else {
        return;
    };
    if (e.state, e.severity) == (state, severity)
        && reason != Reason::SeverityEscalation
        && reason != Reason::SeverityDeescalation
    {
        return;
    }
    let before = (e.state, e.severity);
    e.state = state;
    e.severity = severity;
    out.push(Effect::Transition(Transition {
        event_id: e.id,
        identity,
        before: Some(before),
        after: Some((state, severity)),
        reason,
        source,
        at_us: now_us,
        started_at_us: e.started_at_us,
        detail,
        votes: Vec::new(),
        note: None,
    }));
}

pub(crate) fn close(
    entry: &mut CheckEntry,
    kind: EventKind,
    reason: Reason,
    source: Source,
    now_us: u64,
    out: &mut Vec<Effect>,
) {
    close_with(entry, kind, reason, source, now_us, Vec::new(), out);
}

pub(crate) fn close_with(
    entry: &mut CheckEntry,
    kind: EventKind,
    reason: Reason,
    source: Source,
    now_us: u64,
    detail: Vec<(&'static str, i64)>,
    out: &mut Vec<Effect>,
) {
    let Some(e) = entry.open.remove(&kind) else {
        return;
    };
    out.push(Effect::Transition(Transition {
        event_id: e.id,
        identity: Identity {
            site_id: entry.site_id,
            check_id: entry.check_id,
            kind,
        },
        before: Some((e.state, e.severity)),
        after: None,
        reason,
        source,
        at_us: now_us,
        started_at_us: e.started_at_us,
        detail,
        votes: Vec::new(),
        note: None,
    }));
}
