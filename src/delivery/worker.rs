//! Drains the delivery queue: signed POSTs, many at once but few per host, and the answers
//! judged as Mastodon's `ActivityPub::DeliveryWorker` judges them.
//!
//! - 2xx: delivered.
//! - 410 Gone: final; from a follower's personal inbox, the follower is removed.
//! - 501, and 4xx but 401, 408 and 429: final, retrying cannot help.
//! - 3xx: final, deliveries do not follow redirects.
//! - anything else (5xx, 401, 408, 429, timeouts, refused connections): retried with
//!   Sidekiq's backoff as Mastodon configures it, up to `delivery.max_attempts` attempts
//!   (16 attempts span about two days).
//!
//! A host failing on seven distinct days with no success between is unavailable (the
//! queue holds its deliveries, one probe a day); ten failures in a row make it cool off for a
//! minute (Mastodon's Stoplight circuit breaker).
//!
//! Each claimed delivery has a lease: killed at any moment, the worker loses nothing, its
//! deliveries are claimed again once their lease ends (at least once).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::config::DeliveryConfig;
use crate::federation::fetch::{FederationClient, FetchError};
use crate::federation::keys::PrivateKey;
use crate::federation::signature::{DigestedBody, SigningKey};
use crate::federation::urls::Urls;
use crate::store::queue::{Attempt, ClaimRequest, ClaimedDelivery, FinishedDelivery};
use crate::store::HostSignal;
use crate::store::{Store, StoreError};

/// Time the worker may need beyond the request timeout before its lease runs out.
const LEASE_MARGIN_SECS: i64 = 10;
/// Consecutive failures after which a host cools off (Mastodon's `STOPLIGHT_FAILURE_THRESHOLD`)...
const COOLING_FAILURES: u32 = 10;
/// ...for this long (`STOPLIGHT_COOLDOWN`).
const COOLING_SECS: i64 = 60;
/// The longest an idle background worker sleeps before looking at the queue again.
const IDLE_POLL_SECS: i64 = 60;
/// Finished deliveries are kept this long for `relais status`.
const KEEP_FINISHED_SECS: i64 = 30 * 86_400;
const PRUNE_EVERY_SECS: i64 = 3_600;

/// The current time, in Unix seconds; tests move it by hand.
pub trait Clock: Send + Sync {
    fn now(&self) -> i64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }
}

/// A clock that moves only when told, shared by its clones.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(now: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(now)))
    }

    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }

    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// It must not or cannot be sent at all (refused address, invalid URL): final.
    Refused(String),
    /// Timeout, refused connection, broken transfer: worth retrying.
    Failed(String),
}

/// Sends one signed POST and returns the HTTP status.
pub trait Transport: Send + Sync + 'static {
    fn post(
        &self,
        inbox: &str,
        body: &DigestedBody,
        key: &SigningKey,
    ) -> impl Future<Output = Result<u16, SendError>> + Send;
}

impl Transport for FederationClient {
    async fn post(
        &self,
        inbox: &str,
        body: &DigestedBody,
        key: &SigningKey,
    ) -> Result<u16, SendError> {
        match self.post_digested(inbox, body, key).await {
            Ok(status) => Ok(status.as_u16()),
            Err(e @ (FetchError::InvalidUrl(_) | FetchError::Blocked(_))) => {
                Err(SendError::Refused(e.to_string()))
            }
            Err(e) => Err(SendError::Failed(e.to_string())),
        }
    }
}

/// Our actors' signing keys: every actor signs with the site key under its own key id.
#[derive(Debug, Clone)]
pub struct Signers {
    key: Arc<PrivateKey>,
    urls: Urls,
}

impl Signers {
    pub fn new(key: Arc<PrivateKey>, urls: Urls) -> Signers {
        Signers { key, urls }
    }

    pub fn for_actor(&self, actor_name: &str) -> SigningKey {
        SigningKey::new(self.urls.key_id(actor_name), self.key.clone())
    }
}

/// Activities being delivered, each body with its digest computed once, however many
/// inboxes it goes to; bounded, as a long-running worker sees new activities forever.
#[derive(Default)]
struct Bodies(HashMap<String, DigestedBody>);

impl Bodies {
    const KEEP: usize = 64;

    /// The body of `delivery`, whose own copy of the JSON is taken (it is not needed again).
    fn take(&mut self, delivery: &mut ClaimedDelivery) -> DigestedBody {
        if let Some(body) = self.0.get(&delivery.activity_id) {
            return body.clone();
        }
        if self.0.len() >= Bodies::KEEP {
            self.0.clear();
        }
        let json = std::mem::take(&mut delivery.body);
        let body = DigestedBody::new(Bytes::from(json));
        self.0.insert(delivery.activity_id.clone(), body.clone());
        body
    }
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub concurrency: usize,
    pub per_host: usize,
    pub max_attempts: u32,
    /// Of one request; the lease of a claimed delivery is a little longer.
    pub timeout: Duration,
    /// Age after which deliveries held for an unavailable server are dropped.
    pub held_expiry: Duration,
}

impl WorkerOptions {
    pub fn from_config(config: &DeliveryConfig) -> WorkerOptions {
        WorkerOptions {
            concurrency: config.concurrency.max(1),
            per_host: config.per_host_connections.max(1),
            max_attempts: config.max_attempts.max(1),
            timeout: Duration::from_secs(config.timeout_secs.max(1)),
            held_expiry: Duration::from_secs(u64::from(config.held_expiry_days.max(1)) * 86_400),
        }
    }
}

/// What one run of the worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub delivered: u64,
    /// Attempts that failed and were rescheduled.
    pub retried: u64,
    /// Deliveries given up on.
    pub failed: u64,
}

impl RunSummary {
    fn count(&mut self, attempt: &Attempt) {
        match attempt {
            Attempt::Delivered { .. } => self.delivered += 1,
            Attempt::Retry { .. } => self.retried += 1,
            Attempt::Failed { .. } => self.failed += 1,
        }
    }
}

/// Sidekiq's delay before retry number `count + 1` (0-based `count`), with the jitter
/// Mastodon adds: `count⁴ + 15 + rand(0.5·count⁴) + rand(10)·(count + 1)` seconds.
pub fn retry_delay(count: u32, rng: &mut impl Rng) -> i64 {
    let power = i64::from(count).pow(4);
    let jitter = rng.gen_range(0..=power / 2);
    let sidekiq_jitter = rng.gen_range(0..10) * (i64::from(count) + 1);
    power + 15 + jitter + sidekiq_jitter
}

/// Turns the answer to one attempt into what to record.
pub fn judge(
    result: &Result<u16, SendError>,
    delivery: &ClaimedDelivery,
    now: i64,
    max_attempts: u32,
    rng: &mut impl Rng,
) -> (Attempt, HostSignal) {
    let mut retry = |status: Option<u16>, error: String| {
        let attempts = delivery.attempts + 1;
        if attempts >= max_attempts {
            Attempt::Failed {
                status,
                error: format!("{error} (gave up after {attempts} attempts)"),
                remove_follower: None,
            }
        } else {
            Attempt::Retry {
                status,
                error,
                next_attempt_at: now + retry_delay(delivery.attempts, rng),
            }
        }
    };
    match result {
        Ok(status @ 200..=299) => (
            Attempt::Delivered { status: *status },
            HostSignal::Reachable,
        ),
        Ok(410) => (
            Attempt::Failed {
                status: Some(410),
                error: "410 Gone".into(),
                remove_follower: delivery.follower_id.clone(),
            },
            HostSignal::Reachable,
        ),
        Ok(status @ (300..=399 | 400..=499 | 501)) if !matches!(status, 401 | 408 | 429) => (
            Attempt::Failed {
                status: Some(*status),
                error: format!("HTTP {}", status_text(*status)),
                remove_follower: None,
            },
            HostSignal::Reachable,
        ),
        Ok(status) => (
            retry(Some(*status), format!("HTTP {}", status_text(*status))),
            HostSignal::Unreachable,
        ),
        Err(SendError::Refused(error)) => (
            Attempt::Failed {
                status: None,
                error: error.clone(),
                remove_follower: None,
            },
            HostSignal::Unknown,
        ),
        Err(SendError::Failed(error)) => (retry(None, error.clone()), HostSignal::Unreachable),
    }
}

fn status_text(status: u16) -> String {
    match http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

/// The queue's worker. Cheap to share: clones of its store and transport are handles.
pub struct Worker<T: Transport, C: Clock> {
    store: Store,
    transport: Arc<T>,
    signers: Signers,
    options: WorkerOptions,
    clock: C,
    wake: Arc<Notify>,
}

/// What the run loop does when nothing is left to claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Return once every delivery is done, failed or waiting for a later retry.
    UntilIdle,
    /// Sleep until the next retry is due or new deliveries are queued.
    Forever,
}

struct Sent {
    delivery: ClaimedDelivery,
    result: Result<u16, SendError>,
}

impl<T: Transport, C: Clock> Worker<T, C> {
    pub fn new(
        store: Store,
        transport: Arc<T>,
        signers: Signers,
        options: WorkerOptions,
        clock: C,
    ) -> Worker<T, C> {
        Worker {
            store,
            transport,
            signers,
            options,
            clock,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Shares `wake` with whoever queues deliveries: notifying it wakes an idle
    /// [`Worker::run`] at once.
    pub fn with_waker(mut self, wake: Arc<Notify>) -> Worker<T, C> {
        self.wake = wake;
        self
    }

    /// Sends every due delivery, and those that come due while it runs, then returns when
    /// nothing is left but deliveries waiting for a later retry. Deliveries leased by another
    /// worker are waited for: done by it, or claimed here once their lease expires.
    /// `on_finish` sees every finished attempt.
    pub async fn run_until_idle(
        &self,
        shutdown: impl Future<Output = ()>,
        on_finish: &mut (dyn FnMut(&FinishedDelivery) + Send),
    ) -> Result<RunSummary, StoreError> {
        self.drive(Mode::UntilIdle, shutdown, on_finish).await
    }

    /// Runs until `shutdown` completes, then finishes the requests in flight.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<RunSummary, StoreError> {
        self.drive(Mode::Forever, shutdown, &mut |_| {}).await
    }

    async fn drive(
        &self,
        mode: Mode,
        shutdown: impl Future<Output = ()>,
        on_finish: &mut (dyn FnMut(&FinishedDelivery) + Send),
    ) -> Result<RunSummary, StoreError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut stopping = false;
        let mut summary = RunSummary::default();
        let mut tasks: JoinSet<Sent> = JoinSet::new();
        let mut hosts_of_tasks: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut busy: HashMap<String, usize> = HashMap::new();
        let mut answered: Vec<Sent> = Vec::new();
        let mut finished: Vec<FinishedDelivery> = Vec::new();
        let mut reported = 0;
        let mut last_prune: Option<i64> = None;
        let mut bodies = Bodies::default();
        let lease_secs = self.options.timeout.as_secs() as i64 + LEASE_MARGIN_SECS;
        loop {
            while let Some(joined) = tasks.try_join_next_with_id() {
                collect(joined, &mut hosts_of_tasks, &mut busy, &mut answered);
            }
            let now = self.clock.now();
            for sent in answered.drain(..) {
                let (attempt, host_signal) = judge(
                    &sent.result,
                    &sent.delivery,
                    now,
                    self.options.max_attempts,
                    &mut rand::thread_rng(),
                );
                finished.push(FinishedDelivery {
                    id: sent.delivery.id,
                    host: sent.delivery.host,
                    attempt,
                    host_signal,
                });
            }
            // `finished` may be carried over a few turns: each is reported once.
            for done in &finished[reported..] {
                summary.count(&done.attempt);
                on_finish(done);
            }
            reported = finished.len();
            let free = if stopping {
                0
            } else {
                self.options.concurrency.saturating_sub(tasks.len())
            };
            // One transaction records what finished and claims what is due. Done after
            // every answer, it costs a queue scan per request: while requests are in
            // flight it waits until a quarter of the slots (or of the answers) is free.
            let batch = (self.options.concurrency / 4).max(1);
            if !tasks.is_empty() && free < batch && finished.len() < batch {
                tokio::select! {
                    Some(joined) = tasks.join_next_with_id() => {
                        collect(joined, &mut hosts_of_tasks, &mut busy, &mut answered);
                    }
                    () = &mut shutdown, if !stopping => stopping = true,
                }
                continue;
            }
            let busy_hosts: Vec<(String, usize)> =
                busy.iter().map(|(h, n)| (h.clone(), *n)).collect();
            let request = ClaimRequest {
                limit: free,
                per_host: self.options.per_host,
                busy: &busy_hosts,
                lease_until: now + lease_secs,
                cooling_failures: COOLING_FAILURES,
                cooling_secs: COOLING_SECS,
            };
            let claimed = self
                .store
                .finish_and_claim(&finished, now, Some(&request))?;
            finished.clear();
            reported = 0;
            for mut delivery in claimed {
                if delivery.host_cooling {
                    finished.push(self.cool_off(delivery, now));
                    continue;
                }
                *busy.entry(delivery.host.clone()).or_default() += 1;
                let host = delivery.host.clone();
                let body = bodies.take(&mut delivery);
                let handle = tasks.spawn(attempt(
                    self.transport.clone(),
                    self.signers.for_actor(&delivery.actor_name),
                    body,
                    delivery,
                ));
                hosts_of_tasks.insert(handle.id(), host);
            }

            if !tasks.is_empty() {
                tokio::select! {
                    Some(joined) = tasks.join_next_with_id() => {
                        collect(joined, &mut hosts_of_tasks, &mut busy, &mut answered);
                    }
                    () = &mut shutdown, if !stopping => stopping = true,
                }
                continue;
            }
            if !finished.is_empty() {
                continue;
            }
            if stopping {
                return Ok(summary);
            }
            match mode {
                Mode::UntilIdle => {
                    if self.store.leased_deliveries(now)? == 0 {
                        return Ok(summary);
                    }
                    // Leased by another worker, or by one that died: wait for the lease.
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        () = &mut shutdown => stopping = true,
                    }
                }
                Mode::Forever => {
                    if last_prune.is_none_or(|at| now - at >= PRUNE_EVERY_SECS) {
                        self.store.prune_deliveries(now - KEEP_FINISHED_SECS)?;
                        let held = self.options.held_expiry.as_secs() as i64;
                        let expired = self.store.expire_held(now, held)?;
                        if expired > 0 {
                            tracing::info!(
                                "delivery: dropped {expired} deliveries held over {} days for unavailable servers",
                                held / 86_400
                            );
                        }
                        last_prune = Some(now);
                    }
                    // At least a second: a due delivery may be waiting behind an earlier one
                    // of the same post, which no claim can take before its retry time.
                    let wait = match self.store.next_delivery_at()? {
                        Some(at) => (at - now).clamp(1, IDLE_POLL_SECS),
                        None => IDLE_POLL_SECS,
                    };
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(wait as u64)) => {}
                        () = self.wake.notified() => {}
                        () = &mut shutdown => stopping = true,
                    }
                }
            }
        }
    }

    /// A delivery to a host cooling off is rescheduled unsent; the host's record is left
    /// alone, so the cooling ends a minute after its last real failure.
    fn cool_off(&self, delivery: ClaimedDelivery, now: i64) -> FinishedDelivery {
        let error = SendError::Failed(format!(
            "{} failed {COOLING_FAILURES} times in a row: cooling off for {COOLING_SECS} s",
            delivery.host
        ));
        let (attempt, _) = judge(
            &Err(error),
            &delivery,
            now,
            self.options.max_attempts,
            &mut rand::thread_rng(),
        );
        FinishedDelivery {
            id: delivery.id,
            host: delivery.host,
            attempt,
            host_signal: HostSignal::Unknown,
        }
    }
}

/// Takes a finished request off the busy hosts. A request task that panicked has no answer:
/// its delivery stays leased and is claimed again when the lease ends.
fn collect(
    joined: Result<(tokio::task::Id, Sent), tokio::task::JoinError>,
    hosts_of_tasks: &mut HashMap<tokio::task::Id, String>,
    busy: &mut HashMap<String, usize>,
    answered: &mut Vec<Sent>,
) {
    let id = match &joined {
        Ok((id, _)) => *id,
        Err(e) => e.id(),
    };
    if let Some(host) = hosts_of_tasks.remove(&id) {
        if let Some(count) = busy.get_mut(&host) {
            *count -= 1;
            if *count == 0 {
                busy.remove(&host);
            }
        }
    }
    match joined {
        Ok((_, sent)) => answered.push(sent),
        Err(e) => tracing::error!("delivery task failed: {e}"),
    }
}

async fn attempt<T: Transport>(
    transport: Arc<T>,
    key: SigningKey,
    body: DigestedBody,
    delivery: ClaimedDelivery,
) -> Sent {
    let result = transport.post(&delivery.inbox, &body, &key).await;
    Sent { delivery, result }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SiteConfig;
    use crate::store::queue::{QueuedActivity, Recipient};
    use std::collections::VecDeque;
    use std::path::Path;
    use std::sync::Mutex;

    const START: i64 = 1_800_000_000;

    /// Answers from a script per inbox (202 once the script is used up) and records calls.
    #[derive(Default)]
    struct FakeTransport {
        script: Mutex<HashMap<String, VecDeque<Result<u16, SendError>>>>,
        calls: Mutex<Vec<(String, String)>>,
        in_flight: Mutex<HashMap<String, usize>>,
        peak_per_host: Mutex<usize>,
        peak_total: Mutex<usize>,
        /// Per call: where the body's bytes live, and its digest.
        bodies: Mutex<Vec<(usize, String)>>,
    }

    impl FakeTransport {
        fn answer(&self, inbox: &str, answers: Vec<Result<u16, SendError>>) {
            self.script
                .lock()
                .unwrap()
                .insert(inbox.to_string(), answers.into());
        }

        fn calls_to(&self, inbox: &str) -> usize {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|(i, _)| i == inbox)
                .count()
        }
    }

    impl Transport for FakeTransport {
        async fn post(
            &self,
            inbox: &str,
            body: &DigestedBody,
            key: &SigningKey,
        ) -> Result<u16, SendError> {
            self.bodies
                .lock()
                .unwrap()
                .push((body.bytes().as_ptr() as usize, body.digest().to_string()));
            let host = crate::store::host_of(inbox).unwrap();
            {
                let mut in_flight = self.in_flight.lock().unwrap();
                *in_flight.entry(host.clone()).or_default() += 1;
                let mut peak = self.peak_per_host.lock().unwrap();
                *peak = (*peak).max(in_flight[&host]);
                let mut total = self.peak_total.lock().unwrap();
                *total = (*total).max(in_flight.values().sum());
            }
            // Let the other requests start before this one ends.
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
            *self.in_flight.lock().unwrap().get_mut(&host).unwrap() -= 1;
            self.calls
                .lock()
                .unwrap()
                .push((inbox.to_string(), key.key_id.clone()));
            self.script
                .lock()
                .unwrap()
                .get_mut(inbox)
                .and_then(VecDeque::pop_front)
                .unwrap_or(Ok(202))
        }
    }

    fn signers() -> Signers {
        let config = SiteConfig::parse(
            "title = \"T\"\nbase_url = \"https://blog.example\"\n",
            Path::new("config.toml"),
        )
        .unwrap();
        let key =
            PrivateKey::from_pem(crate::federation::keys::test_keys::TEST_PRIVATE_PEM).unwrap();
        Signers::new(Arc::new(key), Urls::new(&config))
    }

    fn options(concurrency: usize, per_host: usize) -> WorkerOptions {
        WorkerOptions {
            concurrency,
            per_host,
            max_attempts: 16,
            timeout: Duration::from_secs(10),
            held_expiry: Duration::from_secs(7 * 86_400),
        }
    }

    fn queue(store: &Store, id: &str, actor: &str, recipients: Vec<Recipient>) {
        let activity = QueuedActivity {
            activity_id: id.into(),
            object_id: Some(format!("{id}-object")),
            actor_name: actor.into(),
            body: format!("{{\"id\":\"{id}\"}}"),
            recipients,
        };
        store
            .queue_transaction(|q| q.enqueue(&activity, START))
            .unwrap();
    }

    fn to(inbox: &str) -> Recipient {
        Recipient {
            inbox: inbox.into(),
            follower_id: None,
        }
    }

    fn worker(
        store: &Store,
        transport: &Arc<FakeTransport>,
        clock: &ManualClock,
        options: WorkerOptions,
    ) -> Worker<FakeTransport, ManualClock> {
        Worker::new(
            store.clone(),
            transport.clone(),
            signers(),
            options,
            clock.clone(),
        )
    }

    async fn drain(worker: &Worker<FakeTransport, ManualClock>) -> RunSummary {
        worker
            .run_until_idle(std::future::pending(), &mut |_| {})
            .await
            .unwrap()
    }

    #[test]
    fn retry_delays_follow_sidekiq_and_grow_to_days() {
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            let first = retry_delay(0, &mut rng);
            assert!((15..=24).contains(&first), "{first}");
            let tenth = retry_delay(10, &mut rng);
            assert!((10_015..=10_015 + 5_000 + 99).contains(&tenth), "{tenth}");
        }
        // 16 attempts: 15 retries, at least Σ c⁴ + 15 s for c < 15, about a day and a half.
        let total: i64 = (0..15).map(|c| retry_delay(c, &mut rng)).sum();
        assert!(total >= 127_912, "16 attempts span {total} s");
    }

    #[test]
    fn answers_are_judged_as_mastodon_judges_them() {
        let delivery = ClaimedDelivery {
            id: 1,
            activity_id: "a".into(),
            actor_name: "blog".into(),
            inbox: "https://m.example/users/x/inbox".into(),
            host: "m.example".into(),
            follower_id: Some("https://m.example/users/x".into()),
            body: "{}".into(),
            attempts: 0,
            host_cooling: false,
        };
        let mut rng = rand::thread_rng();
        let mut judge_of =
            |result: Result<u16, SendError>| judge(&result, &delivery, START, 16, &mut rng);
        assert_eq!(
            judge_of(Ok(202)),
            (Attempt::Delivered { status: 202 }, HostSignal::Reachable)
        );
        for status in [500, 502, 503, 401, 408, 429] {
            let (attempt, signal) = judge_of(Ok(status));
            assert!(
                matches!(attempt, Attempt::Retry { next_attempt_at, .. } if next_attempt_at > START),
                "{status}"
            );
            assert_eq!(signal, HostSignal::Unreachable);
        }
        for status in [400, 403, 404, 422, 501, 301] {
            let (attempt, signal) = judge_of(Ok(status));
            assert!(
                matches!(
                    attempt,
                    Attempt::Failed {
                        remove_follower: None,
                        ..
                    }
                ),
                "{status}"
            );
            assert_eq!(signal, HostSignal::Reachable);
        }
        let (gone, _) = judge_of(Ok(410));
        assert!(
            matches!(gone, Attempt::Failed { remove_follower: Some(ref id), .. } if id == "https://m.example/users/x")
        );
        let (refused, signal) = judge_of(Err(SendError::Refused("private address".into())));
        assert!(matches!(refused, Attempt::Failed { .. }));
        assert_eq!(signal, HostSignal::Unknown);
        let (timeout, _) = judge_of(Err(SendError::Failed("timeout".into())));
        assert!(matches!(timeout, Attempt::Retry { .. }));

        let last = ClaimedDelivery {
            attempts: 15,
            ..delivery.clone()
        };
        let (attempt, _) = judge(&Ok(503), &last, START, 16, &mut rng);
        assert!(
            matches!(attempt, Attempt::Failed { ref error, .. } if error.contains("gave up after 16 attempts"))
        );
    }

    #[tokio::test]
    async fn failed_deliveries_are_retried_after_their_delay_and_succeed() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        let clock = ManualClock::new(START);
        transport.answer(
            "https://flaky.example/inbox",
            vec![Ok(500), Err(SendError::Failed("connection refused".into()))],
        );
        queue(
            &store,
            "a",
            "alice",
            vec![
                to("https://flaky.example/inbox"),
                to("https://ok.example/inbox"),
            ],
        );
        let w = worker(&store, &transport, &clock, options(8, 2));

        let first = drain(&w).await;
        assert_eq!(
            first,
            RunSummary {
                delivered: 1,
                retried: 1,
                failed: 0
            }
        );
        assert_eq!(store.queue_counts(START).unwrap().waiting, 1);
        // Nothing is due before the retry time.
        clock.advance(14);
        assert_eq!(drain(&w).await, RunSummary::default());
        clock.advance(11);
        assert_eq!(
            drain(&w).await,
            RunSummary {
                delivered: 0,
                retried: 1,
                failed: 0
            }
        );
        clock.advance(24 + 16);
        assert_eq!(
            drain(&w).await,
            RunSummary {
                delivered: 1,
                retried: 0,
                failed: 0
            }
        );
        assert_eq!(transport.calls_to("https://flaky.example/inbox"), 3);
        assert_eq!(transport.calls_to("https://ok.example/inbox"), 1);
        let records = store.deliveries_of("a").unwrap();
        assert!(records.iter().all(|r| r.state == "done"));
        assert_eq!(records[0].attempts, 3);
        // Signed as the activity's actor.
        let calls = transport.calls.lock().unwrap();
        assert!(calls
            .iter()
            .all(|(_, key)| key == "https://blog.example/ap/users/alice.json#main-key"));
    }

    #[tokio::test]
    async fn gone_is_not_retried_and_removes_the_follower() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        let clock = ManualClock::new(START);
        let follower = crate::store::RemoteActor {
            id: "https://gone.example/users/x".into(),
            inbox: "https://gone.example/users/x/inbox".into(),
            shared_inbox: None,
            name: "X".into(),
            handle: "@x@gone.example".into(),
            url: "https://gone.example/@x".into(),
            avatar: None,
            public_key_pem: "PEM".into(),
            key_id: "https://gone.example/users/x#main-key".into(),
            also_known_as: vec![],
            moved_to: None,
            fetched_at: "2027-01-01T00:00:00Z".into(),
        };
        store
            .upsert_follower(&crate::store::NewFollower {
                actor_name: "blog",
                follower: &follower,
                follow_activity_id: "https://gone.example/f/1",
                state: crate::store::FollowState::Accepted,
            })
            .unwrap();
        transport.answer(&follower.inbox, vec![Ok(410)]);
        queue(
            &store,
            "a",
            "blog",
            vec![Recipient {
                inbox: follower.inbox.clone(),
                follower_id: Some(follower.id.clone()),
            }],
        );
        let w = worker(&store, &transport, &clock, options(8, 2));
        assert_eq!(
            drain(&w).await,
            RunSummary {
                delivered: 0,
                retried: 0,
                failed: 1
            }
        );
        clock.advance(30 * 86_400);
        assert_eq!(drain(&w).await, RunSummary::default());
        assert_eq!(transport.calls_to(&follower.inbox), 1);
        assert!(store.followers(None).unwrap().is_empty());
    }

    #[tokio::test]
    async fn concurrency_is_bounded_globally_and_per_host() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        let clock = ManualClock::new(START);
        let mut recipients = Vec::new();
        for host in 0..5 {
            for user in 0..10 {
                recipients.push(to(&format!("https://h{host}.example/users/{user}/inbox")));
            }
        }
        queue(&store, "a", "blog", recipients);
        let w = worker(&store, &transport, &clock, options(6, 2));
        let summary = drain(&w).await;
        assert_eq!(summary.delivered, 50);
        assert_eq!(transport.calls.lock().unwrap().len(), 50);
        assert_eq!(*transport.peak_per_host.lock().unwrap(), 2);
        assert_eq!(*transport.peak_total.lock().unwrap(), 6);
    }

    #[tokio::test]
    async fn each_activity_is_digested_once_for_all_its_inboxes() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        let clock = ManualClock::new(START);
        let inboxes = |server: &str| -> Vec<Recipient> {
            (0..5)
                .map(|n| to(&format!("https://{server}{n}.example/inbox")))
                .collect()
        };
        queue(&store, "a", "blog", inboxes("a"));
        queue(&store, "b", "blog", inboxes("b"));
        let w = worker(&store, &transport, &clock, options(4, 1));
        assert_eq!(drain(&w).await.delivered, 10);
        let bodies = transport.bodies.lock().unwrap();
        let mut distinct: Vec<&(usize, String)> = bodies.iter().collect();
        distinct.sort();
        distinct.dedup();
        // One shared buffer and one digest per activity, whatever the number of inboxes.
        assert_eq!(distinct.len(), 2, "{bodies:?}");
        let digests: Vec<&str> = distinct.iter().map(|(_, d)| d.as_str()).collect();
        for id in ["a", "b"] {
            let digest = crate::federation::signature::digest_header(
                format!("{{\"id\":\"{id}\"}}").as_bytes(),
            );
            assert!(digests.contains(&digest.as_str()), "{digests:?}");
        }
    }

    #[tokio::test]
    async fn a_host_failing_ten_times_in_a_row_cools_off_without_requests() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        let clock = ManualClock::new(START);
        let inboxes: Vec<String> = (0..14)
            .map(|u| format!("https://down.example/users/{u}/inbox"))
            .collect();
        for inbox in &inboxes {
            transport.answer(inbox, vec![Ok(503); 3]);
        }
        queue(&store, "a", "blog", inboxes.iter().map(|i| to(i)).collect());
        let w = worker(&store, &transport, &clock, options(1, 1));
        let summary = drain(&w).await;
        // One at a time: ten requests fail, the four others are rescheduled unsent.
        assert_eq!(summary.retried, 14);
        assert_eq!(transport.calls.lock().unwrap().len(), 10);
        let host = &store.troubled_hosts().unwrap()[0];
        assert_eq!(host.consecutive_failures, 10);
    }

    #[tokio::test]
    async fn a_lease_left_by_a_dead_worker_is_taken_over() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        let clock = ManualClock::new(START);
        queue(&store, "a", "blog", vec![to("https://m.example/inbox")]);
        // A worker claimed it and died.
        let busy = Vec::new();
        let claimed = store
            .finish_and_claim(
                &[],
                START,
                Some(&ClaimRequest {
                    limit: 1,
                    per_host: 1,
                    busy: &busy,
                    lease_until: START + 20,
                    cooling_failures: COOLING_FAILURES,
                    cooling_secs: COOLING_SECS,
                }),
            )
            .unwrap();
        assert_eq!(claimed.len(), 1);
        let w = worker(&store, &transport, &clock, options(4, 2));
        let clock_mover = clock.clone();
        // The lease ends while the new worker waits for it.
        let run = tokio::spawn(async move {
            w.run_until_idle(std::future::pending(), &mut |_| {})
                .await
                .unwrap()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!run.is_finished());
        clock_mover.advance(20);
        let summary = run.await.unwrap();
        assert_eq!(summary.delivered, 1);
        assert_eq!(transport.calls_to("https://m.example/inbox"), 1);
    }

    #[tokio::test]
    async fn run_sends_what_is_queued_while_it_waits_and_stops_on_shutdown() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        let clock = ManualClock::new(START);
        let wake = Arc::new(Notify::new());
        let w = worker(&store, &transport, &clock, options(4, 2)).with_waker(wake.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(async move {
            w.run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        queue(&store, "a", "blog", vec![to("https://m.example/inbox")]);
        wake.notify_one();
        // Bounded only so that a broken worker fails the test instead of hanging it.
        tokio::time::timeout(Duration::from_secs(30), async {
            while transport.calls_to("https://m.example/inbox") == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        stop.send(()).unwrap();
        let summary = run.await.unwrap();
        assert_eq!(summary.delivered, 1);
        assert_eq!(store.queue_counts(START).unwrap().done, 1);
    }
}
