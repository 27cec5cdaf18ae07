//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and
//! the types' `ToSchema` derives: what is served is what the code does.

use actix_web::HttpResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{checks, error, events, keys, maintenance, sites, stats, tenants, trigger, webhooks};

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Jetmon API",
        description = "Sites, checks, incidents, SLA and response times. Keys: `jetmon keys create`. \
                       Every site belongs to a tenant: a tenant key sees its own, an operator key \
                       every tenant's, a gateway key the tenant named by X-Jetmon-Tenant-ID. \
                       Errors: {\"error\": {code, message, request_id}}. Lists: cursor pages.",
    ),
    modifiers(&Bearer),
    paths(
        super::health_v1, super::ready_v1, super::me, openapi,
        sites::list, sites::create, sites::bulk, sites::one, sites::patch, sites::delete,
        sites::pause, sites::resume,
        sites::endpoints, sites::add_endpoint, sites::endpoint, sites::patch_endpoint,
        sites::delete_endpoint,
        checks::checks, checks::add_check, checks::check, checks::patch_check, checks::delete_check,
        maintenance::site_maintenance, maintenance::put_maintenance, maintenance::delete_maintenance,
        maintenance::all_maintenance,
        events::list, events::site_events, events::one, events::transitions, events::close,
        events::results,
        stats::site_sla, stats::many_sla, stats::response_time, stats::series,
        trigger::trigger, trigger::job,
        keys::list, keys::create, keys::revoke, keys::rotate,
        tenants::list, tenants::create, tenants::one, tenants::patch,
        webhooks::list, webhooks::create, webhooks::one, webhooks::patch, webhooks::delete,
        webhooks::rotate, webhooks::test, webhooks::deliveries, webhooks::retry,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    tags(
        (name = "system"), (name = "sites"), (name = "checks"), (name = "maintenance"),
        (name = "events"), (name = "statistics"), (name = "keys"), (name = "tenants"),
        (name = "webhooks"),
    )
)]
pub struct Doc;

/// The document as JSON (built once).
pub fn json() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        Doc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
}

/// This document (OpenAPI 3.1). No key needed.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json())
}
