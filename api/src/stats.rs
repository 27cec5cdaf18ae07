//! SLA (states-and-events.md), response-time percentiles and series, from events and
//! transitions plus the hourly/daily statistics rows (docs/statistics.md).

use actix_web::web;
use jetmon_shared::state::{Reason, State as SiteState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::sites::site_or_404;
use super::time::span;
use super::{ApiError, Caller, State, list_of, now_us, rfc3339};
use jetmon_engine::sla::{self, EventHistory, SlaInput, Span};
use jetmon_engine::stats::{Hist, HistSum, PHASES, PeriodStats};
use jetmon_engine::{EventKind, Window};
use jetmon_spool::live_parts;
use jetmon_store::tokens::Scope;
use jetmon_store::{Scoped, SiteRow};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sites/{id}/sla", web::get().to(site_sla))
        .route("/sites/{id}/response-time", web::get().to(response_time))
        .route("/sites/{id}/response-time/series", web::get().to(series))
        .route("/sla", web::get().to(many_sla));
}

/// Most sites in one `GET /sla`.
pub const MAX_SITES: usize = 100;
/// Most points in one series.
pub const MAX_POINTS: u64 = 2000;
const HOUR_US: u64 = 3_600_000_000;
const DAY_US: u64 = 86_400_000_000;
const WEEK_S: u64 = 7 * 86_400;
/// Monday 1970-01-05 00:00 UTC, the first week start after the epoch.
const FIRST_MONDAY_S: u64 = 4 * 86_400;

/// Percentiles over successful checks (ms); null when there were none.
#[derive(Serialize, ToSchema, Default)]
pub struct Percentiles {
    /// Successful checks measured.
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn percentiles_of(h: &Hist) -> Percentiles {
    match sla::of_hist(h) {
        None => Percentiles::default(),
        Some(p) => Percentiles {
            count: p.count,
            p50_ms: Some(ms(p.p50_us)),
            p90_ms: Some(ms(p.p90_us)),
            p95_ms: Some(ms(p.p95_us)),
            p99_ms: Some(ms(p.p99_us)),
            max_ms: Some(ms(p.max_us)),
            mean_ms: Some(p.mean_us / 1000.0),
        },
    }
}

/// Response times over a window: total and each phase.
#[derive(Serialize, ToSchema)]
pub struct ResponseTimes {
    /// Checks that failed or could not be judged (not in the percentiles).
    pub failed_count: u64,
    pub total: Percentiles,
    pub dns: Percentiles,
    pub connect: Percentiles,
    pub tls: Percentiles,
    pub ttfb: Percentiles,
}

/// A site's SLA over `[from, to)` (clipped to when the site existed).
#[derive(Serialize, ToSchema)]
pub struct SlaReport {
    pub site_id: u64,
    pub from: String,
    pub to: String,
    pub window_seconds: f64,
    /// window − paused − maintenance − unknown.
    pub monitored_seconds: f64,
    /// The union of Down intervals (from each incident's first failure).
    pub downtime_seconds: f64,
    pub degraded_seconds: f64,
    pub warning_seconds: f64,
    pub unknown_seconds: f64,
    pub maintenance_seconds: f64,
    pub paused_seconds: f64,
    /// 100 × (monitored − downtime) / monitored; null when nothing was monitored.
    pub uptime_percent: Option<f64>,
    /// Confirmed Down events overlapping the window.
    pub incidents: u32,
    pub false_alarms: u32,
    /// Mean duration of the incidents that ended in the window.
    pub mttr_seconds: Option<f64>,
    /// Monitored up time per incident.
    pub mtbf_seconds: Option<f64>,
    pub response_time: ResponseTimes,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SlaQuery {
    /// 1h, 24h, 7d, 30d, 90d… (default 30d), or give from/to.
    #[param(pattern = "^[1-9][0-9]{0,2}[hd]$")]
    window: Option<String>,
    /// RFC 3339.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339 (default now).
    #[param(format = DateTime)]
    to: Option<String>,
}

/// `[from, to)` from a query's `window` or `from`/`to`, ending now by default.
fn window_of(
    window: &Option<String>,
    from: &Option<String>,
    to: &Option<String>,
    default: &str,
) -> Result<(u64, u64), ApiError> {
    span(
        window.as_deref(),
        from.as_deref(),
        to.as_deref(),
        default,
        now_us(),
    )
}

/// Week starts (Monday 00:00 UTC, µs) whose weekly window can touch `[from, to)`.
fn weekly_spans(start_s: u32, duration_s: u32, from_us: u64, to_us: u64) -> Vec<Span> {
    let week = |t_us: u64| (t_us / 1_000_000).saturating_sub(FIRST_MONDAY_S) / WEEK_S;
    let first = week(from_us).saturating_sub(2);
    let last = week(to_us) + 1;
    (first..=last)
        .map(|w| {
            let s = (FIRST_MONDAY_S + w * WEEK_S + u64::from(start_s)) * 1_000_000;
            Span::new(s, s + u64::from(duration_s) * 1_000_000)
        })
        .filter(|s| s.from_us < to_us && s.to_us > from_us)
        .collect()
}

/// The statistics rows covering `[from, to)`: hourly rows, daily rows where the hours were
/// already rolled up, and the live hours still in the spool (the current hour, and a sealed
/// one until it is flushed), so a new site has percentiles within a minute of its first
/// results. The spool is read first, then the rows and the flushed parts from one database
/// snapshot; a spool part the snapshot says is flushed is left out (its rows are in).
async fn stats_rows(
    state: &State,
    checks: &[u64],
    from_us: u64,
    to_us: u64,
) -> Result<Vec<(u64, u64, PeriodStats)>, ApiError> {
    let hours = (from_us / HOUR_US, to_us.div_ceil(HOUR_US));
    let live = match &state.spool_dir {
        Some(dir) if !checks.is_empty() => {
            let (dir, ids) = (dir.clone(), checks.to_vec());
            web::block(move || live_parts(&dir, &ids, hours.0, hours.1))
                .await
                .map_err(|e| ApiError::internal(format!("reading the spool: {e}")))?
                .map_err(|e| ApiError::internal(format!("reading the spool: {e:#}")))?
        }
        _ => Vec::new(),
    };
    let names: Vec<String> = live.iter().map(|p| p.name.clone()).collect();
    // The check ids came from the caller's scoped store (a site it sees).
    let snap = state
        .store
        .period_stats_snapshot(
            checks,
            hours,
            (from_us / DAY_US, to_us.div_ceil(DAY_US)),
            &names,
        )
        .await
        .map_err(ApiError::from_store)?;
    let mut out: Vec<(u64, u64, PeriodStats)> = snap
        .daily
        .into_iter()
        .map(|d| (d.period * DAY_US, DAY_US, d))
        .collect();
    out.extend(
        snap.hourly
            .into_iter()
            .map(|h| (h.period * HOUR_US, HOUR_US, h)),
    );
    for part in live {
        if !snap.flushed.contains(&part.name) {
            out.extend(
                part.rows
                    .into_iter()
                    .map(|h| (h.period * HOUR_US, HOUR_US, h)),
            );
        }
    }
    Ok(out)
}

/// A site and the statistics rows of its checks over `[from, to)`.
async fn site_rows(
    state: &State,
    db: Scoped<'_>,
    id: u64,
    from_us: u64,
    to_us: u64,
) -> Result<(SiteRow, Vec<(u64, u64, PeriodStats)>), ApiError> {
    let site = site_or_404(db, id).await?;
    let checks = db
        .site_check_ids(site.id)
        .await
        .map_err(ApiError::from_store)?;
    let rows = stats_rows(state, &checks, from_us, to_us).await?;
    Ok((site, rows))
}

fn response_times<'a>(rows: impl IntoIterator<Item = &'a PeriodStats>) -> ResponseTimes {
    let mut sums: [HistSum; 5] = Default::default();
    let mut failed = 0;
    for r in rows {
        failed += r.fail_count;
        for (m, h) in sums.iter_mut().zip(&r.hists) {
            m.add(h);
        }
    }
    let [total, dns, connect, tls, ttfb] = sums.map(|s| s.finish());
    ResponseTimes {
        failed_count: failed,
        total: percentiles_of(&total),
        dns: percentiles_of(&dns),
        connect: percentiles_of(&connect),
        tls: percentiles_of(&tls),
        ttfb: percentiles_of(&ttfb),
    }
}

/// The SLA figures of one site over `[from, to)`.
pub async fn report(
    state: &State,
    db: Scoped<'_>,
    site: &SiteRow,
    from_us: u64,
    to_us: u64,
) -> Result<SlaReport, ApiError> {
    let now = now_us();
    // Clipped to the site's existence (and to now: the future is not monitored yet).
    let from = from_us.max(site.created_us);
    let to = to_us.min(now).max(from);
    let mut input = SlaInput {
        window: Some(Span::new(from, to)),
        ..SlaInput::default()
    };
    if to > from {
        let history = db
            .site_history(site.id, from, to)
            .await
            .map_err(ApiError::from_store)?;
        for (e, critical, transitions) in history {
            let mut states: Vec<(u64, SiteState)> = Vec::new();
            for t in &transitions {
                if let Some((s, _)) = t.after
                    && states.last().is_none_or(|(_, last)| *last != s)
                {
                    let at = if states.is_empty() {
                        e.started_us
                    } else {
                        t.at_us
                    };
                    states.push((at, s));
                }
            }
            if states.is_empty() {
                states.push((e.started_us, e.state));
            }
            let h = EventHistory {
                started_us: e.started_us,
                states,
                closed: e
                    .ended_us
                    .map(|at| (at, e.resolution.unwrap_or(Reason::ManualOverride))),
                critical,
                kind: EventKind::from_code(e.kind).unwrap_or(EventKind::Availability),
            };
            sla::add_event(&mut input, &h, now);
        }
        let windows = db
            .windows_page(Some(site.id), None, 0, 1000)
            .await
            .map_err(ApiError::from_store)?;
        for w in windows.iter().filter(|w| w.check_id.is_none()) {
            match w.window {
                Window::OneOff { from_us, to_us } => {
                    input.maintenance.push(Span::new(from_us, to_us));
                }
                Window::Weekly {
                    start_s,
                    duration_s,
                } => input
                    .maintenance
                    .extend(weekly_spans(start_s, duration_s, from, to)),
            }
        }
    }
    let s = sla::compute(&input);
    let checks = db
        .site_check_ids(site.id)
        .await
        .map_err(ApiError::from_store)?;
    let rows = if to > from {
        stats_rows(state, &checks, from, to).await?
    } else {
        Vec::new()
    };
    Ok(SlaReport {
        site_id: site.id,
        from: rfc3339(from),
        to: rfc3339(to),
        window_seconds: s.window_seconds,
        monitored_seconds: s.monitored_seconds,
        downtime_seconds: s.downtime_seconds,
        degraded_seconds: s.degraded_seconds,
        warning_seconds: s.warning_seconds,
        unknown_seconds: s.unknown_seconds,
        maintenance_seconds: s.maintenance_seconds,
        paused_seconds: s.paused_seconds,
        uptime_percent: s.uptime_percent,
        incidents: s.incidents,
        false_alarms: s.false_alarms,
        mttr_seconds: s.mttr_seconds,
        mtbf_seconds: s.mtbf_seconds,
        response_time: response_times(rows.iter().map(|(_, _, r)| r)),
    })
}

/// A site's SLA: uptime, downtime and the other classes, incidents, MTTR/MTBF and response
/// times, over `window` or `from`/`to`.
#[utoipa::path(get, path = "/api/v1/sites/{id}/sla", tag = "statistics", security(("bearer" = [])),
    params(("id" = u64, Path), SlaQuery),
    responses((status = 200, body = SlaReport), (status = "4XX", body = ErrorBody)))]
async fn site_sla(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    q: web::Query<SlaQuery>,
) -> Result<web::Json<SlaReport>, ApiError> {
    caller.require(Scope::Read)?;
    let db = caller.store(&state);
    let (from, to) = window_of(&q.window, &q.from, &q.to, "30d")?;
    let site = site_or_404(db, *id).await?;
    Ok(web::Json(report(&state, db, &site, from, to).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ManySlaQuery {
    /// Comma-separated site ids (at most 100).
    #[serde(rename = "site_id__in")]
    #[param(rename = "site_id__in")]
    site_id_in: String,
    #[param(pattern = "^[1-9][0-9]{0,2}[hd]$")]
    window: Option<String>,
    #[param(format = DateTime)]
    from: Option<String>,
    #[param(format = DateTime)]
    to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SlaList {
    pub data: Vec<SlaReport>,
}

/// The SLA of many sites at once (reports).
#[utoipa::path(get, path = "/api/v1/sla", tag = "statistics", security(("bearer" = [])),
    params(ManySlaQuery),
    responses((status = 200, body = SlaList), (status = "4XX", body = ErrorBody)))]
async fn many_sla(
    caller: Caller,
    state: web::Data<State>,
    q: web::Query<ManySlaQuery>,
) -> Result<web::Json<SlaList>, ApiError> {
    caller.require(Scope::Read)?;
    let db = caller.store(&state);
    let ids: Vec<u64> = list_of("site_id__in", Some(&q.site_id_in), |s| s.parse().ok())?;
    if ids.is_empty() || ids.len() > MAX_SITES {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("site_id__in: 1 to {MAX_SITES} ids"),
        ));
    }
    let (from, to) = window_of(&q.window, &q.from, &q.to, "30d")?;
    let mut data = Vec::with_capacity(ids.len());
    for id in ids {
        let site = site_or_404(db, id).await?;
        data.push(report(&state, db, &site, from, to).await?);
    }
    Ok(web::Json(SlaList { data }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResponseTimeQuery {
    #[param(pattern = "^[1-9][0-9]{0,2}[hd]$")]
    window: Option<String>,
    #[param(format = DateTime)]
    from: Option<String>,
    #[param(format = DateTime)]
    to: Option<String>,
    /// total (default), dns, connect, tls or ttfb.
    phase: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ResponseTime {
    pub site_id: u64,
    pub phase: String,
    pub from: String,
    pub to: String,
    pub failed_count: u64,
    #[serde(flatten)]
    pub percentiles: Percentiles,
}

fn phase_index(p: Option<&str>) -> Result<(usize, String), ApiError> {
    let p = p.unwrap_or("total");
    PHASES
        .iter()
        .position(|x| *x == p)
        .map(|i| (i, p.to_owned()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("phase: {p:?} is not total, dns, connect, tls or ttfb"),
            )
        })
}

/// Response-time percentiles of one phase over a window (successful checks only).
#[utoipa::path(get, path = "/api/v1/sites/{id}/response-time", tag = "statistics",
    security(("bearer" = [])), params(("id" = u64, Path), ResponseTimeQuery),
    responses((status = 200, body = ResponseTime), (status = "4XX", body = ErrorBody)))]
async fn response_time(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    q: web::Query<ResponseTimeQuery>,
) -> Result<web::Json<ResponseTime>, ApiError> {
    caller.require(Scope::Read)?;
    let (phase, name) = phase_index(q.phase.as_deref())?;
    let (from, to) = window_of(&q.window, &q.from, &q.to, "24h")?;
    let (site, rows) = site_rows(&state, caller.store(&state), *id, from, to).await?;
    let mut sum = HistSum::default();
    let mut failed = 0;
    for (_, _, r) in &rows {
        sum.add(&r.hists[phase]);
        failed += r.fail_count;
    }
    let merged = sum.finish();
    Ok(web::Json(ResponseTime {
        site_id: site.id,
        phase: name,
        from: rfc3339(from),
        to: rfc3339(to),
        failed_count: failed,
        percentiles: percentiles_of(&merged),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    #[param(pattern = "^[1-9][0-9]{0,2}[hd]$")]
    window: Option<String>,
    #[param(format = DateTime)]
    from: Option<String>,
    #[param(format = DateTime)]
    to: Option<String>,
    /// Bucket size: 1h (default), 6h, 1d… (whole hours; days beyond the hourly retention).
    #[param(pattern = "^[1-9][0-9]{0,2}[hd]$")]
    step: Option<String>,
    phase: Option<String>,
}

/// One bucket of a series.
#[derive(Serialize, ToSchema)]
pub struct Point {
    /// Bucket start.
    pub at: String,
    pub count: u64,
    pub failed_count: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct Series {
    pub site_id: u64,
    pub phase: String,
    pub step_seconds: u64,
    pub points: Vec<Point>,
}

/// Bucketed response times for charts (every bucket of the window, empty ones included).
#[utoipa::path(get, path = "/api/v1/sites/{id}/response-time/series", tag = "statistics",
    security(("bearer" = [])), params(("id" = u64, Path), SeriesQuery),
    responses((status = 200, body = Series), (status = "4XX", body = ErrorBody)))]
async fn series(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    q: web::Query<SeriesQuery>,
) -> Result<web::Json<Series>, ApiError> {
    caller.require(Scope::Read)?;
    let (phase, name) = phase_index(q.phase.as_deref())?;
    let step = q.step.as_deref().unwrap_or("1h");
    let step_us = super::time::window_us(step).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_query",
            format!("step: {step:?} is not a step (1h, 6h, 1d…)"),
        )
    })?;
    let (from, to) = window_of(&q.window, &q.from, &q.to, "30d")?;
    // Buckets are aligned to the step (hours and days in UTC).
    let start = from / step_us * step_us;
    let n = (to - start).div_ceil(step_us);
    if n > MAX_POINTS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("{n} points: at most {MAX_POINTS}; use a larger step"),
        ));
    }
    let (site, rows) = site_rows(&state, caller.store(&state), *id, start, to).await?;
    let mut buckets: Vec<(Hist, u64)> = (0..n).map(|_| (Hist::default(), 0)).collect();
    for (at, _, r) in &rows {
        let Some(b) = at
            .checked_sub(start)
            .map(|d| (d / step_us) as usize)
            .and_then(|k| buckets.get_mut(k))
        else {
            continue;
        };
        b.0.merge(&r.hists[phase]);
        b.1 += r.fail_count;
    }
    let points = buckets
        .iter()
        .enumerate()
        .map(|(k, (h, failed))| {
            let p = percentiles_of(h);
            Point {
                at: rfc3339(start + k as u64 * step_us),
                count: p.count,
                failed_count: *failed,
                p50_ms: p.p50_ms,
                p95_ms: p.p95_ms,
                p99_ms: p.p99_ms,
                mean_ms: p.mean_ms,
            }
        })
        .collect();
    Ok(web::Json(Series {
        site_id: site.id,
        phase: name,
        step_seconds: step_us / 1_000_000,
        points,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekly_windows_land_on_their_weekday() {
        // Monday 2026-11-30 00:00 UTC; a window every Sunday 23:00 for 2 h.
        let monday = 1_795_996_800u64;
        let start_s = 6 * 86_400 + 23 * 3600;
        let spans = weekly_spans(
            start_s,
            7200,
            monday * 1_000_000,
            (monday + 14 * 86_400) * 1_000_000,
        );
        let starts: Vec<u64> = spans.iter().map(|s| s.from_us / 1_000_000).collect();
        // The Sunday before (reaching into Monday), and the two Sundays of the fortnight.
        assert_eq!(
            starts,
            vec![
                monday - 3600,
                monday + 6 * 86_400 + 82_800,
                monday + 13 * 86_400 + 82_800
            ]
        );
        assert!(spans.iter().all(|s| s.to_us - s.from_us == 7_200_000_000));
    }
}
