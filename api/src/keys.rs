//! API keys over the API, for `admin` keys (the CLI `jetmon keys` does the same): list,
//! create (the token shown once), revoke, rotate with a grace period. A tenant's admin key
//! sees and makes only its tenant's keys (another's is a 404); operators see every key and
//! may make operator, tenant and gateway keys (docs/tenants.md).

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::{ApiError, Caller, State, now_us, rfc3339};
use jetmon_store::tokens::{Scope, new_token};
use jetmon_store::{KeyKind, KeyRow, Tenancy};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/keys", web::get().to(list))
        .route("/keys", web::post().to(create))
        .route("/keys/{key_id}", web::delete().to(revoke))
        .route("/keys/{key_id}/rotate", web::post().to(rotate));
}

/// A key as listed: never its token (only a short prefix is stored).
#[derive(Serialize, ToSchema)]
pub struct Key {
    pub id: u64,
    pub name: String,
    pub prefix: String,
    /// read, write or admin.
    pub scope: String,
    /// active, expired or revoked.
    pub state: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// The key that replaced this one in a rotation.
    pub replaced_by: Option<u64>,
    /// operator (every tenant), tenant (one tenant) or gateway (the tenant each request names).
    pub kind: String,
    /// The tenant of a tenant key.
    pub tenant_id: Option<u64>,
}

impl Key {
    fn of(k: KeyRow, now: u64) -> Key {
        let state = if k.revoked_us.is_some() {
            "revoked"
        } else if k.active(now) {
            "active"
        } else {
            "expired"
        };
        Key {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scope: k.scope.name().to_owned(),
            state: state.to_owned(),
            created_at: rfc3339(k.created_us),
            expires_at: k.expires_us.map(rfc3339),
            revoked_at: k.revoked_us.map(rfc3339),
            replaced_by: k.replaced_by,
            kind: k.kind.name().to_owned(),
            tenant_id: k.tenant_id,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub data: Vec<Key>,
}

/// A new key and its token: shown this once, stored only as a hash. An idempotent replay
/// (`Idempotency-Replayed: true`) answers the same key with `token: null` and a `note`: the
/// token is never stored, not even with the idempotency record.
#[derive(Serialize, ToSchema)]
pub struct NewKey {
    pub key: Key,
    pub token: Option<String>,
    /// Set when the token is not in this answer (a replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The answer carrying a new token: marked so the guard never stores the token (docs/api.md,
/// idempotency).
fn with_token(key: Key, token: String) -> HttpResponse {
    let mut res = HttpResponse::Created().json(NewKey {
        key,
        token: Some(token),
        note: None,
    });
    res.extensions_mut().insert(super::Secret {
        field: "token",
        note: "the token was shown only in the first answer to this request and is not stored;                rotate the key for a new one",
    });
    res
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    pub name: String,
    /// read, write or admin.
    pub scope: String,
    /// 1 to 3650; default: never expires.
    pub expires_in_days: Option<u32>,
    /// operator, tenant or gateway (operators only; default: a tenant key when `tenant_id`
    /// is given, else operator). A tenant's admin key makes tenant keys of its own tenant.
    pub kind: Option<String>,
    /// The tenant of a tenant key (operators; a tenant's key: its own).
    pub tenant_id: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old token keeps working: 0 to 720 (default 24).
    pub grace_hours: Option<u32>,
}

async fn key_or_404(caller: &Caller, state: &State, id: u64) -> Result<KeyRow, ApiError> {
    caller
        .store(state)
        .keys()
        .await
        .map_err(ApiError::from_store)?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no API key {id}")))
}

/// Every key (admin).
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = KeyList), (status = "4XX", body = ErrorBody)))]
async fn list(caller: Caller, state: web::Data<State>) -> Result<web::Json<KeyList>, ApiError> {
    caller.require(Scope::Admin)?;
    let now = now_us();
    let keys = caller
        .store(&state)
        .keys()
        .await
        .map_err(ApiError::from_store)?;
    Ok(web::Json(KeyList {
        data: keys.into_iter().map(|k| Key::of(k, now)).collect(),
    }))
}

/// Creates a key (admin); the token is in this answer only.
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", security(("bearer" = [])),
    request_body = NewKeyBody,
    responses((status = 201, body = NewKey), (status = "4XX", body = ErrorBody)))]
async fn create(
    caller: Caller,
    state: web::Data<State>,
    body: web::Json<NewKeyBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let bad = |m: String| ApiError::bad_request("invalid_body", m);
    let scope = Scope::from_name(&body.scope).ok_or_else(|| {
        bad(format!(
            "scope: {:?} is not read, write or admin",
            body.scope
        ))
    })?;
    if body.name.is_empty()
        || body.name.len() > 100
        || body.name.chars().any(jetmon_shared::text::unprintable)
    {
        return Err(bad(
            "name: 1 to 100 bytes, no control or format characters".into()
        ));
    }
    if let Some(d) = body.expires_in_days
        && !(1..=3650).contains(&d)
    {
        return Err(bad(format!("expires_in_days: {d} is outside 1..=3650")));
    }
    let (kind, tenant_id) = kind_of(&caller, &state, &body).await?;
    let now = now_us();
    let token = new_token().map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let expires = body
        .expires_in_days
        .map(|d| now + u64::from(d) * 86_400 * 1_000_000);
    let new = jetmon_store::NewKey {
        name: &body.name,
        scope,
        expires_us: expires,
        kind,
        tenant_id,
    };
    let id = state
        .store
        .create_key(&new, &token, now)
        .await
        .map_err(ApiError::from_store)?;
    let key = key_or_404(&caller, &state, id).await?;
    Ok(with_token(Key::of(key, now), token.token))
}

/// What a new key acts for: a tenant's admin makes keys of its own tenant only; an operator
/// names the kind (tenant keys need an existing tenant).
async fn kind_of(
    caller: &Caller,
    state: &State,
    body: &NewKeyBody,
) -> Result<(KeyKind, Option<u64>), ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_body", m);
    let kind = match body.kind.as_deref() {
        None if body.tenant_id.is_some() => KeyKind::Tenant,
        None => match caller.tenancy {
            Tenancy::All => KeyKind::Operator,
            Tenancy::Tenant(_) => KeyKind::Tenant,
        },
        Some(k) => KeyKind::from_name(k)
            .ok_or_else(|| bad(format!("kind: {k:?} is not operator, tenant or gateway")))?,
    };
    match (caller.tenancy, kind) {
        (Tenancy::Tenant(_), KeyKind::Operator | KeyKind::Gateway) => {
            Err(ApiError::forbidden("a tenant's key makes tenant keys only"))
        }
        (Tenancy::All, KeyKind::Tenant) if body.tenant_id.is_none() => {
            Err(bad("tenant_id: a tenant key names its tenant".into()))
        }
        (_, KeyKind::Tenant) => Ok((kind, Some(caller.owner_for(state, body.tenant_id).await?))),
        (_, _) if body.tenant_id.is_some() => Err(bad(format!(
            "tenant_id: only tenant keys belong to a tenant, not {} keys",
            kind.name()
        ))),
        _ => Ok((kind, None)),
    }
}

/// Revokes a key (admin): it stops working at once.
#[utoipa::path(delete, path = "/api/v1/keys/{key_id}", tag = "keys", security(("bearer" = [])),
    params(("key_id" = u64, Path)),
    responses((status = 200, body = Key), (status = "4XX", body = ErrorBody)))]
async fn revoke(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<Key>, ApiError> {
    caller.require(Scope::Admin)?;
    let k = key_or_404(&caller, &state, *id).await?;
    if k.revoked_us.is_some() {
        return Err(ApiError::conflict(
            "key_revoked",
            format!("API key {id} is already revoked"),
        ));
    }
    let now = now_us();
    last_admin_guard(&caller, &state, &k, now).await?;
    caller
        .store(&state)
        .revoke_key(*id, now)
        .await
        .map_err(ApiError::from_store)?;
    Ok(web::Json(Key::of(
        key_or_404(&caller, &state, *id).await?,
        now,
    )))
}

/// 409 when revoking `k` would leave its holders without an active admin key: an operator's
/// last operator admin key, or a tenant's last admin key (the operator's CLI can always make a
/// new key; the API must not lock its callers out).
async fn last_admin_guard(
    caller: &Caller,
    state: &State,
    k: &KeyRow,
    now: u64,
) -> Result<(), ApiError> {
    if k.scope != Scope::Admin || !k.active(now) {
        return Ok(());
    }
    let same_holder = |o: &KeyRow| o.kind == k.kind && o.tenant_id == k.tenant_id;
    let others = caller
        .store(state)
        .keys()
        .await
        .map_err(ApiError::from_store)?
        .into_iter()
        .filter(|o| o.id != k.id && o.scope == Scope::Admin && o.active(now) && same_holder(o))
        .count();
    if others > 0 {
        return Ok(());
    }
    let whose = match k.tenant_id {
        Some(t) => format!("tenant {t}'s last"),
        None => format!("the last active {}", k.kind.name()),
    };
    Err(ApiError::conflict(
        "last_admin_key",
        format!(
            "API key {} is {whose} key: revoking it would leave no admin key; create another \
             admin key first (or use `jetmon keys revoke` on the host)",
            k.id
        ),
    ))
}

/// Replaces a key with a new token (admin); the old one works for the grace period.
#[utoipa::path(post, path = "/api/v1/keys/{key_id}/rotate", tag = "keys",
    security(("bearer" = [])), params(("key_id" = u64, Path)), request_body = RotateBody,
    responses((status = 201, body = NewKey), (status = "4XX", body = ErrorBody)))]
async fn rotate(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    body: web::Json<RotateBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let grace = body.grace_hours.unwrap_or(24);
    if grace > 720 {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("grace_hours: {grace} is more than 720"),
        ));
    }
    let now = now_us();
    let old = key_or_404(&caller, &state, *id).await?;
    if !old.active(now) {
        return Err(ApiError::conflict(
            "key_inactive",
            format!("API key {id} is revoked or expired: create a new one instead"),
        ));
    }
    let token = new_token().map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let new_id = caller
        .store(&state)
        .rotate_key(*id, &token, u64::from(grace) * 3_600_000_000, now)
        .await
        .map_err(ApiError::from_store)?;
    let key = key_or_404(&caller, &state, new_id).await?;
    Ok(with_token(Key::of(key, now), token.token))
}
