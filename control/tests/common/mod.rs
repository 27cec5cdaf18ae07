//! Helpers several control test binaries share.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::time::Duration;

/// `GET path` on loopback; the whole raw response (head and body), or "" when nothing
/// answers (a server being restarted, a database outage test).
pub fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut s = String::new();
    let _ = c.read_to_string(&mut s);
    s
}

/// A fresh, empty database in the test PostgreSQL (`perf/postgres`, started by `.ci/test`;
/// its URL in JETMON_TEST_PG_URL); returns its URL.
pub fn pg_database(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::env::var("JETMON_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "JETMON_TEST_PG_URL is not set: start a test PostgreSQL with `perf/postgres start` and \
             export JETMON_TEST_PG_URL=$(perf/postgres url), or run the tests with .ci/test"
        )
    });
    let name = format!(
        "jetmon_{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    // On a thread of its own: callable from async tests too (no runtime inside a runtime).
    let (b, n) = (base.clone(), name.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            sqlx::any::install_default_drivers();
            let admin = sqlx::any::AnyPoolOptions::new()
                .max_connections(1)
                .connect(&b)
                .await
                .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {b}: {e}"));
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {n}")))
                .execute(&admin)
                .await
                .expect("CREATE DATABASE");
            admin.close().await;
        });
    })
    .join()
    .expect("creating a test database");
    match base.rfind('/') {
        Some(slash) => format!("{}/{name}", &base[..slash]),
        None => panic!("odd URL {base}"),
    }
}
