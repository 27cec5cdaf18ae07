//! Trigger-now: run all of a site's checks at once through the prober (its `TriggerNow`
//! command) and answer with the results and their phase timings; `?async=true` answers 202
//! with a job to poll instead. Jobs live in this process for 10 minutes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::sites::site_or_404;
use super::{ApiError, Caller, Command, Probed, State, rfc3339};
use jetmon_store::Tenancy;
use jetmon_store::tokens::Scope;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sites/{id}/trigger-now", web::post().to(trigger))
        .route("/jobs/{job_id}", web::get().to(job));
}

/// How long a finished job can be fetched.
const JOB_TTL: Duration = Duration::from_secs(600);
/// Added to the longest check timeout when waiting for results.
const GRACE: Duration = Duration::from_secs(5);

/// One check's result, with its phase timings.
#[derive(Serialize, ToSchema, Clone)]
pub struct TriggerResult {
    pub check_id: u64,
    /// Stable outcome name (ok, timeout, conn_refused, http_status…).
    pub outcome: String,
    pub outcome_code: u16,
    pub detail: u16,
    pub http_status: Option<u16>,
    pub started_at: String,
    pub dns_ms: f64,
    pub connect_ms: f64,
    pub tls_ms: f64,
    pub ttfb_ms: f64,
    pub total_ms: f64,
    pub redirect_count: u8,
    /// What the detail means, in words (probe-safety refusals: which rule, which address,
    /// how to allow it).
    pub detail_text: Option<String>,
    /// Final URL after redirects.
    pub final_url: Option<String>,
    /// Each redirect followed, in order.
    pub redirect_chain: Vec<RedirectHop>,
}

/// One redirect a probe followed.
#[derive(Serialize, ToSchema, Clone)]
pub struct RedirectHop {
    /// The status that redirected (301, 302, 303, 307, 308).
    pub status: u16,
    /// Where its Location led.
    pub url: String,
}

impl From<&Probed> for TriggerResult {
    fn from(p: &Probed) -> TriggerResult {
        let r = &p.result;
        let ms = |us: u32| f64::from(us) / 1000.0;
        TriggerResult {
            detail_text: p
                .note
                .clone()
                .or_else(|| jetmon_shared::outcome::detail_text(r.outcome, r.detail)),
            final_url: p.final_url.clone(),
            redirect_chain: p
                .redirect_chain
                .iter()
                .map(|(status, url)| RedirectHop {
                    status: *status,
                    url: url.clone(),
                })
                .collect(),
            check_id: r.check_id,
            outcome: r.outcome.name().to_owned(),
            outcome_code: r.outcome.code(),
            detail: r.detail,
            http_status: (r.http_status != 0).then_some(r.http_status),
            started_at: rfc3339(r.started_at_us),
            dns_ms: ms(r.phases.dns_us),
            connect_ms: ms(r.phases.connect_us),
            tls_ms: ms(r.phases.tls_us),
            ttfb_ms: ms(r.phases.ttfb_us),
            total_ms: ms(r.phases.total_us),
            redirect_count: r.redirect_count,
        }
    }
}

#[derive(Serialize, ToSchema, Clone)]
pub struct TriggerResponse {
    pub site_id: u64,
    /// Checks that did not answer before the deadline (paused checks are not run).
    pub missing: Vec<u64>,
    pub results: Vec<TriggerResult>,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct Job {
    pub id: u64,
    /// running or done.
    pub status: String,
    pub poll_url: String,
    /// Set once done.
    pub result: Option<TriggerResponse>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TriggerQuery {
    /// true: answer 202 at once with a job to poll.
    #[serde(rename = "async")]
    #[param(rename = "async", value_type = Option<bool>)]
    run_async: Option<String>,
}

/// Asynchronous trigger-now jobs, each with the tenancy that started it: another tenant's
/// job is not found.
#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    jobs: Mutex<HashMap<u64, JobEntry>>,
}

struct JobEntry {
    at: Instant,
    owner: Tenancy,
    result: Option<TriggerResponse>,
}

impl Jobs {
    fn start(&self, owner: Tenancy) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut j) = self.jobs.lock() {
            j.retain(|_, e| e.at.elapsed() < JOB_TTL);
            j.insert(
                id,
                JobEntry {
                    at: Instant::now(),
                    owner,
                    result: None,
                },
            );
        }
        id
    }

    fn finish(&self, id: u64, r: TriggerResponse) {
        if let Ok(mut j) = self.jobs.lock()
            && let Some(e) = j.get_mut(&id)
        {
            e.at = Instant::now();
            e.result = Some(r);
        }
    }

    /// A job `viewer` may see: its own tenant's (operators: every job).
    fn get(&self, id: u64, viewer: Tenancy) -> Option<Option<TriggerResponse>> {
        let j = self.jobs.lock().ok()?;
        j.get(&id)
            .filter(|e| e.at.elapsed() < JOB_TTL)
            .filter(|e| viewer == Tenancy::All || viewer == e.owner)
            .map(|e| e.result.clone())
    }
}

fn job_view(id: u64, result: Option<TriggerResponse>) -> Job {
    Job {
        id,
        status: if result.is_some() { "done" } else { "running" }.to_owned(),
        poll_url: format!("/api/v1/jobs/{id}"),
        result,
    }
}

/// Runs every (unpaused) check of the site now and returns the results with phase timings;
/// with `async=true`, 202 and a job to poll. Counted against the key's expensive bucket.
#[utoipa::path(post, path = "/api/v1/sites/{id}/trigger-now", tag = "sites",
    security(("bearer" = [])), params(("id" = u64, Path), TriggerQuery),
    responses((status = 200, body = TriggerResponse), (status = 202, body = Job),
              (status = "4XX", body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn trigger(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    q: web::Query<TriggerQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Write)?;
    let db = caller.store(&state);
    let site = site_or_404(db, *id).await?;
    if !site.active {
        return Err(ApiError::conflict(
            "site_inactive",
            format!("site {id} is deleted (inactive); nothing to run"),
        ));
    }
    let checks: Vec<_> = db
        .site_checks(site.id)
        .await
        .map_err(ApiError::from_store)?
        .into_iter()
        .filter(|c| !c.spec.paused)
        .collect();
    let ids: Vec<u64> = checks.iter().map(|c| c.spec.check_id).collect();
    let wait = Duration::from_millis(
        checks
            .iter()
            .map(|c| u64::from(c.spec.timeout_ms))
            .max()
            .unwrap_or(0),
    ) + GRACE;
    let (tx, rx) = tokio::sync::oneshot::channel();
    if !ids.is_empty() {
        state.link.send(Command::Trigger {
            check_ids: ids.clone(),
            reply: tx,
        })?;
    }
    let site_id = site.id;
    let answer = async move {
        if ids.is_empty() {
            return Some(Vec::new());
        }
        // Timed out or dropped: what came back is nothing (all missing).
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(r)) => r,
            _ => Some(Vec::new()),
        }
    };
    let collect = move |got: Vec<Probed>, ids: Vec<u64>| {
        let results: Vec<TriggerResult> = got.iter().map(TriggerResult::from).collect();
        let missing = ids
            .iter()
            .filter(|i| !got.iter().any(|r| r.result.check_id == **i))
            .copied()
            .collect();
        TriggerResponse {
            site_id,
            missing,
            results,
        }
    };
    let unavailable = || {
        ApiError::unavailable(
            "the prober is not running (it is being restarted); try again shortly",
        )
    };
    let ids = checks.iter().map(|c| c.spec.check_id).collect::<Vec<u64>>();
    if super::parsed::<bool>("async", q.run_async.as_deref())?.unwrap_or(false) {
        let job = state.jobs.start(caller.tenancy);
        let s = state.clone();
        actix_web::rt::spawn(async move {
            // No prober: the job finishes with every check missing.
            let got = answer.await.unwrap_or_default();
            s.jobs.finish(job, collect(got, ids));
        });
        return Ok(HttpResponse::Accepted()
            .insert_header(("Location", format!("/api/v1/jobs/{job}")))
            .json(job_view(job, None)));
    }
    let got = answer.await.ok_or_else(unavailable)?;
    Ok(HttpResponse::Ok().json(collect(got, ids)))
}

/// An asynchronous trigger-now's state and, once done, its results.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}", tag = "sites", security(("bearer" = [])),
    params(("job_id" = u64, Path)),
    responses((status = 200, body = Job), (status = "4XX", body = ErrorBody)))]
async fn job(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<Job>, ApiError> {
    caller.require(Scope::Read)?;
    let r = state
        .jobs
        .get(*id, caller.tenancy)
        .ok_or_else(|| ApiError::not_found(format!("no job {id} (jobs are kept 10 minutes)")))?;
    Ok(web::Json(job_view(*id, r)))
}
