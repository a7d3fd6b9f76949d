//! Fetching the keys of signers we do not know yet, so that nobody can make us hammer a
//! server: requests waiting for the same key share one fetch, and what a fetch gave (the
//! key, or why there is none) is answered from memory for a while. Anyone can name any key
//! in a `keyId`, and a request whose signature fails stores nothing, so without this each
//! forged request naming a real key would fetch it again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;

use crate::store::RemoteActor;

/// How long the outcome of a key fetch is remembered (as long as a cached key that fails is
/// kept before it is refetched).
pub const MEMORY: Duration = crate::federation::fetch::KEY_REFETCH_COOLDOWN;
/// Outcomes remembered at most; beyond, the oldest are forgotten first.
const MAX_REMEMBERED: usize = 10_000;

type Fetch = Shared<BoxFuture<'static, Result<RemoteActor, String>>>;

#[derive(Default)]
struct State {
    in_flight: HashMap<String, Fetch>,
    /// Key id → (fetched at, outcome).
    recent: HashMap<String, (Instant, Result<RemoteActor, String>)>,
}

/// Key fetches in flight and recent failures, shared by every request of the inbox.
#[derive(Default)]
pub struct KeyFetches {
    state: Mutex<State>,
}

impl std::fmt::Debug for KeyFetches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("KeyFetches")
            .field("in_flight", &state.in_flight.len())
            .field("recent", &state.recent.len())
            .finish()
    }
}

impl KeyFetches {
    /// The actor owning `key_id`: the outcome of a fetch less than [`MEMORY`] ago (a
    /// success only when `recent_success_will_do`: not when the caller already holds a copy
    /// that failed), the result of the fetch already running for it, or `fetch` run now (as
    /// its own task, so that it completes for the other waiters even if this request goes
    /// away).
    pub async fn get<F>(
        self: &Arc<Self>,
        key_id: &str,
        recent_success_will_do: bool,
        fetch: F,
    ) -> Result<RemoteActor, String>
    where
        F: Future<Output = Result<RemoteActor, String>> + Send + 'static,
    {
        let shared = {
            let mut state = self.state.lock();
            if let Some((at, outcome)) = state.recent.get(key_id) {
                if at.elapsed() < MEMORY {
                    match outcome {
                        Err(why) => {
                            return Err(format!("{why} (fetched {} s ago)", at.elapsed().as_secs()))
                        }
                        Ok(actor) if recent_success_will_do => return Ok(actor.clone()),
                        Ok(_) => {}
                    }
                } else {
                    state.recent.remove(key_id);
                }
            }
            match state.in_flight.get(key_id) {
                Some(running) => running.clone(),
                None => {
                    let this = self.clone();
                    let key = key_id.to_string();
                    let task = tokio::spawn(async move {
                        let result = fetch.await;
                        this.finish(&key, &result);
                        result
                    });
                    let shared = async move {
                        task.await
                            .unwrap_or_else(|e| Err(format!("the key fetch failed: {e}")))
                    }
                    .boxed()
                    .shared();
                    state.in_flight.insert(key_id.to_string(), shared.clone());
                    shared
                }
            }
        };
        shared.await
    }

    fn finish(&self, key_id: &str, result: &Result<RemoteActor, String>) {
        let mut state = self.state.lock();
        state.in_flight.remove(key_id);
        if state.recent.len() >= MAX_REMEMBERED {
            state.recent.retain(|_, (at, _)| at.elapsed() < MEMORY);
        }
        if state.recent.len() >= MAX_REMEMBERED {
            let oldest = state
                .recent
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                state.recent.remove(&oldest);
            }
        }
        state
            .recent
            .insert(key_id.to_string(), (Instant::now(), result.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn actor(id: &str) -> RemoteActor {
        RemoteActor {
            id: id.into(),
            inbox: format!("{id}/inbox"),
            shared_inbox: None,
            name: "A".into(),
            handle: "@a@a.example".into(),
            url: id.into(),
            avatar: None,
            key_id: format!("{id}#main-key"),
            public_key_pem: String::new(),
            also_known_as: Vec::new(),
            moved_to: None,
            fetched_at: crate::store::time::now(),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_requests_share_one_fetch_and_failures_are_remembered() {
        let fetches = Arc::new(KeyFetches::default());
        let count = Arc::new(AtomicUsize::new(0));
        let fetch = |ok: bool| {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                if ok {
                    Ok(actor("https://a.example/u/a"))
                } else {
                    Err("404".to_string())
                }
            }
        };
        let waiting: Vec<_> = (0..20)
            .map(|_| {
                let fetches = fetches.clone();
                let fetch = fetch(true);
                tokio::spawn(
                    async move { fetches.get("https://a.example/u/a#k", true, fetch).await },
                )
            })
            .collect();
        for waiter in waiting {
            assert_eq!(waiter.await.unwrap().unwrap().id, "https://a.example/u/a");
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);

        // Remembered, unless the caller's copy is what failed.
        fetches
            .get("https://a.example/u/a#k", true, fetch(true))
            .await
            .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        fetches
            .get("https://a.example/u/a#k", false, fetch(true))
            .await
            .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);

        for recent_success_will_do in [true, false, true, false, true] {
            let err = fetches
                .get(
                    "https://b.example/u/junk#k",
                    recent_success_will_do,
                    fetch(false),
                )
                .await
                .unwrap_err();
            assert!(err.starts_with("404"), "{err}");
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            3,
            "one fetch for the failing key"
        );
    }
}
