//! API key rows: only hashes are stored (control/src/keys.rs makes and hashes tokens). A key
//! is an operator key (every tenant), a tenant key (one tenant's objects) or a gateway key
//! (acts for the tenant a trusted gateway names per request): docs/tenants.md.

use anyhow::{Context, Result, bail};
use sqlx::Row;

use super::{Scoped, Store, i, u};
use crate::tenants::Tenancy;
use crate::tokens::{NewToken, Scope, hashes_equal};

/// An API key as listed (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: u64,
    pub name: String,
    pub prefix: String,
    pub scope: Scope,
    pub created_us: u64,
    pub expires_us: Option<u64>,
    pub revoked_us: Option<u64>,
    pub replaced_by: Option<u64>,
    pub kind: KeyKind,
    /// The tenant of a tenant key.
    pub tenant_id: Option<u64>,
}

/// What a key may act for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyKind {
    /// Every tenant's objects (the operators' tools; every key made before tenants existed).
    #[default]
    Operator,
    /// One tenant's objects.
    Tenant,
    /// The tenant named by each request's `X-Jetmon-Tenant-ID` (a trusted gateway).
    Gateway,
}

impl KeyKind {
    pub fn code(self) -> i64 {
        match self {
            KeyKind::Operator => 0,
            KeyKind::Tenant => 1,
            KeyKind::Gateway => 2,
        }
    }

    pub fn from_code(c: i64) -> KeyKind {
        match c {
            1 => KeyKind::Tenant,
            2 => KeyKind::Gateway,
            _ => KeyKind::Operator,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Operator => "operator",
            KeyKind::Tenant => "tenant",
            KeyKind::Gateway => "gateway",
        }
    }

    pub fn from_name(s: &str) -> Option<KeyKind> {
        match s {
            "operator" => Some(KeyKind::Operator),
            "tenant" => Some(KeyKind::Tenant),
            "gateway" => Some(KeyKind::Gateway),
            _ => None,
        }
    }
}

/// A key to store: its name, scope, expiry, and what it acts for.
#[derive(Debug, Clone, Copy)]
pub struct NewKey<'a> {
    pub name: &'a str,
    pub scope: Scope,
    pub expires_us: Option<u64>,
    pub kind: KeyKind,
    /// Required for tenant keys, refused for the others.
    pub tenant_id: Option<u64>,
}

impl KeyRow {
    /// Usable at `now_us`: not revoked, not expired.
    pub fn active(&self, now_us: u64) -> bool {
        self.revoked_us.is_none() && self.expires_us.is_none_or(|t| now_us < t)
    }
}

const COLUMNS: &str = "id, name, prefix, scopes, created_at, expires_at, revoked_at, replaced_by, \
     token_hash, kind, tenant_id";

fn key_of(r: &sqlx::any::AnyRow) -> Result<(KeyRow, Vec<u8>)> {
    let opt = |k: usize| -> Result<Option<u64>> { Ok(r.try_get::<Option<i64>, _>(k)?.map(u)) };
    let scopes: String = r.try_get(3)?;
    Ok((
        KeyRow {
            id: u(r.try_get::<i64, _>(0)?),
            name: r.try_get(1)?,
            prefix: r.try_get(2)?,
            scope: Scope::from_name(&scopes).unwrap_or(Scope::Read),
            created_us: u(r.try_get::<i64, _>(4)?),
            expires_us: opt(5)?,
            revoked_us: opt(6)?,
            replaced_by: opt(7)?,
            kind: KeyKind::from_code(r.try_get::<i64, _>(9)?),
            tenant_id: opt(10)?,
        },
        r.try_get(8)?,
    ))
}

impl Store {
    /// Stores a new key (its hash and prefix); returns its id.
    pub async fn create_key(&self, k: &NewKey<'_>, token: &NewToken, now_us: u64) -> Result<u64> {
        match (k.kind, k.tenant_id) {
            (KeyKind::Tenant, None) => bail!("a tenant key needs its tenant"),
            (KeyKind::Operator | KeyKind::Gateway, Some(_)) => {
                bail!("only tenant keys belong to a tenant")
            }
            (_, Some(t)) if self.tenant(t).await?.is_none() => bail!("no tenant {t}"),
            _ => {}
        }
        let row = sqlx::query(
            "INSERT INTO api_keys (name, token_hash, scopes, created_at, expires_at, prefix, \
             kind, tenant_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(k.name)
        .bind(token.hash.to_vec())
        .bind(k.scope.name())
        .bind(i(now_us))
        .bind(k.expires_us.map(i))
        .bind(&token.prefix)
        .bind(k.kind.code())
        .bind(k.tenant_id.map(i))
        .fetch_one(&self.pool)
        .await
        .context("storing an API key")?;
        Ok(u(row.try_get::<i64, _>(0)?))
    }

    pub async fn keys(&self) -> Result<Vec<KeyRow>> {
        self.scoped(Tenancy::All).keys().await
    }

    /// The key a presented token belongs to (whatever its state: the caller checks `active`).
    pub async fn key_for_token(&self, token: &str) -> Result<Option<KeyRow>> {
        let hash = crate::tokens::hash(token);
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE token_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash.to_vec())
            .fetch_optional(&self.pool)
            .await
            .context("looking up an API key")?;
        match row {
            Some(r) => {
                let (key, stored) = key_of(&r)?;
                Ok(hashes_equal(&stored, &hash).then_some(key))
            }
            None => Ok(None),
        }
    }

    pub async fn revoke_key(&self, id: u64, now_us: u64) -> Result<bool> {
        self.scoped(Tenancy::All).revoke_key(id, now_us).await
    }

    pub async fn rotate_key(
        &self,
        id: u64,
        token: &NewToken,
        grace_us: u64,
        now_us: u64,
    ) -> Result<u64> {
        self.scoped(Tenancy::All)
            .rotate_key(id, token, grace_us, now_us)
            .await
    }
}

/// The tenant condition on `api_keys` (a tenant sees its own keys only), with its bind.
fn key_scope(t: Tenancy, n: usize) -> (String, Option<i64>) {
    match t.tenant() {
        None => (String::new(), None),
        Some(t) => (format!(" AND tenant_id = ${n}"), Some(i(t))),
    }
}

/// `q` with the tenant condition's value bound, when there is one.
fn bind_scope<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    bind: Option<i64>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    match bind {
        Some(b) => q.bind(b),
        None => q,
    }
}

impl Scoped<'_> {
    /// The keys this scope sees, by id (a tenant: its own).
    pub async fn keys(&self) -> Result<Vec<KeyRow>> {
        let (cond, bind) = key_scope(self.tenancy(), 1);
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE 1 = 1{cond} ORDER BY id");
        let rows = bind_scope(sqlx::query(sqlx::AssertSqlSafe(sql)), bind)
            .fetch_all(self.pool())
            .await
            .context("listing API keys")?;
        rows.iter().map(|r| key_of(r).map(|k| k.0)).collect()
    }

    /// Revokes a key now; false when there is no such key (or it was already revoked, or it
    /// is not this scope's).
    pub async fn revoke_key(&self, id: u64, now_us: u64) -> Result<bool> {
        let (cond, bind) = key_scope(self.tenancy(), 3);
        let sql = format!(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL{cond}"
        );
        let q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i(now_us))
            .bind(i(id));
        let r = bind_scope(q, bind)
            .execute(self.pool())
            .await
            .context("revoking an API key")?;
        Ok(r.rows_affected() == 1)
    }

    /// Replaces key `id` by a new one with the same name, scope, expiry, kind and tenant; the
    /// old one keeps working for `grace_us` (then expires). Returns the new key's id.
    pub async fn rotate_key(
        &self,
        id: u64,
        token: &NewToken,
        grace_us: u64,
        now_us: u64,
    ) -> Result<u64> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .context("starting a transaction")?;
        super::write_first(&mut tx).await?;
        let (cond, bind) = key_scope(self.tenancy(), 2);
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1{cond}");
        let Some(row) = bind_scope(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(i(id)), bind)
            .fetch_optional(&mut *tx)
            .await
            .context("reading the key to rotate")?
        else {
            bail!("no API key {id}");
        };
        let (old, _) = key_of(&row)?;
        if !old.active(now_us) {
            bail!("API key {id} is revoked or expired: create a new one instead");
        }
        let new = sqlx::query(
            "INSERT INTO api_keys (name, token_hash, scopes, created_at, expires_at, prefix, \
             kind, tenant_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&old.name)
        .bind(token.hash.to_vec())
        .bind(old.scope.name())
        .bind(i(now_us))
        .bind(old.expires_us.map(i))
        .bind(&token.prefix)
        .bind(old.kind.code())
        .bind(old.tenant_id.map(i))
        .fetch_one(&mut *tx)
        .await
        .context("storing the new key")?;
        let new_id = u(new.try_get::<i64, _>(0)?);
        let until = old
            .expires_us
            .map_or(now_us + grace_us, |t| t.min(now_us + grace_us));
        sqlx::query("UPDATE api_keys SET expires_at = $1, replaced_by = $2 WHERE id = $3")
            .bind(i(until))
            .bind(i(new_id))
            .bind(i(id))
            .execute(&mut *tx)
            .await
            .context("retiring the old key")?;
        tx.commit().await.context("committing the rotation")?;
        Ok(new_id)
    }
}
