//! What the API's guard keeps per request, apart from the tenants' objects (`api.rs`):
//! idempotency keys (claims with a lease, stored answers without secrets), rate-limit buckets
//! per (tenant, key), and the audit log.

use anyhow::{Context, Result};
use sqlx::Row;

use super::{Store, i, now_us, u};

/// What an `Idempotency-Key` lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idem {
    /// The key is ours now (in flight): run the request, then `idem_finish`.
    Fresh,
    /// Done before with this body: the stored answer.
    Replay(StoredAnswer),
    /// Another request with this key is running.
    InFlight,
    /// Used before with another body.
    Mismatch,
}

/// A finished idempotent request's answer, as replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    pub content_type: Option<String>,
}

impl Store {
    /// Claims `(tenant, key, idem_key)` for a request whose body hashes to `hash`, or says
    /// what happened to it before. Expired keys (older than `ttl_us`) are forgotten first. A
    /// claim is held by this host for `lease_us`; one whose holder died (its lease ran out)
    /// is taken over, so a crash never leaves a key in flight for good.
    pub async fn idem_begin(
        &self,
        tenant_id: u64,
        key_id: u64,
        idem_key: &str,
        hash: &[u8],
        ttl_us: u64,
        lease_us: u64,
    ) -> Result<Idem> {
        let now = now_us();
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key_id = $2 AND idem_key = $3 \
             AND created_at < $4",
        )
        .bind(i(tenant_id))
        .bind(i(key_id))
        .bind(idem_key.to_owned())
        .bind(i(now.saturating_sub(ttl_us)))
        .execute(&self.pool)
        .await
        .context("expiring an idempotency key")?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, key_id, idem_key, body_hash, state, \
             created_at, owner, lease_until) VALUES ($1, $2, $3, $4, 0, $5, $6, $7) \
             ON CONFLICT (tenant_id, key_id, idem_key) DO NOTHING",
        )
        .bind(i(tenant_id))
        .bind(i(key_id))
        .bind(idem_key.to_owned())
        .bind(hash.to_vec())
        .bind(i(now))
        .bind(self.host.clone())
        .bind(i(now + lease_us))
        .execute(&self.pool)
        .await
        .context("claiming an idempotency key")?
        .rows_affected();
        if inserted == 1 {
            return Ok(Idem::Fresh);
        }
        let row = sqlx::query(
            "SELECT body_hash, state, status, response, lease_until, location, content_type \
             FROM idempotency_keys WHERE tenant_id = $1 AND key_id = $2 AND idem_key = $3",
        )
        .bind(i(tenant_id))
        .bind(i(key_id))
        .bind(idem_key.to_owned())
        .fetch_optional(&self.pool)
        .await
        .context("reading an idempotency key")?;
        let Some(r) = row else {
            // Expired and deleted between the two statements: treat as in flight (retry).
            return Ok(Idem::InFlight);
        };
        if r.try_get::<Vec<u8>, _>(0)? != hash {
            return Ok(Idem::Mismatch);
        }
        if r.try_get::<i64, _>(1)? == 0 {
            if u(r.try_get::<i64, _>(4)?) >= now {
                return Ok(Idem::InFlight);
            }
            // Its holder died: take the claim over (one taker wins).
            let taken = sqlx::query(
                "UPDATE idempotency_keys SET owner = $1, lease_until = $2 WHERE tenant_id = $3 \
                 AND key_id = $4 AND idem_key = $5 AND state = 0 AND lease_until < $6",
            )
            .bind(self.host.clone())
            .bind(i(now + lease_us))
            .bind(i(tenant_id))
            .bind(i(key_id))
            .bind(idem_key.to_owned())
            .bind(i(now))
            .execute(&self.pool)
            .await
            .context("taking over an idempotency key")?
            .rows_affected();
            return Ok(if taken == 1 {
                Idem::Fresh
            } else {
                Idem::InFlight
            });
        }
        Ok(Idem::Replay(StoredAnswer {
            status: u16::try_from(r.try_get::<i64, _>(2)?).unwrap_or(200),
            body: r.try_get(3)?,
            location: r.try_get(5)?,
            content_type: r.try_get(6)?,
        }))
    }

    /// Stores the answer of a claimed key (`Some`) or releases the claim (`None`: the
    /// request failed in a way worth retrying).
    pub async fn idem_finish(
        &self,
        tenant_id: u64,
        key_id: u64,
        idem_key: &str,
        answer: Option<&StoredAnswer>,
    ) -> Result<()> {
        let q = match answer {
            Some(a) => sqlx::query(
                "UPDATE idempotency_keys SET state = 1, status = $1, response = $2, \
                 location = $3, content_type = $4 \
                 WHERE tenant_id = $5 AND key_id = $6 AND idem_key = $7",
            )
            .bind(i64::from(a.status))
            .bind(a.body.clone())
            .bind(a.location.clone())
            .bind(a.content_type.clone()),
            None => sqlx::query(
                "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key_id = $2 \
                 AND idem_key = $3",
            ),
        };
        q.bind(i(tenant_id))
            .bind(i(key_id))
            .bind(idem_key.to_owned())
            .execute(&self.pool)
            .await
            .context("finishing an idempotency key")?;
        Ok(())
    }

    /// Releases the claims this host's previous control left in flight (it died with them;
    /// called before the API serves). Returns how many.
    pub async fn release_in_flight(&self) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE state = 0 AND owner = $1")
                .bind(self.host.clone())
                .execute(&self.pool)
                .await
                .context("releasing idempotency keys left in flight")?
                .rows_affected(),
        )
    }

    /// Forgets idempotency keys older than `before_us`.
    pub async fn prune_idempotency(&self, before_us: u64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(i(before_us))
                .execute(&self.pool)
                .await
                .context("pruning idempotency keys")?
                .rows_affected(),
        )
    }

    /// Rate-limit buckets as stored.
    pub async fn rate_buckets(&self) -> Result<Vec<RateBucket>> {
        let rows = sqlx::query(
            "SELECT tenant_id, key_id, bucket, tokens_milli, updated_at FROM rate_limits",
        )
        .fetch_all(&self.pool)
        .await
        .context("loading rate limits")?;
        rows.iter()
            .map(|r| {
                Ok(RateBucket {
                    tenant_id: u(r.try_get::<i64, _>(0)?),
                    key_id: u(r.try_get::<i64, _>(1)?),
                    bucket: u8::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
                    milli: r.try_get::<i64, _>(3)?,
                    at_us: u(r.try_get::<i64, _>(4)?),
                })
            })
            .collect()
    }

    /// Saves rate-limit buckets (upserts).
    pub async fn save_rate_buckets(&self, rows: &[RateBucket]) -> Result<()> {
        let (_turn, mut tx) = self.write_tx().await?;
        for b in rows {
            sqlx::query(
                "INSERT INTO rate_limits (tenant_id, key_id, bucket, tokens_milli, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, key_id, bucket) DO UPDATE \
                 SET tokens_milli = excluded.tokens_milli, updated_at = excluded.updated_at",
            )
            .bind(i(b.tenant_id))
            .bind(i(b.key_id))
            .bind(i64::from(b.bucket))
            .bind(b.milli)
            .bind(i(b.at_us))
            .execute(&mut *tx)
            .await
            .context("saving rate limits")?;
        }
        tx.commit().await.context("committing rate limits")?;
        Ok(())
    }

    /// Appends audit records: (key, method, route, status, duration µs, request id, at µs).
    pub async fn audit(&self, rows: &[AuditRow]) -> Result<()> {
        let (_turn, mut tx) = self.write_tx().await?;
        for a in rows {
            sqlx::query(
                "INSERT INTO audit_log (key_id, method, route, status, duration_us, request_id, \
                 at, tenant_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(i(a.key_id))
            .bind(a.method.clone())
            .bind(a.route.clone())
            .bind(i64::from(a.status))
            .bind(i(a.duration_us))
            .bind(a.request_id.clone())
            .bind(i(a.at_us))
            .bind(i(a.tenant_id))
            .execute(&mut *tx)
            .await
            .context("writing the audit log")?;
        }
        tx.commit().await.context("committing the audit log")?;
        Ok(())
    }

    /// Forgets audit records older than `before_us`.
    pub async fn prune_audit(&self, before_us: u64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(i(before_us))
            .execute(&self.pool)
            .await
            .context("pruning the audit log")?
            .rows_affected())
    }

    /// The newest audit records (for tests and `jetmon`'s operators).
    pub async fn audit_tail(&self, limit: u32) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT key_id, method, route, status, duration_us, request_id, at, tenant_id \
             FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("reading the audit log")?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    key_id: u(r.try_get::<i64, _>(0)?),
                    method: r.try_get(1)?,
                    route: r.try_get(2)?,
                    status: u16::try_from(r.try_get::<i64, _>(3)?).unwrap_or(0),
                    duration_us: u(r.try_get::<i64, _>(4)?),
                    request_id: r.try_get(5)?,
                    at_us: u(r.try_get::<i64, _>(6)?),
                    tenant_id: u(r.try_get::<i64, _>(7)?),
                })
            })
            .collect()
    }
}

/// One stored rate-limit bucket of a (tenant, key): milli-tokens left at `at_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateBucket {
    /// 0 for a key acting for no tenant.
    pub tenant_id: u64,
    pub key_id: u64,
    /// 0 general, 1 expensive.
    pub bucket: u8,
    pub milli: i64,
    pub at_us: u64,
}

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub key_id: u64,
    pub method: String,
    pub route: String,
    pub status: u16,
    pub duration_us: u64,
    pub request_id: String,
    pub at_us: u64,
    /// The tenant the request acted for (0: none).
    pub tenant_id: u64,
}
