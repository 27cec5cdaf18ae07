//! The outbox's writes (docs/notifications.md): a batch's transitions become one row per
//! matching subscription in the batch's own transaction, with the payload frozen then. Which
//! rows, their ids and bodies are `jetmon-outbox`'s decisions; this file gathers the facts
//! (each check's type, its site's tenant, URL (the check's target when the site has none, as
//! sites made by the demo and the benchmarks) and state before the batch) and writes them.

use std::collections::HashMap;

use anyhow::{Context, Result};
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
    /// The site's state before this batch.
    state_before: State,
}

/// Ids per `IN (…)` query.
const CHUNK: usize = 500;

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
                 CASE WHEN s.url = '' THEN c.target ELSE s.url END, s.current_state \
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
            let f = Facts {
                transition_id: *id,
                at_us: t.at_us,
                site_id: facts.site_id,
                site_url: &facts.url,
                site_state,
                site_severity,
                event_id: t.event_id,
                check_type: facts.check_type,
                started_at_us: t.started_at_us,
                ended_at_us: t.after.is_none().then_some(t.at_us),
                resolution_reason: t.after.is_none().then(|| t.reason.name()),
                reason: t.reason.name(),
                source: &source,
                state_before: t.before.map(|(s, v)| (s, v.0)),
                state_after: t.after.map(|(s, v)| (s, v.0)),
            };
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
            let f = Facts {
                transition_id: id,
                at_us: t.at_us,
                site_id: site,
                site_url: &facts.url,
                site_state: state,
                site_severity: severity,
                event_id: t.event_id,
                check_type: facts.check_type,
                started_at_us: t.started_at_us,
                ended_at_us: t.after.is_none().then_some(t.at_us),
                resolution_reason: t.after.is_none().then(|| t.reason.name()),
                reason: t.reason.name(),
                source: &source,
                state_before: t.before.map(|(s, v)| (s, v.0)),
                state_after: t.after.map(|(s, v)| (s, v.0)),
            };
            let ty = EventType::SiteStateChanged;
            for sub in subs.iter().filter(|s| s.wants(ty, &change)) {
                insert(tx, sub, ty, &f, facts.tenant_id, now).await?;
            }
        }
        Ok(())
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
    let body = payload::body(&id, ty, f);
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
