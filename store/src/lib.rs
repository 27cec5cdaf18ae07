//! `jetmon-store`: every SQL statement Jetmon runs, on SQLite (embedded, the default) or
//! PostgreSQL (fleets), through one code path on sqlx's `Any` driver with one migration folder
//! per backend (`migrations/`, embedded at build time). It owns the schema, the migrations,
//! the batched write of the engine's effects and every query the API and the CLI make; it
//! returns engine types (`jetmon-engine`) and plain rows. It must not depend on the API, the
//! binary or the prober: callers depend on it, never the other way.
//!
//! Events are the truth: an event row, its transition and the site projection are written in
//! one transaction, batched (group commit). Healthy checks cause no write here.
//!
//! SQL uses `$1, $2, …` placeholders, each once and in order, which both backends read the
//! same way. Integers are i64 on the wire (ids and Unix µs fit).

pub mod tokens;

mod api;
mod gate;
mod imports;
mod keys;
mod migrate;
mod outbox;
mod requests;
mod sealed;
mod stats;
mod tenants;
mod webhooks;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use jetmon_shared::check::CheckSpec;
use jetmon_shared::state::{Reason, Severity, State};
use sqlx::pool::{Pool, PoolOptions};
use sqlx::{Any, Row, Transaction};

use jetmon_engine::{
    CheckConfig, EventKind, OpenEvent, Projection, Source, Thresholds, Transition, Window,
};

pub use api::{
    CheckRow, EndpointRow, EventFilter, NewSite, Scoped, SiteChange, SiteFilter, TransitionRow,
    WindowRow, split_tags,
};
pub use imports::{ImportUpdate, ImportedCheck};
pub use keys::{KeyKind, KeyRow, NewKey};
pub use migrate::{MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE};
pub use outbox::{AttemptRow, Claimed, Delivery, DeliveryLog, Finished, Next as DeliveryNext};
pub use requests::{AuditRow, Idem, RateBucket, StoredAnswer};
pub use stats::{Period, Rollup};
pub use tenants::{DEFAULT_TENANT, Tenancy, TenantRow, name_problem as tenant_name_problem};
pub use webhooks::{NewWebhook, Target as WebhookTarget, WebhookChange, WebhookRow};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            bail!("unsupported database URL (use sqlite:PATH or postgres://…)")
        }
    }
}

/// A database URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    jetmon_shared::check::redact_credentials(url, true)
}

/// One batch of durable changes, written in one transaction.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub transitions: Vec<Transition>,
    pub projections: Vec<Projection>,
    /// (shard, ring position): ingest resumes here after a restart.
    pub positions: Vec<(u16, u64)>,
    /// Raw results of failed probes ("why is it down"); healthy results are not kept.
    pub failures: Vec<Failure>,
    /// Who wants notices of these transitions (docs/notifications.md): their outbox rows are
    /// written in the same transaction.
    pub subscriptions: std::sync::Arc<Vec<jetmon_outbox::Subscription>>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.transitions.is_empty()
            && self.projections.is_empty()
            && self.positions.is_empty()
            && self.failures.is_empty()
    }
}

/// One kept probe result (a failure or an advisory), as kept in `recent_failures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub check_id: u64,
    pub at_us: u64,
    pub outcome: u16,
    pub detail: u16,
    pub http_status: u16,
    pub total_us: u32,
    pub vantage_id: u32,
    /// The result's flags (`FLAG_REDIRECT_*`).
    pub flags: u8,
    /// A sentence for a person (probe-safety refusals).
    pub note: Option<String>,
    /// Each redirect followed: the status that redirected and where it led.
    pub redirect_chain: Vec<(u16, String)>,
}

/// Checks read per query when loading the check set.
pub const CHECKS_PAGE: u32 = 5_000;

/// How long raw failures are kept.
pub const FAILURE_RETENTION_US: u64 = 7 * 86_400 * 1_000_000;

/// A site row for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRow {
    pub id: u64,
    pub name: String,
    pub state: State,
    pub severity: Severity,
    pub site_status: u8,
    pub active_event_count: u32,
    pub last_status_change_us: Option<u64>,
    pub ssl_expiry_s: Option<i64>,
    /// Start of the latest result of any of its checks (written in batches, ≤ ~1 min old).
    pub last_checked_us: Option<u64>,
    /// The site's main URL (its first endpoint).
    pub url: String,
    pub tags: Vec<String>,
    /// False once deleted over the API: kept for history, no longer monitored.
    pub active: bool,
    pub created_us: u64,
    /// The Jetmon v1 id, when the site has one (unique per tenant).
    pub blog_id: Option<u64>,
    /// The tenant the site belongs to (docs/tenants.md).
    pub tenant_id: u64,
}

/// A stored check: what the prober needs and what the engine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheck {
    pub spec: CheckSpec,
    pub engine: CheckConfig,
}

/// An event row (for tests and the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: u64,
    pub site_id: u64,
    pub check_id: u64,
    pub kind: u8,
    pub state: State,
    pub severity: Severity,
    pub started_us: u64,
    pub ended_us: Option<u64>,
    pub resolution: Option<Reason>,
}

#[derive(Clone)]
pub struct Store {
    pool: Pool<Any>,
    backend: Backend,
    /// `local:<host>` in transition sources.
    host: String,
    /// What seals and opens secrets (None: storing one is refused, stored ones do not open).
    vault: Option<std::sync::Arc<jetmon_secrets::Vault>>,
    /// Subscriptions of the deployment rather than of a tenant (the WPCOM notice), added to
    /// the stored webhooks by `subscriptions()`.
    operator_subscriptions: std::sync::Arc<Vec<jetmon_outbox::Subscription>>,
    /// SQLite: this process's writers take turns ([`gate`]).
    gate: gate::Gate,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn state_of(code: i64) -> State {
    u8::try_from(code)
        .ok()
        .and_then(State::from_code)
        .unwrap_or(State::Unknown)
}

/// The file a `sqlite:` URL names (None for in-memory databases).
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Creates a SQLite database file mode 0600 (its directory 0700 when we make it), whatever the
/// umask, and tightens an existing one and its WAL and shared-memory files to 0600: they hold
/// key hashes, targets and history. SQLite gives the WAL the main file's mode.
fn private_sqlite(url: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let Some(path) = sqlite_path(url) else {
        return Ok(());
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)?;
    for suffix in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

impl Store {
    /// Connects (creating a SQLite file if needed) and applies pending migrations.
    pub async fn open(url: &str, host: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let shown = redact(url);
        // Short: while the database is away, the supervisor loop must keep ticking (heartbeats,
        // metrics, prober supervision) between attempts.
        let mut options = PoolOptions::<Any>::new().acquire_timeout(Duration::from_secs(2));
        let connect_url = match backend {
            Backend::Sqlite => {
                // One writer; WAL lets readers (the API, `jetmon sites list`) run beside it.
                // The database is read through a memory map (shared with the kernel's page
                // cache by every connection) and each connection caches up to 16 MiB of
                // pages: with SQLite's 2 MiB default a storm's outbox (P10: 90 MB of rows
                // touched within seconds) was re-read with pread, a page at a time, and the
                // deliverer spent most of its time copying pages.
                options = options.max_connections(4).after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::raw_sql(
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                             PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON; \
                             PRAGMA mmap_size=268435456; PRAGMA cache_size=-16384;",
                        )
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                });
                private_sqlite(url).with_context(|| format!("creating {shown}"))?;
                if url.contains('?') {
                    url.to_owned()
                } else {
                    format!("{url}?mode=rwc")
                }
            }
            Backend::Postgres => {
                options = options.max_connections(8);
                url.to_owned()
            }
        };
        let pool = options
            .connect(&connect_url)
            .await
            .with_context(|| format!("connecting to {shown}"))?;
        let store = Store {
            pool,
            backend,
            host: host.to_owned(),
            vault: None,
            operator_subscriptions: std::sync::Arc::default(),
            gate: match backend {
                Backend::Sqlite => {
                    sqlite_path(url).map_or_else(gate::Gate::default, |p| gate::Gate::for_file(&p))
                }
                Backend::Postgres => gate::Gate::default(),
            },
        };
        migrate::run(&store.pool, backend)
            .await
            .with_context(|| format!("migrating {shown}"))?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A write transaction, in this process's turn on SQLite (see [`gate`]): hold both until
    /// the commit.
    pub(crate) async fn write_tx(&self) -> Result<(gate::Turn, Transaction<'static, Any>)> {
        let turn = self.gate.turn().await;
        let tx = self.pool.begin().await.context("starting a transaction")?;
        Ok((turn, tx))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn source(&self, s: &Source) -> String {
        match s {
            Source::Local => format!("local:{}", self.host),
            Source::Veriflier(name) => format!("veriflier:{name}"),
            Source::Operator(who) => format!("operator:{who}"),
            Source::System(what) => format!("system:{what}"),
        }
    }

    /// Writes a batch in one transaction: event rows, their transitions, site projections and
    /// ingest positions together, or nothing.
    pub async fn apply(&self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (_turn, mut tx) = self.write_tx().await?;
        let mut ids = Vec::with_capacity(batch.transitions.len());
        for t in &batch.transitions {
            ids.push(self.write_transition(&mut tx, t).await?);
        }
        // Before the projections: the sites' states as they were, for site.state_changed.
        self.enqueue(&mut tx, batch, &ids).await?;
        for p in &batch.projections {
            sqlx::query(
                "UPDATE sites SET current_state = $1, current_severity = $2, active_event_id = $3, \
                 active_event_count = $4, site_status = $5, ssl_expiry_at = $6, \
                 last_status_change_at = $7 WHERE id = $8",
            )
            .bind(i64::from(p.state.code()))
            .bind(i64::from(p.severity.0))
            .bind(p.active_event_id.map(i))
            .bind(i64::from(p.active_event_count))
            .bind(i64::from(p.site_status))
            .bind(p.ssl_expiry_s)
            .bind((p.last_status_change_us > 0).then(|| i(p.last_status_change_us)))
            .bind(i(p.site_id))
            .execute(&mut *tx)
            .await
            .context("updating a site projection")?;
        }
        for f in &batch.failures {
            sqlx::query(
                "INSERT INTO recent_failures (check_id, at, outcome, detail, http_status, total_us, \
                 vantage_id, flags, note, redirect_chain) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 $9, $10) ON CONFLICT (check_id, at) DO NOTHING",
            )
            .bind(i(f.check_id))
            .bind(i(f.at_us))
            .bind(i64::from(f.outcome))
            .bind(i64::from(f.detail))
            .bind(i64::from(f.http_status))
            .bind(i64::from(f.total_us))
            .bind(i64::from(f.vantage_id))
            .bind(i64::from(f.flags))
            .bind(f.note.clone())
            .bind(
                (!f.redirect_chain.is_empty())
                    .then(|| serde_json::to_string(&f.redirect_chain).unwrap_or_default()),
            )
            .execute(&mut *tx)
            .await
            .context("keeping a failed result")?;
        }
        for (shard, position) in &batch.positions {
            sqlx::query(
                "INSERT INTO ingest_positions (shard, position, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (shard) DO UPDATE SET position = excluded.position, \
                 updated_at = excluded.updated_at",
            )
            .bind(i64::from(*shard))
            .bind(i(*position))
            .bind(i(now_us()))
            .execute(&mut *tx)
            .await
            .context("saving an ingest position")?;
        }
        tx.commit().await.context("committing a batch")?;
        Ok(())
    }

    /// Writes one transition (and its event's change); its id (None for a no-op).
    async fn write_transition(
        &self,
        tx: &mut Transaction<'static, Any>,
        t: &Transition,
    ) -> Result<Option<u64>> {
        let kind = i64::from(t.identity.kind as u8);
        match (t.before, t.after) {
            (None, Some((state, severity))) => {
                sqlx::query(
                    "INSERT INTO events (id, site_id, check_id, kind, state, severity, started_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(i(t.event_id))
                .bind(i(t.identity.site_id))
                .bind(i(t.identity.check_id))
                .bind(kind)
                .bind(i64::from(state.code()))
                .bind(i64::from(severity.0))
                .bind(i(t.started_at_us))
                .execute(&mut **tx)
                .await
                .context("opening an event")?;
            }
            (Some(_), Some((state, severity))) => {
                sqlx::query("UPDATE events SET state = $1, severity = $2 WHERE id = $3 AND ended_at IS NULL")
                    .bind(i64::from(state.code()))
                    .bind(i64::from(severity.0))
                    .bind(i(t.event_id))
                    .execute(&mut **tx)
                    .await
                    .context("updating an event")?;
            }
            (Some(_), None) => {
                sqlx::query(
                    "UPDATE events SET ended_at = $1, resolution_reason = $2 WHERE id = $3 AND ended_at IS NULL",
                )
                .bind(i(t.at_us))
                .bind(i64::from(t.reason.code()))
                .bind(i(t.event_id))
                .execute(&mut **tx)
                .await
                .context("closing an event")?;
            }
            (None, None) => return Ok(None),
        }
        let mut metadata: serde_json::Map<String, serde_json::Value> = t
            .detail
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        if !t.votes.is_empty() {
            let votes = t
                .votes
                .iter()
                .map(|v| {
                    serde_json::json!({
                        "veriflier": v.veriflier,
                        "vote": v.kind.name(),
                        "outcome": v.outcome.map(|c| jetmon_shared::outcome::Outcome::from_code(c)
                            .map_or_else(|| c.to_string(), |o| o.name().to_owned())),
                        "http_status": v.http_status,
                        "total_us": v.total_us,
                        "error": v.error,
                    })
                })
                .collect();
            metadata.insert("votes".to_owned(), serde_json::Value::Array(votes));
        }
        if let Some(note) = &t.note {
            metadata.insert("note".to_owned(), serde_json::Value::from(note.as_ref()));
        }
        let metadata = serde_json::Value::Object(metadata).to_string();
        let row = sqlx::query(
            "INSERT INTO transitions (event_id, site_id, state_before, severity_before, state_after, \
             severity_after, reason, source, metadata, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             RETURNING id",
        )
        .bind(i(t.event_id))
        .bind(i(t.identity.site_id))
        .bind(t.before.map(|(s, _)| i64::from(s.code())))
        .bind(t.before.map(|(_, sev)| i64::from(sev.0)))
        .bind(t.after.map(|(s, _)| i64::from(s.code())))
        .bind(t.after.map(|(_, sev)| i64::from(sev.0)))
        .bind(i64::from(t.reason.code()))
        .bind(self.source(&t.source))
        .bind(metadata)
        .bind(i(t.at_us))
        .fetch_one(&mut **tx)
        .await
        .context("appending a transition")?;
        Ok(Some(u(row.try_get::<i64, _>(0)?)))
    }

    /// Drops raw failures older than the retention; returns how many.
    pub async fn prune_failures(&self, now_us: u64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM recent_failures WHERE at < $1")
            .bind(i(now_us.saturating_sub(FAILURE_RETENTION_US)))
            .execute(&self.pool)
            .await
            .context("pruning old failures")?;
        Ok(r.rows_affected())
    }

    /// The latest kept results of a check (failures and advisories), newest first.
    pub async fn recent_failures(&self, check_id: u64, limit: u32) -> Result<Vec<Failure>> {
        let rows = sqlx::query(
            "SELECT check_id, at, outcome, detail, http_status, total_us, vantage_id, flags, \
             note, redirect_chain FROM recent_failures WHERE check_id = $1 ORDER BY at DESC \
             LIMIT $2",
        )
        .bind(i(check_id))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("loading failures")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let n = |k: usize| -> Result<i64> { Ok(r.try_get::<i64, _>(k)?) };
            out.push(Failure {
                check_id: u(n(0)?),
                at_us: u(n(1)?),
                outcome: u16::try_from(n(2)?).unwrap_or(0),
                detail: u16::try_from(n(3)?).unwrap_or(0),
                http_status: u16::try_from(n(4)?).unwrap_or(0),
                total_us: u32::try_from(n(5)?).unwrap_or(0),
                vantage_id: u32::try_from(n(6)?).unwrap_or(0),
                flags: u8::try_from(n(7)?).unwrap_or(0),
                note: r.try_get::<Option<String>, _>(8)?,
                // Written by us as JSON; a row that does not parse shows no chain.
                redirect_chain: r
                    .try_get::<Option<String>, _>(9)?
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Adds a site; returns its id.
    pub async fn add_site(&self, name: &str) -> Result<u64> {
        let row = sqlx::query("INSERT INTO sites (name, created_at) VALUES ($1, $2) RETURNING id")
            .bind(name.to_owned())
            .bind(i(now_us()))
            .fetch_one(&self.pool)
            .await
            .context("adding a site")?;
        Ok(u(row.try_get::<i64, _>(0)?))
    }

    /// Adds a check to a site; returns its id. `spec.check_id` and `site_id` are ignored.
    pub async fn add_check(&self, site_id: u64, spec: &CheckSpec, critical: bool) -> Result<u64> {
        let (_turn, mut tx) = self.write_tx().await?;
        let sealed = self.seal_headers(&spec.headers)?;
        let id = insert_check(&mut tx, site_id, spec, critical, now_us(), sealed).await?;
        tx.commit().await.context("committing a check")?;
        Ok(id)
    }

    /// Adds one site with one check per entry, all in one transaction; returns how many. The
    /// benchmarks' bulk seeding: no endpoint, URL or v1 id (`create_sites` has them).
    pub async fn add_sites_with_checks(&self, rows: &[(String, CheckSpec)]) -> Result<usize> {
        let (_turn, mut tx) = self.write_tx().await?;
        let now = i(now_us());
        for (name, spec) in rows {
            let row =
                sqlx::query("INSERT INTO sites (name, created_at) VALUES ($1, $2) RETURNING id")
                    .bind(name.clone())
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .context("adding a site")?;
            let site: i64 = row.try_get(0)?;
            let sealed = self.seal_headers(&spec.headers)?;
            insert_check(&mut tx, u(site), spec, true, u(now), sealed).await?;
        }
        tx.commit().await.context("committing an import batch")?;
        Ok(rows.len())
    }

    /// A cheap fingerprint of the check set (count, latest update): it changes when checks
    /// are added, changed or removed.
    pub async fn checks_fingerprint(&self) -> Result<(i64, i64)> {
        let row = sqlx::query("SELECT COUNT(*), MAX(updated_at) FROM checks")
            .fetch_one(&self.pool)
            .await?;
        Ok((
            row.try_get::<i64, _>(0)?,
            row.try_get::<Option<i64>, _>(1)?.unwrap_or(0),
        ))
    }

    /// Every check with what the prober and the engine need (maintenance windows included).
    pub async fn checks(&self) -> Result<Vec<StoredCheck>> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = self.checks_page(after, CHECKS_PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(all);
            };
            after = last.spec.check_id;
            all.extend(page);
        }
    }

    /// Checks with id > `after`, in id order, at most `limit`: large check sets are read a
    /// page at a time, so loading a million checks never holds a million rows at once.
    /// One check's settings; None when there is no such check.
    pub async fn check(&self, id: u64) -> Result<Option<StoredCheck>> {
        let page = self.checks_page(id.saturating_sub(1), 1).await?;
        Ok(page.into_iter().find(|c| c.spec.check_id == id))
    }

    pub async fn checks_page(&self, after: u64, limit: u32) -> Result<Vec<StoredCheck>> {
        let windows = self.windows().await?;
        // A join, not `IN (SELECT …)`: per page, one primary-key lookup per check (the
        // subquery would read every site for every page of a million checks).
        let sql = format!(
            "SELECT {}, t.active FROM checks c JOIN sites s ON s.id = c.site_id \
             JOIN tenants t ON t.id = s.tenant_id WHERE c.id > $1 AND s.active = 1 \
             ORDER BY c.id LIMIT $2",
            api::CHECK_COLUMNS_C
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i(after))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .context("loading checks")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut row = api::check_of(&r)?;
            if let Err(e) = self.open_check(&mut row) {
                // Probing without them is visible (the check fails as the site answers);
                // leaving the check out would be a silent gap in monitoring.
                eprintln!(
                    "jetmon: check {}: its request headers do not open ({e:#}); probing without them",
                    row.spec.check_id
                );
            }
            let api::CheckRow {
                mut spec, critical, ..
            } = row;
            // A deactivated tenant's checks pause (Paused, not downtime) without touching
            // the owner's own pause, which returns with the tenant.
            spec.paused |= r.try_get::<i64, _>(api::AFTER_CHECK_COLUMNS)? == 0;
            let (id, site_id) = (spec.check_id, spec.site_id);
            let maintenance = windows
                .iter()
                .filter(|(site, check, _)| *site == site_id && check.is_none_or(|c| c == id))
                .map(|(_, _, w)| *w)
                .collect();
            let engine = CheckConfig {
                check_id: id,
                site_id,
                interval_ms: spec.interval_ms,
                retries: spec.retries,
                retry_spacing_ms: spec.retry_spacing_ms,
                critical,
                paused: spec.paused,
                maintenance,
                thresholds: Thresholds {
                    ttfb_warn_ms: spec.ttfb_warn_ms,
                    ttfb_degrade_ms: spec.ttfb_degrade_ms,
                    total_warn_ms: spec.total_warn_ms,
                    total_degrade_ms: spec.total_degrade_ms,
                },
            };
            out.push(StoredCheck { spec, engine });
        }
        Ok(out)
    }

    async fn windows(&self) -> Result<Vec<(u64, Option<u64>, Window)>> {
        let rows = sqlx::query(
            "SELECT site_id, check_id, from_at, to_at, weekly_start_s, weekly_duration_s \
             FROM maintenance_windows",
        )
        .fetch_all(&self.pool)
        .await
        .context("loading maintenance windows")?;
        let mut out = Vec::new();
        for r in rows {
            let site = u(r.try_get::<i64, _>(0)?);
            let check = r.try_get::<Option<i64>, _>(1)?.map(u);
            let Some(window) =
                api::window_of(r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?)
            else {
                continue;
            };
            out.push((site, check, window));
        }
        Ok(out)
    }

    /// Adds a maintenance window for a site (or one of its checks).
    pub async fn add_window(&self, site_id: u64, check_id: Option<u64>, w: Window) -> Result<()> {
        let (from, to, start, duration) = api::window_columns(&w);
        sqlx::query(
            "INSERT INTO maintenance_windows (site_id, check_id, from_at, to_at, weekly_start_s, \
             weekly_duration_s, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(i(site_id))
        .bind(check_id.map(i))
        .bind(from)
        .bind(to)
        .bind(start)
        .bind(duration)
        .bind(i(now_us()))
        .execute(&self.pool)
        .await
        .context("adding a maintenance window")?;
        Ok(())
    }

    /// Open events, to restore the engine after a restart.
    pub async fn open_events(&self) -> Result<Vec<(u64, EventKind, OpenEvent)>> {
        let rows = self.events_where("ended_at IS NULL").await?;
        Ok(rows
            .into_iter()
            .filter_map(|e| {
                let kind = *EventKind::ALL.get(usize::from(e.kind))?;
                let threshold_days = match e.state {
                    State::Down => 0,
                    State::Degraded => 7,
                    _ => 30,
                };
                Some((
                    e.check_id,
                    kind,
                    OpenEvent {
                        id: e.id,
                        state: e.state,
                        severity: e.severity,
                        started_at_us: e.started_us,
                        failures: 1,
                        verifying: false,
                        threshold_days,
                    },
                ))
            })
            .collect())
    }

    /// Every event (for tests and small listings).
    pub async fn events(&self) -> Result<Vec<EventRow>> {
        self.events_where("1 = 1").await
    }

    async fn events_where(&self, filter: &str) -> Result<Vec<EventRow>> {
        let sql = format!(
            "SELECT id, site_id, check_id, kind, state, severity, started_at, ended_at, \
             resolution_reason FROM events WHERE {filter} ORDER BY id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .context("loading events")?;
        rows.iter().map(event_of).collect()
    }

    /// A site's transitions in order: (event, check, before, after, reason).
    pub async fn transitions_of_site(
        &self,
        site_id: u64,
    ) -> Result<Vec<(u64, u64, Option<State>, Option<State>, Reason)>> {
        let rows = sqlx::query(
            "SELECT t.event_id, e.check_id, t.state_before, t.state_after, t.reason FROM transitions t \
             JOIN events e ON e.id = t.event_id WHERE t.site_id = $1 ORDER BY t.id",
        )
        .bind(i(site_id))
        .fetch_all(&self.pool)
        .await
        .context("loading transitions")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push((
                u(r.try_get::<i64, _>(0)?),
                u(r.try_get::<i64, _>(1)?),
                r.try_get::<Option<i64>, _>(2)?.map(state_of),
                r.try_get::<Option<i64>, _>(3)?.map(state_of),
                u8::try_from(r.try_get::<i64, _>(4)?)
                    .ok()
                    .and_then(Reason::from_code)
                    .unwrap_or(Reason::ManualOverride),
            ));
        }
        Ok(out)
    }

    /// Transitions stored (count), for tests and metrics.
    pub async fn transition_count(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) FROM transitions")
            .fetch_one(&self.pool)
            .await?;
        Ok(u(row.try_get::<i64, _>(0)?))
    }

    /// The largest event id in use (the engine allocates above it).
    pub async fn max_event_id(&self) -> Result<u64> {
        let row = sqlx::query("SELECT MAX(id) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.map_or(0, u))
    }

    /// Durable ring positions by shard.
    pub async fn positions(&self) -> Result<HashMap<u16, u64>> {
        let rows = sqlx::query("SELECT shard, position FROM ingest_positions")
            .fetch_all(&self.pool)
            .await?;
        let mut out = HashMap::new();
        for r in rows {
            let shard = u16::try_from(r.try_get::<i64, _>(0)?).unwrap_or(u16::MAX);
            out.insert(shard, u(r.try_get::<i64, _>(1)?));
        }
        Ok(out)
    }

    /// Raises sites' `last_checked_at` (Unix µs) to the given times, in one statement
    /// (never lowers it). The values are our own integers, written as literals: a statement
    /// this size would spend most of its time binding parameters otherwise.
    pub async fn set_last_checked(&self, sites: &[(u64, u64)]) -> Result<()> {
        if sites.is_empty() {
            return Ok(());
        }
        let mut values = String::with_capacity(sites.len() * 28);
        for (k, (site, at)) in sites.iter().enumerate() {
            if k > 0 {
                values.push(',');
            }
            values.push_str(&format!("({},{})", i(*site), i(*at)));
        }
        let sql = format!(
            "UPDATE sites SET last_checked_at = v.column2 FROM (VALUES {values}) AS v \
             WHERE sites.id = v.column1 AND \
             (sites.last_checked_at IS NULL OR sites.last_checked_at < v.column2)"
        );
        // Built from integers only. Not kept as a prepared statement: every one is different,
        // and sqlx's per-connection cache of them held ~120 MB at a million sites.
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .execute(&self.pool)
            .await
            .context("updating last_checked_at")?;
        Ok(())
    }
}

/// Inserts one check row inside a transaction; returns its id.
/// Makes a transaction a writer before it reads. On SQLite (WAL) a transaction that reads
/// first holds a snapshot that cannot become a writer once another connection has committed:
/// its first write fails at once with SQLITE_BUSY (the busy timeout does not apply). Writing
/// first takes the write lock, waiting the busy timeout like any writer. A no-op on PostgreSQL.
pub(crate) async fn write_first(tx: &mut Transaction<'static, Any>) -> Result<()> {
    sqlx::query("UPDATE ingest_positions SET position = position WHERE shard = -1")
        .execute(&mut **tx)
        .await
        .context("taking the write lock")?;
    Ok(())
}

fn event_of(r: &sqlx::any::AnyRow) -> Result<EventRow> {
    Ok(EventRow {
        id: u(r.try_get::<i64, _>(0)?),
        site_id: u(r.try_get::<i64, _>(1)?),
        check_id: u(r.try_get::<i64, _>(2)?),
        kind: u8::try_from(r.try_get::<i64, _>(3)?).unwrap_or(u8::MAX),
        state: state_of(r.try_get::<i64, _>(4)?),
        severity: Severity(u8::try_from(r.try_get::<i64, _>(5)?).unwrap_or(0)),
        started_us: u(r.try_get::<i64, _>(6)?),
        ended_us: r.try_get::<Option<i64>, _>(7)?.map(u),
        resolution: r
            .try_get::<Option<i64>, _>(8)?
            .and_then(|c| u8::try_from(c).ok())
            .and_then(Reason::from_code),
    })
}

async fn insert_check(
    tx: &mut Transaction<'static, Any>,
    site_id: u64,
    spec: &CheckSpec,
    critical: bool,
    now_us: u64,
    sealed: Option<String>,
) -> Result<u64> {
    let row = sqlx::query(
        "INSERT INTO checks (site_id, check_type, target, interval_ms, timeout_ms, retries, \
         retry_spacing_ms, critical, paused, settings, created_at, updated_at, sealed) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(i(site_id))
    .bind(i64::from(spec.check_type as u8))
    .bind(spec.target.clone())
    .bind(i64::from(spec.interval_ms))
    .bind(i64::from(spec.timeout_ms))
    .bind(i64::from(spec.retries))
    .bind(i64::from(spec.retry_spacing_ms))
    .bind(i64::from(critical))
    .bind(i64::from(spec.paused))
    .bind(settings_json(spec))
    .bind(i(now_us))
    .bind(i(now_us))
    .bind(sealed)
    .fetch_one(&mut **tx)
    .await
    .context("adding a check")?;
    Ok(u(row.try_get::<i64, _>(0)?))
}

/// The CheckSpec fields without a column of their own, as JSON.
fn settings_json(spec: &CheckSpec) -> String {
    let mut m = serde_json::Map::new();
    if !spec.keywords.is_empty() {
        m.insert("keywords".into(), spec.keywords.clone().into());
    }
    if !spec.forbidden_keywords.is_empty() {
        m.insert(
            "forbidden_keywords".into(),
            spec.forbidden_keywords.clone().into(),
        );
    }
    if spec.method != jetmon_shared::check::HttpMethod::Get {
        m.insert("method".into(), spec.method.name().into());
    }
    if spec.redirect_policy != jetmon_shared::check::RedirectPolicy::Follow {
        m.insert("redirect_policy".into(), spec.redirect_policy.name().into());
    }
    if let Some(b) = &spec.tcp_banner {
        m.insert("tcp_banner".into(), b.clone().into());
    }
    // The record type stands on its own: an AAAA check with no expected values is still an
    // AAAA check after a reload.
    if spec.dns_record_type != jetmon_shared::check::DnsRecordType::A {
        m.insert("dns_record_type".into(), spec.dns_record_type.name().into());
    }
    if !spec.dns_expected.is_empty() {
        m.insert("dns_expected".into(), spec.dns_expected.clone().into());
    }
    if !spec.accepted_statuses.is_empty() {
        let ranges: Vec<serde_json::Value> = spec
            .accepted_statuses
            .iter()
            .map(|(lo, hi)| serde_json::json!([lo, hi]))
            .collect();
        m.insert("accepted_statuses".into(), ranges.into());
    }
    if spec.ip_preference != jetmon_shared::check::IpPreference::V4First {
        m.insert("ip_preference".into(), spec.ip_preference.name().into());
    }
    if spec.keyword_case_sensitive {
        m.insert("keyword_case_sensitive".into(), true.into());
    }
    if spec.max_redirects != jetmon_shared::check::MAX_REDIRECTS {
        m.insert("max_redirects".into(), spec.max_redirects.into());
    }
    for (k, v) in [
        ("body_budget_bytes", spec.body_budget_bytes),
        ("min_body_bytes", spec.min_body_bytes),
        ("ttfb_warn_ms", spec.ttfb_warn_ms),
        ("ttfb_degrade_ms", spec.ttfb_degrade_ms),
        ("total_warn_ms", spec.total_warn_ms),
        ("total_degrade_ms", spec.total_degrade_ms),
    ] {
        if v != 0 {
            m.insert(k.into(), v.into());
        }
    }
    serde_json::Value::Object(m).to_string()
}

fn apply_settings(spec: &mut CheckSpec, json: &str) {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(json) else {
        return;
    };
    let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    spec.keywords = strings(m.get("keywords"));
    spec.forbidden_keywords = strings(m.get("forbidden_keywords"));
    spec.dns_expected = strings(m.get("dns_expected"));
    let name = |k: &str| m.get(k).and_then(|v| v.as_str());
    if let Some(x) = name("method").and_then(jetmon_shared::check::HttpMethod::from_name) {
        spec.method = x;
    }
    if let Some(x) =
        name("redirect_policy").and_then(jetmon_shared::check::RedirectPolicy::from_name)
    {
        spec.redirect_policy = x;
    }
    if let Some(x) =
        name("dns_record_type").and_then(jetmon_shared::check::DnsRecordType::from_name)
    {
        spec.dns_record_type = x;
    }
    spec.tcp_banner = name("tcp_banner").map(str::to_owned);
    if let Some(x) = name("ip_preference").and_then(jetmon_shared::check::IpPreference::from_name) {
        spec.ip_preference = x;
    }
    spec.accepted_statuses = m
        .get("accepted_statuses")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    let lo = u16::try_from(r.get(0)?.as_u64()?).ok()?;
                    let hi = u16::try_from(r.get(1)?.as_u64()?).ok()?;
                    Some((lo, hi))
                })
                .collect()
        })
        .unwrap_or_default();
    spec.keyword_case_sensitive = m
        .get("keyword_case_sensitive")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if let Some(n) = m
        .get("max_redirects")
        .and_then(|v| v.as_u64())
        .and_then(|n| u8::try_from(n).ok())
    {
        spec.max_redirects = n;
    }
    let num = |k: &str| {
        m.get(k)
            .and_then(|v| v.as_u64())
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    spec.body_budget_bytes = num("body_budget_bytes");
    spec.min_body_bytes = num("min_body_bytes");
    spec.ttfb_warn_ms = num("ttfb_warn_ms");
    spec.ttfb_degrade_ms = num("ttfb_degrade_ms");
    spec.total_warn_ms = num("total_warn_ms");
    spec.total_degrade_ms = num("total_degrade_ms");
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod settings_tests {
    use super::*;
    use jetmon_shared::check::{
        CheckType, DnsRecordType, HttpMethod, IpPreference, RedirectPolicy,
    };

    /// Every setting stored in `checks.settings` comes back as it went in, each on its own
    /// (a setting that is accepted and lost at the next reload does nothing).
    #[test]
    fn every_setting_survives_the_database_alone_and_together() {
        let base = CheckSpec::new(1, 1, CheckType::Http, "https://example.com/");
        type Change = Box<dyn Fn(&mut CheckSpec)>;
        let changes: Vec<(&str, Change)> = vec![
            ("keywords", Box::new(|s| s.keywords = vec!["a".into()])),
            (
                "forbidden_keywords",
                Box::new(|s| s.forbidden_keywords = vec!["b".into()]),
            ),
            ("method", Box::new(|s| s.method = HttpMethod::Head)),
            (
                "redirect_policy",
                Box::new(|s| s.redirect_policy = RedirectPolicy::Alert),
            ),
            (
                "tcp_banner",
                Box::new(|s| s.tcp_banner = Some("SSH-".into())),
            ),
            (
                "dns_record_type",
                Box::new(|s| s.dns_record_type = DnsRecordType::Aaaa),
            ),
            (
                "dns_expected",
                Box::new(|s| s.dns_expected = vec!["192.0.2.1".into()]),
            ),
            (
                "accepted_statuses",
                Box::new(|s| s.accepted_statuses = vec![(200, 204)]),
            ),
            (
                "ip_preference",
                Box::new(|s| s.ip_preference = IpPreference::V6Only),
            ),
            (
                "keyword_case_sensitive",
                Box::new(|s| s.keyword_case_sensitive = true),
            ),
            ("max_redirects", Box::new(|s| s.max_redirects = 3)),
            (
                "body_budget_bytes",
                Box::new(|s| s.body_budget_bytes = 65_536),
            ),
            ("min_body_bytes", Box::new(|s| s.min_body_bytes = 100)),
            ("ttfb_warn_ms", Box::new(|s| s.ttfb_warn_ms = 1)),
            ("ttfb_degrade_ms", Box::new(|s| s.ttfb_degrade_ms = 2)),
            ("total_warn_ms", Box::new(|s| s.total_warn_ms = 3)),
            ("total_degrade_ms", Box::new(|s| s.total_degrade_ms = 4)),
        ];
        let mut all = base.clone();
        for (name, change) in &changes {
            let mut one = base.clone();
            change(&mut one);
            change(&mut all);
            let mut back = base.clone();
            apply_settings(&mut back, &settings_json(&one));
            assert_eq!(back, one, "{name} did not survive the database");
        }
        let mut back = base.clone();
        apply_settings(&mut back, &settings_json(&all));
        assert_eq!(back, all);
    }
}
