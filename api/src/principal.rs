//! Who a request acts for (docs/tenants.md): the key's kind, its tenant (a tenant key's own,
//! or the one a gateway names in `X-Jetmon-Tenant-ID`), and its scope (a gateway's narrowed by
//! `X-Jetmon-Public-Scopes`). Resolved once per request by the guard; routes read it through
//! their [`Caller`](super::Caller) and reach the store only through it.

use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use jetmon_store::tokens::Scope;
use jetmon_store::{KeyKind, KeyRow, Store, Tenancy, TenantRow};

use super::ApiError;

pub const TENANT_HEADER: &str = "x-jetmon-tenant-id";
pub const SCOPES_HEADER: &str = "x-jetmon-public-scopes";

/// A resolved caller: the key, what it may see, and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key: KeyRow,
    pub tenancy: Tenancy,
    /// The tenant acted for (tenant keys and gateways).
    pub tenant: Option<TenantRow>,
    /// The key's scope, narrowed by a gateway's public scopes.
    pub scope: Scope,
}

impl Principal {
    /// The tenant column of per-(tenant, key) rows: rate limits, idempotency keys, audit.
    pub fn tenant_column(&self) -> u64 {
        self.tenancy.column()
    }
}

fn refuse(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| {
            ApiError::bad_request(
                "invalid_gateway_context",
                format!("{name}: visible ASCII only"),
            )
        }),
    }
}

/// The highest scope of a space-separated list, never above `key` (the header narrows).
fn narrowed(key: Scope, list: &str) -> Result<Scope, ApiError> {
    let mut best: Option<Scope> = None;
    for word in list.split_ascii_whitespace() {
        let s = Scope::from_name(word).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_gateway_context",
                format!("{SCOPES_HEADER}: {word:?} is not a scope (read, write, admin)"),
            )
        })?;
        if best.is_none_or(|b| s.allows(b)) {
            best = Some(s);
        }
    }
    let best = best.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_gateway_context",
            format!("{SCOPES_HEADER}: name at least one scope (read, write, admin)"),
        )
    })?;
    Ok(if key.allows(best) { best } else { key })
}

/// Resolves `key` (valid and active) with the request's headers.
pub async fn resolve(
    store: &Store,
    key: KeyRow,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let tenant_h = header(headers, TENANT_HEADER)?;
    let scopes_h = header(headers, SCOPES_HEADER)?;
    let active = |t: TenantRow| {
        if t.active {
            Ok(t)
        } else {
            Err(refuse(
                "tenant_inactive",
                format!("tenant {} ({}) is deactivated", t.id, t.name),
            ))
        }
    };
    match key.kind {
        KeyKind::Operator | KeyKind::Tenant if tenant_h.is_some() || scopes_h.is_some() => {
            Err(refuse(
                "forbidden_gateway_context",
                format!(
                    "{TENANT_HEADER} and {SCOPES_HEADER} are for gateway keys; this is {} key",
                    match key.kind {
                        KeyKind::Tenant => "a tenant",
                        _ => "an operator",
                    }
                ),
            ))
        }
        KeyKind::Operator => Ok(Principal {
            scope: key.scope,
            key,
            tenancy: Tenancy::All,
            tenant: None,
        }),
        KeyKind::Tenant => {
            let Some(id) = key.tenant_id else {
                return Err(ApiError::unauthorized("this tenant key has no tenant"));
            };
            let tenant = store
                .tenant(id)
                .await
                .map_err(ApiError::from_store)?
                .ok_or_else(|| ApiError::unauthorized("this key's tenant no longer exists"))?;
            let tenant = active(tenant)?;
            Ok(Principal {
                scope: key.scope,
                key,
                tenancy: Tenancy::Tenant(id),
                tenant: Some(tenant),
            })
        }
        KeyKind::Gateway => {
            let Some(reference) = tenant_h.filter(|s| !s.is_empty()) else {
                return Err(refuse(
                    "gateway_context_required",
                    format!("a gateway key names the tenant it acts for in {TENANT_HEADER}"),
                ));
            };
            let scope = match scopes_h {
                None => key.scope,
                Some(list) => narrowed(key.scope, list)?,
            };
            let tenant = store
                .find_tenant(reference)
                .await
                .map_err(ApiError::from_store)?
                .ok_or_else(|| refuse("unknown_tenant", format!("no tenant {reference:?}")))?;
            let tenant = active(tenant)?;
            Ok(Principal {
                scope,
                key,
                tenancy: Tenancy::Tenant(tenant.id),
                tenant: Some(tenant),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_scopes_narrow_and_never_widen() {
        assert_eq!(narrowed(Scope::Admin, "read").ok(), Some(Scope::Read));
        assert_eq!(
            narrowed(Scope::Admin, "read write").ok(),
            Some(Scope::Write)
        );
        assert_eq!(narrowed(Scope::Read, "admin").ok(), Some(Scope::Read));
        assert!(narrowed(Scope::Admin, "  ").is_err());
        assert!(narrowed(Scope::Admin, "read sudo").is_err());
    }
}
