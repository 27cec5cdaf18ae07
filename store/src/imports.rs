//! What `jetmon sites import` needs of the store (docs/api.md, "Import"): the tenant's HTTP
//! checks a file's URLs already name (a row with one of them updates that check rather than
//! adding a site), who holds the file's v1 ids, and the whole file's changes in one
//! transaction.

use anyhow::{Context, Result};
use jetmon_shared::check::{CheckSpec, CheckType};
use sqlx::Row;

use super::api::{AFTER_CHECK_COLUMNS, CHECK_COLUMNS_C, check_of, create_site_in};
use super::{NewSite, Scoped, i, now_us, settings_json, u};

/// One of the tenant's HTTP checks, found by its target.
#[derive(Debug, Clone)]
pub struct ImportedCheck {
    pub site_id: u64,
    /// Its site's v1 id.
    pub blog_id: Option<u64>,
    pub spec: CheckSpec,
}

/// A change to an existing check (and its site's v1 id).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportUpdate {
    pub site_id: u64,
    /// Set when the row names one (a row without one leaves the site's as it is).
    pub blog_id: Option<u64>,
    /// The check's new settings (its `check_id` says which).
    pub spec: CheckSpec,
}

/// `$from, $from+1, …` for `n` values.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|k| format!("${k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Scoped<'_> {
    /// The HTTP checks of `tenant`'s sites whose target is one of `urls` (at most 1,000 per
    /// call): the oldest check per URL.
    pub async fn http_checks_by_target(
        &self,
        tenant: u64,
        urls: &[String],
    ) -> Result<Vec<ImportedCheck>> {
        if urls.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {CHECK_COLUMNS_C}, s.blog_id FROM checks c JOIN sites s ON s.id = c.site_id \
             WHERE s.tenant_id = $1 AND c.check_type = $2 AND c.target IN ({}) ORDER BY c.id",
            placeholders(3, urls.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i(self.owner(tenant)))
            .bind(i64::from(CheckType::Http as u8));
        for url in urls {
            q = q.bind(url.clone());
        }
        let rows = q
            .fetch_all(self.pool())
            .await
            .context("finding checks by URL")?;
        let mut found: Vec<ImportedCheck> = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut c = check_of(r)?;
            // Its request headers, to compare with the file's (they are kept unless it says).
            self.store.open_check(&mut c)?;
            if found.iter().any(|f| f.spec.target == c.spec.target) {
                continue;
            }
            found.push(ImportedCheck {
                site_id: c.spec.site_id,
                blog_id: r.try_get::<Option<i64>, _>(AFTER_CHECK_COLUMNS)?.map(u),
                spec: c.spec,
            });
        }
        Ok(found)
    }

    /// (v1 id, site) for each of `blog_ids` (at most 1,000) a site of `tenant` holds.
    pub async fn blog_id_owners(&self, tenant: u64, blog_ids: &[u64]) -> Result<Vec<(u64, u64)>> {
        if blog_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT blog_id, id FROM sites WHERE tenant_id = $1 AND blog_id IN ({})",
            placeholders(2, blog_ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(i(self.owner(tenant)));
        for b in blog_ids {
            q = q.bind(i(*b));
        }
        let rows = q
            .fetch_all(self.pool())
            .await
            .context("looking up v1 ids")?;
        rows.iter()
            .map(|r| Ok((u(r.try_get::<i64, _>(0)?), u(r.try_get::<i64, _>(1)?))))
            .collect()
    }

    /// A file's changes in one transaction, all or none: `updates`, then `creates` (their new
    /// ids returned). `progress` hears the number of rows written so far.
    pub async fn import(
        &self,
        updates: &[ImportUpdate],
        creates: &[NewSite],
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<u64>> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .context("starting a transaction")?;
        let now = now_us();
        for (k, up) in updates.iter().enumerate() {
            let s = &up.spec;
            sqlx::query(
                "UPDATE checks SET interval_ms = $1, settings = $2, generation = generation + 1, \
                 updated_at = $3, sealed = $6 WHERE id = $4 AND site_id = $5",
            )
            .bind(i64::from(s.interval_ms))
            .bind(settings_json(s))
            .bind(i(now))
            .bind(i(s.check_id))
            .bind(i(up.site_id))
            .bind(self.store.seal_headers(&s.headers)?)
            .execute(&mut *tx)
            .await
            .context("updating a check")?;
            if let Some(b) = up.blog_id {
                sqlx::query("UPDATE sites SET blog_id = $1 WHERE id = $2")
                    .bind(i(b))
                    .bind(i(up.site_id))
                    .execute(&mut *tx)
                    .await
                    .context("setting a v1 id")?;
            }
            progress(k + 1);
        }
        let mut ids = Vec::with_capacity(creates.len());
        for s in creates {
            ids.push(create_site_in(&mut tx, self.store, s, self.owner(s.tenant_id)).await?);
            progress(updates.len() + ids.len());
        }
        tx.commit().await.context("committing the import")?;
        Ok(ids)
    }
}
