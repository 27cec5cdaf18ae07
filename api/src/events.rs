//! Events (incidents) and their transitions, manual close, and recent raw results.

use std::time::Duration;

use actix_web::web;
use jetmon_shared::check::CheckType;
use jetmon_shared::outcome::Outcome;
use jetmon_shared::state::{Reason, State as SiteState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::checks::check_or_404;
use super::error::ErrorBody;
use super::sites::site_or_404;
use super::{
    ApiError, Caller, Command, PageInfo, State, cut, decode_cursor, list_of, page_limit,
    parse_rfc3339, parsed, rfc3339,
};
use jetmon_engine::EventKind;
use jetmon_store::Scoped;
use jetmon_store::tokens::Scope;
use jetmon_store::{EventFilter, EventRow, TransitionRow};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::get().to(list))
        .route("/events/{event_id}", web::get().to(one))
        .route("/events/{event_id}/transitions", web::get().to(transitions))
        .route("/events/{event_id}/close", web::post().to(close))
        .route("/sites/{id}/events", web::get().to(site_events))
        .route("/sites/{id}/checks/{cid}/results", web::get().to(results));
}

/// One incident on one check.
#[derive(Serialize, ToSchema)]
pub struct Event {
    pub id: u64,
    pub site_id: u64,
    pub check_id: u64,
    /// availability, unknown, tls_expiry or paused.
    pub kind: String,
    /// The state now (or when it closed).
    pub state: String,
    pub severity: u8,
    /// The first failure; never moves.
    pub started_at: String,
    /// Null while open.
    pub ended_at: Option<String>,
    /// How it closed (verifier_cleared, false_alarm, manual_override…).
    pub resolution_reason: Option<String>,
    pub active: bool,
}

impl From<EventRow> for Event {
    fn from(e: EventRow) -> Event {
        Event {
            id: e.id,
            site_id: e.site_id,
            check_id: e.check_id,
            kind: EventKind::ALL
                .get(usize::from(e.kind))
                .map_or("unknown", |k| k.name())
                .to_owned(),
            state: e.state.name().to_owned(),
            severity: e.severity.0,
            started_at: rfc3339(e.started_us),
            ended_at: e.ended_us.map(rfc3339),
            resolution_reason: e.resolution.map(|r| r.name().to_owned()),
            active: e.ended_us.is_none(),
        }
    }
}

/// One change to an event (append-only).
#[derive(Serialize, ToSchema)]
pub struct Transition {
    pub id: u64,
    pub event_id: u64,
    /// Null on the transition that opened the event.
    pub state_before: Option<String>,
    pub severity_before: Option<u8>,
    /// Null on the transition that closed it.
    pub state_after: Option<String>,
    pub severity_after: Option<u8>,
    pub reason: String,
    /// local:<host>, veriflier:<names>, operator:<key>, system:<component>.
    pub source: String,
    /// Facts kept with it: outcome code, veriflier votes, an operator's note…
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub at: String,
}

impl From<TransitionRow> for Transition {
    fn from(t: TransitionRow) -> Transition {
        Transition {
            id: t.id,
            event_id: t.event_id,
            state_before: t.before.map(|(s, _)| s.name().to_owned()),
            severity_before: t.before.map(|(_, s)| s.0),
            state_after: t.after.map(|(s, _)| s.name().to_owned()),
            severity_after: t.after.map(|(_, s)| s.0),
            reason: t.reason.name().to_owned(),
            source: t.source,
            metadata: serde_json::from_str(&t.metadata)
                .unwrap_or_else(|_| serde_json::Value::Object(Default::default())),
            at: rfc3339(t.at_us),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub data: Vec<Event>,
    pub page: PageInfo,
}

#[derive(Serialize, ToSchema)]
pub struct EventWithTransitions {
    #[serde(flatten)]
    pub event: Event,
    pub transitions: Vec<Transition>,
}

#[derive(Serialize, ToSchema)]
pub struct TransitionList {
    pub data: Vec<Transition>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    cursor: Option<String>,
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    state: Option<String>,
    #[serde(rename = "state__in")]
    #[param(rename = "state__in")]
    state_in: Option<String>,
    /// The check's type: http, tcp or dns.
    check_type: Option<String>,
    /// availability, unknown, tls_expiry or paused.
    kind: Option<String>,
    /// true: open events only; false: closed only.
    #[param(value_type = Option<bool>)]
    active: Option<String>,
    #[serde(rename = "started_at__gte")]
    #[param(rename = "started_at__gte")]
    started_at_gte: Option<String>,
    #[serde(rename = "started_at__lt")]
    #[param(rename = "started_at__lt")]
    started_at_lt: Option<String>,
    /// Fleet-wide listing only: comma-separated site ids.
    #[serde(rename = "site_id__in")]
    #[param(rename = "site_id__in")]
    site_id_in: Option<String>,
    /// One tenant's events (operator keys; a tenant key sees its own whatever this says).
    #[param(value_type = Option<u64>)]
    tenant_id: Option<String>,
}

fn filter_of(q: &EventQuery) -> Result<EventFilter, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_query", m);
    let mut state_in = list_of("state__in", q.state_in.as_deref(), SiteState::from_name)?;
    if let Some(s) = &q.state {
        state_in
            .push(SiteState::from_name(s).ok_or_else(|| bad(format!("state: no state {s:?}")))?);
    }
    let time = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| {
                parse_rfc3339(s)
                    .ok_or_else(|| bad(format!("{name}: {s:?} is not an RFC 3339 time")))
            })
            .transpose()
    };
    Ok(EventFilter {
        id_in: Vec::new(),
        site_in: list_of("site_id__in", q.site_id_in.as_deref(), |s| s.parse().ok())?,
        tenant_id: parsed("tenant_id", q.tenant_id.as_deref())?,
        state_in,
        check_type: q
            .check_type
            .as_deref()
            .map(|t| {
                CheckType::from_name(t)
                    .ok_or_else(|| bad(format!("check_type: {t:?} is not http, tcp or dns")))
            })
            .transpose()?,
        kind: q
            .kind
            .as_deref()
            .map(|k| {
                EventKind::ALL
                    .iter()
                    .find(|e| e.name() == k)
                    .map(|e| *e as u8)
                    .ok_or_else(|| bad(format!("kind: {k:?} is not an event kind")))
            })
            .transpose()?,
        active: parsed("active", q.active.as_deref())?,
        started_gte_us: time("started_at__gte", &q.started_at_gte)?,
        started_lt_us: time("started_at__lt", &q.started_at_lt)?,
    })
}

async fn page(
    db: Scoped<'_>,
    q: &EventQuery,
    mut filter: EventFilter,
    site: Option<u64>,
) -> Result<EventPage, ApiError> {
    let limit = page_limit(q.limit.as_deref())?;
    let after = decode_cursor(q.cursor.as_deref())?;
    if let Some(s) = site {
        filter.site_in = vec![s];
    }
    let rows = db
        .events_page(after, limit + 1, &filter)
        .await
        .map_err(ApiError::from_store)?;
    let (rows, page) = cut(rows, limit, |e| e.id);
    Ok(EventPage {
        data: rows.into_iter().map(Event::from).collect(),
        page,
    })
}

/// Events across every site (open incidents: `active=true`).
#[utoipa::path(get, path = "/api/v1/events", tag = "events", security(("bearer" = [])),
    params(EventQuery),
    responses((status = 200, body = EventPage), (status = "4XX", body = ErrorBody)))]
async fn list(
    caller: Caller,
    state: web::Data<State>,
    q: web::Query<EventQuery>,
) -> Result<web::Json<EventPage>, ApiError> {
    caller.require(Scope::Read)?;
    let filter = filter_of(&q)?;
    Ok(web::Json(
        page(caller.store(&state), &q, filter, None).await?,
    ))
}

/// A site's events.
#[utoipa::path(get, path = "/api/v1/sites/{id}/events", tag = "events", security(("bearer" = [])),
    params(("id" = u64, Path), EventQuery),
    responses((status = 200, body = EventPage), (status = "4XX", body = ErrorBody)))]
async fn site_events(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    q: web::Query<EventQuery>,
) -> Result<web::Json<EventPage>, ApiError> {
    caller.require(Scope::Read)?;
    let db = caller.store(&state);
    if q.site_id_in.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "site_id__in: only on /events (this route is one site's)",
        ));
    }
    site_or_404(db, *id).await?;
    let filter = filter_of(&q)?;
    Ok(web::Json(page(db, &q, filter, Some(*id)).await?))
}

async fn event_or_404(db: Scoped<'_>, id: u64) -> Result<EventRow, ApiError> {
    db.event(id)
        .await
        .map_err(ApiError::from_store)?
        .ok_or_else(|| ApiError::not_found(format!("no event {id}")))
}

async fn transitions_of(db: Scoped<'_>, id: u64) -> Result<Vec<Transition>, ApiError> {
    Ok(db
        .transitions_of_event(id)
        .await
        .map_err(ApiError::from_store)?
        .into_iter()
        .map(Transition::from)
        .collect())
}

/// One event with its transitions.
#[utoipa::path(get, path = "/api/v1/events/{event_id}", tag = "events", security(("bearer" = [])),
    params(("event_id" = u64, Path)),
    responses((status = 200, body = EventWithTransitions), (status = "4XX", body = ErrorBody)))]
async fn one(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<EventWithTransitions>, ApiError> {
    caller.require(Scope::Read)?;
    let db = caller.store(&state);
    let e = event_or_404(db, *id).await?;
    Ok(web::Json(EventWithTransitions {
        event: Event::from(e),
        transitions: transitions_of(db, *id).await?,
    }))
}

/// An event's transitions, oldest first.
#[utoipa::path(get, path = "/api/v1/events/{event_id}/transitions", tag = "events",
    security(("bearer" = [])), params(("event_id" = u64, Path)),
    responses((status = 200, body = TransitionList), (status = "4XX", body = ErrorBody)))]
async fn transitions(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<TransitionList>, ApiError> {
    caller.require(Scope::Read)?;
    let db = caller.store(&state);
    event_or_404(db, *id).await?;
    Ok(web::Json(TransitionList {
        data: transitions_of(db, *id).await?,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// manual_override (the only reason an operator gives).
    pub reason: Option<String>,
    /// Kept in the closing transition's metadata (at most 1000 bytes).
    pub note: Option<String>,
}

/// Closes an open event by hand (`manual_override`). If the check still fails, a new event
/// opens at its next failure.
#[utoipa::path(post, path = "/api/v1/events/{event_id}/close", tag = "events",
    security(("bearer" = [])), params(("event_id" = u64, Path)), request_body = CloseBody,
    responses((status = 200, body = EventWithTransitions), (status = "4XX", body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn close(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    body: web::Json<CloseBody>,
) -> Result<web::Json<EventWithTransitions>, ApiError> {
    caller.require(Scope::Write)?;
    let db = caller.store(&state);
    if let Some(r) = &body.reason
        && r != Reason::ManualOverride.name()
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("reason: {r:?}; an operator closes with manual_override"),
        ));
    }
    if let Some(n) = &body.note
        && n.len() > 1000
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            "note: at most 1000 bytes",
        ));
    }
    let e = event_or_404(db, *id).await?;
    if e.ended_us.is_some() {
        // A retry of a close this key made (its answer lost, say) is answered again.
        let transitions = transitions_of(db, *id).await?;
        let mine = format!("operator:{}", caller.source());
        let closed_by_me = transitions.last().is_some_and(|t| {
            t.state_after.is_none() && t.reason == Reason::ManualOverride.name() && t.source == mine
        });
        if closed_by_me {
            return Ok(web::Json(EventWithTransitions {
                event: Event::from(e),
                transitions,
            }));
        }
        return Err(ApiError::conflict(
            "event_closed",
            format!("event {id} is already closed (closed events are immutable)"),
        ));
    }
    if usize::from(e.kind) == EventKind::Paused as usize {
        return Err(ApiError::conflict(
            "event_paused",
            "a paused period ends when the site is resumed: POST /sites/{id}/resume",
        ));
    }
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let ticket = crate::Ticket::default();
    state.link.send(Command::Close {
        check_id: e.check_id,
        event_id: e.id,
        source: caller.source(),
        note: body.note.clone(),
        ticket: ticket.clone(),
        reply: tx,
    })?;
    let answered = match tokio::time::timeout(CLOSE_WAIT, &mut rx).await {
        Ok(a) => a,
        // Not taken yet: cancelled, so nothing will change.
        Err(_) if ticket.cancel() => {
            return Err(ApiError::unavailable(format!(
                "the control loop did not take the close within {} s; nothing was changed \
                 (retry)",
                CLOSE_WAIT.as_secs()
            )));
        }
        // Taken meanwhile: it is being made, and its answer is a moment away.
        Err(_) => tokio::time::timeout(CLOSE_WAIT, rx)
            .await
            .map_err(|_| pending(*id))?,
    };
    let closed = answered.map_err(|_| ApiError::unavailable("the control loop stopped"))?;
    if !closed {
        return Err(ApiError::conflict(
            "event_closed",
            format!("event {id} closed meanwhile"),
        ));
    }
    // The close is durable once the supervisor's next batch commits (≤ a tick away).
    for _ in 0..250 {
        let now = event_or_404(db, *id).await?;
        if now.ended_us.is_some() {
            return Ok(web::Json(EventWithTransitions {
                event: Event::from(now),
                transitions: transitions_of(db, *id).await?,
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(pending(*id))
}

/// How long a close waits for the control loop to take it.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A close that is made and will be stored: saying 503 alone would invite a belief that it
/// failed.
fn pending(id: u64) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "close_pending",
        format!(
            "event {id}'s close is made and will be stored once the database takes the next \
             batch; a retry with this key answers 200 once it is"
        ),
    )
}

/// A recent kept result: failures and advisories are kept raw for 7 days, with their words
/// and redirect chain.
#[derive(Serialize, ToSchema)]
pub struct CheckResult {
    pub check_id: u64,
    pub at: String,
    /// Stable outcome name (checks.md).
    pub outcome: String,
    pub outcome_code: u16,
    pub detail: u16,
    /// What the detail means, in words (probe-safety refusals: which rule and how to allow
    /// it; the exact address is in trigger-now's and `jetmon check`'s live result).
    pub detail_text: Option<String>,
    pub http_status: Option<u16>,
    pub total_ms: f64,
    pub vantage_id: u32,
    /// Why a passing result was kept: `tls_deprecated` or `redirect_alert` (an `advisory`
    /// event); null for failures.
    pub advisory: Option<String>,
    /// Each redirect the probe followed (status that redirected, where it led), in order.
    pub redirect_chain: Vec<super::trigger::RedirectHop>,
}

#[derive(Serialize, ToSchema)]
pub struct ResultList {
    pub data: Vec<CheckResult>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResultsQuery {
    /// 1 to 200 (default 50).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

/// A check's recent failed and advisory results, newest first, with each one's redirect chain
/// (healthy results are kept only as hourly statistics).
#[utoipa::path(get, path = "/api/v1/sites/{id}/checks/{cid}/results", tag = "checks",
    security(("bearer" = [])), params(("id" = u64, Path), ("cid" = u64, Path), ResultsQuery),
    responses((status = 200, body = ResultList), (status = "4XX", body = ErrorBody)))]
async fn results(
    caller: Caller,
    state: web::Data<State>,
    path: web::Path<(u64, u64)>,
    q: web::Query<ResultsQuery>,
) -> Result<web::Json<ResultList>, ApiError> {
    caller.require(Scope::Read)?;
    let db = caller.store(&state);
    let (id, cid) = path.into_inner();
    let limit = page_limit(q.limit.as_deref())?;
    check_or_404(db, id, cid).await?;
    let rows = db
        .recent_failures(cid, limit)
        .await
        .map_err(ApiError::from_store)?;
    Ok(web::Json(ResultList {
        data: rows
            .into_iter()
            .map(|f| CheckResult {
                check_id: f.check_id,
                at: rfc3339(f.at_us),
                outcome: Outcome::from_code(f.outcome)
                    .map_or_else(|| format!("code_{}", f.outcome), |o| o.name().to_owned()),
                outcome_code: f.outcome,
                detail: f.detail,
                detail_text: f.note.clone().or_else(|| {
                    Outcome::from_code(f.outcome)
                        .and_then(|o| jetmon_shared::outcome::detail_text(o, f.detail))
                }),
                advisory: if f.outcome == Outcome::TlsDeprecated.code() {
                    Some("tls_deprecated".to_owned())
                } else if f.flags & jetmon_shared::frames::FLAG_REDIRECT_ALERT != 0 {
                    Some("redirect_alert".to_owned())
                } else {
                    None
                },
                redirect_chain: f
                    .redirect_chain
                    .iter()
                    .map(|(status, url)| super::trigger::RedirectHop {
                        status: *status,
                        url: url.clone(),
                    })
                    .collect(),
                http_status: (f.http_status != 0).then_some(f.http_status),
                total_ms: f64::from(f.total_us) / 1000.0,
                vantage_id: f.vantage_id,
            })
            .collect(),
    }))
}
