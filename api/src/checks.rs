//! Checks of a site: list, read, add, patch, delete, and `CheckInput`, the one shape every
//! check setting arrives in (the API's check routes, site creation and bulk).

use actix_web::{HttpResponse, web};
use jetmon_shared::check::{
    CheckSpec, CheckType, DnsRecordType, HttpMethod, IpPreference, RedirectPolicy,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::sites::*;
use super::{ApiError, Caller, State, rfc3339};
use crate::target::{MAX_INTERVAL_S, MIN_INTERVAL_S};
use jetmon_store::CheckRow;
use jetmon_store::Scoped;
use jetmon_store::tokens::Scope;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sites/{id}/checks", web::get().to(checks))
        .route("/sites/{id}/checks", web::post().to(add_check))
        .route("/sites/{id}/checks/{cid}", web::get().to(check))
        .route("/sites/{id}/checks/{cid}", web::patch().to(patch_check))
        .route("/sites/{id}/checks/{cid}", web::delete().to(delete_check));
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
    /// http: custom request headers, each value shown only as a preview (stored encrypted).
    pub headers: Vec<HeaderShown>,
    /// http: the credentials sent as `Authorization`, secret shown only as a preview.
    pub auth: Option<AuthShown>,
    /// Moves on with every change.
    pub generation: u32,
    pub created_at: String,
    pub updated_at: String,
}

/// A custom request header as answered: its name and the last characters of its value.
#[derive(Serialize, ToSchema)]
pub struct HeaderShown {
    pub name: String,
    /// `…` and the value's last 4 characters.
    pub value_preview: String,
}

/// A check's credentials as answered.
#[derive(Serialize, ToSchema)]
pub struct AuthShown {
    /// basic or bearer.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub auth_type: String,
    /// basic: the user name.
    pub username: Option<String>,
    /// `…` and the password's (or token's) last 4 characters.
    pub secret_preview: String,
}

/// A custom request header as given.
#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct HeaderInput {
    pub name: String,
    pub value: String,
}

/// Credentials as given: `basic` (username, password), `bearer` (token), or `none` to remove
/// them.
#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct AuthInput {
    /// basic, bearer or none.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub auth_type: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

const AUTHORIZATION: &str = "Authorization";

/// A check's headers split into its custom ones and its credentials (the `Authorization`
/// header the `auth` setting makes).
fn split_auth(headers: &[(String, String)]) -> (Vec<(String, String)>, Option<&str>) {
    let auth = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(AUTHORIZATION))
        .map(|(_, v)| v.as_str());
    let custom = headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(AUTHORIZATION))
        .cloned()
        .collect();
    (custom, auth)
}

fn auth_shown(value: &str) -> AuthShown {
    use base64::Engine as _;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        AuthShown {
            auth_type: "basic".into(),
            username: Some(user.to_owned()),
            secret_preview: jetmon_secrets::preview(password),
        }
    } else {
        AuthShown {
            auth_type: "bearer".into(),
            username: None,
            secret_preview: jetmon_secrets::preview(rest),
        }
    }
}

impl From<CheckRow> for Check {
    fn from(c: CheckRow) -> Check {
        let s = c.spec;
        let (custom, auth) = split_auth(&s.headers);
        let headers = custom
            .iter()
            .map(|(n, v)| HeaderShown {
                name: n.clone(),
                value_preview: jetmon_secrets::preview(v),
            })
            .collect();
        let auth = auth.map(auth_shown);
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
            headers,
            auth,
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
    /// http: custom request headers sent with every probe (at most 20, 8 KiB in all; no
    /// control characters; not Host, Content-Length, Transfer-Encoding, Connection or other
    /// hop-by-hop headers; credentials go in `auth`). Replaces the check's custom headers;
    /// stored encrypted, answered as previews.
    pub headers: Option<Vec<HeaderInput>>,
    /// http: credentials, sent as the `Authorization` header; stored encrypted, answered as a
    /// preview. `{"type": "none"}` removes them.
    pub auth: Option<AuthInput>,
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
        for (field, given) in [
            ("keywords", &self.keywords),
            ("forbidden_keywords", &self.forbidden_keywords),
        ] {
            if given
                .iter()
                .flatten()
                .any(|k| k.chars().any(char::is_control))
            {
                return Err(bad(format!("{field}: no control characters")));
            }
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
        if self.headers.is_some() || self.auth.is_some() {
            spec.headers = self.headers_onto(&spec.headers)?;
        }
        // Limits the engine and prober rely on (sizes, ranges).
        let check_id = spec.check_id;
        spec.check_id = check_id.max(1);
        let valid = spec.validate();
        spec.check_id = check_id;
        valid.map_err(|e| bad(format!("{}: {}", e.field, e.problem)))
    }
}

impl CheckInput {
    /// The headers a check ends up with: the custom ones given (or kept) and the credentials
    /// given (or kept) as one `Authorization` header.
    fn headers_onto(&self, now: &[(String, String)]) -> Result<Vec<(String, String)>, ApiError> {
        let bad = |m: String| ApiError::bad_request("invalid_body", m);
        let (kept, kept_auth) = split_auth(now);
        let mut out: Vec<(String, String)> = match &self.headers {
            None => kept,
            Some(given) => {
                let mut out = Vec::with_capacity(given.len());
                for (i, h) in given.iter().enumerate() {
                    if h.name.eq_ignore_ascii_case(AUTHORIZATION) {
                        return Err(bad(format!(
                            "headers[{i}]: send credentials as auth ({{\"type\": \"basic\"|\"bearer\", …}})"
                        )));
                    }
                    if !jetmon_prober::proto::http::header_allowed(&h.name, &h.value) {
                        return Err(bad(format!(
                            "headers[{i}]: {:?} may not be set (a token name; no control \
                             characters; not Host, Content-Length, Transfer-Encoding, \
                             Connection, Keep-Alive, TE, Trailer or Upgrade)",
                            h.name
                        )));
                    }
                    out.push((h.name.clone(), h.value.clone()));
                }
                out
            }
        };
        let auth = match &self.auth {
            None => kept_auth.map(str::to_owned),
            Some(a) => auth_header(a)?,
        };
        if let Some(v) = auth {
            out.push((AUTHORIZATION.to_owned(), v));
        }
        Ok(out)
    }
}

/// The `Authorization` value of `auth` (None for `none`).
fn auth_header(a: &AuthInput) -> Result<Option<String>, ApiError> {
    use base64::Engine as _;
    let bad = |m: &str| Err(ApiError::bad_request("invalid_body", format!("auth: {m}")));
    let clean = |v: &str| !v.is_empty() && !v.chars().any(char::is_control);
    match (a.auth_type.as_str(), &a.username, &a.password, &a.token) {
        ("none", None, None, None) => Ok(None),
        ("basic", Some(u), Some(p), None) => {
            if !clean(u) || u.contains(':') || !clean(p) {
                return bad("basic: a username without ':' and a password, no control characters");
            }
            let pair = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            Ok(Some(format!("Basic {pair}")))
        }
        ("bearer", None, None, Some(t)) => {
            if !clean(t) || t.contains(' ') {
                return bad("bearer: a token without spaces or control characters");
            }
            Ok(Some(format!("Bearer {t}")))
        }
        ("basic", ..) => bad("basic takes username and password (only)"),
        ("bearer", ..) => bad("bearer takes token (only)"),
        ("none", ..) => bad("none takes nothing else"),
        (other, ..) => bad(&format!("type {other:?} is not one of basic, bearer, none")),
    }
}

pub(crate) async fn site_checks(db: Scoped<'_>, site: u64) -> Result<Vec<Check>, ApiError> {
    Ok(db
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
    let db = caller.store(&state);
    site_or_404(db, *id).await?;
    Ok(web::Json(CheckList {
        data: site_checks(db, *id).await?,
    }))
}

pub(crate) async fn check_or_404(
    db: Scoped<'_>,
    site: u64,
    cid: u64,
) -> Result<CheckRow, ApiError> {
    site_or_404(db, site).await?;
    db.site_checks(site)
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
    let db = caller.store(&state);
    let (id, cid) = path.into_inner();
    Ok(web::Json(Check::from(check_or_404(db, id, cid).await?)))
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
    let db = caller.store(&state);
    let site = site_or_404(db, *id).await?;
    let t = match &body.check_type {
        Some(t) => named("type", t, CheckType::from_name, "http, tcp, dns")?,
        None => CheckType::Http,
    };
    let endpoint = match body.endpoint_id {
        Some(eid) => Some(endpoint_or_404(db, *id, eid).await?),
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
    let cid = db
        .add_site_check(*id, endpoint.map(|e| e.id), &name, &spec, critical)
        .await
        .map_err(ApiError::from_store)?
        .ok_or_else(|| ApiError::not_found(format!("no site {id}")))?;
    state.link.nudge();
    Ok(HttpResponse::Created().json(Check::from(check_or_404(db, *id, cid).await?)))
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
    let db = caller.store(&state);
    let (id, cid) = path.into_inner();
    let old = check_or_404(db, id, cid).await?;
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
    db.replace_check(id, &name, &spec, critical)
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    Ok(web::Json(Check::from(check_or_404(db, id, cid).await?)))
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
    let db = caller.store(&state);
    let (id, cid) = path.into_inner();
    check_or_404(db, id, cid).await?;
    db.delete_check(id, cid)
        .await
        .map_err(ApiError::from_store)?;
    state.link.nudge();
    Ok(web::Json(Deleted {
        id: cid,
        deleted: true,
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
                "headers" => json!([{"name": "X-Api-Key", "value": "k"}]),
                "auth" => json!({"type": "bearer", "token": "t"}),
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
