//! Group commit: the units of work of concurrent requests, committed together.
//!
//! Under load most of a small transaction's cost is fixed (taking the write lock, writing the
//! same table and index pages to the WAL again, checkpointing them), so one writer thread
//! takes whatever units are waiting, runs each inside its own savepoint of one transaction
//! and commits once. A unit that fails rolls back its savepoint only: its neighbours in the
//! batch commit, and it alone answers an error. Each unit's answer is released after the
//! commit that holds it, never before, so a caller that answers 2xx on `Ok` acknowledges only
//! what is on disk.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Weak};

use super::{Backend, Shared, Store, StoreError};

/// Units in one transaction at most: the store is locked while a batch runs, and every other
/// caller (reads before a signature check, the delivery worker) waits for it.
const MAX_BATCH: usize = 128;

/// What a unit leaves to do once its batch is committed: hand its result to its caller.
type Release = Box<dyn FnOnce() + Send>;

/// A unit of work; dropped unrun (or its `Release` dropped) when it cannot be committed, which
/// its caller sees as [`StoreError::NotCommitted`].
type Unit = Box<dyn FnOnce(&Store) -> Release + Send>;

/// The writer thread's mailbox, started with the first grouped unit.
pub(super) struct GroupWriter {
    units: Sender<Unit>,
}

impl Store {
    /// [`Store::atomically`] for concurrent callers: `f` runs on the store's writer thread,
    /// inside a savepoint of a transaction it may share with other callers' units, and the
    /// result comes back once that transaction is committed. An `Err` from `f` (or a panic)
    /// rolls back `f`'s changes only; a failed commit fails every unit of its batch.
    ///
    /// The unit is queued when this is called, not when the future is first polled.
    ///
    /// On PostgreSQL, whose server groups concurrent commits itself, each unit is its own
    /// transaction on a pooled connection, run on tokio's blocking threads.
    pub fn atomically_grouped<T, F>(&self, f: F) -> impl Future<Output = Result<T, StoreError>>
    where
        F: Fn(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (answer, result) = tokio::sync::oneshot::channel();
        if self.is_postgres() {
            let store = self.clone();
            let work = move || {
                // Replicas' units may still meet in an order no one foresaw: PostgreSQL then
                // aborts one of them, which runs again rather than answer a 5xx.
                let out = super::retry_transient(|| store.atomically(&f));
                let _ = answer.send(out);
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(work)),
                Err(_) => work(),
            }
            return futures::future::Either::Left(async move {
                result.await.unwrap_or(Err(StoreError::NotCommitted))
            });
        }
        let unit: Unit = Box::new(move |store: &Store| {
            let out = store.atomically(f);
            Box::new(move || {
                let _ = answer.send(out);
            })
        });
        // Refused only when the writer thread is gone: the dropped unit then fails below.
        let _ = self.writer().units.send(unit);
        futures::future::Either::Right(async move {
            result.await.unwrap_or(Err(StoreError::NotCommitted))
        })
    }

    fn writer(&self) -> &GroupWriter {
        self.shared.writer.get_or_init(|| {
            let (units, inbox) = mpsc::channel();
            let shared = Arc::downgrade(&self.shared);
            let started = std::thread::Builder::new()
                .name("relais-store-writer".into())
                .spawn(move || write_batches(&shared, &inbox));
            if let Err(e) = started {
                // The receiver is gone with the closure: every unit then fails, visibly.
                tracing::error!("store: cannot start the writer thread: {e}");
            }
            GroupWriter { units }
        })
    }
}

/// Runs until every `Store` handle is gone (the last one drops the sender).
fn write_batches(shared: &Weak<Shared>, inbox: &Receiver<Unit>) {
    while let Ok(first) = inbox.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(unit) => batch.push(unit),
                Err(_) => break,
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        commit_batch(
            &Store {
                shared,
                reading: false,
                pinned: None,
            },
            batch,
        );
    }
}

fn commit_batch(store: &Store, batch: Vec<Unit>) {
    let Backend::Sqlite { conn, .. } = &store.shared.backend else {
        return;
    };
    // Held across the batch: `atomically` inside takes it again on this thread.
    let _lock = conn.lock();
    let mut pending: Vec<Release> = Vec::with_capacity(batch.len());
    let mut open = false;
    for unit in batch {
        if !open {
            match store.execute("BEGIN IMMEDIATE") {
                Ok(()) => open = true,
                Err(e) => {
                    tracing::error!("store: cannot begin a group transaction: {e}");
                    continue;
                }
            }
        }
        match catch_unwind(AssertUnwindSafe(|| unit(store))) {
            Ok(release) => pending.push(release),
            Err(_) => tracing::error!("store: a unit of work panicked; its changes are undone"),
        }
        // A serious error (disk full, I/O) makes SQLite roll back the whole transaction,
        // the units already run included: none of them may be acknowledged.
        if store.in_autocommit() {
            if !pending.is_empty() {
                tracing::error!(
                    "store: the group transaction was rolled back; {} units fail",
                    pending.len()
                );
            }
            pending.clear();
            open = false;
        }
    }
    if !open {
        return;
    }
    if let Err(e) = store.execute("COMMIT") {
        tracing::error!("store: group commit of {} units failed: {e}", pending.len());
        if !store.in_autocommit() {
            if let Err(e) = store.execute("ROLLBACK") {
                tracing::error!("store: cannot roll back: {e}");
            }
        }
        return;
    }
    for release in pending {
        release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(store: &Store) -> Vec<String> {
        store
            .with_conn(|c| {
                c.query_all(
                    "SELECT activity_id FROM seen_activities ORDER BY activity_id",
                    &[],
                    |r| r.get(0),
                )
            })
            .unwrap()
    }

    /// Two replicas' units that lock the same rows in opposite orders: PostgreSQL aborts one
    /// as a deadlock, which runs again and commits; neither caller sees an error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_unit_aborted_as_a_deadlock_runs_again_on_postgres() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let Some(url) = super::super::testdb::database_url() else {
            return;
        };
        let store = tokio::task::spawn_blocking(move || Store::connect(&url).unwrap())
            .await
            .unwrap();
        let both_locked = Arc::new(std::sync::Barrier::new(2));
        let runs = Arc::new(AtomicUsize::new(0));
        let unit = |first: &'static str, second: &'static str| {
            let (both_locked, runs) = (both_locked.clone(), runs.clone());
            move |store: &Store| {
                let run = runs.fetch_add(1, Ordering::SeqCst);
                store.mark_seen(first)?;
                // Only the first two runs meet: the one run again goes straight through.
                if run < 2 {
                    both_locked.wait();
                }
                store.mark_seen(second)?;
                Ok(())
            }
        };
        let a = store.atomically_grouped(unit("https://m.example/x", "https://m.example/y"));
        let b = store.atomically_grouped(unit("https://m.example/y", "https://m.example/x"));
        let (a, b) = tokio::join!(a, b);
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
        assert!(runs.load(Ordering::SeqCst) >= 3, "one unit ran again");
        let store = store.clone();
        let seen = tokio::task::spawn_blocking(move || seen(&store))
            .await
            .unwrap();
        assert_eq!(seen, ["https://m.example/x", "https://m.example/y"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_unit_leaves_its_batch_neighbours_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("relais.db")).unwrap();
        // A first unit holds the writer until the next ones are all queued, so that those
        // run as one batch.
        let (running, is_running) = std::sync::mpsc::channel();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let gate = store.atomically_grouped(move |_| {
            running.send(()).unwrap();
            wait.recv().unwrap();
            Ok::<_, StoreError>(())
        });
        is_running.recv().unwrap();
        let units: Vec<_> = (0..10)
            .map(|n| {
                store.atomically_grouped(move |store| {
                    store.mark_seen(&format!("https://m.example/{n}"))?;
                    match n {
                        3 => Err(StoreError::NotCommitted),
                        // A statement that fails after a write of the same unit.
                        5 => store.with_conn(|c| c.execute_batch("INSERT INTO nowhere VALUES (1)")),
                        7 => panic!("unit {n} panics"),
                        _ => Ok(()),
                    }
                })
            })
            .collect();
        go.send(()).unwrap();
        gate.await.unwrap();
        let mut committed = Vec::new();
        for (n, unit) in units.into_iter().enumerate() {
            if unit.await.is_ok() {
                committed.push(n);
            }
        }
        assert_eq!(committed, [0, 1, 2, 4, 6, 8, 9]);
        let expected: Vec<String> = committed
            .iter()
            .map(|n| format!("https://m.example/{n}"))
            .collect();
        assert_eq!(seen(&store), expected);
        // The writer outlived the panic.
        store
            .atomically_grouped(|store| store.mark_seen("https://m.example/x").map(|_| ()))
            .await
            .unwrap();
        assert_eq!(seen(&store).len(), expected.len() + 1);
    }
}
