//! Maintenance windows: per site (list, replace, clear) and across sites.

use actix_web::web;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::sites::*;
use super::{ApiError, Caller, PageInfo, State, cut, decode_cursor, page_limit, parsed, rfc3339};
use jetmon_engine::Window;
use jetmon_store::WindowRow;
use jetmon_store::tokens::Scope;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sites/{id}/maintenance", web::get().to(site_maintenance))
        .route("/sites/{id}/maintenance", web::put().to(put_maintenance))
        .route(
            "/sites/{id}/maintenance",
            web::delete().to(delete_maintenance),
        )
        .route("/maintenance", web::get().to(all_maintenance));
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
    let db = caller.store(&state);
    site_or_404(db, *id).await?;
    let rows = db
        .windows_page(Some(*id), None, 0, MAX_WINDOWS as u32 * 2)
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
    let db = caller.store(&state);
    site_or_404(db, *id).await?;
    if body.windows.len() > MAX_WINDOWS {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("windows: at most {MAX_WINDOWS}"),
        ));
    }
    let checks: Vec<u64> = db.site_check_ids(*id).await.map_err(ApiError::from_store)?;
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
    let rows = db
        .put_windows(*id, &windows)
        .await
        .map_err(ApiError::from_store)?
        .ok_or_else(|| ApiError::not_found(format!("no site {id}")))?;
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
    let db = caller.store(&state);
    site_or_404(db, *id).await?;
    db.put_windows(*id, &[])
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
    /// One tenant's windows (operator keys; a tenant key sees its own whatever this says).
    #[param(value_type = Option<u64>)]
    tenant_id: Option<String>,
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
    let db = caller.store(&state);
    let limit = page_limit(q.limit.as_deref())?;
    let after = decode_cursor(q.cursor.as_deref())?;
    let rows = db
        .windows_page(
            None,
            parsed("tenant_id", q.tenant_id.as_deref())?,
            after,
            limit + 1,
        )
        .await
        .map_err(ApiError::from_store)?;
    let (rows, page) = cut(rows, limit, |w| w.id);
    Ok(web::Json(MaintenancePage {
        data: rows.into_iter().map(MaintenanceWindow::from).collect(),
        page,
    }))
}
