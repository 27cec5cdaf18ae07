//! Tenants over the API (operator keys only; docs/tenants.md): list, create, read, rename and
//! (de)activate. A deactivated tenant's keys get 403 `tenant_inactive` and its checks pause.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::{ApiError, Caller, PageInfo, State, cut, decode_cursor, page_limit, rfc3339};
use jetmon_store::TenantRow;
use jetmon_store::tokens::Scope;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenants", web::get().to(list))
        .route("/tenants", web::post().to(create))
        .route("/tenants/{tenant_id}", web::get().to(one))
        .route("/tenants/{tenant_id}", web::patch().to(patch));
}

/// A customer of this deployment: its sites, keys and (later) webhooks belong to it.
#[derive(Serialize, ToSchema)]
pub struct Tenant {
    pub id: u64,
    pub name: String,
    /// False once deactivated: its keys are refused and its checks paused.
    pub active: bool,
    pub created_at: String,
    pub deactivated_at: Option<String>,
}

impl From<TenantRow> for Tenant {
    fn from(t: TenantRow) -> Tenant {
        Tenant {
            id: t.id,
            name: t.name,
            active: t.active,
            created_at: rfc3339(t.created_us),
            deactivated_at: t.deactivated_us.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TenantList {
    pub data: Vec<Tenant>,
    pub page: PageInfo,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// From the previous page's `page.next`.
    cursor: Option<String>,
    /// 1 to 200 (default 50).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// 1 to 64 letters, digits, `-`, `_` or `.`; not all digits; unique.
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    pub name: Option<String>,
    /// false deactivates (keys refused, checks paused); true reactivates.
    pub active: Option<bool>,
}

fn invalid_name(name: &str) -> Option<ApiError> {
    jetmon_store::tenant_name_problem(name)
        .map(|p| ApiError::bad_request("invalid_body", format!("name: {p}")))
}

async fn tenant_or_404(state: &State, id: u64) -> Result<TenantRow, ApiError> {
    state
        .store
        .tenant(id)
        .await
        .map_err(ApiError::from_store)?
        .ok_or_else(|| ApiError::not_found(format!("no tenant {id}")))
}

/// 409 when another tenant has `name`.
async fn name_free(state: &State, name: &str, except: Option<u64>) -> Result<(), ApiError> {
    match state
        .store
        .tenant_named(name)
        .await
        .map_err(ApiError::from_store)?
    {
        Some(t) if Some(t.id) != except => Err(ApiError::conflict(
            "tenant_exists",
            format!("tenant {} is named {name:?} already", t.id),
        )),
        _ => Ok(()),
    }
}

/// Every tenant, by id (operator keys).
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", security(("bearer" = [])),
    params(TenantQuery),
    responses((status = 200, body = TenantList), (status = "4XX", body = ErrorBody)))]
async fn list(
    caller: Caller,
    state: web::Data<State>,
    q: web::Query<TenantQuery>,
) -> Result<web::Json<TenantList>, ApiError> {
    caller.require(Scope::Read)?;
    caller.require_operator()?;
    let limit = page_limit(q.limit.as_deref())?;
    let after = decode_cursor(q.cursor.as_deref())?;
    let rows = state
        .store
        .tenants_page(after, limit + 1)
        .await
        .map_err(ApiError::from_store)?;
    let (rows, page) = cut(rows, limit, |t| t.id);
    Ok(web::Json(TenantList {
        data: rows.into_iter().map(Tenant::from).collect(),
        page,
    }))
}

/// Creates a tenant (operator admin keys).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", security(("bearer" = [])),
    request_body = NewTenant,
    responses((status = 201, body = Tenant), (status = "4XX", body = ErrorBody)))]
async fn create(
    caller: Caller,
    state: web::Data<State>,
    body: web::Json<NewTenant>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    caller.require_operator()?;
    if let Some(e) = invalid_name(&body.name) {
        return Err(e);
    }
    name_free(&state, &body.name, None).await?;
    let t = state
        .store
        .create_tenant(&body.name)
        .await
        .map_err(ApiError::from_store)?;
    Ok(HttpResponse::Created().json(Tenant::from(t)))
}

/// One tenant (operator keys).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}", tag = "tenants",
    security(("bearer" = [])), params(("tenant_id" = u64, Path)),
    responses((status = 200, body = Tenant), (status = "4XX", body = ErrorBody)))]
async fn one(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<Tenant>, ApiError> {
    caller.require(Scope::Read)?;
    caller.require_operator()?;
    Ok(web::Json(tenant_or_404(&state, *id).await?.into()))
}

/// Renames, deactivates or reactivates a tenant (operator admin keys).
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}", tag = "tenants",
    security(("bearer" = [])), params(("tenant_id" = u64, Path)), request_body = TenantPatch,
    responses((status = 200, body = Tenant), (status = "4XX", body = ErrorBody)))]
async fn patch(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    body: web::Json<TenantPatch>,
) -> Result<web::Json<Tenant>, ApiError> {
    caller.require(Scope::Admin)?;
    caller.require_operator()?;
    let id = *id;
    tenant_or_404(&state, id).await?;
    if let Some(name) = &body.name {
        if let Some(e) = invalid_name(name) {
            return Err(e);
        }
        name_free(&state, name, Some(id)).await?;
        state
            .store
            .rename_tenant(id, name)
            .await
            .map_err(ApiError::from_store)?;
    }
    if let Some(active) = body.active {
        state
            .store
            .set_tenant_active(id, active)
            .await
            .map_err(ApiError::from_store)?;
        state.link.nudge();
    }
    Ok(web::Json(tenant_or_404(&state, id).await?.into()))
}
