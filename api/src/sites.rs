//! Sites, endpoints, pause/resume and bulk writes (checks: `checks.rs`; maintenance windows:
//! `maintenance.rs`).

use std::collections::HashSet;

use actix_web::{HttpResponse, web};
use jetmon_shared::check::{CheckSpec, CheckType};
use jetmon_shared::state::State as SiteState;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::checks::*;
use super::error::ErrorBody;
use super::{
    ApiError, Caller, PageInfo, State, cut, decode_cursor, list_of, page_limit, parsed, rfc3339,
};
use crate::target::TargetProblem;
use jetmon_store::Scoped;
use jetmon_store::tokens::Scope;
use jetmon_store::{EndpointRow, NewSite, SiteChange, SiteFilter, SiteRow};

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
        .configure(super::checks::routes)
        .configure(super::maintenance::routes);
}

/// Most items in one bulk call.
pub const MAX_BULK: usize = 1000;
/// Most maintenance windows per site.
pub const MAX_WINDOWS: usize = 50;
pub(crate) const MAX_NAME: usize = 200;
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
    /// The Jetmon v1 id, when set (unique among the tenant's sites).
    pub blog_id: Option<u64>,
    /// The tenant the site belongs to.
    pub tenant_id: u64,
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
            tenant_id: s.tenant_id,
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
    /// One tenant's sites (operator keys; a tenant key sees its own whatever this says).
    #[param(value_type = Option<u64>)]
    tenant_id: Option<String>,
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
    let db = caller.store(&state);
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
        tenant_id: parsed("tenant_id", q.tenant_id.as_deref())?,
        blog_id_in: list_of("blog_id__in", q.blog_id_in.as_deref(), |v| {
            v.parse::<u64>().ok().filter(|b| valid_blog_id(*b))
        })?,
    };
    let rows = db
        .sites_page(after, limit + 1, &filter)
        .await
        .map_err(ApiError::from_store)?;
    let (rows, page) = cut(rows, limit, |s| s.id);
    Ok(web::Json(SitePage {
        data: rows.into_iter().map(Site::from).collect(),
        page,
    }))
}

pub(crate) async fn site_or_404(db: Scoped<'_>, id: u64) -> Result<SiteRow, ApiError> {
    db.site(id)
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
    let db = caller.store(&state);
    Ok(web::Json(Site::from(site_or_404(db, *id).await?)))
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
    /// The Jetmon v1 id (1 to 2^63-1, unique among the tenant's sites), so a v1 consumer can
    /// map its sites.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub blog_id: Option<u64>,
    /// The owner (operator keys; default: the default tenant). A tenant key's sites are its
    /// own: another tenant here is a 404.
    pub tenant_id: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct SiteCreated {
    pub site: Site,
    pub checks: Vec<Check>,
}

pub(crate) fn check_name(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.len() > max || v.chars().any(jetmon_shared::text::unprintable) {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("{field}: at most {max} bytes, no control or format characters"),
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
async fn blog_id_free(
    db: Scoped<'_>,
    tenant: u64,
    b: Option<u64>,
    except: Option<u64>,
) -> Result<(), ApiError> {
    let Some(b) = b else {
        return Ok(());
    };
    let taken = db
        .blog_ids_taken(tenant, &[b], except)
        .await
        .map_err(ApiError::from_store)?;
    if taken.is_empty() {
        Ok(())
    } else {
        Err(ApiError::conflict(
            "blog_id_taken",
            format!("blog_id {b} already belongs to another of this tenant's sites"),
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

fn site_spec(state: &State, b: &NewSiteBody, tenant_id: u64) -> Result<NewSite, ApiError> {
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
        tenant_id,
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
    let db = caller.store(&state);
    let owner = caller.owner_for(&state, body.tenant_id).await?;
    let new = site_spec(&state, &body, owner)?;
    blog_id_free(db, owner, new.blog_id, None).await?;
    let id = db.create_site(&new).await.map_err(ApiError::from_store)?;
    state.link.nudge();
    let site = site_or_404(db, id).await?;
    let checks = site_checks(db, id).await?;
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
    /// The Jetmon v1 id (1 to 2^63-1, unique among the tenant's sites).
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
    let db = caller.store(&state);
    if let Some(n) = &body.name {
        check_name("name", n, MAX_NAME)?;
    }
    if let Some(t) = &body.tags {
        check_tags(t)?;
    }
    check_blog_id(body.blog_id)?;
    let site = site_or_404(db, *id).await?;
    blog_id_free(db, site.tenant_id, body.blog_id, Some(*id)).await?;
    let found = db
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
    Ok(web::Json(Site::from(site_or_404(db, *id).await?)))
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
    let db = caller.store(&state);
    let found = db
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
    Ok(web::Json(Site::from(site_or_404(db, *id).await?)))
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
    let db = caller.store(&state);
    site_or_404(db, id).await?;
    let changed = db
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
    /// The Jetmon v1 id (1 to 2^63-1, unique among the tenant's sites), on creates and
    /// updates.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub blog_id: Option<u64>,
    /// The owner of a new site (operator keys; creates only).
    pub tenant_id: Option<u64>,
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
    let db = caller.store(&state);
    let items = body.into_inner().sites;
    if items.is_empty() || items.len() > MAX_BULK {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("sites: 1 to {MAX_BULK} items, not {}", items.len()),
        ));
    }
    // Every item is checked first (reads only); what passed is then written in one
    // transaction, all or none. A store failure fails the whole request with nothing written,
    // so a 5xx never follows a partial write and every 200/201 below was stored.
    let mut results: Vec<BulkResult> = Vec::with_capacity(items.len());
    let mut updates: Vec<(usize, u64, BulkItem)> = Vec::new();
    let mut creates: Vec<(usize, NewSite)> = Vec::new();
    // v1 ids named by this request: two items may not claim the same one.
    let mut claimed = HashSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let checked = match item.id {
            Some(id) => bulk_update(db, id, &item, &mut claimed).await?.map(|()| {
                updates.push((index, id, item));
                (200, Some(id))
            }),
            None => bulk_new(&caller, &state, item, &mut claimed)
                .await
                .map(|s| {
                    creates.push((index, s));
                    (201, None)
                }),
        };
        results.push(match checked {
            Ok((status, id)) => BulkResult {
                index,
                status,
                id,
                error: None,
            },
            Err(e) if e.status.is_server_error() => return Err(e),
            Err(e) => bulk_failed(index, e),
        });
    }
    if !updates.is_empty() || !creates.is_empty() {
        let changes: Vec<(u64, SiteChange<'_>)> = updates
            .iter()
            .map(|(_, id, item)| {
                let change = SiteChange {
                    name: item.name.as_deref(),
                    tags: item.tags.as_deref(),
                    active: item.active,
                    blog_id: item.blog_id,
                };
                (*id, change)
            })
            .collect();
        let sites: Vec<NewSite> = creates.iter().map(|(_, s)| s.clone()).collect();
        let (found, ids) = db
            .bulk_sites(&changes, &sites)
            .await
            .map_err(ApiError::from_store)?;
        for ((index, id, _), found) in updates.iter().zip(found) {
            if !found && let Some(r) = results.get_mut(*index) {
                *r = bulk_failed(*index, ApiError::not_found(format!("no site {id}")));
            }
        }
        for ((index, _), id) in creates.iter().zip(ids) {
            if let Some(r) = results.get_mut(*index) {
                r.id = Some(id);
            }
        }
        state.link.nudge();
    }
    let count = |s: u16| results.iter().filter(|r| r.status == s).count();
    Ok(web::Json(BulkResponse {
        created: count(201),
        updated: count(200),
        failed: results.iter().filter(|r| r.status >= 400).count(),
        results,
    }))
}

fn bulk_failed(index: usize, e: ApiError) -> BulkResult {
    BulkResult {
        index,
        status: e.status.as_u16(),
        id: None,
        error: Some(BulkError {
            code: e.code.to_owned(),
            message: e.message,
        }),
    }
}

/// A `blog_id` an earlier item of the same request named for the same tenant is a conflict.
fn claim(claimed: &mut HashSet<(u64, u64)>, tenant: u64, b: Option<u64>) -> Result<(), ApiError> {
    match b {
        Some(b) if !claimed.insert((tenant, b)) => Err(ApiError::conflict(
            "blog_id_taken",
            format!("blog_id {b} is named by an earlier item of this request"),
        )),
        _ => Ok(()),
    }
}

/// One bulk update (an item with `id`), checked but not yet made. The outer error fails the
/// whole request (the store is away); the inner one is this item's.
async fn bulk_update(
    db: Scoped<'_>,
    id: u64,
    item: &BulkItem,
    claimed: &mut HashSet<(u64, u64)>,
) -> Result<Result<(), ApiError>, ApiError> {
    if item.url.is_some()
        || item.interval_s.is_some()
        || item.timeout_ms.is_some()
        || item.keywords.is_some()
        || item.tenant_id.is_some()
    {
        return Ok(Err(ApiError::bad_request(
            "invalid_body",
            "an update (with id) changes name, tags, active and blog_id; \
             change checks through /sites/{id}/checks",
        )));
    }
    // Another tenant's site is not found, like a site that does not exist.
    let Some(site) = db.site(id).await.map_err(ApiError::from_store)? else {
        return Ok(Err(ApiError::not_found(format!("no site {id}"))));
    };
    let checked = item
        .name
        .as_deref()
        .map_or(Ok(()), |n| check_name("name", n, MAX_NAME))
        .and_then(|()| item.tags.as_deref().map_or(Ok(()), check_tags))
        .and_then(|()| check_blog_id(item.blog_id))
        .and_then(|()| claim(claimed, site.tenant_id, item.blog_id));
    if let Err(e) = checked {
        return Ok(Err(e));
    }
    match blog_id_free(db, site.tenant_id, item.blog_id, Some(id)).await {
        Err(e) if e.status.is_server_error() => Err(e),
        other => Ok(other),
    }
}

/// One bulk create (an item without `id`), checked but not yet stored.
async fn bulk_new(
    caller: &Caller,
    state: &State,
    item: BulkItem,
    claimed: &mut HashSet<(u64, u64)>,
) -> Result<NewSite, ApiError> {
    if item.active.is_some() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "active: only on updates",
        ));
    }
    let Some(url) = item.url else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "url: required for a new site",
        ));
    };
    let b = NewSiteBody {
        url,
        name: item.name,
        tags: item.tags,
        interval_s: item.interval_s,
        timeout_ms: item.timeout_ms,
        keywords: item.keywords,
        blog_id: item.blog_id,
        tenant_id: item.tenant_id,
    };
    let owner = caller.owner_for(state, b.tenant_id).await?;
    let s = site_spec(state, &b, owner)?;
    claim(claimed, owner, s.blog_id)?;
    blog_id_free(caller.store(state), owner, s.blog_id, None).await?;
    Ok(s)
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
    let db = caller.store(&state);
    site_or_404(db, *id).await?;
    let rows = db.endpoints(*id).await.map_err(ApiError::from_store)?;
    Ok(web::Json(EndpointList {
        data: rows.into_iter().map(Endpoint::from).collect(),
    }))
}

pub(crate) async fn endpoint_or_404(
    db: Scoped<'_>,
    site: u64,
    eid: u64,
) -> Result<EndpointRow, ApiError> {
    site_or_404(db, site).await?;
    db.endpoints(site)
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
    let db = caller.store(&state);
    let (id, eid) = path.into_inner();
    Ok(web::Json(Endpoint::from(
        endpoint_or_404(db, id, eid).await?,
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
    let db = caller.store(&state);
    site_or_404(db, *id).await?;
    let url = body
        .url
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("invalid_body", "url: required"))?;
    check_target(&state, CheckType::Http, url)?;
    let critical = body.critical.unwrap_or(true);
    let eid = db
        .add_endpoint(*id, url, critical)
        .await
        .map_err(ApiError::from_store)?
        .ok_or_else(|| ApiError::not_found(format!("no site {id}")))?;
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
    let db = caller.store(&state);
    let (id, eid) = path.into_inner();
    endpoint_or_404(db, id, eid).await?;
    if let Some(u) = &body.url {
        check_target(&state, CheckType::Http, u)?;
    }
    db.update_endpoint(id, eid, body.url.as_deref(), body.critical)
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    Ok(web::Json(Endpoint::from(
        endpoint_or_404(db, id, eid).await?,
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
    let db = caller.store(&state);
    let (id, eid) = path.into_inner();
    endpoint_or_404(db, id, eid).await?;
    db.delete_endpoint(id, eid)
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    Ok(web::Json(Deleted {
        id: eid,
        deleted: true,
    }))
}
