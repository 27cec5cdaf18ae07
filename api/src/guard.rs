//! One middleware around `/api/v1`: who is calling (bearer key, resolved to a principal with
//! its tenant: `principal.rs`), whether they may (token buckets per tenant and key), whether
//! this POST already ran (`Idempotency-Key`, per tenant and key), and a record of it (audit,
//! written by a background task, never on the request path).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};
use anyhow::Result;
use sha2::Digest;

use super::principal::{self, Principal};
use super::{ApiError, State, error, now_us};
use jetmon_store::tokens::Scope;
use jetmon_store::{AuditRow, Idem, RateBucket, Store, StoredAnswer};

/// How long a finished idempotent response is replayed.
pub const IDEMPOTENCY_TTL_US: u64 = 24 * 3600 * 1_000_000;
/// How long an in-flight idempotent request holds its key: twice the longest request (a
/// trigger-now waits up to the longest check timeout, 120 s, plus 5 s). A claim whose holder
/// died is taken over after it; this host's own are released when control starts again.
pub const IDEMPOTENCY_LEASE_US: u64 = 300 * 1_000_000;
/// How long audit records are kept.
pub const AUDIT_RETENTION_US: u64 = 90 * 86_400 * 1_000_000;
/// Audit records waiting to be written; beyond this they are dropped (and counted).
const AUDIT_QUEUE: usize = 10_000;
/// How long a client has to send a request's whole body (its headers have
/// [`HEADER_DEADLINE`]).
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// How long a client has to send a request's headers.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// How long an idle kept-alive connection stays open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Open connections each of the API's two workers serves; beyond it, new ones wait in the
/// listen backlog.
pub const MAX_CONNECTIONS_PER_WORKER: usize = 1024;
const GENERAL: u8 = 0;
const EXPENSIVE: u8 = 1;

/// What the guard found out about the caller (read by the `Caller` extractor).
#[derive(Clone)]
pub enum Auth {
    Key(Box<Principal>),
    Invalid,
}

/// A bucket's identity: (tenant column, key, kind).
type BucketId = (u64, u64, u8);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli: i64,
    at_us: u64,
    dirty: bool,
}

pub struct Guard {
    buckets: Mutex<HashMap<BucketId, Bucket>>,
    /// (capacity, refill per second) in milli-tokens, by bucket kind.
    limits: [(i64, i64); 2],
    audit: tokio::sync::mpsc::Sender<AuditRow>,
    requests: AtomicU64,
    limited: AtomicU64,
    audit_dropped: AtomicU64,
    bad: super::bad_tokens::BadTokens,
}

/// One bucket's verdict and what the headers say.
struct Take {
    allowed: bool,
    limit: u32,
    remaining: u32,
    /// Seconds until the bucket is full again.
    reset_s: u64,
    /// Seconds until one token is there (when refused).
    retry_after_s: u64,
}

impl Guard {
    /// Loads the stored buckets and starts the task that writes audit records and buckets
    /// (every second) and forgets old idempotency keys (hourly).
    pub async fn start(
        store: Store,
        per_minute: u32,
        expensive_per_minute: u32,
    ) -> Result<std::sync::Arc<Guard>> {
        // What this host's previous control left in flight died with it: release it now,
        // before serving, so a retry runs once instead of getting 409 for the next 24 h.
        match store.release_in_flight().await {
            Ok(0) => {}
            Ok(n) => eprintln!(
                "jetmon: API: released {n} idempotency key(s) a previous run left in flight"
            ),
            Err(e) => eprintln!("jetmon: API: releasing in-flight idempotency keys: {e:#}"),
        }
        let mut buckets = HashMap::new();
        for b in store.rate_buckets().await? {
            buckets.insert(
                (b.tenant_id, b.key_id, b.bucket),
                Bucket {
                    milli: b.milli,
                    at_us: b.at_us,
                    dirty: false,
                },
            );
        }
        let limit = |per_minute: u32| {
            let cap = i64::from(per_minute) * 1000;
            (cap, (cap / 60).max(1))
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(AUDIT_QUEUE);
        let guard = std::sync::Arc::new(Guard {
            buckets: Mutex::new(buckets),
            limits: [limit(per_minute), limit(expensive_per_minute)],
            audit: tx,
            requests: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            audit_dropped: AtomicU64::new(0),
            bad: Default::default(),
        });
        let g = guard.clone();
        actix_web::rt::spawn(async move {
            let mut last_prune = Instant::now();
            let mut batch = Vec::new();
            loop {
                actix_web::rt::time::sleep(Duration::from_secs(1)).await;
                while let Ok(a) = rx.try_recv() {
                    batch.push(a);
                    if batch.len() >= 1000 {
                        break;
                    }
                }
                if !batch.is_empty() {
                    match store.audit(&batch).await {
                        Ok(()) => batch.clear(),
                        // Kept for the next second unless the database stays away.
                        Err(e) if batch.len() >= AUDIT_QUEUE => {
                            eprintln!("jetmon: API audit records dropped: {e:#}");
                            g.audit_dropped
                                .fetch_add(batch.len() as u64, Ordering::Relaxed);
                            batch.clear();
                        }
                        Err(_) => {}
                    }
                }
                let dirty = g.dirty_buckets();
                if !dirty.is_empty()
                    && let Err(e) = store.save_rate_buckets(&dirty).await
                {
                    eprintln!("jetmon: saving API rate limits failed (will retry): {e:#}");
                    g.mark_dirty(&dirty);
                }
                if last_prune.elapsed() >= Duration::from_secs(3600) {
                    last_prune = Instant::now();
                    let now = now_us();
                    let _ = store
                        .prune_idempotency(now.saturating_sub(IDEMPOTENCY_TTL_US))
                        .await;
                    let _ = store
                        .prune_audit(now.saturating_sub(AUDIT_RETENTION_US))
                        .await;
                }
            }
        });
        Ok(guard)
    }

    fn dirty_buckets(&self) -> Vec<RateBucket> {
        let Ok(mut b) = self.buckets.lock() else {
            return Vec::new();
        };
        b.iter_mut()
            .filter(|(_, v)| v.dirty)
            .map(|(k, v)| {
                v.dirty = false;
                RateBucket {
                    tenant_id: k.0,
                    key_id: k.1,
                    bucket: k.2,
                    milli: v.milli,
                    at_us: v.at_us,
                }
            })
            .collect()
    }

    fn mark_dirty(&self, rows: &[RateBucket]) {
        if let Ok(mut b) = self.buckets.lock() {
            for r in rows {
                if let Some(v) = b.get_mut(&(r.tenant_id, r.key_id, r.bucket)) {
                    v.dirty = true;
                }
            }
        }
    }

    /// Takes one token from a (tenant, key)'s bucket.
    fn take(&self, tenant: u64, key: u64, kind: u8, now: u64) -> Take {
        let (cap, per_s) = self.limits[usize::from(kind)];
        let mut map = match self.buckets.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let b = map.entry((tenant, key, kind)).or_insert(Bucket {
            milli: cap,
            at_us: now,
            dirty: true,
        });
        let elapsed = now.saturating_sub(b.at_us);
        let refill = i64::try_from(elapsed / 1000)
            .unwrap_or(i64::MAX)
            .saturating_mul(per_s)
            / 1000;
        b.milli = b.milli.saturating_add(refill).min(cap);
        b.at_us = now;
        b.dirty = true;
        let allowed = b.milli >= 1000;
        if allowed {
            b.milli -= 1000;
        }
        let secs_for = |milli: i64| (milli.max(0) as u64).div_ceil(per_s as u64);
        Take {
            allowed,
            limit: (cap / 1000) as u32,
            remaining: (b.milli / 1000).max(0) as u32,
            reset_s: secs_for(cap - b.milli),
            retry_after_s: secs_for(1000 - b.milli).max(1),
        }
    }

    fn record(&self, a: AuditRow) {
        if self.audit.try_send(a).is_err() {
            self.audit_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text for the API.
    pub fn metrics(&self) -> String {
        let bad = self.bad.metrics();
        format!(
            "# HELP jetmon_api_requests_total Authenticated API requests.\n\
             # TYPE jetmon_api_requests_total counter\njetmon_api_requests_total {}\n\
             # HELP jetmon_api_rate_limited_total API requests refused with 429.\n\
             # TYPE jetmon_api_rate_limited_total counter\njetmon_api_rate_limited_total {}\n\
             # HELP jetmon_api_audit_dropped_total Audit records dropped (queue full or database away).\n\
             # TYPE jetmon_api_audit_dropped_total counter\njetmon_api_audit_dropped_total {}\n{bad}",
            self.requests.load(Ordering::Relaxed),
            self.limited.load(Ordering::Relaxed),
            self.audit_dropped.load(Ordering::Relaxed),
        )
    }
}

fn set_header(res: &mut HttpResponse, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        res.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

fn rate_headers(res: &mut HttpResponse, t: &Take) {
    set_header(res, "x-ratelimit-limit", t.limit);
    set_header(res, "x-ratelimit-remaining", t.remaining);
    set_header(res, "x-ratelimit-reset", t.reset_s);
}

/// An `Idempotency-Key` is 1 to 255 visible ASCII characters.
fn idempotency_key(req: &ServiceRequest) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(|s| Some(s.to_owned()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key: 1 to 255 visible ASCII characters",
            )
        })
}

pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let Some(state) = req.app_data::<web::Data<State>>().cloned() else {
        return Ok(fail(req, &ApiError::internal("no API state")));
    };
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(jetmon_shared::auth::bearer)
        .map(str::to_owned);
    let now = now_us();
    let addr = req.peer_addr().map(|a| a.ip());
    let g = &state.guard;
    let key = match token {
        None => None,
        Some(t) => {
            let hash = jetmon_store::tokens::hash(&t);
            if !g.bad.known_good(&hash, now)
                && let Some(secs) = g.bad.refuse(addr, now)
            {
                let e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "auth_rate_limited",
                    format!("too many invalid API keys from this address; try again in {secs} s"),
                );
                let mut res = error::with_request(&e, req.request());
                set_header(&mut res, "retry-after", secs);
                return Ok(req.into_response(res));
            }
            let found = if g.bad.known_bad(&hash, now) {
                None
            } else {
                match state.store.key_for_token(&t).await {
                    Ok(k) => k.filter(|k| k.active(now)),
                    Err(e) => return Ok(fail(req, &ApiError::from_store(e))),
                }
            };
            if found.is_some() {
                g.bad.succeeded(hash, now);
            } else {
                if g.bad.failed(hash, addr, now) {
                    g.record(AuditRow {
                        key_id: 0,
                        tenant_id: 0,
                        method: req.method().to_string(),
                        route: req.match_pattern().unwrap_or_else(|| req.path().to_owned()),
                        status: StatusCode::UNAUTHORIZED.as_u16(),
                        duration_us: started.elapsed().as_micros() as u64,
                        request_id: super::request_id_of(req.request()),
                        at_us: now,
                    });
                }
                req.extensions_mut().insert(Auth::Invalid);
            }
            found
        }
    };
    let Some(key) = key else {
        // Every route with a body needs a key: answer before reading it.
        if carries_body(&req) {
            let auth = req.extensions().get::<Auth>().cloned();
            return Ok(fail(req, &super::unauthenticated(auth.as_ref())));
        }
        // Unauthenticated: the route's `Caller` answers 401 (public routes just run).
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let p = match principal::resolve(&state.store, key, req.headers()).await {
        Ok(p) => p,
        Err(e) => return Ok(fail(req, &e)),
    };
    let (tenant, key_id) = (p.tenant_column(), p.key.id);
    let scope = p.scope;
    req.extensions_mut().insert(Auth::Key(Box::new(p)));
    g.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().to_string();
    let expensive =
        req.method() == actix_web::http::Method::POST && req.path().ends_with("/trigger-now");
    let mut take = g.take(tenant, key_id, GENERAL, now);
    if take.allowed && expensive {
        let e = g.take(tenant, key_id, EXPENSIVE, now);
        if !e.allowed {
            take = e;
        }
    }
    let request_id = super::request_id_of(req.request());
    let route = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    let audit = |status: StatusCode| AuditRow {
        key_id,
        tenant_id: tenant,
        method: method.clone(),
        route: route.clone(),
        status: status.as_u16(),
        duration_us: started.elapsed().as_micros() as u64,
        request_id: request_id.clone(),
        at_us: now,
    };
    if !take.allowed {
        g.limited.fetch_add(1, Ordering::Relaxed);
        let e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "this key's {} limit is {} a minute; try again in {} s",
                if expensive { "trigger-now" } else { "request" },
                take.limit,
                take.retry_after_s
            ),
        );
        let mut res = error::with_request(&e, req.request());
        rate_headers(&mut res, &take);
        set_header(&mut res, "retry-after", take.retry_after_s);
        g.record(audit(res.status()));
        return Ok(req.into_response(res));
    }
    // What a body-carrying route needs at least, checked before its body is read (the
    // route checks its own, possibly higher, scope again).
    if let Some(needed) = scope_before_body(&req)
        && let Err(e) = super::require_scope(scope, needed)
    {
        let res = fail(req, &e);
        g.record(audit(res.status()));
        return Ok(res);
    }
    let idem = if req.method() == actix_web::http::Method::POST {
        match idempotency_key(&req) {
            Ok(k) => k,
            Err(e) => return Ok(fail(req, &e)),
        }
    } else {
        None
    };
    let body = if carries_body(&req) {
        match read_body(&mut req).await {
            Ok(b) => Some(b),
            Err(e) => {
                let mut res = fail(req, &e);
                if e.status == StatusCode::REQUEST_TIMEOUT {
                    // The client is still sending: do not read the rest of it.
                    res.response_mut()
                        .head_mut()
                        .set_connection_type(actix_web::http::ConnectionType::Close);
                }
                g.record(audit(res.status()));
                return Ok(res);
            }
        }
    } else {
        None
    };
    let mut res = match (idem, body) {
        (Some(idem_key), Some(body)) => {
            idempotent(req, next, &state.store, (tenant, key_id), &idem_key, body).await?
        }
        (_, body) => {
            if let Some(b) = body {
                req.set_payload(actix_web::dev::Payload::from(b));
            }
            next.call(req).await?.map_into_boxed_body()
        }
    };
    rate_headers(res.response_mut(), &take);
    g.record(audit(res.status()));
    Ok(res)
}

/// The stored copy of an answer that carries a secret: the field nulled, a note beside it.
fn without_secret(body: &[u8], s: super::Secret) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut o)) => {
            o.insert(s.field.to_owned(), serde_json::Value::Null);
            o.insert(
                "note".to_owned(),
                serde_json::Value::String(s.note.to_owned()),
            );
            serde_json::Value::Object(o).to_string()
        }
        // Not the JSON object expected: store nothing of it.
        _ => String::from("{}"),
    }
}

/// Whether the method's requests carry a body the route reads.
fn carries_body(req: &ServiceRequest) -> bool {
    use actix_web::http::Method;
    ![Method::GET, Method::HEAD, Method::OPTIONS].contains(req.method())
}

/// The least scope a body-carrying route needs: admin for keys and tenants, write for the rest.
fn scope_before_body(req: &ServiceRequest) -> Option<Scope> {
    if !carries_body(req) {
        return None;
    }
    let path = req.path().trim_start_matches("/api/v1");
    let admin = ["/keys", "/tenants"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    Some(if admin { Scope::Admin } else { Scope::Write })
}

/// The whole body within [`BODY_DEADLINE`] (408 after it) and [`super::MAX_BODY_BYTES`] (413).
async fn read_body(req: &mut ServiceRequest) -> Result<web::Bytes, ApiError> {
    match actix_web::rt::time::timeout(BODY_DEADLINE, req.extract::<web::Bytes>()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s",
                BODY_DEADLINE.as_secs()
            ),
        )),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(
            if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                super::too_large()
            } else {
                ApiError::bad_request("invalid_body", format!("body: {e}"))
            },
        ),
    }
}

fn fail(req: ServiceRequest, e: &ApiError) -> ServiceResponse<BoxBody> {
    let res = error::with_request(e, req.request());
    req.into_response(res)
}

/// Runs a POST at most once per (tenant, key, Idempotency-Key): the first run's response is
/// stored and replayed; a concurrent duplicate or another body with the same key gets 409.
async fn idempotent(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    store: &Store,
    (tenant, key_id): (u64, u64),
    idem_key: &str,
    body: web::Bytes,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mut h = sha2::Sha256::new();
    h.update(req.method().as_str());
    h.update(b" ");
    h.update(req.uri().to_string());
    h.update(b"\n");
    h.update(&body);
    let hash = h.finalize();
    let found = match store
        .idem_begin(
            tenant,
            key_id,
            idem_key,
            &hash,
            IDEMPOTENCY_TTL_US,
            IDEMPOTENCY_LEASE_US,
        )
        .await
    {
        Ok(f) => f,
        Err(e) => return Ok(fail(req, &ApiError::from_store(e))),
    };
    match found {
        Idem::Mismatch => Ok(fail(
            req,
            &ApiError::conflict(
                "idempotency_mismatch",
                "this Idempotency-Key was used with another request body or route",
            ),
        )),
        Idem::InFlight => Ok(fail(
            req,
            &ApiError::conflict(
                "idempotency_in_flight",
                "a request with this Idempotency-Key is still running; retry later",
            ),
        )),
        Idem::Replay(a) => {
            let mut res =
                HttpResponse::build(StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK))
                    .content_type(a.content_type.as_deref().unwrap_or("application/json"))
                    .body(a.body);
            if let Some(l) = &a.location {
                set_header(&mut res, "location", l);
            }
            set_header(&mut res, "idempotency-replayed", "true");
            Ok(req.into_response(res))
        }
        Idem::Fresh => {
            req.set_payload(actix_web::dev::Payload::from(body));
            let res = next.call(req).await?.map_into_boxed_body();
            // An error's envelope gets its request id before it is stored.
            let res = match res
                .response()
                .error()
                .and_then(|e| e.as_error::<ApiError>())
            {
                Some(e) => {
                    let body = error::with_request(e, res.request());
                    let (req, _) = res.into_parts();
                    ServiceResponse::new(req, body)
                }
                None => res,
            };
            let status = res.status();
            let secret = res.response().extensions().get::<super::Secret>().copied();
            let header = |name: &str| {
                res.response()
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let (location, content_type) = (header("location"), header("content-type"));
            let (req, res) = res.into_parts();
            let (head, body) = res.into_parts();
            let bytes = match actix_web::body::to_bytes(body).await {
                Ok(b) => b,
                Err(_) => web::Bytes::new(),
            };
            // Server-side failures are not the answer to this request: let it be retried.
            let keep = !status.is_server_error();
            let text = match secret {
                None => String::from_utf8_lossy(&bytes).into_owned(),
                Some(s) => without_secret(&bytes, s),
            };
            let answer = StoredAnswer {
                status: status.as_u16(),
                body: text,
                location,
                content_type,
            };
            let stored = store
                .idem_finish(tenant, key_id, idem_key, keep.then_some(&answer))
                .await;
            if let Err(e) = stored {
                eprintln!("jetmon: API: storing an idempotent response failed: {e:#}");
            }
            let res = head.set_body(BoxBody::new(bytes));
            Ok(ServiceResponse::new(req, res))
        }
    }
}
