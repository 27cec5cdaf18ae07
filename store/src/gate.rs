//! One writer at a time on a SQLite file, within this process, in turn.
//!
//! SQLite lets one transaction write at a time; a second one waits in SQLite's busy handler,
//! which polls with growing sleeps (1, 2, 5 … 100 ms). Two busy writers in one process — the
//! supervisor's batch writer committing every few milliseconds and the deliverer claiming and
//! finishing rows — keep missing each other's free moments, and one stalls for a third of a
//! second at a time (perf/RESULTS.md, P10). Every [`Store`](crate::Store) opened on the same
//! file shares one async lock, taken around each write; a waiter is woken the moment the
//! writer before it is done. Other processes (a `jetmon` command beside `jetmon up`) still
//! meet SQLite's busy timeout. PostgreSQL has row locks and needs none of this.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// The write lock of one SQLite file (None on PostgreSQL).
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate(Option<Arc<AsyncMutex<()>>>);

/// A writer's turn: writing is safe from other writers of this process until it is dropped.
pub(crate) type Turn = Option<OwnedMutexGuard<()>>;

impl Gate {
    /// The lock shared by every store on `path` in this process.
    pub(crate) fn for_file(path: &Path) -> Gate {
        static FILES: OnceLock<Mutex<HashMap<PathBuf, Weak<AsyncMutex<()>>>>> = OnceLock::new();
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let mut files = FILES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        files.retain(|_, w| w.strong_count() > 0);
        if let Some(lock) = files.get(&key).and_then(Weak::upgrade) {
            return Gate(Some(lock));
        }
        let lock = Arc::new(AsyncMutex::new(()));
        files.insert(key, Arc::downgrade(&lock));
        Gate(Some(lock))
    }

    /// Waits for this process's turn to write.
    pub(crate) async fn turn(&self) -> Turn {
        match &self.0 {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_on_one_file_share_a_lock_and_others_do_not() {
        let dir = std::env::temp_dir().join(format!("jetmon-gate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.db"), dir.join("b.db"));
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&b, b"").unwrap();
        let (g1, g2, g3) = (Gate::for_file(&a), Gate::for_file(&a), Gate::for_file(&b));
        let held = g1.turn().await;
        assert!(held.is_some());
        // Same file: the second store waits; another file does not.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), g2.turn())
                .await
                .is_err()
        );
        assert!(g3.turn().await.is_some());
        drop(held);
        assert!(g2.turn().await.is_some());
        assert!(Gate::default().turn().await.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
