//! API key rows: only hashes are stored (control/src/keys.rs makes and hashes tokens).

use anyhow::{Context, Result, bail};
use sqlx::Row;

use super::{Store, i, u};
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
}

impl KeyRow {
    /// Usable at `now_us`: not revoked, not expired.
    pub fn active(&self, now_us: u64) -> bool {
        self.revoked_us.is_none() && self.expires_us.is_none_or(|t| now_us < t)
    }
}

const COLUMNS: &str =
    "id, name, prefix, scopes, created_at, expires_at, revoked_at, replaced_by, token_hash";

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
        },
        r.try_get(8)?,
    ))
}

impl Store {
    /// Stores a new key (its hash and prefix); returns its id.
    pub async fn create_key(
        &self,
        name: &str,
        scope: Scope,
        expires_us: Option<u64>,
        token: &NewToken,
        now_us: u64,
    ) -> Result<u64> {
        let row = sqlx::query(
            "INSERT INTO api_keys (name, token_hash, scopes, created_at, expires_at, prefix) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(name)
        .bind(token.hash.to_vec())
        .bind(scope.name())
        .bind(i(now_us))
        .bind(expires_us.map(i))
        .bind(&token.prefix)
        .fetch_one(&self.pool)
        .await
        .context("storing an API key")?;
        Ok(u(row.try_get::<i64, _>(0)?))
    }

    pub async fn keys(&self) -> Result<Vec<KeyRow>> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .context("listing API keys")?;
        rows.iter().map(|r| key_of(r).map(|k| k.0)).collect()
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

    /// Revokes a key now; false when there is no such key (or it was already revoked).
    pub async fn revoke_key(&self, id: u64, now_us: u64) -> Result<bool> {
        let r =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(i(now_us))
                .bind(i(id))
                .execute(&self.pool)
                .await
                .context("revoking an API key")?;
        Ok(r.rows_affected() == 1)
    }

    /// Replaces key `id` by a new one with the same name, scope and expiry; the old one keeps
    /// working for `grace_us` (then expires). Returns the new key's id.
    pub async fn rotate_key(
        &self,
        id: u64,
        token: &NewToken,
        grace_us: u64,
        now_us: u64,
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        super::write_first(&mut tx).await?;
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i(id))
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
            "INSERT INTO api_keys (name, token_hash, scopes, created_at, expires_at, prefix) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&old.name)
        .bind(token.hash.to_vec())
        .bind(old.scope.name())
        .bind(i(now_us))
        .bind(old.expires_us.map(i))
        .bind(&token.prefix)
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
