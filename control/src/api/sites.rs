//! `GET /sites` (cursor pages, `state` filter) and `GET /sites/{id}`.

use actix_web::web;
use base64::Engine as _;
use jetmon_shared::state::State as SiteState;
use serde::{Deserialize, Serialize};

use super::{ApiError, Caller, State, rfc3339};
use crate::keys::Scope;
use crate::store::SiteRow;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sites", web::get().to(list))
        .route("/sites/{id}", web::get().to(one));
}

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Serialize)]
pub struct Site {
    id: u64,
    name: String,
    state: &'static str,
    severity: u8,
    /// Jetmon v1's integer: 1 running, 0 seems down, 2 confirmed down.
    site_status: u8,
    active_event_count: u32,
    last_status_change_at: Option<String>,
    last_checked_at: Option<String>,
    ssl_expiry_at: Option<String>,
}

impl From<SiteRow> for Site {
    fn from(s: SiteRow) -> Site {
        Site {
            id: s.id,
            name: s.name,
            state: s.state.name(),
            severity: s.severity.0,
            site_status: s.site_status,
            active_event_count: s.active_event_count,
            last_status_change_at: s.last_status_change_us.map(rfc3339),
            last_checked_at: s.last_checked_us.map(rfc3339),
            ssl_expiry_at: s
                .ssl_expiry_s
                .and_then(|t| u64::try_from(t).ok())
                .map(|t| rfc3339(t * 1_000_000)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<u32>,
    state: Option<String>,
}

#[derive(Serialize)]
pub struct Page<T> {
    data: Vec<T>,
    page: PageInfo,
}

#[derive(Serialize)]
pub struct PageInfo {
    next: Option<String>,
    limit: u32,
}

fn encode_cursor(after: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("id:{after}"))
}

fn decode_cursor(c: &str) -> Result<u64, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("id:")?.parse().ok())
        .ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor: not one this API gave out"))
}

async fn list(
    caller: Caller,
    state: web::Data<State>,
    query: Result<web::Query<ListQuery>, actix_web::Error>,
) -> Result<web::Json<Page<Site>>, ApiError> {
    caller.require(Scope::Read)?;
    let q = query
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?
        .into_inner();
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit: 1 to {MAX_LIMIT}, not {limit}"),
        ));
    }
    let after = q
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .unwrap_or(0);
    let filter = q
        .state
        .as_deref()
        .map(|s| {
            SiteState::from_name(s).ok_or_else(|| {
                ApiError::bad_request("invalid_query", format!("state: no state {s:?}"))
            })
        })
        .transpose()?;
    // One more than asked tells whether there is a next page.
    let mut rows = state
        .store
        .sites_page(after, limit + 1, filter)
        .await
        .map_err(ApiError::from_store)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|s| encode_cursor(s.id)))
        .flatten();
    Ok(web::Json(Page {
        data: rows.into_iter().map(Site::from).collect(),
        page: PageInfo { next, limit },
    }))
}

async fn one(
    caller: Caller,
    state: web::Data<State>,
    id: Result<web::Path<u64>, actix_web::Error>,
) -> Result<web::Json<Site>, ApiError> {
    caller.require(Scope::Read)?;
    let id = id
        .map_err(|_| ApiError::bad_request("invalid_path", "the site id is an integer"))?
        .into_inner();
    let site = state
        .store
        .site(id)
        .await
        .map_err(ApiError::from_store)?
        .ok_or_else(|| ApiError::not_found(format!("no site {id}")))?;
    Ok(web::Json(Site::from(site)))
}
