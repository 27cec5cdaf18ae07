//! Webhooks, a tenant's subscriptions to its sites' transitions (docs/notifications.md): the
//! rows behind `/webhooks`, their secrets sealed, and the active ones as the supervisor's
//! `Subscription`s (reloaded with the check set).

use anyhow::{Context, Result};
use jetmon_outbox::{EventType, Kind, Subscription};
use jetmon_secrets::Purpose;
use jetmon_shared::state::State;
use sqlx::Row;

use super::{Scoped, Store, Tenancy, i, now_us, u};

/// A webhook as stored (its secret stays sealed here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: u64,
    pub tenant_id: u64,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub site_ids: Vec<u64>,
    pub states: Vec<String>,
    pub active: bool,
    pub disabled_reason: Option<String>,
    pub secret_preview: String,
    pub previous_until_us: Option<u64>,
    pub max_in_flight: u32,
    /// Seconds before each retry; empty: the default ladder.
    pub retry_ladder_s: Vec<u32>,
    pub created_us: u64,
    pub updated_us: u64,
}

/// What a new webhook is.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub tenant_id: u64,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub site_ids: Vec<u64>,
    pub states: Vec<String>,
    /// `whsec_…`, sealed before it is stored.
    pub secret: String,
    /// Deliveries in flight at once (the per-target cap).
    pub max_in_flight: u32,
    /// Seconds before each retry; empty: the default ladder.
    pub retry_ladder_s: Vec<u32>,
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

fn split<T>(s: &str, f: impl Fn(&str) -> Option<T>) -> Vec<T> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .filter_map(f)
        .collect()
}

const COLUMNS: &str = "id, tenant_id, url, description, event_types, site_ids, states, active, \
     disabled_reason, secret_preview, previous_until, max_in_flight, created_at, updated_at, \
     retry_ladder";

fn webhook_of(r: &sqlx::any::AnyRow) -> Result<WebhookRow> {
    Ok(WebhookRow {
        id: u(r.try_get::<i64, _>(0)?),
        tenant_id: u(r.try_get::<i64, _>(1)?),
        url: r.try_get(2)?,
        description: r.try_get(3)?,
        event_types: split(&r.try_get::<String, _>(4)?, |s| Some(s.to_owned())),
        site_ids: split(&r.try_get::<String, _>(5)?, |s| s.parse().ok()),
        states: split(&r.try_get::<String, _>(6)?, |s| Some(s.to_owned())),
        active: r.try_get::<i64, _>(7)? != 0,
        disabled_reason: r.try_get(8)?,
        secret_preview: r.try_get(9)?,
        previous_until_us: r.try_get::<Option<i64>, _>(10)?.map(u),
        max_in_flight: u32::try_from(r.try_get::<i64, _>(11)?).unwrap_or(4),
        created_us: u(r.try_get::<i64, _>(12)?),
        updated_us: u(r.try_get::<i64, _>(13)?),
        retry_ladder_s: split(&r.try_get::<String, _>(14)?, |s| s.parse().ok()),
    })
}

impl Store {
    /// Adds the deployment's own subscriptions (the WPCOM notice) to what `subscriptions()`
    /// answers.
    pub fn with_operator_subscriptions(mut self, subs: Vec<Subscription>) -> Store {
        self.operator_subscriptions = std::sync::Arc::new(subs);
        self
    }

    /// Every active webhook as a subscription (the supervisor's cache), then the deployment's
    /// own.
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>> {
        let sql = format!("SELECT {COLUMNS} FROM webhooks WHERE active = 1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .context("loading webhooks")?;
        rows.iter()
            .map(|r| {
                let w = webhook_of(r)?;
                Ok(Subscription {
                    kind: Kind::Webhook,
                    id: w.id,
                    tenant_id: Some(w.tenant_id),
                    event_types: w
                        .event_types
                        .iter()
                        .filter_map(|t| EventType::from_name(t))
                        .collect(),
                    site_ids: w.site_ids,
                    states: w
                        .states
                        .iter()
                        .filter_map(|s| State::from_name(s))
                        .collect(),
                    active: w.active,
                })
            })
            .chain(self.operator_subscriptions.iter().cloned().map(Ok))
            .collect()
    }

    /// Creates a webhook (operators, tests); see [`Scoped::create_webhook`].
    pub async fn create_webhook(&self, w: &NewWebhook) -> Result<u64> {
        self.scoped(Tenancy::All).create_webhook(w).await
    }
}

impl Scoped<'_> {
    /// Stores a new webhook with its secret sealed; its id.
    pub async fn create_webhook(&self, w: &NewWebhook) -> Result<u64> {
        let vault = self.store.need_vault()?;
        let sealed = vault.seal(Purpose::WebhookSecret, &w.secret)?;
        let now = i(now_us());
        let row = sqlx::query(
            "INSERT INTO webhooks (tenant_id, url, description, event_types, site_ids, states, \
             secret, secret_preview, created_at, updated_at, max_in_flight, retry_ladder) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11) RETURNING id",
        )
        .bind(i(self.owner(w.tenant_id)))
        .bind(w.url.clone())
        .bind(w.description.clone())
        .bind(w.event_types.join(","))
        .bind(
            w.site_ids
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .bind(w.states.join(","))
        .bind(sealed)
        .bind(jetmon_secrets::preview(&w.secret))
        .bind(now)
        .bind(i64::from(w.max_in_flight.max(1)))
        .bind(join(&w.retry_ladder_s))
        .fetch_one(self.pool())
        .await
        .context("adding a webhook")?;
        Ok(u(row.try_get::<i64, _>(0)?))
    }

    /// One webhook this scope sees.
    pub async fn webhook(&self, id: u64) -> Result<Option<WebhookRow>> {
        let mut sql = format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1");
        if self.tenancy().tenant().is_some() {
            sql.push_str(" AND tenant_id = $2");
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(i(id));
        if let Some(t) = self.tenancy().tenant() {
            q = q.bind(i(t));
        }
        q.fetch_optional(self.pool())
            .await
            .context("reading a webhook")?
            .as_ref()
            .map(webhook_of)
            .transpose()
    }
}

/// What a PATCH changes (None: as it is).
#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub site_ids: Option<Vec<u64>>,
    pub states: Option<Vec<String>>,
    pub active: Option<bool>,
    pub max_in_flight: Option<u32>,
    pub retry_ladder_s: Option<Vec<u32>>,
}

impl Scoped<'_> {
    /// The `(AND tenant_id = $n)` of this scope, numbered after `binds` values.
    fn tenant_clause(&self, binds: usize) -> String {
        match self.tenancy().tenant() {
            Some(_) => format!(" AND tenant_id = ${}", binds + 1),
            None => String::new(),
        }
    }

    /// Up to `limit` webhooks with ids above `after`, by id.
    pub async fn webhooks_page(&self, after: u64, limit: u32) -> Result<Vec<WebhookRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM webhooks WHERE id > $1{} ORDER BY id LIMIT {}",
            self.tenant_clause(1),
            limit.min(1000)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(i(after));
        if let Some(t) = self.tenancy().tenant() {
            q = q.bind(i(t));
        }
        let rows = q.fetch_all(self.pool()).await.context("listing webhooks")?;
        rows.iter().map(webhook_of).collect()
    }

    /// Applies a change; false when this scope sees no such webhook. Re-enabling clears the
    /// reason it was disabled.
    pub async fn update_webhook(&self, id: u64, c: &WebhookChange) -> Result<bool> {
        let Some(mut w) = self.webhook(id).await? else {
            return Ok(false);
        };
        if let Some(v) = &c.url {
            w.url.clone_from(v);
        }
        if let Some(v) = &c.description {
            w.description.clone_from(v);
        }
        if let Some(v) = &c.event_types {
            w.event_types.clone_from(v);
        }
        if let Some(v) = &c.site_ids {
            w.site_ids.clone_from(v);
        }
        if let Some(v) = &c.states {
            w.states.clone_from(v);
        }
        if let Some(v) = c.max_in_flight {
            w.max_in_flight = v.max(1);
        }
        if let Some(v) = &c.retry_ladder_s {
            w.retry_ladder_s.clone_from(v);
        }
        if let Some(a) = c.active {
            w.active = a;
            if a {
                w.disabled_reason = None;
            }
        }
        sqlx::query(
            "UPDATE webhooks SET url = $1, description = $2, event_types = $3, site_ids = $4, \
             states = $5, active = $6, disabled_reason = $7, updated_at = $8, max_in_flight = $10, \
             retry_ladder = $11 WHERE id = $9",
        )
        .bind(w.url)
        .bind(w.description)
        .bind(w.event_types.join(","))
        .bind(
            w.site_ids
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .bind(w.states.join(","))
        .bind(i64::from(w.active))
        .bind(w.disabled_reason)
        .bind(i(now_us()))
        .bind(i(id))
        .bind(i64::from(w.max_in_flight))
        .bind(join(&w.retry_ladder_s))
        .execute(self.pool())
        .await
        .context("updating a webhook")?;
        Ok(true)
    }

    /// Deletes a webhook and what it still had to deliver; false when not seen.
    pub async fn delete_webhook(&self, id: u64) -> Result<bool> {
        if self.webhook(id).await?.is_none() {
            return Ok(false);
        }
        let mut tx = self
            .pool()
            .begin()
            .await
            .context("starting a transaction")?;
        sqlx::query("DELETE FROM outbox WHERE kind = 1 AND subscription_id = $1 AND state = 0")
            .bind(i(id))
            .execute(&mut *tx)
            .await
            .context("dropping a webhook's pending deliveries")?;
        sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(i(id))
            .execute(&mut *tx)
            .await
            .context("deleting a webhook")?;
        tx.commit().await.context("committing")?;
        Ok(true)
    }

    /// A new secret; the old one keeps signing until `grace_until_us` (0: not at all).
    pub async fn rotate_webhook_secret(
        &self,
        id: u64,
        secret: &str,
        grace_until_us: u64,
    ) -> Result<bool> {
        let vault = self.store.need_vault()?;
        let sealed = vault.seal(Purpose::WebhookSecret, secret)?;
        let sql = format!(
            "UPDATE webhooks SET previous_secret = CASE WHEN $1 > 0 THEN secret ELSE NULL END, \
             previous_until = CASE WHEN $1 > 0 THEN $1 ELSE NULL END, secret = $2, \
             secret_preview = $3, updated_at = $4 WHERE id = $5{}",
            self.tenant_clause(5)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i(grace_until_us))
            .bind(sealed)
            .bind(jetmon_secrets::preview(secret))
            .bind(i(now_us()))
            .bind(i(id));
        if let Some(t) = self.tenancy().tenant() {
            q = q.bind(i(t));
        }
        let done = q
            .execute(self.pool())
            .await
            .context("rotating a webhook secret")?
            .rows_affected();
        Ok(done > 0)
    }
}

impl Store {
    /// The secrets a webhook signs with now: its own, and the previous one during its grace.
    pub async fn webhook_secrets(&self, id: u64, now_us: u64) -> Result<Vec<String>> {
        let vault = self.need_vault()?;
        let row = sqlx::query(
            "SELECT secret, previous_secret, previous_until FROM webhooks WHERE id = $1",
        )
        .bind(i(id))
        .fetch_optional(&self.pool)
        .await
        .context("reading a webhook's secrets")?;
        let Some(r) = row else {
            return Ok(Vec::new());
        };
        let mut out = vec![vault.open(Purpose::WebhookSecret, &r.try_get::<String, _>(0)?)?];
        let previous: Option<String> = r.try_get(1)?;
        let until: Option<i64> = r.try_get(2)?;
        if let (Some(p), Some(until)) = (previous, until)
            && now_us < u(until)
        {
            out.push(vault.open(Purpose::WebhookSecret, &p)?);
        }
        Ok(out)
    }
}

/// What the deliverer needs of an active webhook: where, how many at once, its ladder, and
/// the secrets that sign now (opened; they live only in the deliverer's memory).
#[derive(Clone)]
pub struct Target {
    pub id: u64,
    pub url: String,
    pub max_in_flight: u32,
    pub retry_ladder_s: Vec<u32>,
    pub secrets: Vec<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("id", &self.id)
            .field(
                "url",
                &jetmon_shared::check::redact_credentials(&self.url, true),
            )
            .field("max_in_flight", &self.max_in_flight)
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Every active webhook as the deliverer sees it.
    pub async fn webhook_targets(&self, now_us: u64) -> Result<Vec<Target>> {
        let vault = self.need_vault()?;
        let rows = sqlx::query(
            "SELECT id, url, max_in_flight, retry_ladder, secret, previous_secret, previous_until \
             FROM webhooks WHERE active = 1 ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .context("loading webhook targets")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut secrets =
                vec![vault.open(Purpose::WebhookSecret, &r.try_get::<String, _>(4)?)?];
            let previous: Option<String> = r.try_get(5)?;
            let until: Option<i64> = r.try_get(6)?;
            if let (Some(p), Some(until)) = (previous, until)
                && now_us < u(until)
            {
                secrets.push(vault.open(Purpose::WebhookSecret, &p)?);
            }
            out.push(Target {
                id: u(r.try_get::<i64, _>(0)?),
                url: r.try_get(1)?,
                max_in_flight: u32::try_from(r.try_get::<i64, _>(2)?).unwrap_or(4).max(1),
                retry_ladder_s: split(&r.try_get::<String, _>(3)?, |s| s.parse().ok()),
                secrets,
            });
        }
        Ok(out)
    }
}

impl Store {
    /// How many webhooks tenant `tenant_id` has (the API's per-tenant limit).
    pub async fn count_webhooks(&self, tenant_id: u64) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) FROM webhooks WHERE tenant_id = $1")
            .bind(i(tenant_id))
            .fetch_one(&self.pool)
            .await
            .context("counting webhooks")?;
        Ok(u(row.try_get::<i64, _>(0)?))
    }
}
