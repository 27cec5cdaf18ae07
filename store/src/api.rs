//! What the REST API reads and writes of the tenants' objects (docs/api.md, docs/tenants.md):
//! sites with their owner-facing fields, endpoints, checks, maintenance windows, events and
//! transitions with filters, the SLA's inputs — all on `Scoped`. The guard's own rows
//! (idempotency, rate limits, audit) are in `requests.rs`.
//!
//! Writes that change what is monitored bump `checks.updated_at` of the checks concerned, so
//! the supervisor's check-set fingerprint sees them (the API also nudges it).

use anyhow::{Context, Result};
use jetmon_shared::check::{CheckSpec, CheckType};
use jetmon_shared::state::{Reason, Severity, State};
use sqlx::{Any, Row, Transaction};

use super::{EventRow, SiteRow, Store, i, insert_check, now_us, settings_json, state_of, u};
use crate::tenants::Tenancy;
use jetmon_engine::Window;

/// A value bound to a dynamic statement.
#[derive(Debug, Clone)]
enum Bind {
    I(i64),
    S(String),
}

/// Clauses joined with AND, their values bound in order (`$N` numbered as they are added).
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    binds: Vec<Bind>,
}

impl Where {
    fn next(&self) -> usize {
        self.binds.len() + 1
    }

    fn int(&mut self, sql: &str, v: i64) {
        let n = self.next();
        self.clauses.push(sql.replace('?', &format!("${n}")));
        self.binds.push(Bind::I(v));
    }

    fn text(&mut self, sql: &str, v: String) {
        let n = self.next();
        self.clauses.push(sql.replace('?', &format!("${n}")));
        self.binds.push(Bind::S(v));
    }

    /// `column IN (…)` over integers; nothing when `vs` is empty.
    fn ints_in(&mut self, column: &str, vs: &[i64]) {
        if vs.is_empty() {
            return;
        }
        let from = self.next();
        let list = (from..from + vs.len())
            .map(|k| format!("${k}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.clauses.push(format!("{column} IN ({list})"));
        self.binds.extend(vs.iter().map(|v| Bind::I(*v)));
    }

    /// Rows of site `site_id` (by their `site_id` column), if `t` may see that site.
    fn of_site(site_id: u64, t: Tenancy) -> Where {
        let mut w = Where::default();
        w.int("site_id = ?", i(site_id));
        w.via_site("site_id", t);
        w
    }

    /// Only the sites `t` may see (on `sites` itself).
    fn own_sites(&mut self, t: Tenancy) {
        if let Some(t) = t.tenant() {
            self.int("tenant_id = ?", i(t));
        }
    }

    /// Only rows whose site (`site_column`) `t` may see: endpoints, checks, windows, events
    /// and transitions reach their tenant through their site.
    fn via_site(&mut self, site_column: &str, t: Tenancy) {
        if let Some(t) = t.tenant() {
            self.int(
                &format!("{site_column} IN (SELECT id FROM sites WHERE tenant_id = ?)"),
                i(t),
            );
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "1 = 1".to_owned()
        } else {
            self.clauses.join(" AND ")
        }
    }

    fn query<'q>(
        &self,
        sql: String,
    ) -> sqlx::query::Query<'q, Any, <Any as sqlx::Database>::Arguments> {
        // Every dynamic statement here is built from constants and placeholders only.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &self.binds {
            q = match b {
                Bind::I(v) => q.bind(*v),
                Bind::S(v) => q.bind(v.clone()),
            };
        }
        q
    }
}

/// Filters for `GET /sites`, applied before the page is cut.
#[derive(Debug, Clone, Default)]
pub struct SiteFilter {
    pub state_in: Vec<State>,
    pub severity_gte: Option<u8>,
    pub active: Option<bool>,
    /// Substring of the site's URL (or name).
    pub q: Option<String>,
    pub tag: Option<String>,
    pub id_in: Vec<u64>,
    /// Jetmon v1 ids.
    pub blog_id_in: Vec<u64>,
    /// One tenant's sites (operators narrowing a list).
    pub tenant_id: Option<u64>,
}

/// What an update changes (None: left as it is).
#[derive(Debug, Clone, Copy, Default)]
pub struct SiteChange<'a> {
    pub name: Option<&'a str>,
    pub tags: Option<&'a [String]>,
    pub active: Option<bool>,
    pub blog_id: Option<u64>,
}

/// A new site: its main URL becomes its first endpoint, watched by `checks` (at least an
/// HTTP check of that URL).
#[derive(Debug, Clone)]
pub struct NewSite {
    pub name: String,
    pub url: String,
    pub tags: Vec<String>,
    pub checks: Vec<CheckSpec>,
    /// The Jetmon v1 id (unique among the tenant's sites).
    pub blog_id: Option<u64>,
    /// The owner, when an operator creates it (a tenant's scope overrides it).
    pub tenant_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    pub id: u64,
    pub site_id: u64,
    pub url: String,
    pub critical: bool,
}

/// A check as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRow {
    /// Its request headers are filled only once the row is opened (`Store::open_check`).
    pub spec: CheckSpec,
    pub name: String,
    pub endpoint_id: Option<u64>,
    pub critical: bool,
    pub created_us: u64,
    pub updated_us: u64,
    /// The sealed request headers, as stored.
    pub sealed: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRow {
    pub id: u64,
    pub site_id: u64,
    pub check_id: Option<u64>,
    pub window: Window,
}

/// Filters for the event listings.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub id_in: Vec<u64>,
    pub site_in: Vec<u64>,
    /// One tenant's events (operators narrowing a list).
    pub tenant_id: Option<u64>,
    pub state_in: Vec<State>,
    pub check_type: Option<CheckType>,
    pub kind: Option<u8>,
    pub active: Option<bool>,
    pub started_gte_us: Option<u64>,
    pub started_lt_us: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRow {
    pub id: u64,
    pub event_id: u64,
    pub before: Option<(State, Severity)>,
    pub after: Option<(State, Severity)>,
    pub reason: Reason,
    pub source: String,
    pub metadata: String,
    pub at_us: u64,
}

/// `s` matched literally inside a LIKE pattern (with `ESCAPE '\'`).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn join_tags(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!(",{},", tags.join(","))
    }
}

pub fn split_tags(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

const SITE_COLUMNS: &str = "id, name, current_state, current_severity, site_status, \
     active_event_count, last_status_change_at, ssl_expiry_at, last_checked_at, url, tags, \
     active, created_at, blog_id, tenant_id";

fn site_of(r: &sqlx::any::AnyRow) -> Result<SiteRow> {
    Ok(SiteRow {
        id: u(r.try_get::<i64, _>(0)?),
        name: r.try_get(1)?,
        state: state_of(r.try_get::<i64, _>(2)?),
        severity: Severity(u8::try_from(r.try_get::<i64, _>(3)?).unwrap_or(0)),
        site_status: u8::try_from(r.try_get::<i64, _>(4)?).unwrap_or(1),
        active_event_count: u32::try_from(r.try_get::<i64, _>(5)?).unwrap_or(0),
        last_status_change_us: r.try_get::<Option<i64>, _>(6)?.map(u),
        ssl_expiry_s: r.try_get::<Option<i64>, _>(7)?,
        last_checked_us: r.try_get::<Option<i64>, _>(8)?.map(u),
        url: r.try_get(9)?,
        tags: split_tags(&r.try_get::<String, _>(10)?),
        active: r.try_get::<i64, _>(11)? != 0,
        created_us: u(r.try_get::<i64, _>(12)?),
        blog_id: r.try_get::<Option<i64>, _>(13)?.map(u),
        tenant_id: u(r.try_get::<i64, _>(14)?),
    })
}

const CHECK_COLUMNS: &str = "id, site_id, check_type, target, interval_ms, timeout_ms, retries, \
     retry_spacing_ms, critical, paused, settings, generation, name, endpoint_id, created_at, \
     updated_at, sealed";

/// The same columns, of `checks c` in a join.
pub(super) const CHECK_COLUMNS_C: &str = "c.id, c.site_id, c.check_type, c.target, \
     c.interval_ms, c.timeout_ms, c.retries, c.retry_spacing_ms, c.critical, c.paused, \
     c.settings, c.generation, c.name, c.endpoint_id, c.created_at, c.updated_at, c.sealed";

/// The columns after [`CHECK_COLUMNS_C`] in a query start here.
pub(super) const AFTER_CHECK_COLUMNS: usize = 17;

pub(super) fn check_of(r: &sqlx::any::AnyRow) -> Result<CheckRow> {
    let id = u(r.try_get::<i64, _>(0)?);
    let site_id = u(r.try_get::<i64, _>(1)?);
    let check_type = u8::try_from(r.try_get::<i64, _>(2)?)
        .ok()
        .and_then(CheckType::from_code)
        .unwrap_or_default();
    let target: String = r.try_get(3)?;
    let mut spec = CheckSpec::new(id, site_id, check_type, &target);
    spec.interval_ms = u32::try_from(r.try_get::<i64, _>(4)?).unwrap_or(spec.interval_ms);
    spec.timeout_ms = u32::try_from(r.try_get::<i64, _>(5)?).unwrap_or(spec.timeout_ms);
    spec.retries = u8::try_from(r.try_get::<i64, _>(6)?).unwrap_or(spec.retries);
    spec.retry_spacing_ms = u32::try_from(r.try_get::<i64, _>(7)?).unwrap_or(spec.retry_spacing_ms);
    let critical = r.try_get::<i64, _>(8)? != 0;
    spec.paused = r.try_get::<i64, _>(9)? != 0;
    super::apply_settings(&mut spec, &r.try_get::<String, _>(10)?);
    spec.generation = u32::try_from(r.try_get::<i64, _>(11)?).unwrap_or(1);
    Ok(CheckRow {
        spec,
        name: r.try_get(12)?,
        endpoint_id: r.try_get::<Option<i64>, _>(13)?.map(u),
        critical,
        created_us: u(r.try_get::<i64, _>(14)?),
        updated_us: u(r.try_get::<i64, _>(15)?),
        sealed: r.try_get::<Option<String>, _>(16)?,
    })
}

pub(super) fn window_of(
    from: Option<i64>,
    to: Option<i64>,
    start: Option<i64>,
    duration: Option<i64>,
) -> Option<Window> {
    match (from, to, start, duration) {
        (Some(from), Some(to), _, _) => Some(Window::OneOff {
            from_us: u(from),
            to_us: u(to),
        }),
        (_, _, Some(start), Some(duration)) => Some(Window::Weekly {
            start_s: u32::try_from(start).unwrap_or(0),
            duration_s: u32::try_from(duration).unwrap_or(0),
        }),
        _ => None,
    }
}

pub(super) fn window_columns(w: &Window) -> (Option<i64>, Option<i64>, Option<i64>, Option<i64>) {
    match *w {
        Window::OneOff { from_us, to_us } => (Some(i(from_us)), Some(i(to_us)), None, None),
        Window::Weekly {
            start_s,
            duration_s,
        } => (
            None,
            None,
            Some(i64::from(start_s)),
            Some(i64::from(duration_s)),
        ),
    }
}

fn transition_of(r: &sqlx::any::AnyRow) -> Result<TransitionRow> {
    let pair = |s: usize| -> Result<Option<(State, Severity)>> {
        let st = r.try_get::<Option<i64>, _>(s)?;
        let sev = r.try_get::<Option<i64>, _>(s + 1)?;
        Ok(st.map(|st| {
            (
                state_of(st),
                Severity(sev.and_then(|v| u8::try_from(v).ok()).unwrap_or(0)),
            )
        }))
    };
    Ok(TransitionRow {
        id: u(r.try_get::<i64, _>(0)?),
        event_id: u(r.try_get::<i64, _>(1)?),
        before: pair(2)?,
        after: pair(4)?,
        reason: u8::try_from(r.try_get::<i64, _>(6)?)
            .ok()
            .and_then(Reason::from_code)
            .unwrap_or(Reason::ManualOverride),
        source: r.try_get(7)?,
        metadata: r.try_get(8)?,
        at_us: u(r.try_get::<i64, _>(9)?),
    })
}

/// Marks a site's checks changed (the supervisor's fingerprint moves).
/// One site's change inside `tx`; false when `tenancy` sees no site `id`.
async fn update_site_in(
    tx: &mut Transaction<'static, Any>,
    tenancy: Tenancy,
    id: u64,
    change: &SiteChange<'_>,
) -> Result<bool> {
    let SiteChange {
        name,
        tags,
        active,
        blog_id,
    } = *change;
    let mut w = Where::default();
    let mut sets = Vec::new();
    if let Some(b) = blog_id {
        sets.push(format!("blog_id = ${}", w.next()));
        w.binds.push(Bind::I(i(b)));
    }
    if let Some(n) = name {
        sets.push(format!("name = ${}", w.next()));
        w.binds.push(Bind::S(n.to_owned()));
    }
    if let Some(t) = tags {
        sets.push(format!("tags = ${}", w.next()));
        w.binds.push(Bind::S(join_tags(t)));
    }
    if let Some(a) = active {
        sets.push(format!("active = ${}", w.next()));
        w.binds.push(Bind::I(i64::from(a)));
    }
    if sets.is_empty() {
        sets.push("id = id".to_owned());
    }
    w.int("id = ?", i(id));
    w.own_sites(tenancy);
    let sql = format!("UPDATE sites SET {} WHERE {}", sets.join(", "), w.sql());
    let done = w
        .query(sql)
        .execute(&mut **tx)
        .await
        .context("updating a site")?
        .rows_affected();
    if done == 0 {
        return Ok(false);
    }
    if active.is_some() {
        touch_site(tx, id).await?;
    }
    Ok(true)
}

async fn touch_site(tx: &mut Transaction<'static, Any>, site_id: u64) -> Result<()> {
    sqlx::query(
        "UPDATE checks SET updated_at = $1, generation = generation + 1 WHERE site_id = $2",
    )
    .bind(i(now_us()))
    .bind(i(site_id))
    .execute(&mut **tx)
    .await
    .context("marking a site's checks changed")?;
    Ok(())
}

/// Deletes the statistics and raw failures of the checks `filter` selects.
async fn delete_check_data(
    tx: &mut Transaction<'static, Any>,
    filter: &str,
    id: u64,
) -> Result<()> {
    for table in ["check_hourly", "check_daily", "recent_failures"] {
        let sql =
            format!("DELETE FROM {table} WHERE check_id IN (SELECT id FROM checks WHERE {filter})");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i(id))
            .execute(&mut **tx)
            .await
            .with_context(|| format!("deleting from {table}"))?;
    }
    Ok(())
}

/// The API's view of the store (docs/tenants.md): every query a route makes, cut to what
/// `tenancy` may see. A route gets one from its caller, never builds one itself, so no route
/// can list, read or change another tenant's objects: they are simply not found.
#[derive(Clone, Copy)]
pub struct Scoped<'a> {
    pub(crate) store: &'a Store,
    tenancy: Tenancy,
}

impl Store {
    /// This store as `tenancy` may see it.
    pub fn scoped(&self, tenancy: Tenancy) -> Scoped<'_> {
        Scoped {
            store: self,
            tenancy,
        }
    }

    /// Every site with its projection, by id (operators, tests, benchmarks).
    pub async fn sites(&self) -> Result<Vec<SiteRow>> {
        self.scoped(Tenancy::All)
            .sites_page(0, u32::MAX, &SiteFilter::default())
            .await
    }

    /// Creates a site for `s.tenant_id` (operators and the CLI).
    pub async fn create_site(&self, s: &NewSite) -> Result<u64> {
        self.scoped(Tenancy::All).create_site(s).await
    }

    /// Creates sites in one transaction (operators and the CLI).
    pub async fn create_sites(&self, sites: &[NewSite]) -> Result<Vec<u64>> {
        self.scoped(Tenancy::All).create_sites(sites).await
    }

    /// Sets every site's creation time (benchmarks seeding a history).
    pub async fn backdate_sites(&self, created_us: u64) -> Result<()> {
        sqlx::query("UPDATE sites SET created_at = $1")
            .bind(i(created_us))
            .execute(&self.pool)
            .await
            .context("backdating sites")?;
        Ok(())
    }
}

impl Scoped<'_> {
    pub fn tenancy(&self) -> Tenancy {
        self.tenancy
    }

    pub(crate) fn pool(&self) -> &sqlx::Pool<Any> {
        &self.store.pool
    }

    /// The tenant a new object of this scope belongs to: the scope's own, else `asked`.
    pub fn owner(&self, asked: u64) -> u64 {
        self.tenancy.tenant().unwrap_or(asked)
    }

    /// Whether this scope sees site `id` (a site that does not exist is not seen).
    pub async fn sees_site(&self, id: u64) -> Result<bool> {
        let mut w = Where::default();
        w.int("id = ?", i(id));
        w.own_sites(self.tenancy);
        let sql = format!("SELECT 1 FROM sites WHERE {}", w.sql());
        Ok(w.query(sql)
            .fetch_optional(&self.store.pool)
            .await
            .context("finding a site")?
            .is_some())
    }

    /// Up to `limit` sites with ids above `after`, by id, that pass `f` (applied before the
    /// limit: pages are never short).
    pub async fn sites_page(&self, after: u64, limit: u32, f: &SiteFilter) -> Result<Vec<SiteRow>> {
        let mut w = Where::default();
        w.int("id > ?", i(after));
        w.own_sites(self.tenancy);
        if let Some(t) = f.tenant_id {
            w.int("tenant_id = ?", i(t));
        }
        let states: Vec<i64> = f.state_in.iter().map(|s| i64::from(s.code())).collect();
        w.ints_in("current_state", &states);
        let ids: Vec<i64> = f.id_in.iter().map(|v| i(*v)).collect();
        w.ints_in("id", &ids);
        let blog_ids: Vec<i64> = f.blog_id_in.iter().map(|v| i(*v)).collect();
        w.ints_in("blog_id", &blog_ids);
        if let Some(s) = f.severity_gte {
            w.int("current_severity >= ?", i64::from(s));
        }
        if let Some(a) = f.active {
            w.int("active = ?", i64::from(a));
        }
        if let Some(q) = &f.q {
            let pattern = format!("%{}%", like_escape(q));
            let n = w.next();
            w.clauses.push(format!(
                "(url LIKE ${n} ESCAPE '\\' OR name LIKE ${} ESCAPE '\\')",
                n + 1
            ));
            w.binds.push(Bind::S(pattern.clone()));
            w.binds.push(Bind::S(pattern));
        }
        if let Some(t) = &f.tag {
            w.text("tags LIKE ? ESCAPE '\\'", format!("%,{},%", like_escape(t)));
        }
        let n = w.next();
        w.binds.push(Bind::I(i64::from(limit)));
        let sql = format!(
            "SELECT {SITE_COLUMNS} FROM sites WHERE {} ORDER BY id LIMIT ${n}",
            w.sql()
        );
        let rows = w
            .query(sql)
            .fetch_all(&self.store.pool)
            .await
            .context("loading sites")?;
        rows.iter().map(site_of).collect()
    }

    /// One site; None when there is no such site (or it is another tenant's).
    pub async fn site(&self, id: u64) -> Result<Option<SiteRow>> {
        let f = SiteFilter {
            id_in: vec![id],
            ..SiteFilter::default()
        };
        let page = self.sites_page(id.saturating_sub(1), 1, &f).await?;
        Ok(page.into_iter().find(|s| s.id == id))
    }

    /// Creates a site, its main endpoint and its checks in one transaction; returns its id.
    pub async fn create_site(&self, s: &NewSite) -> Result<u64> {
        Ok(self.create_sites(std::slice::from_ref(s)).await?[0])
    }

    /// Creates several sites in one transaction (bulk): all or nothing. A tenant's scope
    /// puts them in that tenant whatever `tenant_id` says.
    pub async fn create_sites(&self, sites: &[NewSite]) -> Result<Vec<u64>> {
        let mut tx = self
            .store
            .pool
            .begin()
            .await
            .context("starting a transaction")?;
        let mut ids = Vec::with_capacity(sites.len());
        for s in sites {
            ids.push(create_site_in(&mut tx, self.store, s, self.owner(s.tenant_id)).await?);
        }
        tx.commit().await.context("committing sites")?;
        Ok(ids)
    }

    /// Which of `blog_ids` already belong to a site of tenant `tenant_id` other than `except`
    /// (v1 ids are unique per tenant).
    pub async fn blog_ids_taken(
        &self,
        tenant_id: u64,
        blog_ids: &[u64],
        except: Option<u64>,
    ) -> Result<Vec<u64>> {
        if blog_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = Where::default();
        w.int("tenant_id = ?", i(self.owner(tenant_id)));
        let ids: Vec<i64> = blog_ids.iter().map(|v| i(*v)).collect();
        w.ints_in("blog_id", &ids);
        if let Some(id) = except {
            w.int("id <> ?", i(id));
        }
        let sql = format!(
            "SELECT blog_id FROM sites WHERE {} ORDER BY blog_id",
            w.sql()
        );
        let rows = w
            .query(sql)
            .fetch_all(&self.store.pool)
            .await
            .context("looking up v1 ids")?;
        rows.iter()
            .map(|r| Ok(u(r.try_get::<i64, _>(0)?)))
            .collect()
    }

    /// Changes a site's owner-facing fields; false when there is no such site. Deactivating
    /// takes its checks out of the monitored set (their open events close).
    pub async fn update_site(&self, id: u64, change: &SiteChange<'_>) -> Result<bool> {
        let mut tx = self
            .store
            .pool
            .begin()
            .await
            .context("starting a transaction")?;
        let found = update_site_in(&mut tx, self.tenancy, id, change).await?;
        if found {
            tx.commit().await.context("committing a site")?;
        }
        Ok(found)
    }

    /// A bulk request's writes in one transaction, all or none: `updates` (false for a site
    /// that is no longer there, whose change is not made) and `creates` (their new ids).
    pub async fn bulk_sites(
        &self,
        updates: &[(u64, SiteChange<'_>)],
        creates: &[NewSite],
    ) -> Result<(Vec<bool>, Vec<u64>)> {
        let mut tx = self
            .store
            .pool
            .begin()
            .await
            .context("starting a transaction")?;
        let mut found = Vec::with_capacity(updates.len());
        for (id, change) in updates {
            found.push(update_site_in(&mut tx, self.tenancy, *id, change).await?);
        }
        let mut ids = Vec::with_capacity(creates.len());
        for s in creates {
            ids.push(create_site_in(&mut tx, self.store, s, self.owner(s.tenant_id)).await?);
        }
        tx.commit().await.context("committing a bulk change")?;
        Ok((found, ids))
    }

    pub async fn endpoints(&self, site_id: u64) -> Result<Vec<EndpointRow>> {
        let w = Where::of_site(site_id, self.tenancy);
        let sql = format!(
            "SELECT id, site_id, url, critical FROM endpoints WHERE {} ORDER BY id",
            w.sql()
        );
        let rows = w
            .query(sql)
            .fetch_all(&self.store.pool)
            .await
            .context("loading endpoints")?;
        rows.iter()
            .map(|r| {
                Ok(EndpointRow {
                    id: u(r.try_get::<i64, _>(0)?),
                    site_id: u(r.try_get::<i64, _>(1)?),
                    url: r.try_get(2)?,
                    critical: r.try_get::<i64, _>(3)? != 0,
                })
            })
            .collect()
    }

    /// Adds an endpoint to a site; None when the site is not this scope's.
    pub async fn add_endpoint(
        &self,
        site_id: u64,
        url: &str,
        critical: bool,
    ) -> Result<Option<u64>> {
        if !self.sees_site(site_id).await? {
            return Ok(None);
        }
        let row = sqlx::query(
            "INSERT INTO endpoints (site_id, url, critical) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(i(site_id))
        .bind(url.to_owned())
        .bind(i64::from(critical))
        .fetch_one(&self.store.pool)
        .await
        .context("adding an endpoint")?;
        Ok(Some(u(row.try_get::<i64, _>(0)?)))
    }

    /// Changes an endpoint; its checks' critical flag follows it. False when not found.
    pub async fn update_endpoint(
        &self,
        site_id: u64,
        id: u64,
        url: Option<&str>,
        critical: Option<bool>,
    ) -> Result<bool> {
        if !self.sees_site(site_id).await? {
            return Ok(false);
        }
        let mut tx = self
            .store
            .pool
            .begin()
            .await
            .context("starting a transaction")?;
        let done = sqlx::query(
            "UPDATE endpoints SET url = COALESCE($1, url), critical = COALESCE($2, critical) \
             WHERE id = $3 AND site_id = $4",
        )
        .bind(url.map(str::to_owned))
        .bind(critical.map(i64::from))
        .bind(i(id))
        .bind(i(site_id))
        .execute(&mut *tx)
        .await
        .context("updating an endpoint")?
        .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        if let Some(c) = critical {
            sqlx::query(
                "UPDATE checks SET critical = $1, updated_at = $2, generation = generation + 1 \
                 WHERE endpoint_id = $3",
            )
            .bind(i64::from(c))
            .bind(i(now_us()))
            .bind(i(id))
            .execute(&mut *tx)
            .await
            .context("updating an endpoint's checks")?;
        }
        tx.commit().await.context("committing an endpoint")?;
        Ok(true)
    }

    /// Deletes an endpoint with its checks and their statistics. False when not found.
    pub async fn delete_endpoint(&self, site_id: u64, id: u64) -> Result<bool> {
        if !self.sees_site(site_id).await? {
            return Ok(false);
        }
        let mut tx = self
            .store
            .pool
            .begin()
            .await
            .context("starting a transaction")?;
        // Schemathesis found this one failing with SQLITE_BUSY: see `write_first`.
        super::write_first(&mut tx).await?;
        let found = sqlx::query("SELECT 1 FROM endpoints WHERE id = $1 AND site_id = $2")
            .bind(i(id))
            .bind(i(site_id))
            .fetch_optional(&mut *tx)
            .await
            .context("finding an endpoint")?;
        if found.is_none() {
            return Ok(false);
        }
        delete_check_data(&mut tx, "endpoint_id = $1", id).await?;
        sqlx::query("DELETE FROM checks WHERE endpoint_id = $1")
            .bind(i(id))
            .execute(&mut *tx)
            .await
            .context("deleting an endpoint's checks")?;
        sqlx::query("DELETE FROM endpoints WHERE id = $1")
            .bind(i(id))
            .execute(&mut *tx)
            .await
            .context("deleting an endpoint")?;
        tx.commit().await.context("committing")?;
        Ok(true)
    }

    /// A site's checks, by id.
    pub async fn site_checks(&self, site_id: u64) -> Result<Vec<CheckRow>> {
        let w = Where::of_site(site_id, self.tenancy);
        let sql = format!(
            "SELECT {CHECK_COLUMNS} FROM checks WHERE {} ORDER BY id",
            w.sql()
        );
        let rows = w
            .query(sql)
            .fetch_all(&self.store.pool)
            .await
            .context("loading checks")?;
        let mut checks = rows.iter().map(check_of).collect::<Result<Vec<_>>>()?;
        for c in &mut checks {
            self.store.open_check(c)?;
        }
        Ok(checks)
    }

    /// Adds a check to a site (on `endpoint_id` when given); returns its id, or None when
    /// the site is not this scope's.
    pub async fn add_site_check(
        &self,
        site_id: u64,
        endpoint_id: Option<u64>,
        name: &str,
        spec: &CheckSpec,
        critical: bool,
    ) -> Result<Option<u64>> {
        if !self.sees_site(site_id).await? {
            return Ok(None);
        }
        let mut tx = self
            .store
            .pool
            .begin()
            .await
            .context("starting a transaction")?;
        let sealed = self.store.seal_headers(&spec.headers)?;
        let id = insert_check(&mut tx, site_id, spec, critical, now_us(), sealed).await?;
        sqlx::query("UPDATE checks SET name = $1, endpoint_id = $2 WHERE id = $3")
            .bind(name.to_owned())
            .bind(endpoint_id.map(i))
            .bind(i(id))
            .execute(&mut *tx)
            .await
            .context("naming a check")?;
        tx.commit().await.context("committing a check")?;
        Ok(Some(id))
    }

    /// Replaces a check's settings (its generation moves on). False when not found.
    pub async fn replace_check(
        &self,
        site_id: u64,
        name: &str,
        spec: &CheckSpec,
        critical: bool,
    ) -> Result<bool> {
        if !self.sees_site(site_id).await? {
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE checks SET check_type = $1, target = $2, interval_ms = $3, timeout_ms = $4, \
             retries = $5, retry_spacing_ms = $6, critical = $7, paused = $8, settings = $9, \
             name = $10, generation = generation + 1, updated_at = $11, sealed = $14 \
             WHERE id = $12 AND site_id = $13",
        )
        .bind(i64::from(spec.check_type as u8))
        .bind(spec.target.clone())
        .bind(i64::from(spec.interval_ms))
        .bind(i64::from(spec.timeout_ms))
        .bind(i64::from(spec.retries))
        .bind(i64::from(spec.retry_spacing_ms))
        .bind(i64::from(critical))
        .bind(i64::from(spec.paused))
        .bind(settings_json(spec))
        .bind(name.to_owned())
        .bind(i(now_us()))
        .bind(i(spec.check_id))
        .bind(i(site_id))
        .bind(self.store.seal_headers(&spec.headers)?)
        .execute(&self.store.pool)
        .await
        .context("updating a check")?
        .rows_affected();
        Ok(done > 0)
    }

    /// Deletes a check and its statistics. False when not found.
    pub async fn delete_check(&self, site_id: u64, id: u64) -> Result<bool> {
        if !self.sees_site(site_id).await? {
            return Ok(false);
        }
        let mut tx = self
            .store
            .pool
            .begin()
            .await
            .context("starting a transaction")?;
        super::write_first(&mut tx).await?;
        let found = sqlx::query("SELECT 1 FROM checks WHERE id = $1 AND site_id = $2")
            .bind(i(id))
            .bind(i(site_id))
            .fetch_optional(&mut *tx)
            .await
            .context("finding a check")?;
        if found.is_none() {
            return Ok(false);
        }
        delete_check_data(&mut tx, "id = $1", id).await?;
        sqlx::query("DELETE FROM maintenance_windows WHERE check_id = $1")
            .bind(i(id))
            .execute(&mut *tx)
            .await
            .context("deleting a check's windows")?;
        sqlx::query("DELETE FROM checks WHERE id = $1")
            .bind(i(id))
            .execute(&mut *tx)
            .await
            .context("deleting a check")?;
        tx.commit().await.context("committing")?;
        Ok(true)
    }

    /// Pauses or resumes a site's checks; returns how many changed state.
    pub async fn set_paused(&self, site_id: u64, paused: bool) -> Result<u64> {
        // The SET values take $1 and $2; the conditions follow.
        let mut w = Where::default();
        w.binds.push(Bind::I(i64::from(paused)));
        w.binds.push(Bind::I(i(now_us())));
        w.int("site_id = ?", i(site_id));
        w.int("paused <> ?", i64::from(paused));
        w.via_site("site_id", self.tenancy);
        let sql = format!(
            "UPDATE checks SET paused = $1, updated_at = $2, generation = generation + 1 \
             WHERE {}",
            w.sql()
        );
        let n = w
            .query(sql)
            .execute(&self.store.pool)
            .await
            .context("pausing checks")?
            .rows_affected();
        Ok(n)
    }

    /// Replaces a site's maintenance windows; None when the site is not this scope's.
    pub async fn put_windows(
        &self,
        site_id: u64,
        windows: &[(Option<u64>, Window)],
    ) -> Result<Option<Vec<WindowRow>>> {
        if !self.sees_site(site_id).await? {
            return Ok(None);
        }
        let mut tx = self
            .store
            .pool
            .begin()
            .await
            .context("starting a transaction")?;
        sqlx::query("DELETE FROM maintenance_windows WHERE site_id = $1")
            .bind(i(site_id))
            .execute(&mut *tx)
            .await
            .context("replacing maintenance windows")?;
        let mut out = Vec::with_capacity(windows.len());
        for (check_id, w) in windows {
            let (from, to, start, duration) = window_columns(w);
            let row = sqlx::query(
                "INSERT INTO maintenance_windows (site_id, check_id, from_at, to_at, \
                 weekly_start_s, weekly_duration_s, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(i(site_id))
            .bind(check_id.map(i))
            .bind(from)
            .bind(to)
            .bind(start)
            .bind(duration)
            .bind(i(now_us()))
            .fetch_one(&mut *tx)
            .await
            .context("adding a maintenance window")?;
            out.push(WindowRow {
                id: u(row.try_get::<i64, _>(0)?),
                site_id,
                check_id: *check_id,
                window: *w,
            });
        }
        touch_site(&mut tx, site_id).await?;
        tx.commit()
            .await
            .context("committing maintenance windows")?;
        Ok(Some(out))
    }

    /// Maintenance windows with id > `after` (of one site, or of one tenant's sites, when
    /// given), by id.
    pub async fn windows_page(
        &self,
        site_id: Option<u64>,
        tenant_id: Option<u64>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<WindowRow>> {
        let mut w = Where::default();
        w.int("id > ?", i(after));
        if let Some(s) = site_id {
            w.int("site_id = ?", i(s));
        }
        w.via_site("site_id", self.tenancy);
        if let Some(t) = tenant_id {
            w.via_site("site_id", Tenancy::Tenant(t));
        }
        let n = w.next();
        w.binds.push(Bind::I(i64::from(limit)));
        let sql = format!(
            "SELECT id, site_id, check_id, from_at, to_at, weekly_start_s, weekly_duration_s \
             FROM maintenance_windows WHERE {} ORDER BY id LIMIT ${n}",
            w.sql()
        );
        let rows = w
            .query(sql)
            .fetch_all(&self.store.pool)
            .await
            .context("loading maintenance windows")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let Some(window) =
                window_of(r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?)
            else {
                continue;
            };
            out.push(WindowRow {
                id: u(r.try_get::<i64, _>(0)?),
                site_id: u(r.try_get::<i64, _>(1)?),
                check_id: r.try_get::<Option<i64>, _>(2)?.map(u),
                window,
            });
        }
        Ok(out)
    }

    /// Events with id > `after` that pass `f`, by id (filters before the limit).
    pub async fn events_page(
        &self,
        after: u64,
        limit: u32,
        f: &EventFilter,
    ) -> Result<Vec<EventRow>> {
        let mut w = Where::default();
        w.int("e.id > ?", i(after));
        w.via_site("e.site_id", self.tenancy);
        if let Some(t) = f.tenant_id {
            w.via_site("e.site_id", Tenancy::Tenant(t));
        }
        let ids: Vec<i64> = f.id_in.iter().map(|v| i(*v)).collect();
        w.ints_in("e.id", &ids);
        let sites: Vec<i64> = f.site_in.iter().map(|v| i(*v)).collect();
        w.ints_in("e.site_id", &sites);
        let states: Vec<i64> = f.state_in.iter().map(|s| i64::from(s.code())).collect();
        w.ints_in("e.state", &states);
        if let Some(t) = f.check_type {
            w.int(
                "e.check_id IN (SELECT id FROM checks WHERE check_type = ?)",
                i64::from(t as u8),
            );
        }
        if let Some(k) = f.kind {
            w.int("e.kind = ?", i64::from(k));
        }
        match f.active {
            Some(true) => w.clauses.push("e.ended_at IS NULL".into()),
            Some(false) => w.clauses.push("e.ended_at IS NOT NULL".into()),
            None => {}
        }
        if let Some(t) = f.started_gte_us {
            w.int("e.started_at >= ?", i(t));
        }
        if let Some(t) = f.started_lt_us {
            w.int("e.started_at < ?", i(t));
        }
        let n = w.next();
        w.binds.push(Bind::I(i64::from(limit)));
        let sql = format!(
            "SELECT e.id, e.site_id, e.check_id, e.kind, e.state, e.severity, e.started_at, \
             e.ended_at, e.resolution_reason FROM events e WHERE {} ORDER BY e.id LIMIT ${n}",
            w.sql()
        );
        let rows = w
            .query(sql)
            .fetch_all(&self.store.pool)
            .await
            .context("loading events")?;
        rows.iter().map(super::event_of).collect()
    }

    /// One event; None when there is none (or it is another tenant's).
    pub async fn event(&self, id: u64) -> Result<Option<EventRow>> {
        let f = EventFilter {
            id_in: vec![id],
            ..EventFilter::default()
        };
        let page = self.events_page(id.saturating_sub(1), 1, &f).await?;
        Ok(page.into_iter().find(|e| e.id == id))
    }

    pub async fn transitions_of_event(&self, event_id: u64) -> Result<Vec<TransitionRow>> {
        let mut w = Where::default();
        w.int("event_id = ?", i(event_id));
        w.via_site("site_id", self.tenancy);
        let sql = format!(
            "SELECT id, event_id, state_before, severity_before, state_after, severity_after, \
             reason, source, metadata, at FROM transitions WHERE {} ORDER BY id",
            w.sql()
        );
        let rows = w
            .query(sql)
            .fetch_all(&self.store.pool)
            .await
            .context("loading transitions")?;
        rows.iter().map(transition_of).collect()
    }

    /// A site's events that overlap `[from, to)` with their transitions (for the SLA), and
    /// whether each event's check is critical.
    pub async fn site_history(
        &self,
        site_id: u64,
        from_us: u64,
        to_us: u64,
    ) -> Result<Vec<(EventRow, bool, Vec<TransitionRow>)>> {
        let mut w = Where::default();
        w.int("e.site_id = ?", i(site_id));
        w.int("e.started_at < ?", i(to_us));
        w.int("(e.ended_at IS NULL OR e.ended_at > ?)", i(from_us));
        w.via_site("e.site_id", self.tenancy);
        let sql = format!(
            "SELECT e.id, e.site_id, e.check_id, e.kind, e.state, e.severity, e.started_at, \
             e.ended_at, e.resolution_reason, COALESCE(c.critical, 1) FROM events e \
             LEFT JOIN checks c ON c.id = e.check_id WHERE {} ORDER BY e.id",
            w.sql()
        );
        let rows = w
            .query(sql)
            .fetch_all(&self.store.pool)
            .await
            .context("loading a site's events")?;
        let mut events = Vec::with_capacity(rows.len());
        for r in &rows {
            events.push((
                super::event_of(r)?,
                r.try_get::<i64, _>(9)? != 0,
                Vec::new(),
            ));
        }
        if events.is_empty() {
            return Ok(events);
        }
        let ids: Vec<i64> = events.iter().map(|(e, _, _)| i(e.id)).collect();
        let mut w = Where::default();
        w.ints_in("event_id", &ids);
        let sql = format!(
            "SELECT id, event_id, state_before, severity_before, state_after, severity_after, \
             reason, source, metadata, at FROM transitions WHERE {} ORDER BY id",
            w.sql()
        );
        let rows = w
            .query(sql)
            .fetch_all(&self.store.pool)
            .await
            .context("loading transitions")?;
        for r in &rows {
            let t = transition_of(r)?;
            if let Some((_, _, ts)) = events.iter_mut().find(|(e, _, _)| e.id == t.event_id) {
                ts.push(t);
            }
        }
        Ok(events)
    }

    /// Check ids of a site (deleted checks' statistics are gone with them).
    pub async fn site_check_ids(&self, site_id: u64) -> Result<Vec<u64>> {
        let w = Where::of_site(site_id, self.tenancy);
        let sql = format!("SELECT id FROM checks WHERE {} ORDER BY id", w.sql());
        let rows = w
            .query(sql)
            .fetch_all(&self.store.pool)
            .await
            .context("loading a site's checks")?;
        rows.iter()
            .map(|r| Ok(u(r.try_get::<i64, _>(0)?)))
            .collect()
    }

    /// A check's recent failures, newest first; empty when the check is not this scope's.
    pub async fn recent_failures(&self, check_id: u64, limit: u32) -> Result<Vec<super::Failure>> {
        let mut w = Where::default();
        w.int("id = ?", i(check_id));
        w.via_site("site_id", self.tenancy);
        let sql = format!("SELECT 1 FROM checks WHERE {}", w.sql());
        let seen = w
            .query(sql)
            .fetch_optional(&self.store.pool)
            .await
            .context("finding a check")?
            .is_some();
        if !seen {
            return Ok(Vec::new());
        }
        self.store.recent_failures(check_id, limit).await
    }
}

pub(super) async fn create_site_in(
    tx: &mut Transaction<'static, Any>,
    store: &Store,
    s: &NewSite,
    tenant_id: u64,
) -> Result<u64> {
    let now = now_us();
    let row = sqlx::query(
        "INSERT INTO sites (name, url, tags, created_at, blog_id, tenant_id) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(s.name.clone())
    .bind(s.url.clone())
    .bind(join_tags(&s.tags))
    .bind(i(now))
    .bind(s.blog_id.map(i))
    .bind(i(tenant_id))
    .fetch_one(&mut **tx)
    .await
    .context("adding a site")?;
    let site = u(row.try_get::<i64, _>(0)?);
    let row = sqlx::query(
        "INSERT INTO endpoints (site_id, url, critical) VALUES ($1, $2, 1) RETURNING id",
    )
    .bind(i(site))
    .bind(s.url.clone())
    .fetch_one(&mut **tx)
    .await
    .context("adding an endpoint")?;
    let endpoint = u(row.try_get::<i64, _>(0)?);
    for spec in &s.checks {
        let id = insert_check(
            tx,
            site,
            spec,
            true,
            now,
            store.seal_headers(&spec.headers)?,
        )
        .await?;
        sqlx::query("UPDATE checks SET endpoint_id = $1 WHERE id = $2")
            .bind(i(endpoint))
            .bind(i(id))
            .execute(&mut **tx)
            .await
            .context("linking a check")?;
    }
    Ok(site)
}
