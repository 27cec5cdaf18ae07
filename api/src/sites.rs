//! Sites, endpoints, checks, pause/resume, maintenance windows and bulk writes.

use actix_web::{HttpResponse, web};
use jetmon_shared::check::{
    CheckSpec, CheckType, DnsRecordType, HttpMethod, IpPreference, RedirectPolicy,
};
use jetmon_shared::state::State as SiteState;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::{
    ApiError, Caller, PageInfo, State, cut, decode_cursor, list_of, page_limit, parsed, rfc3339,
};
use crate::target::{MAX_INTERVAL_S, MIN_INTERVAL_S, TargetProblem};
use jetmon_engine::Window;
use jetmon_store::tokens::Scope;
use jetmon_store::{CheckRow, EndpointRow, NewSite, SiteChange, SiteFilter, SiteRow, WindowRow};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sites", web::get().to(list))
        .route("/sites", web::post().to(create))
        .route("/sites/bulk", web::post().to(bulk))
        .route("/sites/{id}", web::get().to(one))
        .route("/sites/{id}", web::patch().to(patch))
        .route("/sites/{id}", web::delete().to(delete))
        .route("/sites/{id}/pause", web::post().to(pause))
        .route("/sites/{id}/resume", web::post().to(resume))
        .route("/sites/{id}/endpoints", web::get().to(endpoints))
        .route("/sites/{id}/endpoints", web::post().to(add_endpoint))
        .route("/sites/{id}/endpoints/{eid}", web::get().to(endpoint))
        .route(
            "/sites/{id}/endpoints/{eid}",
            web::patch().to(patch_endpoint),
        )
        .route(
            "/sites/{id}/endpoints/{eid}",
            web::delete().to(delete_endpoint),
        )
        .route("/sites/{id}/checks", web::get().to(checks))
        .route("/sites/{id}/checks", web::post().to(add_check))
        .route("/sites/{id}/checks/{cid}", web::get().to(check))
        .route("/sites/{id}/checks/{cid}", web::patch().to(patch_check))
        .route("/sites/{id}/checks/{cid}", web::delete().to(delete_check))
        .route("/sites/{id}/maintenance", web::get().to(site_maintenance))
        .route("/sites/{id}/maintenance", web::put().to(put_maintenance))
        .route(
            "/sites/{id}/maintenance",
            web::delete().to(delete_maintenance),
        )
        .route("/maintenance", web::get().to(all_maintenance));
}

/// Most items in one bulk call.
pub const MAX_BULK: usize = 1000;
/// Most maintenance windows per site.
pub const MAX_WINDOWS: usize = 50;
const MAX_NAME: usize = 200;
const MAX_TAGS: usize = 20;

/// A site: what its owner watches, with its rolled-up state.
#[derive(Serialize, ToSchema)]
pub struct Site {
    pub id: u64,
    pub name: String,
    /// The main URL (its first endpoint).
    pub url: String,
    pub tags: Vec<String>,
    /// False once deleted: history is kept, monitoring stopped.
    pub active: bool,
    /// up, warning, degraded, seems_down, down, paused, maintenance, unknown.
    pub state: String,
    /// 0 (up) to 4 (down).
    pub severity: u8,
    /// Jetmon v1's integer: 1 running, 0 seems down, 2 confirmed down.
    pub site_status: u8,
    pub active_event_count: u32,
    pub last_status_change_at: Option<String>,
    pub last_checked_at: Option<String>,
    pub ssl_expiry_at: Option<String>,
    pub created_at: String,
    /// The Jetmon v1 id, when set (unique among sites).
    pub blog_id: Option<u64>,
}

impl From<SiteRow> for Site {
    fn from(s: SiteRow) -> Site {
        Site {
            id: s.id,
            name: s.name,
            url: s.url,
            tags: s.tags,
            active: s.active,
            state: s.state.name().to_owned(),
            severity: s.severity.0,
            site_status: s.site_status,
            active_event_count: s.active_event_count,
            last_status_change_at: s.last_status_change_us.map(rfc3339),
            last_checked_at: s.last_checked_us.map(rfc3339),
            ssl_expiry_at: s
                .ssl_expiry_s
                .and_then(|t| u64::try_from(t).ok())
                .map(|t| rfc3339(t * 1_000_000)),
            created_at: rfc3339(s.created_us),
            blog_id: s.blog_id,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SitePage {
    pub data: Vec<Site>,
    pub page: PageInfo,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SiteQuery {
    /// From the previous page's `page.next`.
    cursor: Option<String>,
    /// 1 to 200 (default 50).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    state: Option<String>,
    /// Comma-separated states.
    #[serde(rename = "state__in")]
    #[param(rename = "state__in")]
    state_in: Option<String>,
    #[serde(rename = "severity__gte")]
    #[param(rename = "severity__gte", value_type = Option<u8>)]
    severity_gte: Option<String>,
    #[param(value_type = Option<bool>)]
    active: Option<String>,
    /// Substring of the URL or name.
    q: Option<String>,
    tag: Option<String>,
    /// Comma-separated Jetmon v1 ids.
    #[serde(rename = "blog_id__in")]
    #[param(rename = "blog_id__in")]
    blog_id_in: Option<String>,
}

fn parse_state(s: &str) -> Option<SiteState> {
    SiteState::from_name(s)
}

/// Sites, filtered before the page is cut.
#[utoipa::path(get, path = "/api/v1/sites", tag = "sites", params(SiteQuery),
    security(("bearer" = [])),
    responses((status = 200, body = SitePage), (status = "4XX", body = ErrorBody)))]
async fn list(
    caller: Caller,
    state: web::Data<State>,
    q: web::Query<SiteQuery>,
) -> Result<web::Json<SitePage>, ApiError> {
    caller.require(Scope::Read)?;
    let q = q.into_inner();
    let limit = page_limit(q.limit.as_deref())?;
    let after = decode_cursor(q.cursor.as_deref())?;
    let mut state_in = list_of("state__in", q.state_in.as_deref(), parse_state)?;
    if let Some(s) = &q.state {
        state_in.push(parse_state(s).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("state: no state {s:?}"))
        })?);
    }
    let filter = SiteFilter {
        state_in,
        severity_gte: parsed("severity__gte", q.severity_gte.as_deref())?,
        active: parsed("active", q.active.as_deref())?,
        q: q.q,
        tag: q.tag,
        id_in: Vec::new(),
        blog_id_in: list_of("blog_id__in", q.blog_id_in.as_deref(), |v| {
            v.parse::<u64>().ok().filter(|b| valid_blog_id(*b))
        })?,
    };
    let rows = state
        .store
        .sites_page(after, limit + 1, &filter)
        .await
        .map_err(ApiError::from_store)?;
    let (rows, page) = cut(rows, limit, |s| s.id);
    Ok(web::Json(SitePage {
        data: rows.into_iter().map(Site::from).collect(),
        page,
    }))
}

pub(crate) async fn site_or_404(state: &State, id: u64) -> Result<SiteRow, ApiError> {
    state
        .store
        .site(id)
        .await
        .map_err(ApiError::from_store)?
        .ok_or_else(|| ApiError::not_found(format!("no site {id}")))
}

/// One site.
#[utoipa::path(get, path = "/api/v1/sites/{id}", tag = "sites", security(("bearer" = [])),
    params(("id" = u64, Path, description = "site id")),
    responses((status = 200, body = Site), (status = "4XX", body = ErrorBody)))]
async fn one(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<Site>, ApiError> {
    caller.require(Scope::Read)?;
    Ok(web::Json(Site::from(site_or_404(&state, *id).await?)))
}

/// A new site: its URL becomes its first endpoint, watched by one HTTP check.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSiteBody {
    /// http(s) URL; must pass probe safety (public addresses only, unless allowed).
    #[schema(pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[^/@ ]+")]
    pub url: String,
    /// Defaults to the URL.
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    /// 10 to 86400 (default 60).
    pub interval_s: Option<u32>,
    /// 1 to 120000 (default 10000).
    pub timeout_ms: Option<u32>,
    /// Words the page must contain.
    pub keywords: Option<Vec<String>>,
    /// The Jetmon v1 id (1 to 2^63-1, unique among sites), so a v1 consumer can map its sites.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub blog_id: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct SiteCreated {
    pub site: Site,
    pub checks: Vec<Check>,
}

fn check_name(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.len() > max || v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("{field}: at most {max} bytes, no control characters"),
        ));
    }
    Ok(())
}

fn valid_blog_id(b: u64) -> bool {
    (1..=i64::MAX as u64).contains(&b)
}

fn check_blog_id(b: Option<u64>) -> Result<(), ApiError> {
    match b {
        Some(b) if !valid_blog_id(b) => Err(ApiError::bad_request(
            "invalid_body",
            format!("blog_id: {b} is not 1 to {}", i64::MAX),
        )),
        _ => Ok(()),
    }
}

/// 409 when a v1 id already belongs to another site.
async fn blog_id_free(state: &State, b: Option<u64>, except: Option<u64>) -> Result<(), ApiError> {
    let Some(b) = b else {
        return Ok(());
    };
    let taken = state
        .store
        .blog_ids_taken(&[b], except)
        .await
        .map_err(ApiError::from_store)?;
    if taken.is_empty() {
        Ok(())
    } else {
        Err(ApiError::conflict(
            "blog_id_taken",
            format!("blog_id {b} already belongs to another site"),
        ))
    }
}

fn check_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("tags: at most {MAX_TAGS}"),
        ));
    }
    for t in tags {
        if t.is_empty()
            || t.len() > 64
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!("tags: {t:?} is not a tag (1 to 64 of a-z, 0-9, - _ . :)"),
            ));
        }
    }
    Ok(())
}

/// Checks a check's target the way the prober will see it: syntax (422 `invalid_target`) and
/// probe safety (422 `unsafe_target`).
pub(crate) fn check_target(state: &State, t: CheckType, target: &str) -> Result<(), ApiError> {
    crate::target::check_target(&state.safety, t, target).map_err(|p| match p {
        TargetProblem::Invalid(why) => {
            ApiError::unprocessable("invalid_target", format!("target {target:?}: {why}"))
        }
        TargetProblem::Unsafe(why) => ApiError::unprocessable(
            "unsafe_target",
            jetmon_shared::outcome::blocked_note(why, None, &format!("target {target:?}")),
        ),
    })
}

fn site_spec(state: &State, b: &NewSiteBody) -> Result<NewSite, ApiError> {
    check_target(state, CheckType::Http, &b.url)?;
    let input = CheckInput {
        interval_s: b.interval_s,
        timeout_ms: b.timeout_ms,
        keywords: b.keywords.clone(),
        ..CheckInput::default()
    };
    let mut spec = CheckSpec::new(1, 1, CheckType::Http, &b.url);
    input.apply(&mut spec)?;
    let name = b.name.clone().unwrap_or_else(|| b.url.clone());
    check_name("name", &name, MAX_NAME)?;
    let tags = b.tags.clone().unwrap_or_default();
    check_tags(&tags)?;
    check_blog_id(b.blog_id)?;
    Ok(NewSite {
        name,
        url: b.url.clone(),
        tags,
        checks: vec![spec],
        blog_id: b.blog_id,
    })
}

/// Adds a site (and its first HTTP check).
#[utoipa::path(post, path = "/api/v1/sites", tag = "sites", security(("bearer" = [])),
    request_body = NewSiteBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays return the first response")),
    responses((status = 201, body = SiteCreated), (status = "4XX", body = ErrorBody)))]
async fn create(
    caller: Caller,
    state: web::Data<State>,
    body: web::Json<NewSiteBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Write)?;
    let new = site_spec(&state, &body)?;
    blog_id_free(&state, new.blog_id, None).await?;
    let id = state
        .store
        .create_site(&new)
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    let site = site_or_404(&state, id).await?;
    let checks = site_checks(&state, id).await?;
    Ok(HttpResponse::Created().json(SiteCreated {
        site: Site::from(site),
        checks,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSiteBody {
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    /// false takes the site out of monitoring (like DELETE); true brings it back.
    pub active: Option<bool>,
    /// The Jetmon v1 id (1 to 2^63-1, unique among sites).
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub blog_id: Option<u64>,
}

/// Changes a site's name, tags, active flag or v1 id.
#[utoipa::path(patch, path = "/api/v1/sites/{id}", tag = "sites", security(("bearer" = [])),
    params(("id" = u64, Path)), request_body = PatchSiteBody,
    responses((status = 200, body = Site), (status = "4XX", body = ErrorBody)))]
async fn patch(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    body: web::Json<PatchSiteBody>,
) -> Result<web::Json<Site>, ApiError> {
    caller.require(Scope::Write)?;
    if let Some(n) = &body.name {
        check_name("name", n, MAX_NAME)?;
    }
    if let Some(t) = &body.tags {
        check_tags(t)?;
    }
    check_blog_id(body.blog_id)?;
    site_or_404(&state, *id).await?;
    blog_id_free(&state, body.blog_id, Some(*id)).await?;
    let found = state
        .store
        .update_site(
            *id,
            &SiteChange {
                name: body.name.as_deref(),
                tags: body.tags.as_deref(),
                active: body.active,
                blog_id: body.blog_id,
            },
        )
        .await
        .map_err(ApiError::from_store)?;
    if !found {
        return Err(ApiError::not_found(format!("no site {id}")));
    }
    if body.active.is_some() {
        state.link.nudge();
    }
    Ok(web::Json(Site::from(site_or_404(&state, *id).await?)))
}

/// Deletes a site: it stops being monitored and its open events close (`manual_override`);
/// its history stays (GET still shows it, `active: false`).
#[utoipa::path(delete, path = "/api/v1/sites/{id}", tag = "sites", security(("bearer" = [])),
    params(("id" = u64, Path)),
    responses((status = 200, body = Site), (status = "4XX", body = ErrorBody)))]
async fn delete(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<Site>, ApiError> {
    caller.require(Scope::Write)?;
    let found = state
        .store
        .update_site(
            *id,
            &SiteChange {
                active: Some(false),
                ..SiteChange::default()
            },
        )
        .await
        .map_err(ApiError::from_store)?;
    if !found {
        return Err(ApiError::not_found(format!("no site {id}")));
    }
    state.link.nudge();
    Ok(web::Json(Site::from(site_or_404(&state, *id).await?)))
}

#[derive(Serialize, ToSchema)]
pub struct Paused {
    pub site_id: u64,
    pub paused: bool,
    /// Checks whose state this call changed.
    pub changed: u64,
}

async fn set_paused(
    caller: Caller,
    state: web::Data<State>,
    id: u64,
    paused: bool,
) -> Result<web::Json<Paused>, ApiError> {
    caller.require(Scope::Write)?;
    site_or_404(&state, id).await?;
    let changed = state
        .store
        .set_paused(id, paused)
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    Ok(web::Json(Paused {
        site_id: id,
        paused,
        changed,
    }))
}

/// Pauses every check of the site (the time is Paused: not monitored, not downtime).
#[utoipa::path(post, path = "/api/v1/sites/{id}/pause", tag = "sites", security(("bearer" = [])),
    params(("id" = u64, Path)),
    responses((status = 200, body = Paused), (status = "4XX", body = ErrorBody)))]
async fn pause(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<Paused>, ApiError> {
    set_paused(caller, state, *id, true).await
}

/// Resumes every check of the site.
#[utoipa::path(post, path = "/api/v1/sites/{id}/resume", tag = "sites", security(("bearer" = [])),
    params(("id" = u64, Path)),
    responses((status = 200, body = Paused), (status = "4XX", body = ErrorBody)))]
async fn resume(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<Paused>, ApiError> {
    set_paused(caller, state, *id, false).await
}

/// One item of a bulk call: with `id`, an update of that site (name, tags, active); without,
/// a new site.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkItem {
    pub id: Option<u64>,
    pub url: Option<String>,
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub active: Option<bool>,
    pub interval_s: Option<u32>,
    pub timeout_ms: Option<u32>,
    pub keywords: Option<Vec<String>>,
    /// The Jetmon v1 id (1 to 2^63-1, unique among sites), on creates and updates.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub blog_id: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// At most 1000.
    pub sites: Vec<BulkItem>,
}

#[derive(Serialize, ToSchema)]
pub struct BulkResult {
    /// Position in the request.
    pub index: usize,
    /// 201 created, 200 updated, or the error's status.
    pub status: u16,
    pub id: Option<u64>,
    pub error: Option<BulkError>,
}

#[derive(Serialize, ToSchema)]
pub struct BulkError {
    pub code: String,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct BulkResponse {
    pub created: usize,
    pub updated: usize,
    pub failed: usize,
    pub results: Vec<BulkResult>,
}

/// Creates or updates up to 1,000 sites; each item succeeds or fails on its own.
#[utoipa::path(post, path = "/api/v1/sites/bulk", tag = "sites", security(("bearer" = [])),
    request_body = BulkBody,
    responses((status = 200, body = BulkResponse), (status = "4XX", body = ErrorBody)))]
async fn bulk(
    caller: Caller,
    state: web::Data<State>,
    body: web::Json<BulkBody>,
) -> Result<web::Json<BulkResponse>, ApiError> {
    caller.require(Scope::Write)?;
    let items = body.into_inner().sites;
    if items.is_empty() || items.len() > MAX_BULK {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("sites: 1 to {MAX_BULK} items, not {}", items.len()),
        ));
    }
    let mut results: Vec<BulkResult> = Vec::with_capacity(items.len());
    let mut creates: Vec<(usize, NewSite)> = Vec::new();
    let fail = |index, e: ApiError| BulkResult {
        index,
        status: e.status.as_u16(),
        id: None,
        error: Some(BulkError {
            code: e.code.to_owned(),
            message: e.message,
        }),
    };
    // v1 ids named by this request: two items may not claim the same one.
    let mut claimed = std::collections::HashSet::new();
    let claim = |claimed: &mut std::collections::HashSet<u64>, b: Option<u64>| match b {
        Some(b) if !claimed.insert(b) => Err(ApiError::conflict(
            "blog_id_taken",
            format!("blog_id {b} is named by an earlier item of this request"),
        )),
        _ => Ok(()),
    };
    for (index, item) in items.into_iter().enumerate() {
        match item.id {
            Some(id) => {
                if item.url.is_some()
                    || item.interval_s.is_some()
                    || item.timeout_ms.is_some()
                    || item.keywords.is_some()
                {
                    results.push(fail(
                        index,
                        ApiError::bad_request(
                            "invalid_body",
                            "an update (with id) changes name, tags, active and blog_id; \
                             change checks through /sites/{id}/checks",
                        ),
                    ));
                    continue;
                }
                let checked = item
                    .name
                    .as_deref()
                    .map_or(Ok(()), |n| check_name("name", n, MAX_NAME))
                    .and_then(|()| item.tags.as_deref().map_or(Ok(()), check_tags))
                    .and_then(|()| check_blog_id(item.blog_id))
                    .and_then(|()| claim(&mut claimed, item.blog_id));
                if let Err(e) = checked {
                    results.push(fail(index, e));
                    continue;
                }
                if let Err(e) = blog_id_free(&state, item.blog_id, Some(id)).await {
                    results.push(fail(index, e));
                    continue;
                }
                let found = state
                    .store
                    .update_site(
                        id,
                        &SiteChange {
                            name: item.name.as_deref(),
                            tags: item.tags.as_deref(),
                            active: item.active,
                            blog_id: item.blog_id,
                        },
                    )
                    .await
                    .map_err(ApiError::from_store)?;
                results.push(if found {
                    BulkResult {
                        index,
                        status: 200,
                        id: Some(id),
                        error: None,
                    }
                } else {
                    fail(index, ApiError::not_found(format!("no site {id}")))
                });
            }
            None => {
                if item.active.is_some() {
                    results.push(fail(
                        index,
                        ApiError::bad_request("invalid_body", "active: only on updates"),
                    ));
                    continue;
                }
                let Some(url) = item.url else {
                    results.push(fail(
                        index,
                        ApiError::bad_request("invalid_body", "url: required for a new site"),
                    ));
                    continue;
                };
                let b = NewSiteBody {
                    url,
                    name: item.name,
                    tags: item.tags,
                    interval_s: item.interval_s,
                    timeout_ms: item.timeout_ms,
                    keywords: item.keywords,
                    blog_id: item.blog_id,
                };
                let checked = match site_spec(&state, &b) {
                    Ok(s) => match claim(&mut claimed, s.blog_id) {
                        Ok(()) => blog_id_free(&state, s.blog_id, None).await.map(|()| s),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                match checked {
                    Ok(s) => {
                        creates.push((index, s));
                        results.push(BulkResult {
                            index,
                            status: 201,
                            id: None,
                            error: None,
                        });
                    }
                    Err(e) => results.push(fail(index, e)),
                }
            }
        }
    }
    if !creates.is_empty() {
        let sites: Vec<NewSite> = creates.iter().map(|(_, s)| s.clone()).collect();
        let ids = state
            .store
            .create_sites(&sites)
            .await
            .map_err(ApiError::from_store)?;
        for ((index, _), id) in creates.iter().zip(ids) {
            if let Some(r) = results.get_mut(*index) {
                r.id = Some(id);
            }
        }
    }
    state.link.nudge();
    let count = |s: u16| results.iter().filter(|r| r.status == s).count();
    Ok(web::Json(BulkResponse {
        created: count(201),
        updated: count(200),
        failed: results.iter().filter(|r| r.status >= 400).count(),
        results,
    }))
}

/// One URL of a site.
#[derive(Serialize, ToSchema)]
pub struct Endpoint {
    pub id: u64,
    pub site_id: u64,
    pub url: String,
    /// A non-critical endpoint's Down is its site's Degraded.
    pub critical: bool,
}

impl From<EndpointRow> for Endpoint {
    fn from(e: EndpointRow) -> Endpoint {
        Endpoint {
            id: e.id,
            site_id: e.site_id,
            url: e.url,
            critical: e.critical,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    pub data: Vec<Endpoint>,
}

/// A site's endpoints.
#[utoipa::path(get, path = "/api/v1/sites/{id}/endpoints", tag = "sites", security(("bearer" = [])),
    params(("id" = u64, Path)),
    responses((status = 200, body = EndpointList), (status = "4XX", body = ErrorBody)))]
async fn endpoints(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<EndpointList>, ApiError> {
    caller.require(Scope::Read)?;
    site_or_404(&state, *id).await?;
    let rows = state
        .store
        .endpoints(*id)
        .await
        .map_err(ApiError::from_store)?;
    Ok(web::Json(EndpointList {
        data: rows.into_iter().map(Endpoint::from).collect(),
    }))
}

async fn endpoint_or_404(state: &State, site: u64, eid: u64) -> Result<EndpointRow, ApiError> {
    site_or_404(state, site).await?;
    state
        .store
        .endpoints(site)
        .await
        .map_err(ApiError::from_store)?
        .into_iter()
        .find(|e| e.id == eid)
        .ok_or_else(|| ApiError::not_found(format!("site {site} has no endpoint {eid}")))
}

/// One endpoint.
#[utoipa::path(get, path = "/api/v1/sites/{id}/endpoints/{eid}", tag = "sites",
    security(("bearer" = [])), params(("id" = u64, Path), ("eid" = u64, Path)),
    responses((status = 200, body = Endpoint), (status = "4XX", body = ErrorBody)))]
async fn endpoint(
    caller: Caller,
    state: web::Data<State>,
    path: web::Path<(u64, u64)>,
) -> Result<web::Json<Endpoint>, ApiError> {
    caller.require(Scope::Read)?;
    let (id, eid) = path.into_inner();
    Ok(web::Json(Endpoint::from(
        endpoint_or_404(&state, id, eid).await?,
    )))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    pub url: Option<String>,
    pub critical: Option<bool>,
}

/// Adds an endpoint (add checks on it with `endpoint_id`).
#[utoipa::path(post, path = "/api/v1/sites/{id}/endpoints", tag = "sites",
    security(("bearer" = [])), params(("id" = u64, Path)), request_body = EndpointBody,
    responses((status = 201, body = Endpoint), (status = "4XX", body = ErrorBody)))]
async fn add_endpoint(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    body: web::Json<EndpointBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Write)?;
    site_or_404(&state, *id).await?;
    let url = body
        .url
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("invalid_body", "url: required"))?;
    check_target(&state, CheckType::Http, url)?;
    let critical = body.critical.unwrap_or(true);
    let eid = state
        .store
        .add_endpoint(*id, url, critical)
        .await
        .map_err(ApiError::from_store)?;
    Ok(HttpResponse::Created().json(Endpoint {
        id: eid,
        site_id: *id,
        url: url.to_owned(),
        critical,
    }))
}

/// Changes an endpoint (its checks follow its `critical`).
#[utoipa::path(patch, path = "/api/v1/sites/{id}/endpoints/{eid}", tag = "sites",
    security(("bearer" = [])), params(("id" = u64, Path), ("eid" = u64, Path)),
    request_body = EndpointBody,
    responses((status = 200, body = Endpoint), (status = "4XX", body = ErrorBody)))]
async fn patch_endpoint(
    caller: Caller,
    state: web::Data<State>,
    path: web::Path<(u64, u64)>,
    body: web::Json<EndpointBody>,
) -> Result<web::Json<Endpoint>, ApiError> {
    caller.require(Scope::Write)?;
    let (id, eid) = path.into_inner();
    endpoint_or_404(&state, id, eid).await?;
    if let Some(u) = &body.url {
        check_target(&state, CheckType::Http, u)?;
    }
    state
        .store
        .update_endpoint(id, eid, body.url.as_deref(), body.critical)
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    Ok(web::Json(Endpoint::from(
        endpoint_or_404(&state, id, eid).await?,
    )))
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub id: u64,
    pub deleted: bool,
}

/// Deletes an endpoint with its checks and their statistics.
#[utoipa::path(delete, path = "/api/v1/sites/{id}/endpoints/{eid}", tag = "sites",
    security(("bearer" = [])), params(("id" = u64, Path), ("eid" = u64, Path)),
    responses((status = 200, body = Deleted), (status = "4XX", body = ErrorBody)))]
async fn delete_endpoint(
    caller: Caller,
    state: web::Data<State>,
    path: web::Path<(u64, u64)>,
) -> Result<web::Json<Deleted>, ApiError> {
    caller.require(Scope::Write)?;
    let (id, eid) = path.into_inner();
    endpoint_or_404(&state, id, eid).await?;
    state
        .store
        .delete_endpoint(id, eid)
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    Ok(web::Json(Deleted {
        id: eid,
        deleted: true,
    }))
}

/// A check: one test of one kind, with its type-specific settings.
#[derive(Serialize, ToSchema)]
pub struct Check {
    pub id: u64,
    pub site_id: u64,
    pub endpoint_id: Option<u64>,
    pub name: String,
    /// http, tcp or dns.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub check_type: String,
    /// URL (http), host:port (tcp) or name (dns).
    pub target: String,
    pub interval_s: u32,
    pub timeout_ms: u32,
    pub retries: u8,
    pub retry_spacing_ms: u32,
    pub critical: bool,
    pub paused: bool,
    /// http: GET or HEAD.
    pub method: String,
    /// http: follow, fail or alert.
    pub redirect_policy: String,
    pub keywords: Vec<String>,
    pub forbidden_keywords: Vec<String>,
    /// dns: A, AAAA, CNAME, MX or TXT.
    pub dns_record_type: String,
    pub dns_expected: Vec<String>,
    pub tcp_banner: Option<String>,
    /// http: inclusive [lo, hi] ranges; empty = 1..=399 counts as up.
    pub accepted_statuses: Vec<[u16; 2]>,
    /// v4_first, v6_first, v4_only or v6_only.
    pub ip_preference: String,
    pub keyword_case_sensitive: bool,
    pub max_redirects: u8,
    /// Body bytes read at most (0 = the default, 256 KiB).
    pub body_budget_bytes: u32,
    pub min_body_bytes: u32,
    /// Slower than this is Warning / Degraded (0 = off).
    pub ttfb_warn_ms: u32,
    pub ttfb_degrade_ms: u32,
    pub total_warn_ms: u32,
    pub total_degrade_ms: u32,
    /// Moves on with every change.
    pub generation: u32,
    pub created_at: String,
    pub updated_at: String,
}

impl From<CheckRow> for Check {
    fn from(c: CheckRow) -> Check {
        let s = c.spec;
        Check {
            id: s.check_id,
            site_id: s.site_id,
            endpoint_id: c.endpoint_id,
            name: c.name,
            check_type: s.check_type.name().to_owned(),
            target: s.target,
            interval_s: s.interval_ms / 1000,
            timeout_ms: s.timeout_ms,
            retries: s.retries,
            retry_spacing_ms: s.retry_spacing_ms,
            critical: c.critical,
            paused: s.paused,
            method: s.method.name().to_owned(),
            redirect_policy: s.redirect_policy.name().to_owned(),
            keywords: s.keywords,
            forbidden_keywords: s.forbidden_keywords,
            dns_record_type: s.dns_record_type.name().to_owned(),
            dns_expected: s.dns_expected,
            tcp_banner: s.tcp_banner,
            accepted_statuses: s.accepted_statuses.iter().map(|(a, b)| [*a, *b]).collect(),
            ip_preference: s.ip_preference.name().to_owned(),
            keyword_case_sensitive: s.keyword_case_sensitive,
            max_redirects: s.max_redirects,
            body_budget_bytes: s.body_budget_bytes,
            min_body_bytes: s.min_body_bytes,
            ttfb_warn_ms: s.ttfb_warn_ms,
            ttfb_degrade_ms: s.ttfb_degrade_ms,
            total_warn_ms: s.total_warn_ms,
            total_degrade_ms: s.total_degrade_ms,
            generation: s.generation,
            created_at: rfc3339(c.created_us),
            updated_at: rfc3339(c.updated_us),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CheckList {
    pub data: Vec<Check>,
}

/// A check's settings; on PATCH only what is given changes.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CheckInput {
    /// http (default), tcp or dns.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub check_type: Option<String>,
    pub name: Option<String>,
    /// Defaults to the endpoint's URL (or the site's) for http.
    pub target: Option<String>,
    pub endpoint_id: Option<u64>,
    pub interval_s: Option<u32>,
    pub timeout_ms: Option<u32>,
    /// Fast local re-checks before asking verifliers (0 to 5).
    pub retries: Option<u8>,
    pub retry_spacing_ms: Option<u32>,
    pub critical: Option<bool>,
    pub method: Option<String>,
    pub redirect_policy: Option<String>,
    pub keywords: Option<Vec<String>>,
    pub forbidden_keywords: Option<Vec<String>>,
    pub dns_record_type: Option<String>,
    pub dns_expected: Option<Vec<String>>,
    pub tcp_banner: Option<String>,
    /// Inclusive [lo, hi] status ranges counted as up (at most 16).
    pub accepted_statuses: Option<Vec<[u16; 2]>>,
    pub ip_preference: Option<String>,
    pub keyword_case_sensitive: Option<bool>,
    /// 0 to 10.
    pub max_redirects: Option<u8>,
    /// Up to 1 MiB (0 = the default).
    pub body_budget_bytes: Option<u32>,
    pub min_body_bytes: Option<u32>,
    pub ttfb_warn_ms: Option<u32>,
    pub ttfb_degrade_ms: Option<u32>,
    pub total_warn_ms: Option<u32>,
    pub total_degrade_ms: Option<u32>,
}

fn named<T>(
    field: &str,
    v: &str,
    parse: fn(&str) -> Option<T>,
    allowed: &str,
) -> Result<T, ApiError> {
    parse(v).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_body",
            format!("{field}: {v:?} is not one of {allowed}"),
        )
    })
}

impl CheckInput {
    /// Applies the settings given onto `spec`, checking each against checks.md's limits: one
    /// path for the API and `jetmon check`; the error names the field.
    pub fn apply(&self, spec: &mut CheckSpec) -> Result<(), ApiError> {
        let bad = |m: String| ApiError::bad_request("invalid_body", m);
        if let Some(s) = self.interval_s {
            if !(MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&s) {
                return Err(bad(format!(
                    "interval_s: {s} is outside {MIN_INTERVAL_S}..={MAX_INTERVAL_S}"
                )));
            }
            spec.interval_ms = s * 1000;
        }
        if let Some(t) = self.timeout_ms {
            spec.timeout_ms = t;
        }
        if let Some(r) = self.retries {
            if r > 5 {
                return Err(bad(format!("retries: {r} is more than 5")));
            }
            spec.retries = r;
        }
        if let Some(r) = self.retry_spacing_ms {
            if !(1000..=600_000).contains(&r) {
                return Err(bad(format!(
                    "retry_spacing_ms: {r} is outside 1000..=600000"
                )));
            }
            spec.retry_spacing_ms = r;
        }
        if let Some(m) = &self.method {
            spec.method = named("method", m, HttpMethod::from_name, "GET, HEAD")?;
        }
        if let Some(p) = &self.redirect_policy {
            spec.redirect_policy = named(
                "redirect_policy",
                p,
                RedirectPolicy::from_name,
                "follow, fail, alert",
            )?;
        }
        if let Some(k) = &self.keywords {
            spec.keywords = k.clone();
        }
        if let Some(k) = &self.forbidden_keywords {
            spec.forbidden_keywords = k.clone();
        }
        if let Some(t) = &self.dns_record_type {
            spec.dns_record_type = named(
                "dns_record_type",
                t,
                DnsRecordType::from_name,
                "A, AAAA, CNAME, MX, TXT",
            )?;
        }
        if let Some(e) = &self.dns_expected {
            if e.len() > 16 || e.iter().any(|v| v.is_empty() || v.len() > 255) {
                return Err(bad(
                    "dns_expected: at most 16 values of 1 to 255 bytes".into()
                ));
            }
            spec.dns_expected = e.clone();
        }
        if let Some(b) = &self.tcp_banner {
            check_name("tcp_banner", b, 255)?;
            spec.tcp_banner = Some(b.clone());
        }
        if let Some(r) = &self.accepted_statuses {
            spec.accepted_statuses = r.iter().map(|[a, b]| (*a, *b)).collect();
        }
        if let Some(p) = &self.ip_preference {
            spec.ip_preference = named(
                "ip_preference",
                p,
                IpPreference::from_name,
                "v4_first, v6_first, v4_only, v6_only",
            )?;
        }
        if let Some(c) = self.keyword_case_sensitive {
            spec.keyword_case_sensitive = c;
        }
        if let Some(n) = self.max_redirects {
            spec.max_redirects = n;
        }
        for (field, given) in [
            (&mut spec.body_budget_bytes, self.body_budget_bytes),
            (&mut spec.min_body_bytes, self.min_body_bytes),
            (&mut spec.ttfb_warn_ms, self.ttfb_warn_ms),
            (&mut spec.ttfb_degrade_ms, self.ttfb_degrade_ms),
            (&mut spec.total_warn_ms, self.total_warn_ms),
            (&mut spec.total_degrade_ms, self.total_degrade_ms),
        ] {
            if let Some(v) = given {
                *field = v;
            }
        }
        // Limits the engine and prober rely on (sizes, ranges).
        let check_id = spec.check_id;
        spec.check_id = check_id.max(1);
        let valid = spec.validate();
        spec.check_id = check_id;
        valid.map_err(|e| bad(format!("{}: {}", e.field, e.problem)))
    }
}

async fn site_checks(state: &State, site: u64) -> Result<Vec<Check>, ApiError> {
    Ok(state
        .store
        .site_checks(site)
        .await
        .map_err(ApiError::from_store)?
        .into_iter()
        .map(Check::from)
        .collect())
}

/// A site's checks.
#[utoipa::path(get, path = "/api/v1/sites/{id}/checks", tag = "checks", security(("bearer" = [])),
    params(("id" = u64, Path)),
    responses((status = 200, body = CheckList), (status = "4XX", body = ErrorBody)))]
async fn checks(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<CheckList>, ApiError> {
    caller.require(Scope::Read)?;
    site_or_404(&state, *id).await?;
    Ok(web::Json(CheckList {
        data: site_checks(&state, *id).await?,
    }))
}

pub(crate) async fn check_or_404(state: &State, site: u64, cid: u64) -> Result<CheckRow, ApiError> {
    site_or_404(state, site).await?;
    state
        .store
        .site_checks(site)
        .await
        .map_err(ApiError::from_store)?
        .into_iter()
        .find(|c| c.spec.check_id == cid)
        .ok_or_else(|| ApiError::not_found(format!("site {site} has no check {cid}")))
}

/// One check.
#[utoipa::path(get, path = "/api/v1/sites/{id}/checks/{cid}", tag = "checks",
    security(("bearer" = [])), params(("id" = u64, Path), ("cid" = u64, Path)),
    responses((status = 200, body = Check), (status = "4XX", body = ErrorBody)))]
async fn check(
    caller: Caller,
    state: web::Data<State>,
    path: web::Path<(u64, u64)>,
) -> Result<web::Json<Check>, ApiError> {
    caller.require(Scope::Read)?;
    let (id, cid) = path.into_inner();
    Ok(web::Json(Check::from(check_or_404(&state, id, cid).await?)))
}

/// Adds a check to a site.
#[utoipa::path(post, path = "/api/v1/sites/{id}/checks", tag = "checks",
    security(("bearer" = [])), params(("id" = u64, Path)), request_body = CheckInput,
    responses((status = 201, body = Check), (status = "4XX", body = ErrorBody)))]
async fn add_check(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    body: web::Json<CheckInput>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Write)?;
    let site = site_or_404(&state, *id).await?;
    let t = match &body.check_type {
        Some(t) => named("type", t, CheckType::from_name, "http, tcp, dns")?,
        None => CheckType::Http,
    };
    let endpoint = match body.endpoint_id {
        Some(eid) => Some(endpoint_or_404(&state, *id, eid).await?),
        None => None,
    };
    let target = match (&body.target, t, &endpoint) {
        (Some(target), _, _) => target.clone(),
        (None, CheckType::Http, Some(e)) => e.url.clone(),
        (None, CheckType::Http, None) if !site.url.is_empty() => site.url.clone(),
        _ => return Err(ApiError::bad_request("invalid_body", "target: required")),
    };
    check_target(&state, t, &target)?;
    let mut spec = CheckSpec::new(0, *id, t, &target);
    body.apply(&mut spec)?;
    let name = body.name.clone().unwrap_or_default();
    check_name("name", &name, MAX_NAME)?;
    let critical = body
        .critical
        .or(endpoint.as_ref().map(|e| e.critical))
        .unwrap_or(true);
    let cid = state
        .store
        .add_site_check(*id, endpoint.map(|e| e.id), &name, &spec, critical)
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    Ok(HttpResponse::Created().json(Check::from(check_or_404(&state, *id, cid).await?)))
}

/// Changes a check (type, target and settings); what is not given stays.
#[utoipa::path(patch, path = "/api/v1/sites/{id}/checks/{cid}", tag = "checks",
    security(("bearer" = [])), params(("id" = u64, Path), ("cid" = u64, Path)),
    request_body = CheckInput,
    responses((status = 200, body = Check), (status = "4XX", body = ErrorBody)))]
async fn patch_check(
    caller: Caller,
    state: web::Data<State>,
    path: web::Path<(u64, u64)>,
    body: web::Json<CheckInput>,
) -> Result<web::Json<Check>, ApiError> {
    caller.require(Scope::Write)?;
    let (id, cid) = path.into_inner();
    let old = check_or_404(&state, id, cid).await?;
    if body.endpoint_id.is_some() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "endpoint_id: a check stays on its endpoint; add a new check instead",
        ));
    }
    let mut spec = old.spec.clone();
    if let Some(t) = &body.check_type {
        spec.check_type = named("type", t, CheckType::from_name, "http, tcp, dns")?;
    }
    if let Some(t) = &body.target {
        spec.target = t.clone();
    }
    if body.check_type.is_some() || body.target.is_some() {
        check_target(&state, spec.check_type, &spec.target)?;
    }
    body.apply(&mut spec)?;
    let name = body.name.clone().unwrap_or(old.name);
    check_name("name", &name, MAX_NAME)?;
    let critical = body.critical.unwrap_or(old.critical);
    state
        .store
        .replace_check(id, &name, &spec, critical)
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    Ok(web::Json(Check::from(check_or_404(&state, id, cid).await?)))
}

/// Deletes a check and its statistics; its open events close (`manual_override`).
#[utoipa::path(delete, path = "/api/v1/sites/{id}/checks/{cid}", tag = "checks",
    security(("bearer" = [])), params(("id" = u64, Path), ("cid" = u64, Path)),
    responses((status = 200, body = Deleted), (status = "4XX", body = ErrorBody)))]
async fn delete_check(
    caller: Caller,
    state: web::Data<State>,
    path: web::Path<(u64, u64)>,
) -> Result<web::Json<Deleted>, ApiError> {
    caller.require(Scope::Write)?;
    let (id, cid) = path.into_inner();
    check_or_404(&state, id, cid).await?;
    state
        .store
        .delete_check(id, cid)
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    Ok(web::Json(Deleted {
        id: cid,
        deleted: true,
    }))
}

/// A maintenance window: one-off (`from`/`to`) or weekly (`weekly`). Failures inside it are
/// recorded as Maintenance: no alert, not downtime, not monitored time.
#[derive(Serialize, Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct WindowBody {
    /// Only this check (default: the whole site).
    pub check_id: Option<u64>,
    /// One-off: RFC 3339 start.
    #[schema(format = DateTime)]
    pub from: Option<String>,
    /// One-off: RFC 3339 end (after `from`).
    #[schema(format = DateTime)]
    pub to: Option<String>,
    pub weekly: Option<Weekly>,
}

/// Every week, from `day` at `time` (UTC) for `duration_minutes`.
#[derive(Serialize, Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct Weekly {
    /// monday … sunday.
    pub day: String,
    /// HH:MM, UTC.
    pub time: String,
    /// 1 to 10080 (a week).
    pub duration_minutes: u32,
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

#[derive(Serialize, ToSchema)]
pub struct MaintenanceWindow {
    pub id: u64,
    pub site_id: u64,
    pub check_id: Option<u64>,
    /// one_off or weekly.
    pub kind: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub weekly: Option<Weekly>,
}

impl From<WindowRow> for MaintenanceWindow {
    fn from(w: WindowRow) -> MaintenanceWindow {
        let (kind, from, to, weekly) = match w.window {
            Window::OneOff { from_us, to_us } => (
                "one_off",
                Some(rfc3339(from_us)),
                Some(rfc3339(to_us)),
                None,
            ),
            Window::Weekly {
                start_s,
                duration_s,
            } => (
                "weekly",
                None,
                None,
                Some(Weekly {
                    day: DAYS[(start_s / 86_400) as usize % 7].to_owned(),
                    time: format!(
                        "{:02}:{:02}",
                        (start_s % 86_400) / 3600,
                        (start_s % 3600) / 60
                    ),
                    duration_minutes: duration_s / 60,
                }),
            ),
        };
        MaintenanceWindow {
            id: w.id,
            site_id: w.site_id,
            check_id: w.check_id,
            kind: kind.to_owned(),
            from,
            to,
            weekly,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceBody {
    /// Replaces every window of the site (at most 50).
    pub windows: Vec<WindowBody>,
}

#[derive(Serialize, ToSchema)]
pub struct MaintenanceList {
    pub data: Vec<MaintenanceWindow>,
}

#[derive(Serialize, ToSchema)]
pub struct MaintenancePage {
    pub data: Vec<MaintenanceWindow>,
    pub page: PageInfo,
}

fn window_of(w: &WindowBody) -> Result<Window, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_body", m);
    match (&w.from, &w.to, &w.weekly) {
        (Some(f), Some(t), None) => {
            let from_us = super::parse_rfc3339(f)
                .ok_or_else(|| bad(format!("from: {f:?} is not an RFC 3339 time")))?;
            let to_us = super::parse_rfc3339(t)
                .ok_or_else(|| bad(format!("to: {t:?} is not an RFC 3339 time")))?;
            if to_us <= from_us {
                return Err(bad("to: must be after from".into()));
            }
            Ok(Window::OneOff { from_us, to_us })
        }
        (None, None, Some(wk)) => {
            let day = DAYS
                .iter()
                .position(|d| wk.day.eq_ignore_ascii_case(d))
                .ok_or_else(|| bad(format!("weekly.day: {:?} is not a weekday", wk.day)))?;
            let (h, m) = wk
                .time
                .split_once(':')
                .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
                .filter(|(h, m)| *h < 24 && *m < 60 && wk.time.len() == 5)
                .ok_or_else(|| bad(format!("weekly.time: {:?} is not HH:MM", wk.time)))?;
            if !(1..=10_080).contains(&wk.duration_minutes) {
                return Err(bad("weekly.duration_minutes: 1 to 10080".into()));
            }
            Ok(Window::Weekly {
                start_s: day as u32 * 86_400 + h * 3600 + m * 60,
                duration_s: wk.duration_minutes * 60,
            })
        }
        _ => Err(bad(
            "a window is either from + to (one-off) or weekly".into()
        )),
    }
}

/// A site's maintenance windows.
#[utoipa::path(get, path = "/api/v1/sites/{id}/maintenance", tag = "maintenance",
    security(("bearer" = [])), params(("id" = u64, Path)),
    responses((status = 200, body = MaintenanceList), (status = "4XX", body = ErrorBody)))]
async fn site_maintenance(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<MaintenanceList>, ApiError> {
    caller.require(Scope::Read)?;
    site_or_404(&state, *id).await?;
    let rows = state
        .store
        .windows_page(Some(*id), 0, MAX_WINDOWS as u32 * 2)
        .await
        .map_err(ApiError::from_store)?;
    Ok(web::Json(MaintenanceList {
        data: rows.into_iter().map(MaintenanceWindow::from).collect(),
    }))
}

/// Replaces a site's maintenance windows.
#[utoipa::path(put, path = "/api/v1/sites/{id}/maintenance", tag = "maintenance",
    security(("bearer" = [])), params(("id" = u64, Path)), request_body = MaintenanceBody,
    responses((status = 200, body = MaintenanceList), (status = "4XX", body = ErrorBody)))]
async fn put_maintenance(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    body: web::Json<MaintenanceBody>,
) -> Result<web::Json<MaintenanceList>, ApiError> {
    caller.require(Scope::Write)?;
    site_or_404(&state, *id).await?;
    if body.windows.len() > MAX_WINDOWS {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("windows: at most {MAX_WINDOWS}"),
        ));
    }
    let checks: Vec<u64> = state
        .store
        .site_check_ids(*id)
        .await
        .map_err(ApiError::from_store)?;
    let mut windows = Vec::with_capacity(body.windows.len());
    for (n, w) in body.windows.iter().enumerate() {
        let window = window_of(w).map_err(|mut e| {
            e.message = format!("windows[{n}].{}", e.message);
            e
        })?;
        if let Some(c) = w.check_id
            && !checks.contains(&c)
        {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!("windows[{n}].check_id: site {id} has no check {c}"),
            ));
        }
        windows.push((w.check_id, window));
    }
    let rows = state
        .store
        .put_windows(*id, &windows)
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    Ok(web::Json(MaintenanceList {
        data: rows.into_iter().map(MaintenanceWindow::from).collect(),
    }))
}

/// Removes a site's maintenance windows.
#[utoipa::path(delete, path = "/api/v1/sites/{id}/maintenance", tag = "maintenance",
    security(("bearer" = [])), params(("id" = u64, Path)),
    responses((status = 200, body = MaintenanceList), (status = "4XX", body = ErrorBody)))]
async fn delete_maintenance(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<MaintenanceList>, ApiError> {
    caller.require(Scope::Write)?;
    site_or_404(&state, *id).await?;
    state
        .store
        .put_windows(*id, &[])
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    Ok(web::Json(MaintenanceList { data: Vec::new() }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    cursor: Option<String>,
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

/// Every maintenance window, by id.
#[utoipa::path(get, path = "/api/v1/maintenance", tag = "maintenance", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = MaintenancePage), (status = "4XX", body = ErrorBody)))]
async fn all_maintenance(
    caller: Caller,
    state: web::Data<State>,
    q: web::Query<PageQuery>,
) -> Result<web::Json<MaintenancePage>, ApiError> {
    caller.require(Scope::Read)?;
    let limit = page_limit(q.limit.as_deref())?;
    let after = decode_cursor(q.cursor.as_deref())?;
    let rows = state
        .store
        .windows_page(None, after, limit + 1)
        .await
        .map_err(ApiError::from_store)?;
    let (rows, page) = cut(rows, limit, |w| w.id);
    Ok(web::Json(MaintenancePage {
        data: rows.into_iter().map(MaintenanceWindow::from).collect(),
        page,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use utoipa::PartialSchema;

    /// issue 14: every check field the API accepts changes what the prober or the engine gets.
    /// The list of fields comes from the OpenAPI schema, so a new field without a case here
    /// fails this test. `type`, `target`, `name`, `endpoint_id` and `critical` are applied by
    /// the routes (they pick the check's type and URL, label it, and set the rollup); every
    /// other field must change the spec `CheckInput::apply` builds.
    #[test]
    fn every_accepted_check_field_changes_the_check() {
        let schema = serde_json::to_value(CheckInput::schema()).expect("schema");
        let fields: Vec<String> = schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .cloned()
            .collect();
        let routed = ["type", "target", "name", "endpoint_id", "critical"];
        let sample = |f: &str| -> serde_json::Value {
            match f {
                "interval_s" => json!(300),
                "timeout_ms" => json!(2500),
                "retries" => json!(4),
                "retry_spacing_ms" => json!(20_000),
                "method" => json!("HEAD"),
                "redirect_policy" => json!("alert"),
                "keywords" | "forbidden_keywords" => json!(["word"]),
                "dns_record_type" => json!("AAAA"),
                "dns_expected" => json!(["192.0.2.1"]),
                "tcp_banner" => json!("SSH-"),
                "accepted_statuses" => json!([[200, 204]]),
                "ip_preference" => json!("v6_only"),
                "keyword_case_sensitive" => json!(true),
                "max_redirects" => json!(3),
                "body_budget_bytes" => json!(65_536),
                "min_body_bytes" => json!(100),
                "ttfb_warn_ms" | "ttfb_degrade_ms" | "total_warn_ms" | "total_degrade_ms" => {
                    json!(900)
                }
                other => panic!("no sample for the API's check field {other:?}: add one"),
            }
        };
        let base = CheckSpec::new(1, 1, CheckType::Http, "https://example.com/");
        for f in fields.iter().filter(|f| !routed.contains(&f.as_str())) {
            let input: CheckInput =
                serde_json::from_value(json!({ f.as_str(): sample(f) })).expect(f);
            let mut spec = base.clone();
            input
                .apply(&mut spec)
                .unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_ne!(spec, base, "{f} is accepted and changes nothing");
        }
        assert!(fields.len() >= routed.len() + 20, "{fields:?}");
    }
}
