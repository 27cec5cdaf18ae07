//! The outbox's writes (docs/notifications.md): a batch's transitions become one row per
//! matching subscription in the batch's own transaction, with the payload frozen then. Which
//! rows, their ids and bodies are `jetmon-outbox`'s decisions; this file gathers the facts
//! (each check's type, its site's tenant, URL (the check's target when the site has none, as
//! sites made by the demo and the benchmarks) and state before the batch) and writes them.

use std::collections::HashMap;

use anyhow::{Context, Result};
use jetmon_engine::Transition;
use jetmon_outbox::payload::{self, Facts};
use jetmon_outbox::{Change, EventType, delivery_id};
use jetmon_shared::check::CheckType;
use jetmon_shared::state::{Reason, State};
use sqlx::{Any, Row, Transaction};

use super::{Batch, Store, i, now_us, u};

/// What a transition's check and site are, read in the batch's transaction.
struct Known {
    check_type: &'static str,
    site_id: u64,
    tenant_id: u64,
    url: String,
    blog_id: Option<u64>,
    /// The site's state before this batch.
    state_before: State,
}

/// Ids per `IN (…)` query.
const CHUNK: usize = 500;
/// Finished attempts per statement (7 parameters each, well under either backend's limit).
const FINISH_CHUNK: usize = 100;

impl Store {
    /// Writes the outbox rows of `batch`'s transitions (`ids`: their transition ids).
    pub(crate) async fn enqueue(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: &Batch,
        ids: &[Option<u64>],
    ) -> Result<()> {
        let subs = &batch.subscriptions;
        if subs.is_empty() || batch.transitions.is_empty() {
            return Ok(());
        }
        let mut checks: Vec<u64> = batch
            .transitions
            .iter()
            .map(|t| t.identity.check_id)
            .collect();
        checks.sort_unstable();
        checks.dedup();
        let mut known: HashMap<u64, Known> = HashMap::with_capacity(checks.len());
        for chunk in checks.chunks(CHUNK) {
            let list = (1..=chunk.len())
                .map(|k| format!("${k}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT c.id, c.check_type, s.id, s.tenant_id, \
                 CASE WHEN s.url = '' THEN c.target ELSE s.url END, s.current_state, s.blog_id \
                 FROM checks c JOIN sites s ON s.id = c.site_id WHERE c.id IN ({list})"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for c in chunk {
                q = q.bind(i(*c));
            }
            for r in q
                .fetch_all(&mut **tx)
                .await
                .context("reading the sites of notices")?
            {
                let check_type = u8::try_from(r.try_get::<i64, _>(1)?)
                    .ok()
                    .and_then(CheckType::from_code)
                    .unwrap_or_default()
                    .name();
                known.insert(
                    u(r.try_get::<i64, _>(0)?),
                    Known {
                        check_type,
                        site_id: u(r.try_get::<i64, _>(2)?),
                        tenant_id: u(r.try_get::<i64, _>(3)?),
                        url: r.try_get(4)?,
                        blog_id: r.try_get::<Option<i64>, _>(6)?.map(u),
                        state_before: u8::try_from(r.try_get::<i64, _>(5)?)
                            .ok()
                            .and_then(State::from_code)
                            .unwrap_or(State::Unknown),
                    },
                );
            }
        }
        let after: HashMap<u64, (State, u8)> = batch
            .projections
            .iter()
            .map(|p| (p.site_id, (p.state, p.severity.0)))
            .collect();
        let now = now_us();
        // The last transition of each site whose rolled-up state changes: site.state_changed.
        let mut site_changes: HashMap<u64, (usize, u64)> = HashMap::new();
        for (k, (t, id)) in batch.transitions.iter().zip(ids).enumerate() {
            let (Some(id), Some(facts)) = (id, known.get(&t.identity.check_id)) else {
                continue;
            };
            let (site_state, site_severity) = after
                .get(&facts.site_id)
                .copied()
                .unwrap_or((facts.state_before, 0));
            if site_state != facts.state_before {
                site_changes.insert(facts.site_id, (k, *id));
            }
            let change = Change {
                site_id: facts.site_id,
                tenant_id: facts.tenant_id,
                before: t.before.map(|(s, _)| s),
                after: t.after.map(|(s, _)| s),
                severity_changed: t.before.map(|(_, v)| v) != t.after.map(|(_, v)| v),
                cause_linked: t.reason == Reason::CauseLinked,
            };
            let ty = change.event_type();
            let source = self.source(&t.source);
            let f = facts_of(t, *id, facts, &source, site_state, site_severity);
            for sub in subs.iter().filter(|s| s.wants(ty, &change)) {
                insert(tx, sub, ty, &f, facts.tenant_id, now).await?;
            }
        }
        for (site, (k, id)) in site_changes {
            let t = &batch.transitions[k];
            let Some(facts) = known.get(&t.identity.check_id) else {
                continue;
            };
            let (state, severity) = after.get(&site).copied().unwrap_or((facts.state_before, 0));
            let change = Change {
                site_id: site,
                tenant_id: facts.tenant_id,
                before: Some(facts.state_before),
                after: Some(state),
                severity_changed: false,
                cause_linked: false,
            };
            let source = self.source(&t.source);
            let f = facts_of(t, id, facts, &source, state, severity);
            let ty = EventType::SiteStateChanged;
            for sub in subs.iter().filter(|s| s.wants(ty, &change)) {
                insert(tx, sub, ty, &f, facts.tenant_id, now).await?;
            }
        }
        Ok(())
    }
}

/// What a notice of transition `t` (stored as `id`) says, its site being in `site_state`.
fn facts_of<'a>(
    t: &'a Transition,
    id: u64,
    known: &'a Known,
    source: &'a str,
    site_state: State,
    site_severity: u8,
) -> Facts<'a> {
    Facts {
        transition_id: id,
        at_us: t.at_us,
        site_id: known.site_id,
        site_url: &known.url,
        blog_id: known.blog_id,
        site_state,
        site_severity,
        event_id: t.event_id,
        check_type: known.check_type,
        started_at_us: t.started_at_us,
        ended_at_us: t.after.is_none().then_some(t.at_us),
        resolution_reason: t.after.is_none().then(|| t.reason.name()),
        reason: t.reason.name(),
        source,
        state_before: t.before.map(|(s, v)| (s, v.0)),
        state_after: t.after.map(|(s, v)| (s, v.0)),
    }
}

async fn insert(
    tx: &mut Transaction<'static, Any>,
    sub: &jetmon_outbox::Subscription,
    ty: EventType,
    f: &Facts<'_>,
    tenant_id: u64,
    now: u64,
) -> Result<()> {
    let id = delivery_id(f.transition_id, sub.kind, sub.id, ty);
    let body = match sub.kind {
        jetmon_outbox::Kind::Webhook => payload::body(&id, ty, f),
        jetmon_outbox::Kind::Wpcom => match payload::wpcom_body(f) {
            Some(b) => b,
            None => return Ok(()),
        },
    };
    sqlx::query(
        "INSERT INTO outbox (id, kind, subscription_id, tenant_id, site_id, transition_id, \
         event_type, payload, next_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(i64::from(sub.kind.code()))
    .bind(i(sub.id))
    .bind(i(tenant_id))
    .bind(i(f.site_id))
    .bind(i(f.transition_id))
    .bind(ty.name())
    .bind(body)
    .bind(i(now))
    .bind(i(now))
    .execute(&mut **tx)
    .await
    .context("enqueueing a notice")?;
    Ok(())
}

/// One row of the outbox as a worker or the API sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub subscription_id: u64,
    pub site_id: u64,
    pub event_type: String,
    pub payload: String,
    /// 0 pending, 1 delivered, 2 abandoned.
    pub state: u8,
    pub attempts: u32,
}

impl Store {
    /// Every outbox row of webhook `subscription_id`, oldest first (tests, the API's log).
    pub async fn deliveries_of(&self, subscription_id: u64) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(
            "SELECT id, subscription_id, site_id, event_type, payload, state, attempts FROM outbox \
             WHERE kind = 1 AND subscription_id = $1 ORDER BY transition_id, id",
        )
        .bind(i(subscription_id))
        .fetch_all(&self.pool)
        .await
        .context("reading deliveries")?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    id: r.try_get(0)?,
                    subscription_id: u(r.try_get::<i64, _>(1)?),
                    site_id: u(r.try_get::<i64, _>(2)?),
                    event_type: r.try_get(3)?,
                    payload: r.try_get(4)?,
                    state: u8::try_from(r.try_get::<i64, _>(5)?).unwrap_or(0),
                    attempts: u32::try_from(r.try_get::<i64, _>(6)?).unwrap_or(0),
                })
            })
            .collect()
    }
}

/// A row a worker has leased: send it, then report with [`Store::finish_deliveries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    pub kind: u8,
    pub subscription_id: u64,
    pub site_id: u64,
    pub event_type: String,
    pub payload: String,
    /// Attempts before this one.
    pub attempts: u32,
}

/// How one attempt ended, and what follows for its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub id: String,
    pub kind: u8,
    pub subscription_id: u64,
    /// This attempt's number (1 = the first).
    pub attempt: u32,
    pub at_us: u64,
    pub duration_us: u64,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The answer's first bytes (≤ 1 KiB).
    pub excerpt: Option<String>,
    pub next: Next,
}

/// What becomes of a row after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Delivered,
    RetryAt(u64),
    Abandoned,
    /// Abandoned, and the subscription disabled with this reason (410 Gone).
    Disable(String),
}

/// One attempt as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    pub delivery_id: String,
    pub attempt: u32,
    pub at_us: u64,
    pub duration_us: u64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub excerpt: Option<String>,
}

/// A delivery with its attempts (the API's log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLog {
    pub delivery: Delivery,
    pub transition_id: u64,
    pub created_us: u64,
    pub next_at_us: u64,
    pub done_us: Option<u64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub attempts_log: Vec<AttemptRow>,
}

/// `rows` parenthesised rows of `casts.len()` placeholders each, numbered from `first`; a
/// placeholder whose cast is not empty is written `CAST($n AS <cast>)` (a VALUES list has no
/// column types of its own).
fn value_rows(rows: usize, first: usize, casts: &[&str]) -> String {
    let mut n = first;
    let mut out = String::new();
    for k in 0..rows {
        if k > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for (c, cast) in casts.iter().enumerate() {
            if c > 0 {
                out.push_str(", ");
            }
            if cast.is_empty() {
                out.push_str(&format!("${n}"));
            } else {
                out.push_str(&format!("CAST(${n} AS {cast})"));
            }
            n += 1;
        }
        out.push(')');
    }
    out
}

/// A row read as `id, kind, subscription_id, site_id, event_type, payload, attempts`.
fn claimed_of(r: &sqlx::any::AnyRow) -> Result<Claimed> {
    Ok(Claimed {
        id: r.try_get(0)?,
        kind: u8::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
        subscription_id: u(r.try_get::<i64, _>(2)?),
        site_id: u(r.try_get::<i64, _>(3)?),
        event_type: r.try_get(4)?,
        payload: r.try_get(5)?,
        attempts: u32::try_from(r.try_get::<i64, _>(6)?).unwrap_or(0),
    })
}

fn status_of(v: Option<i64>) -> Option<u16> {
    v.and_then(|s| u16::try_from(s).ok())
}

impl Store {
    /// Leases up to `limit` due rows of one subscription to `owner` until `lease_until_us`,
    /// oldest first (by due time; the index's order, so no sort), each only when no earlier
    /// row of its (subscription, site) is pending (so a site's notices go out in transition
    /// order whatever their due times). Rows another worker holds are skipped;
    /// the outer conditions are checked again on the locked row, so two workers never lease
    /// one row.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        kind: u8,
        subscription_id: u64,
        limit: u32,
        now_us: u64,
        lease_until_us: u64,
    ) -> Result<Vec<Claimed>> {
        let _turn = self.gate.turn().await;
        // The outer `+state` keeps SQLite from walking every pending row through outbox_due
        // to match the few ids (it did: 110 ms a claim with 60,000 rows pending, P10); the
        // unary plus stops an index being used for that term, and the primary key is. The
        // outer conditions are there for PostgreSQL, which re-checks them on the row it locks.
        let rows = sqlx::query(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2 \
             WHERE id IN (SELECT o.id FROM outbox o \
               WHERE o.state = 0 AND o.kind = $3 AND o.subscription_id = $4 AND o.next_at <= $5 \
               AND (o.lease_until IS NULL OR o.lease_until < $5) \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.kind = o.kind \
                 AND p.subscription_id = o.subscription_id AND p.site_id = o.site_id \
                 AND p.state = 0 AND p.transition_id <= o.transition_id \
                 AND (p.transition_id < o.transition_id OR p.id < o.id)) \
               ORDER BY o.next_at LIMIT $6) \
             AND +state = 0 AND (lease_until IS NULL OR lease_until < $5) \
             RETURNING id, kind, subscription_id, site_id, event_type, payload, attempts",
        )
        .bind(owner.to_owned())
        .bind(i(lease_until_us))
        .bind(i64::from(kind))
        .bind(i(subscription_id))
        .bind(i(now_us))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("claiming deliveries")?;
        rows.iter().map(claimed_of).collect()
    }

    /// Records attempts and their rows' fate, all in one transaction. A row whose lease
    /// `owner` lost (it expired and another worker took it) keeps its new owner's state; its
    /// attempt is logged all the same.
    pub async fn finish_deliveries(&self, owner: &str, done: &[Finished]) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let (_turn, mut tx) = self.write_tx().await?;
        // A few statements per batch rather than two per row: under a storm a finish carries
        // hundreds of rows, and each statement is a round trip to the database (P10).
        for chunk in done.chunks(FINISH_CHUNK) {
            let mut q = String::from(
                "UPDATE outbox SET state = v.column2, attempts = v.column3, \
                 next_at = v.column4, done_at = v.column5, last_status = v.column6, \
                 last_error = v.column7, lease_owner = NULL, lease_until = NULL FROM (VALUES ",
            );
            q.push_str(&value_rows(
                chunk.len(),
                2,
                &[
                    "TEXT", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "TEXT",
                ],
            ));
            q.push_str(
                ") AS v WHERE outbox.id = v.column1 AND outbox.lease_owner = $1 \
                 AND outbox.state = 0",
            );
            // Built from placeholders only; every value is bound.
            let mut update = sqlx::query(sqlx::AssertSqlSafe(q)).bind(owner.to_owned());
            for f in chunk {
                let (state, next_at, done_at) = match &f.next {
                    Next::Delivered => (1i64, f.at_us, Some(f.at_us)),
                    Next::RetryAt(t) => (0, *t, None),
                    Next::Abandoned | Next::Disable(_) => (2, f.at_us, Some(f.at_us)),
                };
                update = update
                    .bind(f.id.clone())
                    .bind(state)
                    .bind(i64::from(f.attempt))
                    .bind(i(next_at))
                    .bind(done_at.map(i))
                    .bind(f.status.map(i64::from))
                    .bind(f.error.clone());
            }
            update
                .execute(&mut *tx)
                .await
                .context("recording deliveries")?;
            let mut q = String::from(
                "INSERT INTO delivery_attempts (delivery_id, attempt, at, duration_us, status, \
                 error, excerpt) VALUES ",
            );
            q.push_str(&value_rows(chunk.len(), 1, &[""; 7]));
            // Written once even when a commit whose answer was lost is tried again.
            q.push_str(" ON CONFLICT (delivery_id, attempt) DO NOTHING");
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(q));
            for f in chunk {
                insert = insert
                    .bind(f.id.clone())
                    .bind(i64::from(f.attempt))
                    .bind(i(f.at_us))
                    .bind(i(f.duration_us))
                    .bind(f.status.map(i64::from))
                    .bind(f.error.clone())
                    .bind(f.excerpt.clone());
            }
            insert
                .execute(&mut *tx)
                .await
                .context("logging delivery attempts")?;
        }
        for f in done {
            if let Next::Disable(reason) = &f.next
                && f.kind == jetmon_outbox::Kind::Webhook.code()
            {
                sqlx::query(
                    "UPDATE webhooks SET active = 0, disabled_reason = $1, updated_at = $2 \
                     WHERE id = $3",
                )
                .bind(reason.clone())
                .bind(i(f.at_us))
                .bind(i(f.subscription_id))
                .execute(&mut *tx)
                .await
                .context("disabling a webhook")?;
            }
        }
        tx.commit().await.context("committing deliveries")?;
        Ok(())
    }

    /// Queues a signed `ping` to webhook `subscription_id` (`POST /webhooks/{id}/test`); its
    /// delivery id.
    pub async fn enqueue_ping(&self, subscription_id: u64, tenant_id: u64) -> Result<String> {
        let now = now_us();
        let id = format!("ping{now}.w{subscription_id}");
        let body = serde_json::json!({
            "id": id,
            "type": "ping",
            "occurred_at": payload::rfc3339(now),
            "webhook": {"id": subscription_id},
        })
        .to_string();
        sqlx::query(
            "INSERT INTO outbox (id, kind, subscription_id, tenant_id, site_id, transition_id, \
             event_type, payload, next_at, created_at) VALUES ($1, 1, $2, $3, 0, 0, 'ping', $4, \
             $5, $5)",
        )
        .bind(id.clone())
        .bind(i(subscription_id))
        .bind(i(tenant_id))
        .bind(body)
        .bind(i(now))
        .execute(&self.pool)
        .await
        .context("queueing a ping")?;
        Ok(id)
    }

    /// Makes a webhook's delivery due again now (`…/deliveries/{id}/retry`); false when the
    /// webhook has no such delivery. A delivered or abandoned row becomes pending for one more
    /// attempt; a pending one is just made due.
    pub async fn retry_delivery(&self, subscription_id: u64, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 0, next_at = $1, done_at = NULL \
             WHERE id = $2 AND kind = 1 AND subscription_id = $3",
        )
        .bind(i(now_us()))
        .bind(id.to_owned())
        .bind(i(subscription_id))
        .execute(&self.pool)
        .await
        .context("retrying a delivery")?
        .rows_affected();
        Ok(done > 0)
    }

    /// A page of a webhook's deliveries, newest first (ids below `before`, or all), each with
    /// its attempts.
    pub async fn delivery_log(
        &self,
        subscription_id: u64,
        before: Option<(u64, String)>,
        limit: u32,
    ) -> Result<Vec<DeliveryLog>> {
        let (cursor, args) = match &before {
            Some(_) => (
                " AND (transition_id < $2 OR (transition_id = $2 AND id < $3))",
                true,
            ),
            None => ("", false),
        };
        let sql = format!(
            "SELECT id, subscription_id, site_id, event_type, payload, state, attempts, \
             transition_id, created_at, next_at, done_at, last_status, last_error FROM outbox \
             WHERE kind = 1 AND subscription_id = $1{cursor} \
             ORDER BY transition_id DESC, id DESC LIMIT {}",
            limit.clamp(1, 200)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(i(subscription_id));
        if let (true, Some((t, id))) = (args, &before) {
            q = q.bind(i(*t)).bind(id.clone());
        }
        let rows = q
            .fetch_all(&self.pool)
            .await
            .context("reading deliveries")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get(0)?;
            let attempts = sqlx::query(
                "SELECT attempt, at, duration_us, status, error, excerpt FROM delivery_attempts \
                 WHERE delivery_id = $1 ORDER BY id",
            )
            .bind(id.clone())
            .fetch_all(&self.pool)
            .await
            .context("reading attempts")?;
            let attempts_log = attempts
                .iter()
                .map(|a| {
                    Ok(AttemptRow {
                        delivery_id: id.clone(),
                        attempt: u32::try_from(a.try_get::<i64, _>(0)?).unwrap_or(0),
                        at_us: u(a.try_get::<i64, _>(1)?),
                        duration_us: u(a.try_get::<i64, _>(2)?),
                        status: status_of(a.try_get(3)?),
                        error: a.try_get(4)?,
                        excerpt: a.try_get(5)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(DeliveryLog {
                delivery: Delivery {
                    id,
                    subscription_id: u(r.try_get::<i64, _>(1)?),
                    site_id: u(r.try_get::<i64, _>(2)?),
                    event_type: r.try_get(3)?,
                    payload: r.try_get(4)?,
                    state: u8::try_from(r.try_get::<i64, _>(5)?).unwrap_or(0),
                    attempts: u32::try_from(r.try_get::<i64, _>(6)?).unwrap_or(0),
                },
                transition_id: u(r.try_get::<i64, _>(7)?),
                created_us: u(r.try_get::<i64, _>(8)?),
                next_at_us: u(r.try_get::<i64, _>(9)?),
                done_us: r.try_get::<Option<i64>, _>(10)?.map(u),
                last_status: status_of(r.try_get(11)?),
                last_error: r.try_get(12)?,
                attempts_log,
            });
        }
        Ok(out)
    }
}

impl Store {
    /// The pending rows `owner` holds a lease on. After a database error the deliverer cannot
    /// know whether a claim it saw fail was committed all the same (the answer lost on the
    /// way): it reads what it holds and sends what it did not know it had, instead of letting
    /// those rows wait out the lease.
    pub async fn leased_by(&self, owner: &str) -> Result<Vec<Claimed>> {
        let rows = sqlx::query(
            "SELECT id, kind, subscription_id, site_id, event_type, payload, attempts FROM outbox \
             WHERE lease_owner = $1 AND state = 0",
        )
        .bind(owner.to_owned())
        .fetch_all(&self.pool)
        .await
        .context("reading leased deliveries")?;
        rows.iter().map(claimed_of).collect()
    }

    /// Gives back rows `owner` claimed and did not send (a deliverer stopping), so another
    /// worker need not wait for the lease.
    pub async fn release_deliveries(&self, owner: &str, ids: &[String]) -> Result<()> {
        let _turn = self.gate.turn().await;
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id.clone())
            .bind(owner.to_owned())
            .execute(&self.pool)
            .await
            .context("releasing a delivery")?;
        }
        Ok(())
    }
}

impl Store {
    /// `(delivery id, enqueued at µs, state)` of every row of subscription `(kind, id)`
    /// (benchmarks: the enqueue instant is the transition's commit, give or take the batch).
    /// `(rows, pending rows)` of subscription `(kind, id)`, and how many sites are in
    /// `state` (a benchmark's progress line, cheap enough to ask every second or two).
    pub async fn delivery_progress(
        &self,
        kind: u8,
        subscription_id: u64,
        state: State,
    ) -> Result<(u64, u64, u64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM outbox WHERE kind = $1 AND subscription_id = $2),              (SELECT COUNT(*) FROM outbox WHERE state = 0 AND kind = $1 AND subscription_id = $2),              (SELECT COUNT(*) FROM sites WHERE current_state = $3)",
        )
        .bind(i64::from(kind))
        .bind(i(subscription_id))
        .bind(i64::from(state.code()))
        .fetch_one(&self.pool)
        .await
        .context("reading delivery progress")?;
        Ok((
            u(row.try_get::<i64, _>(0)?),
            u(row.try_get::<i64, _>(1)?),
            u(row.try_get::<i64, _>(2)?),
        ))
    }

    pub async fn delivery_times(
        &self,
        kind: u8,
        subscription_id: u64,
    ) -> Result<Vec<(String, u64, u8)>> {
        let rows = sqlx::query(
            "SELECT id, created_at, state FROM outbox WHERE kind = $1 AND subscription_id = $2",
        )
        .bind(i64::from(kind))
        .bind(i(subscription_id))
        .fetch_all(&self.pool)
        .await
        .context("reading delivery times")?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    u(r.try_get::<i64, _>(1)?),
                    u8::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::value_rows;

    #[test]
    fn value_rows_number_and_cast_their_placeholders() {
        assert_eq!(
            value_rows(2, 2, &["TEXT", ""]),
            "(CAST($2 AS TEXT), $3), (CAST($4 AS TEXT), $5)"
        );
        assert_eq!(value_rows(0, 1, &[""]), "");
    }
}
