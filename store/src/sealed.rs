//! Secrets in rows (docs/notifications.md, "Secrets at rest"): a check's request headers and
//! credentials are stored as one value sealed by the store's vault (`checks.sealed`), and
//! opened when a check is read. Without a vault, storing one is refused and a stored one does
//! not open; a check without headers needs neither.

use std::sync::Arc;

use anyhow::{Context, Result};
use jetmon_secrets::{Purpose, Vault};

use super::Store;
use super::api::CheckRow;

impl Store {
    /// The store with `vault` to seal and open secrets.
    pub fn with_vault(mut self, vault: Arc<Vault>) -> Store {
        self.vault = Some(vault);
        self
    }

    pub fn vault(&self) -> Option<&Arc<Vault>> {
        self.vault.as_ref()
    }

    pub(crate) fn need_vault(&self) -> Result<&Vault> {
        self.vault.as_deref().context(
            "no secret key for this database (set control.secret_key_file or JETMON_SECRET_KEY)",
        )
    }

    /// A check's headers sealed for storage (None when it has none).
    pub(crate) fn seal_headers(&self, headers: &[(String, String)]) -> Result<Option<String>> {
        if headers.is_empty() {
            return Ok(None);
        }
        let text = serde_json::to_string(headers).context("encoding request headers")?;
        self.need_vault()?
            .seal(Purpose::CheckSecrets, &text)
            .map(Some)
    }

    /// Fills a check row's request headers from its sealed value.
    pub fn open_check(&self, row: &mut CheckRow) -> Result<()> {
        let Some(sealed) = &row.sealed else {
            return Ok(());
        };
        let text = self.need_vault()?.open(Purpose::CheckSecrets, sealed)?;
        row.spec.headers =
            serde_json::from_str(&text).context("a sealed value that is not a header list")?;
        Ok(())
    }
}

/// Every column holding sealed values: (table, column, purpose). Rotation and status walk
/// these; a new kind of secret adds its column here.
const SEALED_COLUMNS: &[(&str, &str, Purpose)] = &[
    ("checks", "sealed", Purpose::CheckSecrets),
    ("webhooks", "secret", Purpose::WebhookSecret),
    ("webhooks", "previous_secret", Purpose::WebhookSecret),
];

impl Store {
    /// How many stored values each key id seals, over every sealed column.
    pub async fn sealed_key_ids(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        use sqlx::Row;
        let mut counts = std::collections::BTreeMap::new();
        for (table, column, _) in SEALED_COLUMNS {
            let sql = format!("SELECT {column} FROM {table} WHERE {column} IS NOT NULL");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await
                .with_context(|| format!("reading {table}.{column}"))?;
            for r in rows {
                let v: String = r.try_get(0)?;
                let id = jetmon_secrets::key_id(&v)
                    .unwrap_or("(not sealed)")
                    .to_owned();
                *counts.entry(id).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Seals again, under the vault's current key, up to `limit` values sealed with another
    /// one; returns how many (0 when none is left). Each value is replaced only if it is still
    /// the one read, so a change made meanwhile (through the API) is never overwritten.
    pub async fn reseal_batch(&self, limit: u32) -> Result<usize> {
        use sqlx::Row;
        let vault = self.need_vault()?;
        let ring = vault.current()?;
        let current = format!("jms1.{}.%", ring.current());
        let mut done = 0;
        for (table, column, purpose) in SEALED_COLUMNS {
            let sql = format!(
                "SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL AND {column} NOT LIKE $1 \
                 ORDER BY id LIMIT $2"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(current.clone())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .with_context(|| format!("reading {table}.{column}"))?;
            if rows.is_empty() {
                continue;
            }
            let (_turn, mut tx) = self.write_tx().await?;
            for r in &rows {
                let id: i64 = r.try_get(0)?;
                let old: String = r.try_get(1)?;
                let new = ring.seal(*purpose, &ring.open(*purpose, &old)?)?;
                let sql =
                    format!("UPDATE {table} SET {column} = $1 WHERE id = $2 AND {column} = $3");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(new)
                    .bind(id)
                    .bind(old)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("sealing {table}.{column} again"))?;
            }
            tx.commit().await.context("committing re-sealed values")?;
            done += rows.len();
            if done >= limit as usize {
                break;
            }
        }
        Ok(done)
    }
}
