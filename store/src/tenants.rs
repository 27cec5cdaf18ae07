//! Tenants (docs/tenants.md): the customers of one deployment, and whose objects a query may
//! see ([`Tenancy`]). Creating, renaming, (de)activating and moving sites between tenants;
//! the tenant conditions the scoped queries add live in `api.rs`.

use anyhow::{Context, Result, bail};
use sqlx::Row;

use super::{Store, i, now_us, u};

/// The tenant every site had before tenants existed, created by migration 7.
pub const DEFAULT_TENANT: u64 = 1;

/// Whose objects a query may see and change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tenancy {
    /// Every tenant's (operator keys, the CLI, the supervisor).
    All,
    /// One tenant's only: another tenant's objects do not exist for this query.
    Tenant(u64),
}

impl Tenancy {
    /// The tenant, when scoped to one.
    pub fn tenant(self) -> Option<u64> {
        match self {
            Tenancy::All => None,
            Tenancy::Tenant(t) => Some(t),
        }
    }

    /// The tenant column of per-tenant rows (rate limits, idempotency keys): 0 for none.
    pub fn column(self) -> u64 {
        self.tenant().unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub id: u64,
    pub name: String,
    pub created_us: u64,
    pub active: bool,
    pub deactivated_us: Option<u64>,
}

/// What is wrong with a tenant name, in words; None when it is fine. Names are 1 to 64
/// letters, digits, `-`, `_` or `.`, not all digits (so a reference is an id or a name,
/// never both).
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 64 {
        return Some("a tenant name is 1 to 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Some("a tenant name uses letters, digits, '-', '_' and '.' only");
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Some("a tenant name is not all digits (those are ids)");
    }
    None
}

const COLUMNS: &str = "id, name, created_at, active, deactivated_at";

fn tenant_of(r: &sqlx::any::AnyRow) -> Result<TenantRow> {
    Ok(TenantRow {
        id: u(r.try_get::<i64, _>(0)?),
        name: r.try_get(1)?,
        created_us: u(r.try_get::<i64, _>(2)?),
        active: r.try_get::<i64, _>(3)? != 0,
        deactivated_us: r.try_get::<Option<i64>, _>(4)?.map(u),
    })
}

impl Store {
    /// Creates a tenant; fails with a sentence when the name is taken or not a name.
    pub async fn create_tenant(&self, name: &str) -> Result<TenantRow> {
        if let Some(p) = name_problem(name) {
            bail!("{name:?}: {p}");
        }
        if self.tenant_named(name).await?.is_some() {
            bail!("a tenant named {name:?} exists already");
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO tenants (name, created_at, active) VALUES ($1, $2, 1) RETURNING {COLUMNS}"
        )))
        .bind(name.to_owned())
        .bind(i(now_us()))
        .fetch_one(&self.pool)
        .await
        .context("creating a tenant")?;
        tenant_of(&row)
    }

    /// Tenants with id > `after`, by id, at most `limit`.
    pub async fn tenants_page(&self, after: u64, limit: u32) -> Result<Vec<TenantRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tenants WHERE id > $1 ORDER BY id LIMIT $2"
        )))
        .bind(i(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("listing tenants")?;
        rows.iter().map(tenant_of).collect()
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRow>> {
        self.tenants_page(0, u32::MAX).await
    }

    pub async fn tenant(&self, id: u64) -> Result<Option<TenantRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tenants WHERE id = $1"
        )))
        .bind(i(id))
        .fetch_optional(&self.pool)
        .await
        .context("loading a tenant")?;
        row.as_ref().map(tenant_of).transpose()
    }

    pub async fn tenant_named(&self, name: &str) -> Result<Option<TenantRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tenants WHERE name = $1"
        )))
        .bind(name.to_owned())
        .fetch_optional(&self.pool)
        .await
        .context("loading a tenant")?;
        row.as_ref().map(tenant_of).transpose()
    }

    /// A tenant by id (all digits) or by name; None when there is none.
    pub async fn find_tenant(&self, reference: &str) -> Result<Option<TenantRow>> {
        match reference.parse::<u64>() {
            Ok(id) => self.tenant(id).await,
            Err(_) => self.tenant_named(reference).await,
        }
    }

    /// Renames a tenant; false when there is no such tenant.
    pub async fn rename_tenant(&self, id: u64, name: &str) -> Result<bool> {
        if let Some(p) = name_problem(name) {
            bail!("{name:?}: {p}");
        }
        if let Some(other) = self.tenant_named(name).await?
            && other.id != id
        {
            bail!("a tenant named {name:?} exists already");
        }
        let n = sqlx::query("UPDATE tenants SET name = $1 WHERE id = $2")
            .bind(name.to_owned())
            .bind(i(id))
            .execute(&self.pool)
            .await
            .context("renaming a tenant")?
            .rows_affected();
        Ok(n == 1)
    }

    /// Activates or deactivates a tenant: its keys stop (or start) working and its checks
    /// pause (or resume) — the check set reloads because their generation moves. False when
    /// there is no such tenant. Nothing is deleted.
    pub async fn set_tenant_active(&self, id: u64, active: bool) -> Result<bool> {
        let now = now_us();
        let (_turn, mut tx) = self.write_tx().await?;
        super::write_first(&mut tx).await?;
        let n = sqlx::query(
            "UPDATE tenants SET active = $1, deactivated_at = $2 WHERE id = $3 AND active <> $4",
        )
        .bind(i64::from(active))
        .bind((!active).then_some(i(now)))
        .bind(i(id))
        .bind(i64::from(active))
        .execute(&mut *tx)
        .await
        .context("changing a tenant")?
        .rows_affected();
        if n == 0 {
            // No such tenant, or already so.
            let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
                .bind(i(id))
                .fetch_optional(&mut *tx)
                .await
                .context("finding a tenant")?
                .is_some();
            return Ok(exists);
        }
        sqlx::query(
            "UPDATE checks SET updated_at = $1, generation = generation + 1 \
             WHERE site_id IN (SELECT id FROM sites WHERE tenant_id = $2)",
        )
        .bind(i(now))
        .bind(i(id))
        .execute(&mut *tx)
        .await
        .context("pausing or resuming a tenant's checks")?;
        tx.commit().await.context("committing a tenant")?;
        Ok(true)
    }

    /// Moves sites to tenants in one transaction: `(tenant, site)` pairs. Returns how many
    /// sites changed owner (a site already with its tenant is not counted). The caller has
    /// checked that every tenant and site exists.
    pub async fn assign_sites(&self, pairs: &[(u64, u64)]) -> Result<u64> {
        let (_turn, mut tx) = self.write_tx().await?;
        super::write_first(&mut tx).await?;
        let mut moved = 0;
        for (tenant, site) in pairs {
            moved +=
                sqlx::query("UPDATE sites SET tenant_id = $1 WHERE id = $2 AND tenant_id <> $3")
                    .bind(i(*tenant))
                    .bind(i(*site))
                    .bind(i(*tenant))
                    .execute(&mut *tx)
                    .await
                    .context("moving a site to a tenant")?
                    .rows_affected();
        }
        // The owner's state (active or not) decides the checks' pause: reload them.
        sqlx::query(
            "UPDATE checks SET updated_at = $1, generation = generation + 1 \
             WHERE site_id IN (SELECT id FROM sites WHERE tenant_id IN \
             (SELECT id FROM tenants WHERE active = 0))",
        )
        .bind(i(now_us()))
        .execute(&mut *tx)
        .await
        .context("reloading paused tenants' checks")?;
        tx.commit().await.context("committing the import")?;
        Ok(moved)
    }

    /// How many sites each tenant has.
    pub async fn sites_per_tenant(&self) -> Result<std::collections::HashMap<u64, u64>> {
        let rows = sqlx::query("SELECT tenant_id, COUNT(*) FROM sites GROUP BY tenant_id")
            .fetch_all(&self.pool)
            .await
            .context("counting sites per tenant")?;
        rows.iter()
            .map(|r| Ok((u(r.try_get::<i64, _>(0)?), u(r.try_get::<i64, _>(1)?))))
            .collect()
    }

    /// Site ids whose main URL is `url` (for imports by URL).
    pub async fn sites_with_url(&self, url: &str) -> Result<Vec<u64>> {
        let rows = sqlx::query("SELECT id FROM sites WHERE url = $1 ORDER BY id")
            .bind(url.to_owned())
            .fetch_all(&self.pool)
            .await
            .context("finding sites by URL")?;
        rows.iter()
            .map(|r| Ok(u(r.try_get::<i64, _>(0)?)))
            .collect()
    }

    /// Which of `ids` are sites.
    pub async fn existing_sites(&self, ids: &[u64]) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let list = (1..=chunk.len())
                .map(|k| format!("${k}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM sites WHERE id IN ({list})"
            )));
            for id in chunk {
                q = q.bind(i(*id));
            }
            for r in q.fetch_all(&self.pool).await.context("finding sites")? {
                out.push(u(r.try_get::<i64, _>(0)?));
            }
        }
        Ok(out)
    }
}
