//! The REST API (`/api/v1`, design: docs/api.md) and the operator endpoints (`/metrics`,
//! `/ready`, `/health`), served by actix-web on a thread of its own inside `jetmon up`, with
//! its own database pool. This is the foundation: conventions (error envelope, request ids,
//! bearer keys with scopes, cursor pages) and the first read routes; the rest of api.md lands
//! on top of it.

mod error;
mod sites;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, FromRequest, HttpMessage, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::{Context, Result};
use serde::Serialize;

pub use error::ApiError;

use crate::keys::Scope;
use crate::metrics::Shared;
use crate::store::{KeyRow, Store};

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What every handler can reach.
pub struct State {
    pub store: Store,
    pub metrics: Shared,
}

/// Binds `listen` and serves until the process exits; returns the bound address. Fails with
/// one line when the address is taken or the database cannot be opened.
pub fn start(listen: &str, database_url: &str, host: &str, metrics: Shared) -> Result<SocketAddr> {
    let listener = TcpListener::bind(listen).with_context(|| {
        format!("listening on {listen} (control.api_listen): is another jetmon running?")
    })?;
    let addr = listener.local_addr()?;
    let (url, host) = (database_url.to_owned(), host.to_owned());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    std::thread::Builder::new()
        .name("jetmon-api".into())
        .spawn(move || {
            let system = actix_web::rt::System::new();
            system.block_on(async move {
                let store = match Store::open(&url, &host).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.context("the API's database pool")));
                        return;
                    }
                };
                let state = web::Data::new(State { store, metrics });
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .app_data(
                            web::JsonConfig::default()
                                .limit(MAX_BODY_BYTES)
                                .error_handler(|e, _| {
                                    ApiError::bad_request("invalid_body", e.to_string()).into()
                                }),
                        )
                        .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                        .wrap(from_fn(request_id))
                        .route("/metrics", web::get().to(metrics_text))
                        .route("/ready", web::get().to(ready))
                        .route("/health", web::get().to(health))
                        .service(
                            web::scope("/api/v1")
                                .route("/health", web::get().to(health))
                                .route("/ready", web::get().to(ready))
                                .route("/me", web::get().to(me))
                                .configure(sites::routes),
                        )
                        .default_service(web::to(not_found))
                })
                .workers(2)
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

/// The request's id: the client's `X-Request-ID` when it is sane, else a fresh one.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

fn fresh_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
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
    let res = next.call(req).await?;
    // An ApiError a handler or an extractor returned: its envelope gets the request id.
    let envelope = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .map(|e| error::envelope(e, &id));
    let mut res = match envelope {
        Some(body) => {
            let (req, _) = res.into_parts();
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

/// An authenticated caller: a valid, active key.
pub struct Caller {
    pub key: KeyRow,
}

impl Caller {
    /// 403 unless the key's scope covers `needed`.
    pub fn require(&self, needed: Scope) -> Result<(), ApiError> {
        if self.key.scope.allows(needed) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this key's scope is {}; the route needs {}",
                self.key.scope.name(),
                needed.name()
            )))
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let state = req.app_data::<web::Data<State>>().cloned();
        Box::pin(async move {
            let token = token.ok_or_else(|| {
                ApiError::unauthorized("send an API key: Authorization: Bearer jm_…")
            })?;
            let state = state.ok_or_else(|| ApiError::internal("no API state"))?;
            let key = state
                .store
                .key_for_token(&token)
                .await
                .map_err(ApiError::from_store)?
                .filter(|k| k.active(now_us()))
                .ok_or_else(|| ApiError::unauthorized("unknown, revoked or expired API key"))?;
            Ok(Caller { key })
        })
    }
}

pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// RFC 3339 UTC with milliseconds, from Unix µs.
pub fn rfc3339(us: u64) -> String {
    let secs = (us / 1_000_000) as i64;
    let ms = (us / 1000) % 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

async fn metrics_text(state: web::Data<State>) -> HttpResponse {
    let body = state
        .metrics
        .text
        .lock()
        .map(|t| t.clone())
        .unwrap_or_default();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

async fn ready(state: web::Data<State>) -> HttpResponse {
    match state.metrics.not_ready.lock().ok().and_then(|r| r.clone()) {
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

async fn not_found(req: HttpRequest) -> ApiError {
    ApiError::not_found(format!("no route {} {}", req.method(), req.path()))
}

#[derive(Serialize)]
struct Me {
    key: MeKey,
}

#[derive(Serialize)]
struct MeKey {
    id: u64,
    name: String,
    prefix: String,
    scope: &'static str,
    created_at: String,
    expires_at: Option<String>,
}

async fn me(caller: Caller) -> Result<web::Json<Me>, ApiError> {
    caller.require(Scope::Read)?;
    let k = caller.key;
    Ok(web::Json(Me {
        key: MeKey {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scope: k.scope.name(),
            created_at: rfc3339(k.created_us),
            expires_at: k.expires_us.map(rfc3339),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_996_800_123_456), "2026-11-30T00:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
    }
}
