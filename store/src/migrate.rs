//! Schema migrations: SQL files embedded at build time, applied in order, each in its own
//! transaction, recorded in `jetmon_migrations`. A database newer than this build is refused
//! with a clear message instead of being written with the wrong assumptions.

use anyhow::{Context, Result, bail};
use sqlx::Row;
use sqlx::{Any, Pool};

use super::Backend;

/// (version, description, SQL) for SQLite.
pub const MIGRATIONS_SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "statistics",
        include_str!("../../migrations/sqlite/0002_statistics.sql"),
    ),
    (
        3,
        "api_keys",
        include_str!("../../migrations/sqlite/0003_api_keys.sql"),
    ),
    (
        4,
        "api",
        include_str!("../../migrations/sqlite/0004_api.sql"),
    ),
    (
        5,
        "blog_id",
        include_str!("../../migrations/sqlite/0005_blog_id.sql"),
    ),
    (
        6,
        "result_words",
        include_str!("../../migrations/sqlite/0006_result_words.sql"),
    ),
    (
        7,
        "tenants",
        include_str!("../../migrations/sqlite/0007_tenants.sql"),
    ),
    (
        8,
        "idempotency_owner",
        include_str!("../../migrations/sqlite/0008_idempotency_owner.sql"),
    ),
    (
        9,
        "checks_target",
        include_str!("../../migrations/sqlite/0009_checks_target.sql"),
    ),
    (
        10,
        "check_secrets",
        include_str!("../../migrations/sqlite/0010_check_secrets.sql"),
    ),
    (
        11,
        "outbox",
        include_str!("../../migrations/sqlite/0011_outbox.sql"),
    ),
    (
        12,
        "attempts_once",
        include_str!("../../migrations/sqlite/0012_attempts_once.sql"),
    ),
];

/// (version, description, SQL) for PostgreSQL.
pub const MIGRATIONS_POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "statistics",
        include_str!("../../migrations/postgres/0002_statistics.sql"),
    ),
    (
        3,
        "api_keys",
        include_str!("../../migrations/postgres/0003_api_keys.sql"),
    ),
    (
        4,
        "api",
        include_str!("../../migrations/postgres/0004_api.sql"),
    ),
    (
        5,
        "blog_id",
        include_str!("../../migrations/postgres/0005_blog_id.sql"),
    ),
    (
        6,
        "result_words",
        include_str!("../../migrations/postgres/0006_result_words.sql"),
    ),
    (
        7,
        "tenants",
        include_str!("../../migrations/postgres/0007_tenants.sql"),
    ),
    (
        8,
        "idempotency_owner",
        include_str!("../../migrations/postgres/0008_idempotency_owner.sql"),
    ),
    (
        9,
        "checks_target",
        include_str!("../../migrations/postgres/0009_checks_target.sql"),
    ),
    (
        10,
        "check_secrets",
        include_str!("../../migrations/postgres/0010_check_secrets.sql"),
    ),
    (
        11,
        "outbox",
        include_str!("../../migrations/postgres/0011_outbox.sql"),
    ),
    (
        12,
        "attempts_once",
        include_str!("../../migrations/postgres/0012_attempts_once.sql"),
    ),
];

pub async fn run(pool: &Pool<Any>, backend: Backend) -> Result<()> {
    let list = match backend {
        Backend::Sqlite => MIGRATIONS_SQLITE,
        Backend::Postgres => MIGRATIONS_POSTGRES,
    };
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS jetmon_migrations (version BIGINT PRIMARY KEY, \
         description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await
    .context("creating jetmon_migrations")?;
    let row = sqlx::query("SELECT MAX(version) FROM jetmon_migrations")
        .fetch_one(pool)
        .await?;
    let current = row.try_get::<Option<i64>, _>(0)?.unwrap_or(0);
    let newest = list.last().map_or(0, |m| m.0);
    if current > newest {
        bail!(
            "the database is at schema version {current}, newer than this build knows ({newest}); \
             run a newer jetmon against it"
        );
    }
    for (version, description, sql) in list.iter().filter(|m| m.0 > current) {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("migration {version} ({description})"))?;
        sqlx::query(
            "INSERT INTO jetmon_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(*version)
        .bind((*description).to_owned())
        .bind(super::i(super::now_us()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}
