//! Webhooks over the API (docs/notifications.md, api.md): a tenant's subscriptions to its
//! sites' transitions. The secret is shown once (`whsec_…`, in the answer to create and
//! rotate-secret) and stored sealed; afterwards only its last 4 characters. The URL passes
//! probe safety here and again at every dial. The delivery log, manual retry and a test ping.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::{ApiError, Caller, PageInfo, State, cut, decode_cursor, page_limit, rfc3339};
use jetmon_deliver::http::{Client, UrlProblem};
use jetmon_outbox::EventType;
use jetmon_shared::state::State as SiteState;
use jetmon_store::tokens::Scope;
use jetmon_store::{DeliveryLog, NewWebhook, WebhookChange, WebhookRow};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks", web::get().to(list))
        .route("/webhooks", web::post().to(create))
        .route("/webhooks/{webhook_id}", web::get().to(one))
        .route("/webhooks/{webhook_id}", web::patch().to(patch))
        .route("/webhooks/{webhook_id}", web::delete().to(delete))
        .route(
            "/webhooks/{webhook_id}/rotate-secret",
            web::post().to(rotate),
        )
        .route("/webhooks/{webhook_id}/test", web::post().to(test))
        .route(
            "/webhooks/{webhook_id}/deliveries",
            web::get().to(deliveries),
        )
        .route(
            "/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
            web::post().to(retry),
        );
}

/// Most webhooks per tenant.
const MAX_PER_TENANT: usize = 100;
const MAX_IN_FLIGHT: u32 = 64;

/// A webhook as shown: never its secret, only the last 4 characters.
#[derive(Serialize, ToSchema)]
pub struct Webhook {
    pub id: u64,
    pub tenant_id: u64,
    pub url: String,
    pub description: String,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    /// Empty: every site of the tenant.
    pub site_ids: Vec<u64>,
    /// Empty: every state (a close matches the state it closed from).
    pub states: Vec<String>,
    /// False once disabled (by PATCH, or by a 410 Gone from the receiver).
    pub active: bool,
    pub disabled_reason: Option<String>,
    /// `…` and the secret's last 4 characters.
    pub secret_preview: String,
    /// Until when the previous secret signs too (after a rotation).
    pub previous_secret_valid_until: Option<String>,
    /// Deliveries in flight at once (the per-target cap).
    pub max_in_flight: u32,
    /// Seconds before each retry; empty: 60, 300, 1800, 3600, 21600.
    pub retry_ladder_s: Vec<u32>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<WebhookRow> for Webhook {
    fn from(w: WebhookRow) -> Webhook {
        Webhook {
            id: w.id,
            tenant_id: w.tenant_id,
            url: w.url,
            description: w.description,
            event_types: w.event_types,
            site_ids: w.site_ids,
            states: w.states,
            active: w.active,
            disabled_reason: w.disabled_reason,
            secret_preview: w.secret_preview,
            previous_secret_valid_until: w.previous_until_us.map(rfc3339),
            max_in_flight: w.max_in_flight,
            retry_ladder_s: w.retry_ladder_s,
            created_at: rfc3339(w.created_us),
            updated_at: rfc3339(w.updated_us),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub data: Vec<Webhook>,
    pub page: PageInfo,
}

/// A webhook and its secret, shown this once. A replay of an idempotent request has
/// `secret: null` and a `note`.
#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecret {
    pub webhook: Webhook,
    /// `whsec_<base64 key>`: Standard Webhooks libraries take it as is; Jetmon 2's scheme
    /// signs with this whole text.
    pub secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// From the previous page's `page.next`.
    cursor: Option<String>,
    /// 1 to 200 (default 50).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    /// http(s), no credentials, passing probe safety.
    pub url: String,
    pub description: Option<String>,
    /// Default: every event type.
    pub event_types: Option<Vec<String>>,
    /// Default: every site of the tenant.
    pub site_ids: Option<Vec<u64>>,
    /// Default: every state.
    pub states: Option<Vec<String>>,
    /// 1 to 64 (default 4).
    pub max_in_flight: Option<u32>,
    /// 1 to 10 waits of 1 to 86400 s (default 60, 300, 1800, 3600, 21600).
    pub retry_ladder_s: Option<Vec<u32>>,
    /// The tenant (operator keys; a tenant's key: its own). Default: the default tenant.
    pub tenant_id: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub site_ids: Option<Vec<u64>>,
    pub states: Option<Vec<String>>,
    /// true re-enables a disabled webhook (clearing the reason).
    pub active: Option<bool>,
    pub max_in_flight: Option<u32>,
    pub retry_ladder_s: Option<Vec<u32>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretBody {
    /// How long the previous secret keeps signing beside the new one: 0 to 720 (default 24).
    pub grace_hours: Option<u32>,
}

/// A queued delivery (the test ping).
#[derive(Serialize, ToSchema)]
pub struct Queued {
    pub delivery_id: String,
}

/// One try of a delivery.
#[derive(Serialize, ToSchema)]
pub struct Attempt {
    pub attempt: u32,
    pub at: String,
    pub duration_ms: f64,
    /// The receiver's HTTP status; null when there was no answer.
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The answer's first bytes (at most 1 KiB).
    pub response_excerpt: Option<String>,
}

/// A delivery: its frozen payload, its state and every attempt.
#[derive(Serialize, ToSchema)]
pub struct Delivery {
    /// `webhook-id` and `X-Jetmon-Delivery`: the same on every re-send.
    pub id: String,
    pub event_type: String,
    pub site_id: u64,
    pub transition_id: u64,
    /// pending, delivered or abandoned.
    pub state: String,
    pub attempts: u32,
    pub created_at: String,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<String>,
    pub finished_at: Option<String>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// The body sent, as JSON.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub attempts_log: Vec<Attempt>,
}

impl From<DeliveryLog> for Delivery {
    fn from(d: DeliveryLog) -> Delivery {
        let state = match d.delivery.state {
            0 => "pending",
            1 => "delivered",
            _ => "abandoned",
        };
        Delivery {
            payload: serde_json::from_str(&d.delivery.payload).unwrap_or(serde_json::Value::Null),
            id: d.delivery.id,
            event_type: d.delivery.event_type,
            site_id: d.delivery.site_id,
            transition_id: d.transition_id,
            state: state.to_owned(),
            attempts: d.delivery.attempts,
            created_at: rfc3339(d.created_us),
            next_attempt_at: (d.delivery.state == 0).then(|| rfc3339(d.next_at_us)),
            finished_at: d.done_us.map(rfc3339),
            last_status: d.last_status,
            last_error: d.last_error,
            attempts_log: d
                .attempts_log
                .into_iter()
                .map(|a| Attempt {
                    attempt: a.attempt,
                    at: rfc3339(a.at_us),
                    duration_ms: a.duration_us as f64 / 1000.0,
                    status: a.status,
                    error: a.error,
                    response_excerpt: a.excerpt,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub data: Vec<Delivery>,
    pub page: PageInfo,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_body", message)
}

fn check_url(state: &State, url: &str) -> Result<(), ApiError> {
    Client::check_url(&state.delivery_safety, url).map_err(|p| match p {
        UrlProblem::Invalid(m) => ApiError::unprocessable("invalid_url", format!("url: {m}")),
        UrlProblem::Unsafe(m) => ApiError::unprocessable("unsafe_url", format!("url: {m}")),
    })
}

/// The fields a create or a change may carry (absent: not given).
struct Fields<'a> {
    url: Option<&'a str>,
    description: Option<&'a str>,
    event_types: Option<&'a [String]>,
    states: Option<&'a [String]>,
    site_ids: Option<&'a [u64]>,
    max_in_flight: Option<u32>,
    retry_ladder_s: Option<&'a [u32]>,
}

/// Refuses a body with any field out of bounds, naming the first such field.
fn check_fields(state: &State, f: &Fields<'_>) -> Result<(), ApiError> {
    if let Some(u) = f.url {
        check_url(state, u)?;
    }
    for t in f.event_types.unwrap_or_default() {
        if EventType::from_name(t).is_none() {
            let names: Vec<&str> = EventType::ALL.iter().map(|e| e.name()).collect();
            return Err(invalid(format!(
                "event_types: {t:?} is not one of {}",
                names.join(", ")
            )));
        }
    }
    for s in f.states.unwrap_or_default() {
        if SiteState::from_name(s).is_none() {
            return Err(invalid(format!("states: {s:?} is not a state name")));
        }
    }
    if f.site_ids.is_some_and(|s| s.len() > 1000) {
        return Err(invalid("site_ids: at most 1000"));
    }
    if f.max_in_flight
        .is_some_and(|m| !(1..=MAX_IN_FLIGHT).contains(&m))
    {
        return Err(invalid(format!("max_in_flight: 1 to {MAX_IN_FLIGHT}")));
    }
    if let Some(l) = f.retry_ladder_s
        && (l.is_empty() || l.len() > 10 || l.iter().any(|s| !(1..=86_400).contains(s)))
    {
        return Err(invalid(
            "retry_ladder_s: 1 to 10 waits, each 1 to 86400 seconds",
        ));
    }
    if f.description.is_some_and(|d| d.len() > 500) {
        return Err(invalid("description: at most 500 bytes"));
    }
    Ok(())
}

async fn webhook_or_404(caller: &Caller, state: &State, id: u64) -> Result<WebhookRow, ApiError> {
    caller
        .store(state)
        .webhook(id)
        .await
        .map_err(ApiError::from_store)?
        .ok_or_else(|| ApiError::not_found(format!("no webhook {id}")))
}

fn new_secret() -> Result<String, ApiError> {
    jetmon_outbox::sign::new_secret()
        .ok_or_else(|| ApiError::unavailable("no randomness for a secret; try again"))
}

fn with_secret(status: actix_web::http::StatusCode, w: WebhookRow, secret: String) -> HttpResponse {
    let mut res = HttpResponse::build(status).json(WebhookWithSecret {
        webhook: w.into(),
        secret: Some(secret),
        note: None,
    });
    res.extensions_mut().insert(super::Secret {
        field: "secret",
        note: "the secret was shown only in the first answer to this request and is not stored \
               in clear; rotate it for a new one",
    });
    res
}

/// The webhooks this key sees, by id.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = WebhookList), (status = "4XX", body = ErrorBody)))]
async fn list(
    caller: Caller,
    state: web::Data<State>,
    q: web::Query<PageQuery>,
) -> Result<web::Json<WebhookList>, ApiError> {
    caller.require(Scope::Read)?;
    let limit = page_limit(q.limit.as_deref())?;
    let after = decode_cursor(q.cursor.as_deref())?;
    let rows = caller
        .store(&state)
        .webhooks_page(after, limit + 1)
        .await
        .map_err(ApiError::from_store)?;
    let (rows, page) = cut(rows, limit, |w| w.id);
    Ok(web::Json(WebhookList {
        data: rows.into_iter().map(Webhook::from).collect(),
        page,
    }))
}

/// Creates a webhook. With only `{"url": …}` it gets every event type of every site of the
/// key's tenant. The answer carries the secret, this once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = NewWebhookBody,
    responses((status = 201, body = WebhookWithSecret), (status = "4XX", body = ErrorBody)))]
async fn create(
    caller: Caller,
    state: web::Data<State>,
    body: web::Json<NewWebhookBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Write)?;
    let b = body.into_inner();
    check_fields(
        &state,
        &Fields {
            url: Some(&b.url),
            description: b.description.as_deref(),
            event_types: b.event_types.as_deref(),
            states: b.states.as_deref(),
            site_ids: b.site_ids.as_deref(),
            max_in_flight: b.max_in_flight,
            retry_ladder_s: b.retry_ladder_s.as_deref(),
        },
    )?;
    let tenant = caller.owner_for(&state, b.tenant_id).await?;
    let existing = state
        .store
        .count_webhooks(tenant)
        .await
        .map_err(ApiError::from_store)?;
    if existing >= MAX_PER_TENANT as u64 {
        return Err(ApiError::conflict(
            "too_many_webhooks",
            format!("a tenant has at most {MAX_PER_TENANT} webhooks"),
        ));
    }
    let secret = new_secret()?;
    let id = caller
        .store(&state)
        .create_webhook(&NewWebhook {
            tenant_id: tenant,
            url: b.url,
            description: b.description.unwrap_or_default(),
            event_types: b.event_types.unwrap_or_default(),
            site_ids: b.site_ids.unwrap_or_default(),
            states: b.states.unwrap_or_default(),
            secret: secret.clone(),
            max_in_flight: b.max_in_flight.unwrap_or(4),
            retry_ladder_s: b.retry_ladder_s.unwrap_or_default(),
        })
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    let w = webhook_or_404(&caller, &state, id).await?;
    Ok(with_secret(actix_web::http::StatusCode::CREATED, w, secret))
}

/// One webhook.
#[utoipa::path(get, path = "/api/v1/webhooks/{webhook_id}", tag = "webhooks",
    security(("bearer" = [])), params(("webhook_id" = u64, Path)),
    responses((status = 200, body = Webhook), (status = "4XX", body = ErrorBody)))]
async fn one(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<web::Json<Webhook>, ApiError> {
    caller.require(Scope::Read)?;
    Ok(web::Json(
        webhook_or_404(&caller, &state, *id).await?.into(),
    ))
}

/// Changes a webhook; `active: true` re-enables one a 410 disabled.
#[utoipa::path(patch, path = "/api/v1/webhooks/{webhook_id}", tag = "webhooks",
    security(("bearer" = [])), params(("webhook_id" = u64, Path)), request_body = WebhookPatch,
    responses((status = 200, body = Webhook), (status = "4XX", body = ErrorBody)))]
async fn patch(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    body: web::Json<WebhookPatch>,
) -> Result<web::Json<Webhook>, ApiError> {
    caller.require(Scope::Write)?;
    let b = body.into_inner();
    check_fields(
        &state,
        &Fields {
            url: b.url.as_deref(),
            description: b.description.as_deref(),
            event_types: b.event_types.as_deref(),
            states: b.states.as_deref(),
            site_ids: b.site_ids.as_deref(),
            max_in_flight: b.max_in_flight,
            retry_ladder_s: b.retry_ladder_s.as_deref(),
        },
    )?;
    let change = WebhookChange {
        url: b.url,
        description: b.description,
        event_types: b.event_types,
        site_ids: b.site_ids,
        states: b.states,
        active: b.active,
        max_in_flight: b.max_in_flight,
        retry_ladder_s: b.retry_ladder_s,
    };
    if !caller
        .store(&state)
        .update_webhook(*id, &change)
        .await
        .map_err(ApiError::from_store)?
    {
        return Err(ApiError::not_found(format!("no webhook {id}")));
    }
    state.link.nudge();
    Ok(web::Json(
        webhook_or_404(&caller, &state, *id).await?.into(),
    ))
}

/// Deletes a webhook and its pending deliveries (the log of the sent ones stays).
#[utoipa::path(delete, path = "/api/v1/webhooks/{webhook_id}", tag = "webhooks",
    security(("bearer" = [])), params(("webhook_id" = u64, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn delete(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Write)?;
    if !caller
        .store(&state)
        .delete_webhook(*id)
        .await
        .map_err(ApiError::from_store)?
    {
        return Err(ApiError::not_found(format!("no webhook {id}")));
    }
    state.link.nudge();
    Ok(HttpResponse::NoContent().finish())
}

/// A new secret, shown this once; the previous one keeps signing beside it (both signatures
/// on every delivery) for `grace_hours`.
#[utoipa::path(post, path = "/api/v1/webhooks/{webhook_id}/rotate-secret", tag = "webhooks",
    security(("bearer" = [])), params(("webhook_id" = u64, Path)),
    request_body(content = Option<RotateSecretBody>),
    responses((status = 200, body = WebhookWithSecret), (status = "4XX", body = ErrorBody)))]
async fn rotate(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    body: Option<web::Json<RotateSecretBody>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Write)?;
    let grace_hours = body.and_then(|b| b.grace_hours).unwrap_or(24);
    if grace_hours > 720 {
        return Err(invalid("grace_hours: 0 to 720"));
    }
    webhook_or_404(&caller, &state, *id).await?;
    let secret = new_secret()?;
    let until = match grace_hours {
        0 => 0,
        h => super::now_us() + u64::from(h) * 3_600_000_000,
    };
    caller
        .store(&state)
        .rotate_webhook_secret(*id, &secret, until)
        .await
        .map_err(ApiError::from_store)?;
    let w = webhook_or_404(&caller, &state, *id).await?;
    Ok(with_secret(actix_web::http::StatusCode::OK, w, secret))
}

/// Queues a signed `ping` to the webhook; it shows in the delivery log like any delivery.
#[utoipa::path(post, path = "/api/v1/webhooks/{webhook_id}/test", tag = "webhooks",
    security(("bearer" = [])), params(("webhook_id" = u64, Path)),
    responses((status = 202, body = Queued), (status = "4XX", body = ErrorBody)))]
async fn test(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Write)?;
    let w = webhook_or_404(&caller, &state, *id).await?;
    if !w.active {
        return Err(ApiError::conflict(
            "webhook_disabled",
            "the webhook is disabled; PATCH {\"active\": true} first",
        ));
    }
    let delivery_id = state
        .store
        .enqueue_ping(w.id, w.tenant_id)
        .await
        .map_err(ApiError::from_store)?;
    Ok(HttpResponse::Accepted().json(Queued { delivery_id }))
}

fn encode_delivery_cursor(d: &DeliveryLog) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("d:{}:{}", d.transition_id, d.delivery.id))
}

fn decode_delivery_cursor(c: Option<&str>) -> Result<Option<(u64, String)>, ApiError> {
    use base64::Engine as _;
    let Some(c) = c else { return Ok(None) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let rest = s.strip_prefix("d:")?;
            let (t, id) = rest.split_once(':')?;
            Some((t.parse().ok()?, id.to_owned()))
        })
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor: not one this API gave out"))
}

/// The webhook's deliveries, newest first, each with every attempt.
#[utoipa::path(get, path = "/api/v1/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    security(("bearer" = [])), params(("webhook_id" = u64, Path), PageQuery),
    responses((status = 200, body = DeliveryList), (status = "4XX", body = ErrorBody)))]
async fn deliveries(
    caller: Caller,
    state: web::Data<State>,
    id: web::Path<u64>,
    q: web::Query<PageQuery>,
) -> Result<web::Json<DeliveryList>, ApiError> {
    caller.require(Scope::Read)?;
    let limit = page_limit(q.limit.as_deref())?;
    let before = decode_delivery_cursor(q.cursor.as_deref())?;
    let w = webhook_or_404(&caller, &state, *id).await?;
    let mut rows = state
        .store
        .delivery_log(w.id, before, limit + 1)
        .await
        .map_err(ApiError::from_store)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(encode_delivery_cursor))
        .flatten();
    Ok(web::Json(DeliveryList {
        data: rows.into_iter().map(Delivery::from).collect(),
        page: PageInfo { next, limit },
    }))
}

/// Sends a delivery again now (the same delivery id), whatever its state.
#[utoipa::path(post, path = "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
    tag = "webhooks", security(("bearer" = [])),
    params(("webhook_id" = u64, Path), ("delivery_id" = String, Path)),
    responses((status = 202, body = Queued), (status = "4XX", body = ErrorBody)))]
async fn retry(
    caller: Caller,
    state: web::Data<State>,
    path: web::Path<(u64, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Write)?;
    let (id, delivery_id) = path.into_inner();
    let w = webhook_or_404(&caller, &state, id).await?;
    if !state
        .store
        .retry_delivery(w.id, &delivery_id)
        .await
        .map_err(ApiError::from_store)?
    {
        return Err(ApiError::not_found(format!(
            "webhook {id} has no delivery {delivery_id:?}"
        )));
    }
    Ok(HttpResponse::Accepted().json(Queued { delivery_id }))
}
