//! The store on both backends, with the same suite: real SQLite files and a real PostgreSQL
//! (`perf/postgres`, started by `.ci/test`; its URL in JETMON_TEST_PG_URL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use jetmon_control::engine::{
    CheckConfig, Effect, Engine, EventIds, EventKind, Input, ResultIn, Window,
};
use jetmon_control::store::{Batch, Store, Tenancy};
use jetmon_shared::check::{CheckSpec, CheckType, HttpMethod, ProbeOrigin};
use jetmon_shared::outcome::Outcome;
use jetmon_shared::state::{Reason, State};

const S: u64 = 1_000_000;
const T0: u64 = 1_795_996_800 * S;

/// A fresh, empty database of each backend.
struct Db {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("jetmon.db").display());
    Db {
        url,
        _dir: Some(dir),
    }
}

async fn postgres() -> Db {
    Db {
        url: common::pg_database("t"),
        _dir: None,
    }
}

fn cfg(check_id: u64, site_id: u64) -> CheckConfig {
    CheckConfig {
        check_id,
        site_id,
        interval_ms: 60_000,
        retries: 1,
        retry_spacing_ms: 10_000,
        critical: true,
        paused: false,
        maintenance: Vec::new(),
        thresholds: Default::default(),
    }
}

fn result(check_id: u64, outcome: Outcome, at: u64, origin: ProbeOrigin) -> Input {
    Input::Result(ResultIn {
        check_id,
        outcome,
        at_us: at,
        origin,
        cert_not_after_s: 0,
        ttfb_us: 0,
        total_us: 0,
        flags: 0,
    })
}

fn batch(effects: &[Effect], positions: &[(u16, u64)]) -> Batch {
    let mut b = Batch::default();
    for e in effects {
        match e {
            Effect::Transition(t) => b.transitions.push(t.clone()),
            Effect::Projection(p) => b.projections.push(p.clone()),
            _ => {}
        }
    }
    b.positions = positions.to_vec();
    b
}

async fn suite(db: Db) {
    let store = Store::open(&db.url, "test-host").await.unwrap();
    // Sites and checks round-trip, settings included.
    let site = store.add_site("example.test").await.unwrap();
    let mut spec = CheckSpec::new(0, 0, CheckType::Http, "https://example.test/");
    spec.keywords = vec!["Powered by".into()];
    spec.method = HttpMethod::Head;
    spec.retries = 1;
    let check = store.add_check(site, &spec, true).await.unwrap();
    let other = store
        .add_check(
            site,
            &CheckSpec::new(0, 0, CheckType::Tcp, "example.test:22"),
            false,
        )
        .await
        .unwrap();
    store
        .add_window(
            site,
            Some(other),
            Window::Weekly {
                start_s: 0,
                duration_s: 3600,
            },
        )
        .await
        .unwrap();
    let checks = store.checks().await.unwrap();
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0].spec.keywords, vec!["Powered by".to_owned()]);
    assert_eq!(checks[0].spec.method, HttpMethod::Head);
    assert_eq!(
        (checks[0].spec.check_id, checks[0].spec.site_id),
        (check, site)
    );
    assert!(!checks[1].engine.critical);
    assert_eq!(checks[1].engine.maintenance.len(), 1);

    // An incident through the engine into the store.
    let mut engine = Engine::new(EventIds { next: 1, stride: 1 }, 0);
    let mut fx = Vec::new();
    engine.apply(Input::Configure(cfg(check, site)), T0, &mut fx);
    engine.apply(
        result(check, Outcome::HttpStatus, T0 + S, ProbeOrigin::Scheduled),
        T0 + S,
        &mut fx,
    );
    store.apply(&batch(&fx, &[(0, 10)])).await.unwrap();
    fx.clear();
    engine.apply(
        result(
            check,
            Outcome::HttpStatus,
            T0 + 11 * S,
            ProbeOrigin::Recheck,
        ),
        T0 + 11 * S,
        &mut fx,
    );
    store.apply(&batch(&fx, &[(0, 20)])).await.unwrap();
    let sites = store.sites().await.unwrap();
    assert_eq!(
        (
            sites[0].state,
            sites[0].site_status,
            sites[0].active_event_count
        ),
        (State::Down, 2, 1)
    );
    let events = store.events().await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].state, events[0].started_us, events[0].ended_us),
        (State::Down, T0 + S, None)
    );
    assert_eq!(store.transition_count().await.unwrap(), 2);
    assert_eq!(store.positions().await.unwrap().get(&0), Some(&20));

    // Raw failures are kept (healthy results are not); old ones are pruned.
    let mut with_failures = Batch::default();
    for k in 0..3u64 {
        with_failures.failures.push(jetmon_control::store::Failure {
            check_id: check,
            at_us: T0 + k * S,
            outcome: 14,
            detail: 0,
            http_status: 500,
            total_us: 1234,
            vantage_id: 0,
            flags: 0,
            note: (k == 0).then(|| "a note".to_owned()),
            redirect_chain: if k == 0 {
                vec![(301, "https://b.test/".to_owned())]
            } else {
                Vec::new()
            },
        });
    }
    store.apply(&with_failures).await.unwrap();
    store.apply(&with_failures).await.unwrap(); // a replay changes nothing
    let kept = store.recent_failures(check, 10).await.unwrap();
    assert_eq!(kept.len(), 3);
    assert_eq!((kept[0].at_us, kept[0].http_status), (T0 + 2 * S, 500));
    // Their words come back: the note and the chain of the oldest, none on the others.
    assert_eq!(kept[2].note.as_deref(), Some("a note"));
    assert_eq!(
        kept[2].redirect_chain,
        vec![(301, "https://b.test/".to_owned())]
    );
    assert!(kept[0].note.is_none() && kept[0].redirect_chain.is_empty());
    assert_eq!(store.prune_failures(T0 + 8 * 86_400 * S).await.unwrap(), 3);

    // At most one open event per identity, enforced by the database itself.
    let mut dup = batch(&fx, &[]);
    dup.transitions.retain(|t| t.before.is_none());
    let mut open_again = fx
        .iter()
        .find_map(|e| match e {
            Effect::Transition(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    open_again.event_id = 999;
    open_again.before = None;
    dup.transitions = vec![open_again];
    dup.projections.clear();
    assert!(
        store.apply(&dup).await.is_err(),
        "a second open event for one identity"
    );
    assert_eq!(
        store.transition_count().await.unwrap(),
        2,
        "the failed batch left nothing"
    );

    // Restart: a new store and engine resume from what is durable.
    store.close().await;
    let store = Store::open(&db.url, "test-host").await.unwrap();
    let max = store.max_event_id().await.unwrap();
    let mut engine = Engine::new(
        EventIds {
            next: max + 1,
            stride: 1,
        },
        0,
    );
    let open = store.open_events().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].1, EventKind::Availability);
    for c in store.checks().await.unwrap() {
        let mine: Vec<_> = open
            .iter()
            .filter(|o| o.0 == c.engine.check_id)
            .map(|o| (o.1, o.2))
            .collect();
        engine.restore(c.engine, mine);
    }
    let mut fx = Vec::new();
    engine.apply(
        result(check, Outcome::Ok, T0 + 71 * S, ProbeOrigin::Scheduled),
        T0 + 71 * S,
        &mut fx,
    );
    store.apply(&batch(&fx, &[(0, 30)])).await.unwrap();
    let events = store.events().await.unwrap();
    assert_eq!(events[0].ended_us, Some(T0 + 71 * S));
    assert_eq!(events[0].resolution, Some(Reason::VerifierCleared));
    // T0 is a Monday 00:00 UTC: the other check's weekly window (Monday 00:00-01:00) is
    // active, so the healthy site shows Maintenance (states-and-events.md) while its
    // WPCOM status stays up.
    let sites = store.sites().await.unwrap();
    assert_eq!(
        (sites[0].state, sites[0].site_status),
        (State::Maintenance, 1)
    );
    // An hour later the window has ended: the next result projects the site Up.
    let mut fx = Vec::new();
    engine.apply(
        result(check, Outcome::Ok, T0 + 3601 * S, ProbeOrigin::Scheduled),
        T0 + 3601 * S,
        &mut fx,
    );
    store.apply(&batch(&fx, &[])).await.unwrap();
    let sites = store.sites().await.unwrap();
    assert_eq!((sites[0].state, sites[0].site_status), (State::Up, 1));
    assert_eq!(store.transition_count().await.unwrap(), 3);
    // last_checked_at: written in batches, raised, never lowered.
    let other_site = store.add_site("other.test").await.unwrap();
    store
        .set_last_checked(&[(site, T0 + 80 * S), (other_site, T0 + 5 * S)])
        .await
        .unwrap();
    store
        .set_last_checked(&[(site, T0 + 70 * S)])
        .await
        .unwrap();
    store.set_last_checked(&[]).await.unwrap();
    let sites = store.sites().await.unwrap();
    assert_eq!(sites[0].last_checked_us, Some(T0 + 80 * S));
    assert_eq!(sites[1].last_checked_us, Some(T0 + 5 * S));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_sqlite() {
    suite(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_postgres() {
    suite(postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_clearly() {
    let db = sqlite().await;
    let store = Store::open(&db.url, "h").await.unwrap();
    store.close().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .connect(&db.url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO jetmon_migrations (version, description, applied_at) VALUES (99, 'future', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let err = match Store::open(&db.url, "h").await {
        Ok(_) => panic!("opened a newer schema"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("schema version 99"), "{err}");
}

/// Statistics end to end on a backend: results through the real spool, sealed, flushed as
/// hourly rows (a part flushed twice counts once; a late part merges), read back, and rolled
/// up into daily rows.
async fn stats_suite(db: Db) {
    use jetmon_control::stats::flush::{flush_sealed, rollup};
    use jetmon_control::stats::spool::{Spool, sealed_dirs};
    use jetmon_control::store::Period;
    use jetmon_shared::frames::ProbeResult;

    let store = Store::open(&db.url, "test-host").await.unwrap();
    let site = store.add_site("stats.test").await.unwrap();
    let spec = CheckSpec::new(0, 0, CheckType::Http, "https://stats.test/");
    let a = store.add_check(site, &spec, true).await.unwrap();
    let b = store.add_check(site, &spec, true).await.unwrap();
    let spool_dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(spool_dir.path()).unwrap();
    let hour0 = T0 / (3600 * S);
    let mut seq = 0;
    let mut put = |spool: &mut Spool, check: u64, at: u64, outcome: Outcome, total: u32| {
        let mut r = ProbeResult {
            check_id: check,
            seq,
            started_at_us: at,
            outcome,
            ..ProbeResult::default()
        };
        r.phases.total_us = total;
        r.phases.connect_us = total / 4;
        r.phases.tls_us = total / 3;
        r.phases.ttfb_us = total / 2;
        seq += 1;
        spool.record(0, &r);
    };
    // Hour 0: a gets 12 results (one failure), b gets 3. Hour 1: a gets 2.
    for k in 0..12u64 {
        let outcome = if k == 5 {
            Outcome::ConnRefused
        } else {
            Outcome::Ok
        };
        put(
            &mut spool,
            a,
            T0 + k * 300 * S,
            outcome,
            80_000 + k as u32 * 1_000,
        );
    }
    for k in 0..3u64 {
        put(&mut spool, b, T0 + k * 1000 * S, Outcome::Ok, 5_000);
    }
    for k in 0..2u64 {
        put(
            &mut spool,
            a,
            T0 + 3600 * S + k * 60 * S,
            Outcome::Ok,
            90_000,
        );
    }
    spool.sync().unwrap();
    let sealed = spool.seal(u64::MAX, true).unwrap();
    assert_eq!(sealed.len(), 2);
    for d in &sealed {
        let copy = d.with_extension("copy");
        std::fs::create_dir(&copy).unwrap();
        for f in std::fs::read_dir(d).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
        }
        let first = flush_sealed(&store, d).await.unwrap();
        assert!(first.rows >= 1 && first.parts_seen_before == 0, "{first:?}");
        // The same parts again (a crash after commit, before the files were removed): skipped.
        std::fs::rename(&copy, d).unwrap();
        let again = flush_sealed(&store, d).await.unwrap();
        assert_eq!((again.rows, again.parts_seen_before), (0, first.parts));
        assert!(!d.exists());
    }
    let rows = store
        .period_stats(Period::Hour, a, hour0, hour0 + 2)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].ok_count, rows[0].fail_count), (11, 1));
    assert_eq!(
        rows[0].outcomes,
        vec![(Outcome::Ok.code(), 11), (Outcome::ConnRefused.code(), 1)]
    );
    assert_eq!(
        rows[0].hists[0].count(),
        11,
        "failures stay out of histograms"
    );
    let p99 = rows[0].hists[0].quantile(0.99).unwrap();
    assert!(
        p99.abs_diff(91_000) <= 910,
        "p99 {p99} not within 1% of 91 ms"
    );
    assert!(rows[0].hists[1].is_empty(), "no DNS phase was measured");
    assert_eq!(rows[0].hists[3].count(), 11);
    // A late result for hour 0 (after its flush) merges into the stored row.
    put(&mut spool, a, T0 + 3599 * S, Outcome::Ok, 70_000);
    spool.sync().unwrap();
    for d in spool.seal(u64::MAX, true).unwrap() {
        flush_sealed(&store, &d).await.unwrap();
    }
    let rows = store
        .period_stats(Period::Hour, a, hour0, hour0 + 1)
        .await
        .unwrap();
    assert_eq!((rows[0].ok_count, rows[0].hists[0].count()), (12, 12));
    let (n, bytes) = store.stats_size(Period::Hour).await.unwrap();
    assert_eq!(n, 3);
    assert!(bytes > 0 && bytes < 3 * 100, "{bytes} bytes in {n} rows");
    // Rollup: with hour 0 and 1 older than the hourly retention, a's two hours become one day.
    let now_s = T0 / S + 20 * 86_400;
    let r = rollup(&store, now_s, 14, 400).await.unwrap();
    assert_eq!((r.hourly_rows_merged, r.daily_rows_written), (3, 2));
    assert_eq!(store.stats_size(Period::Hour).await.unwrap().0, 0);
    let day = store
        .period_stats(Period::Day, a, hour0 / 24, hour0 / 24 + 1)
        .await
        .unwrap();
    assert_eq!(day.len(), 1);
    assert_eq!((day[0].ok_count, day[0].fail_count), (14, 1));
    assert_eq!(day[0].hists[0].count(), 14);
    // Daily rows past their retention go.
    let r = rollup(&store, now_s + 400 * 86_400, 14, 400).await.unwrap();
    assert_eq!(r.daily_rows_expired, 2);
    assert!(sealed_dirs(spool_dir.path()).unwrap().is_empty());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_on_sqlite() {
    stats_suite(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_on_postgres() {
    stats_suite(postgres().await).await;
}

/// API keys on a backend: only hashes stored; lookup, revocation, rotation with grace.
async fn keys_suite(db: Db) {
    use jetmon_control::keys::{Scope, new_token};
    let store = Store::open(&db.url, "test-host").await.unwrap();
    let now = T0;
    let a = new_token().unwrap();
    let id = store
        .create_key(
            &jetmon_control::store::NewKey {
                name: "ci",
                scope: Scope::Write,
                expires_us: None,
                kind: Default::default(),
                tenant_id: None,
            },
            &a,
            now,
        )
        .await
        .unwrap();
    let found = store.key_for_token(&a.token).await.unwrap().unwrap();
    assert_eq!(
        (found.id, found.scope, found.name.as_str()),
        (id, Scope::Write, "ci")
    );
    assert!(found.active(now));
    assert_eq!(store.key_for_token("jm_not-a-key").await.unwrap(), None);
    // Rotation: the old token works through the grace period, then not; the new one does.
    let b = new_token().unwrap();
    let new_id = store.rotate_key(id, &b, 3600 * S, now).await.unwrap();
    let old = store.key_for_token(&a.token).await.unwrap().unwrap();
    assert_eq!(old.replaced_by, Some(new_id));
    assert!(old.active(now + 3599 * S) && !old.active(now + 3600 * S));
    let new = store.key_for_token(&b.token).await.unwrap().unwrap();
    assert_eq!((new.scope, new.expires_us), (Scope::Write, None));
    // Revocation.
    assert!(store.revoke_key(new_id, now).await.unwrap());
    assert!(
        !store.revoke_key(new_id, now).await.unwrap(),
        "already revoked"
    );
    assert!(
        !store
            .key_for_token(&b.token)
            .await
            .unwrap()
            .unwrap()
            .active(now)
    );
    assert_eq!(store.keys().await.unwrap().len(), 2);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_on_sqlite() {
    keys_suite(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_on_postgres() {
    keys_suite(postgres().await).await;
}

/// Deleting checks while another connection keeps committing: no SQLITE_BUSY (a transaction
/// that read first could not become a writer once the other connection committed — found by
/// schemathesis as a 503 on DELETE /sites/{id}/checks/{cid}).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_beside_a_busy_writer_on_sqlite() {
    let db = sqlite().await;
    let a = Store::open(&db.url, "a").await.unwrap();
    let b = Store::open(&db.url, "b").await.unwrap();
    let site = a.add_site("busy").await.unwrap();
    let mut ids = Vec::new();
    for n in 0..100 {
        let spec = CheckSpec::new(1, site, CheckType::Http, &format!("http://127.0.0.1/{n}"));
        ids.push(a.add_check(site, &spec, true).await.unwrap());
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (b, stop) = (b.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                b.add_site(&format!("other {n}")).await.unwrap();
                n += 1;
            }
            n
        })
    };
    for id in ids {
        assert!(
            a.scoped(Tenancy::All).delete_check(site, id).await.unwrap(),
            "check {id}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.await.unwrap() > 0);
}

/// A database made before tenants (migrations 1–6) with a site, a key, a rate-limit bucket
/// and an idempotency key: migration 7 puts the site in tenant 1 (`default`), keeps the key an
/// operator key, the bucket and the idempotency key "no tenant" — and new tenants get ids
/// after 1 (on PostgreSQL the identity sequence must agree).
async fn pre_tenant_suite(db: Db) {
    use jetmon_control::keys::new_token;
    use jetmon_control::store::{KeyKind, MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE};
    sqlx::any::install_default_drivers();
    let old = if db.url.starts_with("sqlite:") {
        &MIGRATIONS_SQLITE[..6]
    } else {
        &MIGRATIONS_POSTGRES[..6]
    };
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!(
            "{}{}",
            db.url,
            if db.url.starts_with("sqlite:") {
                "?mode=rwc"
            } else {
                ""
            }
        ))
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE jetmon_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         applied_at BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (v, d, sql) in old {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO jetmon_migrations VALUES ($1, $2, 0)")
            .bind(*v)
            .bind((*d).to_owned())
            .execute(&pool)
            .await
            .unwrap();
    }
    let token = new_token().unwrap();
    for sql in [
        "INSERT INTO sites (name, url, created_at, blog_id) VALUES ('old', 'http://old.test/', 1, 5)",
        "INSERT INTO rate_limits (key_id, bucket, tokens_milli, updated_at) VALUES (1, 0, 500, 1)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO api_keys (name, token_hash, scopes, created_at, prefix) \
         VALUES ('old', $1, 'admin', 1, 'jm_x')",
    )
    .bind(token.hash.to_vec())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = Store::open(&db.url, "test-host").await.unwrap();
    let sites = store.sites().await.unwrap();
    assert_eq!(
        sites
            .iter()
            .map(|s| (s.name.as_str(), s.tenant_id, s.blog_id))
            .collect::<Vec<_>>(),
        vec![("old", 1, Some(5))]
    );
    let t = store.tenant(1).await.unwrap().unwrap();
    assert_eq!((t.name.as_str(), t.active), ("default", true));
    let k = store.key_for_token(&token.token).await.unwrap().unwrap();
    assert_eq!((k.kind, k.tenant_id), (KeyKind::Operator, None));
    let buckets = store.rate_buckets().await.unwrap();
    assert_eq!(
        buckets
            .iter()
            .map(|b| (b.tenant_id, b.key_id))
            .collect::<Vec<_>>(),
        vec![(0, 1)]
    );
    assert_eq!(store.create_tenant("acme").await.unwrap().id, 2);
    assert!(
        store.create_tenant("acme").await.is_err(),
        "names are unique"
    );
    assert!(store.create_tenant("12").await.is_err(), "not all digits");
    store.close().await;
}

#[tokio::test]
async fn a_pre_tenant_database_migrates_into_the_default_tenant_sqlite() {
    pre_tenant_suite(sqlite().await).await;
}

#[tokio::test]
async fn a_pre_tenant_database_migrates_into_the_default_tenant_postgres() {
    pre_tenant_suite(postgres().await).await;
}
