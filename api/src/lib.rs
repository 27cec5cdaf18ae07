//! `jetmon-api`: the REST API (`/api/v1`, design: docs/api.md) and the operator endpoints
//! (`/metrics`, `/ready`, `/health`), served by actix-web on a thread of its own inside
//! `jetmon up`, with its own database pool. It owns routes, authentication, rate limits,
//! idempotency, the audit log and the OpenAPI document, and what a monitorable target is
//! ([`target`], shared with `jetmon sites import`). It reads and writes through the store
//! (`jetmon-store`) and reads the live hour from the spool (`jetmon-spool`); it never holds the
//! engine: what only the engine's owner may do it asks over a [`Link`]. It must not depend on
//! the binary (`jetmon-control`), which depends on it.
//!
//! - `guard.rs`: authentication, per-key rate limits, idempotency keys and the audit log (one
//!   middleware around `/api/v1`).
//! - `sites.rs`: sites, endpoints, checks, pause/resume, maintenance, bulk.
//! - `events.rs`: events, transitions, manual close, recent results.
//! - `stats.rs`: SLA, response-time percentiles and series.
//! - `trigger.rs`: trigger-now (sync, or 202 + a job to poll).
//! - `keys.rs`: API keys for `admin` keys (list, create, revoke, rotate).
//! - `doc.rs`: the OpenAPI 3.1 document, generated from the handlers' annotations and types.
//!
//! Writes that change what is monitored are stored, then the supervisor is nudged to reload
//! the check set (the engine stays the only writer of events); manual closes and trigger-now
//! are commands the supervisor runs and answers.

mod bad_tokens;
mod checks;
mod doc;
mod error;
mod events;
mod guard;
mod keys;
mod maintenance;
mod principal;
mod sites;
mod stats;
pub mod target;
mod tenants;
mod time;
mod trigger;
mod webhooks;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, FromRequest, HttpMessage, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::{Context, Result};
use jetmon_prober::proto::safety::ProbeSafety;
use jetmon_shared::frames::ProbeResult;
use serde::Serialize;
use utoipa::ToSchema;

pub use checks::CheckInput;
pub use error::ApiError;
pub use time::{parse_rfc3339, rfc3339};

use jetmon_shared::metrics::Shared;
use jetmon_store::tokens::Scope;
use jetmon_store::{KeyRow, Scoped, Store, Tenancy, TenantRow};

/// Marks a response that carries a secret in the top-level JSON field `field`: when it is the
/// answer to an idempotent request, the stored copy (and so every replay) has `field: null`
/// and `note` instead. Secrets are shown once and never stored in clear.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Secret {
    pub field: &'static str,
    pub note: &'static str,
}

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What the API asks of the supervisor (the engine's owner).
pub enum Command {
    /// Close an open event (`manual_override`); the reply says whether it was open.
    Close {
        check_id: u64,
        event_id: u64,
        source: String,
        note: Option<String>,
        /// Taken before the close is made; an API that stopped waiting cancels it first.
        ticket: Ticket,
        reply: tokio::sync::oneshot::Sender<bool>,
    },
    /// Probe these checks now; the reply carries one result per check that answered, or
    /// None at once when no prober is running.
    Trigger {
        check_ids: Vec<u64>,
        reply: tokio::sync::oneshot::Sender<Option<Vec<Probed>>>,
    },
}

/// A command the API may stop waiting for: the supervisor takes it (and then carries it out)
/// or the API cancels it (and it is never carried out), never both, so the API can say which.
#[derive(Debug, Clone, Default)]
pub struct Ticket(Arc<std::sync::atomic::AtomicU8>);

impl Ticket {
    const TAKEN: u8 = 1;
    const CANCELLED: u8 = 2;

    fn settle(&self, to: u8) -> bool {
        self.0
            .compare_exchange(0, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The supervisor's side: true when the command is still wanted (and now will be done).
    pub fn take(&self) -> bool {
        self.settle(Self::TAKEN)
    }

    /// The API's side: true when the command will never be done.
    pub fn cancel(&self) -> bool {
        self.settle(Self::CANCELLED)
    }
}

/// One live result with the words and the chain its frame carried.
#[derive(Debug, Clone)]
pub struct Probed {
    pub result: ProbeResult,
    /// A sentence for a person (probe-safety refusals).
    pub note: Option<String>,
    /// Final URL after redirects.
    pub final_url: Option<String>,
    /// Each redirect followed: the status that redirected and where it led.
    pub redirect_chain: Vec<(u16, String)>,
}

impl Probed {
    pub fn from_frame(frame: &jetmon_shared::frames::ResultFrame<'_>) -> Probed {
        Probed {
            result: frame.result,
            note: frame.extras.note.map(str::to_owned),
            final_url: frame.extras.final_url.map(str::to_owned),
            redirect_chain: frame
                .extras
                .redirect_chain
                .iter()
                .map(|h| (h.status, h.url.to_owned()))
                .collect(),
        }
    }
}

/// The API's side of its link to the supervisor.
#[derive(Clone)]
pub struct Link {
    commands: std::sync::mpsc::Sender<Command>,
    nudge: Arc<AtomicBool>,
}

/// The supervisor's side: commands to run, and whether the check set changed.
pub struct LinkEnd {
    pub commands: std::sync::mpsc::Receiver<Command>,
    nudge: Arc<AtomicBool>,
}

impl LinkEnd {
    /// True once after the API changed what is monitored.
    pub fn take_nudge(&self) -> bool {
        self.nudge.swap(false, Ordering::AcqRel)
    }
}

/// A connected pair.
pub fn link() -> (Link, LinkEnd) {
    let (tx, rx) = std::sync::mpsc::channel();
    let nudge = Arc::new(AtomicBool::new(false));
    (
        Link {
            commands: tx,
            nudge: nudge.clone(),
        },
        LinkEnd {
            commands: rx,
            nudge,
        },
    )
}

impl Link {
    /// The check set changed: reload it now rather than at the next poll.
    pub fn nudge(&self) {
        self.nudge.store(true, Ordering::Release);
    }

    fn send(&self, c: Command) -> Result<(), ApiError> {
        self.commands
            .send(c)
            .map_err(|_| ApiError::unavailable("the control loop is not running"))
    }
}

/// How the API is set up.
pub struct Options {
    pub listen: String,
    pub database_url: String,
    pub host: String,
    pub metrics: Shared,
    pub safety: ProbeSafety,
    pub link: Link,
    pub rate_per_minute: u32,
    pub expensive_per_minute: u32,
    /// The statistics spool, for the live hour's percentiles (None: stored rows only).
    pub spool_dir: Option<std::path::PathBuf>,
    /// What seals and opens stored secrets.
    pub vault: Arc<jetmon_secrets::Vault>,
    /// Probe safety for webhook URLs (`control.delivery_allow_cidrs`).
    pub delivery_safety: ProbeSafety,
}

/// What every handler can reach.
pub struct State {
    pub store: Store,
    pub metrics: Shared,
    pub safety: ProbeSafety,
    pub delivery_safety: ProbeSafety,
    pub link: Link,
    pub guard: Arc<guard::Guard>,
    pub jobs: trigger::Jobs,
    pub spool_dir: Option<std::path::PathBuf>,
}

/// Binds `listen` and serves until the process exits; returns the bound address. Fails with
/// one line when the address is taken or the database cannot be opened.
pub fn start(o: Options) -> Result<SocketAddr> {
    let listener = TcpListener::bind(&o.listen).with_context(|| {
        format!(
            "listening on {} (control.api_listen): is another jetmon running?",
            o.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    std::thread::Builder::new()
        .name("jetmon-api".into())
        .spawn(move || {
            let system = actix_web::rt::System::new();
            system.block_on(async move {
                let store = match Store::open(&o.database_url, &o.host).await {
                    Ok(s) => s.with_vault(o.vault.clone()),
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.context("the API's database pool")));
                        return;
                    }
                };
                let guard = match guard::Guard::start(
                    store.clone(),
                    o.rate_per_minute,
                    o.expensive_per_minute,
                )
                .await
                {
                    Ok(g) => g,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.context("loading rate limits")));
                        return;
                    }
                };
                let state = web::Data::new(State {
                    store,
                    metrics: o.metrics,
                    safety: o.safety,
                    delivery_safety: o.delivery_safety,
                    link: o.link,
                    guard,
                    jobs: trigger::Jobs::default(),
                    spool_dir: o.spool_dir,
                });
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .app_data(
                            web::JsonConfig::default()
                                .limit(MAX_BODY_BYTES)
                                .error_handler(|e, _| body_error(&e).into()),
                        )
                        .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                        .app_data(web::PathConfig::default().error_handler(|e, _| {
                            ApiError::bad_request("invalid_path", format!("path: {e}")).into()
                        }))
                        .app_data(web::QueryConfig::default().error_handler(|e, _| {
                            ApiError::bad_request("invalid_query", query_message(&e.to_string()))
                                .into()
                        }))
                        .wrap(from_fn(request_id))
                        .route("/metrics", web::get().to(metrics_text))
                        .route("/ready", web::get().to(ready))
                        .route("/health", web::get().to(health))
                        .service(
                            web::scope("/api/v1")
                                .wrap(from_fn(guard::guard))
                                .route("/health", web::get().to(health_v1))
                                .route("/ready", web::get().to(ready_v1))
                                .route("/me", web::get().to(me))
                                .route("/openapi.json", web::get().to(doc::openapi))
                                .configure(sites::routes)
                                .configure(events::routes)
                                .configure(stats::routes)
                                .configure(trigger::routes)
                                .configure(keys::routes)
                                .configure(tenants::routes)
                                .configure(webhooks::routes),
                        )
                        .default_service(web::to(not_found))
                })
                .workers(2)
                .client_request_timeout(guard::HEADER_DEADLINE)
                .keep_alive(guard::KEEP_ALIVE)
                .max_connections(guard::MAX_CONNECTIONS_PER_WORKER)
                .disable_signals()
                .listen(listener);
                match server {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        if let Err(e) = s.run().await {
                            eprintln!("jetmon: the API server stopped: {e}");
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("starting the API server: {e}")));
                    }
                }
            });
        })
        .context("starting the API thread")?;
    ready_rx.recv().context("the API thread did not start")??;
    Ok(addr)
}

/// A JSON body that could not be read: too large (413), or not the expected shape (400,
/// naming the field serde names).
fn body_error(e: &actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as J;
    match e {
        J::Overflow { .. } | J::OverflowKnownLength { .. } => too_large(),
        J::Payload(actix_web::error::PayloadError::Overflow) => too_large(),
        J::ContentType => ApiError::bad_request(
            "invalid_body",
            "send the body as JSON (Content-Type: application/json)",
        ),
        J::Deserialize(d) => ApiError::bad_request("invalid_body", format!("body: {d}")),
        other => ApiError::bad_request("invalid_body", format!("body: {other}")),
    }
}

pub(crate) fn too_large() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
    )
}

/// serde_urlencoded's message, with the parameter named the way clients wrote it.
fn query_message(e: &str) -> String {
    let e = e.trim_start_matches("Query deserialize error: ");
    format!("query: {e}")
}

/// The request's id: the client's `X-Request-ID` when it is sane, else a fresh one.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

fn fresh_id() -> String {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("{:x}-{n:x}-{:x}", t, std::process::id())
}

async fn request_id(
    req: ServiceRequest,
    next: Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let given = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned);
    let id: Arc<str> = Arc::from(given.unwrap_or_else(fresh_id));
    req.extensions_mut().insert(RequestId(id.clone()));
    let res = match next.call(req).await {
        Ok(r) => r,
        Err(e) => return Err(e),
    };
    // An ApiError a handler or an extractor returned: its envelope gets the request id.
    let envelope = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .map(|e| error::envelope(e, &id));
    let mut res = match envelope {
        Some(body) => {
            let (req, old) = res.into_parts();
            let mut body = body;
            // Headers the guard set (rate limits) survive the rewrite.
            for (k, v) in old.headers() {
                if k.as_str().starts_with("x-ratelimit") || k == "retry-after" {
                    body.headers_mut().insert(k.clone(), v.clone());
                }
            }
            ServiceResponse::new(req, body).map_into_boxed_body()
        }
        None => res.map_into_boxed_body(),
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    Ok(res)
}

pub(crate) fn request_id_of(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.to_string())
        .unwrap_or_default()
}

/// An authenticated caller: a valid, active key (checked by the guard) resolved to what it
/// acts for (docs/tenants.md).
pub struct Caller {
    pub key: KeyRow,
    /// Whose objects this request may see.
    pub tenancy: Tenancy,
    /// The tenant acted for (tenant keys and gateways).
    pub tenant: Option<TenantRow>,
    /// The key's scope (a gateway's, narrowed by its public scopes).
    pub scope: Scope,
}

impl Caller {
    /// 403 unless the scope covers `needed`.
    pub fn require(&self, needed: Scope) -> Result<(), ApiError> {
        require_scope(self.scope, needed)
    }

    /// The store as this caller may see it: the only way a route reaches the store.
    pub fn store<'s>(&self, state: &'s State) -> Scoped<'s> {
        state.store.scoped(self.tenancy)
    }

    /// 403 unless an operator key calls (routes about tenants themselves).
    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self.tenancy {
            Tenancy::All => Ok(()),
            Tenancy::Tenant(_) => Err(ApiError::forbidden(
                "this route is for operator keys; this key acts for one tenant",
            )),
        }
    }

    /// The tenant a new object belongs to: the caller's own, or for operators the one asked
    /// for (default: the default tenant), which must exist (else 404).
    pub async fn owner_for(&self, state: &State, asked: Option<u64>) -> Result<u64, ApiError> {
        match self.tenancy {
            Tenancy::Tenant(t) => match asked {
                Some(a) if a != t => Err(ApiError::not_found(format!("no tenant {a}"))),
                _ => Ok(t),
            },
            Tenancy::All => {
                let t = asked.unwrap_or(jetmon_store::DEFAULT_TENANT);
                match state.store.tenant(t).await.map_err(ApiError::from_store)? {
                    Some(_) => Ok(t),
                    None => Err(ApiError::not_found(format!("no tenant {t}"))),
                }
            }
        }
    }

    /// `operator:<key name>#<key id>`, for transition sources.
    pub fn source(&self) -> String {
        format!("{}#{}", self.key.name, self.key.id)
    }
}

/// 403 unless `scope` covers `needed`.
pub(crate) fn require_scope(scope: Scope, needed: Scope) -> Result<(), ApiError> {
    if scope.allows(needed) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "this key's scope is {}; the route needs {}",
            scope.name(),
            needed.name()
        )))
    }
}

/// The 401 for a request without a valid key (`auth`: what the guard found).
pub(crate) fn unauthenticated(auth: Option<&guard::Auth>) -> ApiError {
    match auth {
        Some(guard::Auth::Invalid) => ApiError::unauthorized("unknown, revoked or expired API key"),
        _ => ApiError::unauthorized("send an API key: Authorization: Bearer jm_…"),
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let found = match req.extensions().get::<guard::Auth>() {
            Some(guard::Auth::Key(p)) => Ok(Caller {
                key: p.key.clone(),
                tenancy: p.tenancy,
                tenant: p.tenant.clone(),
                scope: p.scope,
            }),
            other => Err(unauthenticated(other)),
        };
        std::future::ready(found)
    }
}

pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn metrics_text(state: web::Data<State>) -> HttpResponse {
    let mut body = state
        .metrics
        .text
        .lock()
        .map(|t| t.clone())
        .unwrap_or_default();
    body.push_str(&state.guard.metrics());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

fn not_ready(state: &State) -> Option<String> {
    state.metrics.not_ready.lock().ok().and_then(|r| r.clone())
}

async fn ready(state: web::Data<State>) -> HttpResponse {
    match not_ready(&state) {
        None => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
        Some(why) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("{why}\n")),
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Liveness and readiness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready`, or `not_ready`.
    pub status: String,
    /// Why not ready (database or prober), when it is not.
    pub reason: Option<String>,
}

/// Liveness: the API answers. No key needed.
#[utoipa::path(get, path = "/api/v1/health", tag = "system",
    responses((status = 200, description = "alive", body = Health)))]
async fn health_v1() -> web::Json<Health> {
    web::Json(Health {
        status: "ok".into(),
        reason: None,
    })
}

/// Readiness: the database takes writes and the prober runs. No key needed.
#[utoipa::path(get, path = "/api/v1/ready", tag = "system",
    responses((status = 200, description = "ready", body = Health),
              (status = 503, description = "not ready, with the reason", body = Health)))]
async fn ready_v1(state: web::Data<State>) -> HttpResponse {
    match not_ready(&state) {
        None => HttpResponse::Ok().json(Health {
            status: "ready".into(),
            reason: None,
        }),
        Some(why) => HttpResponse::ServiceUnavailable().json(Health {
            status: "not_ready".into(),
            reason: Some(why),
        }),
    }
}

async fn not_found(req: HttpRequest) -> ApiError {
    ApiError::not_found(format!("no route {} {}", req.method(), req.path()))
}

/// The calling key, the tenant it acts for and what it may do.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub key: MeKey,
    /// The tenant this request acts for: a tenant key's own, or the one a gateway named;
    /// null for operator keys (every tenant).
    pub tenant: Option<tenants::Tenant>,
    /// What this request may do: the key's scope, narrowed by a gateway's
    /// `X-Jetmon-Public-Scopes`; each scope includes the ones below it (admin ⊇ write ⊇ read).
    pub scopes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MeKey {
    pub id: u64,
    pub name: String,
    /// The token's first characters (the token itself is never stored).
    pub prefix: String,
    /// `read`, `write` or `admin`.
    pub scope: String,
    /// `operator`, `tenant` or `gateway`.
    pub kind: String,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// The key making the call.
#[utoipa::path(get, path = "/api/v1/me", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = "4XX", body = error::ErrorBody)))]
async fn me(caller: Caller) -> Result<web::Json<Me>, ApiError> {
    caller.require(Scope::Read)?;
    let scopes = [Scope::Read, Scope::Write, Scope::Admin]
        .into_iter()
        .filter(|s| caller.scope.allows(*s))
        .map(|s| s.name().to_owned())
        .collect();
    let k = caller.key;
    Ok(web::Json(Me {
        key: MeKey {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scope: k.scope.name().to_owned(),
            kind: k.kind.name().to_owned(),
            created_at: rfc3339(k.created_us),
            expires_at: k.expires_us.map(rfc3339),
        },
        tenant: caller.tenant.map(tenants::Tenant::from),
        scopes,
    }))
}

/// Cursor pages: `{"data": [...], "page": {"next", "limit"}}`.
#[derive(Serialize, ToSchema)]
pub struct PageInfo {
    /// Pass as `cursor` for the next page; null on the last.
    pub next: Option<String>,
    pub limit: u32,
}

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// A query parameter parsed as `T`, naming the parameter when it does not parse (serde's
/// query errors do not say which one).
pub(crate) fn parsed<T: std::str::FromStr>(
    name: &str,
    v: Option<&str>,
) -> Result<Option<T>, ApiError> {
    v.map(|s| {
        s.parse().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "{name}: {s:?} is not a valid {}",
                    std::any::type_name::<T>()
                ),
            )
        })
    })
    .transpose()
}

/// The page size asked for, checked.
pub(crate) fn page_limit(limit: Option<&str>) -> Result<u32, ApiError> {
    let limit = parsed::<u32>("limit", limit)?.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit: 1 to {MAX_LIMIT}, not {limit}"),
        ));
    }
    Ok(limit)
}

pub(crate) fn encode_cursor(after: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("id:{after}"))
}

pub(crate) fn decode_cursor(c: Option<&str>) -> Result<u64, ApiError> {
    use base64::Engine as _;
    let Some(c) = c else { return Ok(0) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("id:")?.parse().ok())
        .ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor: not one this API gave out"))
}

/// Cuts `rows` (fetched with one extra) to `limit` and says where the next page starts.
pub(crate) fn cut<T>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> u64) -> (Vec<T>, PageInfo) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|r| encode_cursor(id(r))))
        .flatten();
    (rows, PageInfo { next, limit })
}

/// `a,b,c` as a list of `T`, naming `param` when an item does not parse.
pub(crate) fn list_of<T>(
    param: &str,
    v: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let items: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.len() > MAX_LIMIT as usize {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("{param}: at most {MAX_LIMIT} values"),
        ));
    }
    items
        .into_iter()
        .map(|s| {
            parse(s).ok_or_else(|| {
                ApiError::bad_request("invalid_query", format!("{param}: {s:?} is not valid here"))
            })
        })
        .collect()
}

#[cfg(test)]
mod layering {
    /// Routes reach tenant-owned rows only through `Caller::store` (docs/tenants.md): they
    /// never build a scope themselves, and never call the store's unscoped conveniences
    /// (which exist for the CLI, the supervisor and benchmarks).
    #[test]
    fn routes_never_reach_the_store_unscoped() {
        let sources = [
            ("sites.rs", include_str!("sites.rs")),
            ("checks.rs", include_str!("checks.rs")),
            ("maintenance.rs", include_str!("maintenance.rs")),
            ("events.rs", include_str!("events.rs")),
            ("stats.rs", include_str!("stats.rs")),
            ("trigger.rs", include_str!("trigger.rs")),
            ("keys.rs", include_str!("keys.rs")),
            ("tenants.rs", include_str!("tenants.rs")),
            ("webhooks.rs", include_str!("webhooks.rs")),
            ("guard.rs", include_str!("guard.rs")),
            ("principal.rs", include_str!("principal.rs")),
        ];
        let unscoped = [
            ".scoped(",
            "store.sites(",
            "store.create_site(",
            "store.create_sites(",
            "store.keys(",
            "store.revoke_key(",
            "store.rotate_key(",
            "store.recent_failures(",
        ];
        for (name, src) in sources {
            let flat: String = src.split_whitespace().collect();
            for u in unscoped {
                assert!(
                    !flat.contains(u),
                    "{name} calls `{u}…`: routes reach the store through caller.store(&state)"
                );
            }
        }
    }
}
