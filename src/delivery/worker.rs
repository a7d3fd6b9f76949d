//! Drains the delivery queue: signed POSTs, many at once but few per host, each answer
//! judged by `policy` (Mastodon's `ActivityPub::DeliveryWorker` rules).
//!
//! One turn of the loop records what finished and claims what is due (one store
//! transaction, run off the async threads through [`crate::store::blocking`]), then sends
//! the claimed deliveries; the answers are judged as they come back and recorded by the
//! next turn.
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
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::config::DeliveryConfig;
use crate::federation::fetch::{FederationClient, FetchError};
use crate::federation::keys::PrivateKey;
use crate::federation::signature::{DigestedBody, SigningKey};
use crate::federation::urls::Urls;
use crate::store::queue::{Attempt, ClaimRequest, ClaimedDelivery, FinishedDelivery, WHOLE_QUEUE};
use crate::store::{self, HostSignal, Store, StoreError};

use super::policy::{judge, SendError};

/// Time the worker may need beyond its requests' timeouts before a lease runs out.
const LEASE_MARGIN_SECS: i64 = 10;
/// Requests one delivery may make: a 401 is tried once more in the other signature style.
const REQUESTS_PER_DELIVERY: i64 = 2;
/// The longest a judged answer waits for others to be recorded with it: its lease must
/// not run out while it waits behind slower requests.
const RECORD_WITHIN: Duration = Duration::from_secs(1);
/// How long a background worker waits before trying the store again after an error, at
/// first and at most.
const STORE_RETRY_SECS: (u64, u64) = (1, 30);
/// Consecutive failures after which a host cools off (Mastodon's `STOPLIGHT_FAILURE_THRESHOLD`)...
const COOLING_FAILURES: u32 = 10;
/// ...for this long (`STOPLIGHT_COOLDOWN`).
const COOLING_SECS: i64 = 60;
/// The longest an idle background worker sleeps before looking at the queue again.
const IDLE_POLL_SECS: i64 = 60;
/// The same on a store shared with other processes (PostgreSQL): their enqueues cannot
/// wake this worker, so it looks again soon.
const SHARED_IDLE_POLL_SECS: i64 = 1;
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

    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
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

/// What one run of the loop keeps between its turns.
#[derive(Default)]
struct Run {
    summary: RunSummary,
    tasks: JoinSet<Sent>,
    hosts_of_tasks: HashMap<tokio::task::Id, String>,
    /// Requests in flight per host.
    busy: HashMap<String, usize>,
    /// Answers not judged yet.
    answered: Vec<Sent>,
    /// Judged attempts not recorded yet: they may be carried over a few turns...
    finished: Vec<FinishedDelivery>,
    /// ...from this moment on, at most [`RECORD_WITHIN`].
    finished_since: Option<tokio::time::Instant>,
    /// After a store error, the wait before the next try (background worker only).
    store_retry: Option<Duration>,
    /// How many of `finished` were reported already: each is reported once.
    reported: usize,
    bodies: Bodies,
    stopping: bool,
    /// When a claim last looked at every due delivery and found fewer than it asked for:
    /// until the next second, claims look only at the earliest ones. Without it, one
    /// server's many personal inboxes (no shared inbox) made every freed slot scan all of
    /// that server's deliveries, which filled the front of the queue (2,000 followers on
    /// one server: 3.1 s; 6,000: 19.8 s).
    scanned_all_at: Option<i64>,
}

impl Run {
    /// Takes in the requests that have finished, without waiting.
    fn collect_ready(&mut self) {
        while let Some(joined) = self.tasks.try_join_next_with_id() {
            collect(
                joined,
                &mut self.hosts_of_tasks,
                &mut self.busy,
                &mut self.answered,
            );
        }
    }

    /// Waits for one request to finish, for the shutdown, or until the answers waiting to
    /// be recorded have waited [`RECORD_WITHIN`].
    async fn wait_for_answer(&mut self, shutdown: &mut (impl Future<Output = ()> + Unpin)) {
        let record_by = self.finished_since.map(|since| since + RECORD_WITHIN);
        tokio::select! {
            Some(joined) = self.tasks.join_next_with_id() => {
                collect(joined, &mut self.hosts_of_tasks, &mut self.busy, &mut self.answered);
            }
            () = shutdown, if !self.stopping => self.stopping = true,
            () = sleep_until_some(record_by) => {}
        }
    }

    /// Whether judged answers have waited long enough to be recorded without more.
    fn record_due(&self) -> bool {
        self.finished_since
            .is_some_and(|since| since.elapsed() >= RECORD_WITHIN)
    }

    /// Judges the answers by the retry policy and reports each finished attempt once.
    fn judge_answers(
        &mut self,
        now: i64,
        max_attempts: u32,
        on_finish: &mut (dyn FnMut(&FinishedDelivery) + Send),
    ) {
        for sent in self.answered.drain(..) {
            let (attempt, host_signal) = judge(
                &sent.result,
                &sent.delivery,
                now,
                max_attempts,
                &mut rand::thread_rng(),
            );
            self.finished.push(FinishedDelivery {
                id: sent.delivery.id,
                host: sent.delivery.host,
                attempt,
                host_signal,
                lease_until: sent.delivery.lease_until,
            });
        }
        for done in &self.finished[self.reported..] {
            self.summary.count(&done.attempt);
            on_finish(done);
        }
        self.reported = self.finished.len();
        if !self.finished.is_empty() && self.finished_since.is_none() {
            self.finished_since = Some(tokio::time::Instant::now());
        }
    }
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

    /// For a process with a deadline (a Lambda invocation): like [`Worker::run_until_idle`],
    /// but claims nothing from `stop_claiming` on and then only finishes the requests in
    /// flight (each bounded by the request timeout). What is left stays queued for the next
    /// run; a delivery cut off by the process being frozen is claimed again after its lease.
    pub async fn drain_until(
        &self,
        stop_claiming: tokio::time::Instant,
    ) -> Result<RunSummary, StoreError> {
        self.drive(
            Mode::UntilIdle,
            tokio::time::sleep_until(stop_claiming),
            &mut |_| {},
        )
        .await
    }

    /// What the background loop does once an hour, for a worker that has no background:
    /// forgets old finished deliveries and gives up on those held too long.
    pub async fn housekeeping(&self) -> Result<(), StoreError> {
        self.prune(self.clock.now()).await
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
        let mut run = Run::default();
        let mut last_prune: Option<i64> = None;
        loop {
            run.collect_ready();
            let now = self.clock.now();
            run.judge_answers(now, self.options.max_attempts, on_finish);
            let free = if run.stopping {
                0
            } else {
                self.options.concurrency.saturating_sub(run.tasks.len())
            };
            // One transaction records what finished and claims what is due. Done after
            // every answer, it costs a queue scan per request: while requests are in
            // flight it waits until a quarter of the slots (or of the answers) is free.
            let batch = (self.options.concurrency / 4).max(1);
            if !run.tasks.is_empty()
                && free < batch
                && run.finished.len() < batch
                && !run.record_due()
            {
                run.wait_for_answer(&mut shutdown).await;
                continue;
            }
            match self.record_and_claim(&mut run, now, free).await {
                Ok(claimed) => self.send(&mut run, claimed, now),
                Err(e) => {
                    self.after_store_error(mode, e, &mut run, &mut shutdown)
                        .await?;
                    continue;
                }
            }

            if !run.tasks.is_empty() {
                run.wait_for_answer(&mut shutdown).await;
                continue;
            }
            if !run.finished.is_empty() {
                continue;
            }
            if run.stopping {
                return Ok(run.summary);
            }
            match mode {
                Mode::UntilIdle => {
                    let leased =
                        store::blocking(&self.store, move |s| s.leased_deliveries(now)).await?;
                    if leased == 0 {
                        return Ok(run.summary);
                    }
                    // Leased by another worker, or by one that died: wait for the lease.
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        () = &mut shutdown => run.stopping = true,
                    }
                }
                Mode::Forever => {
                    if last_prune.is_none_or(|at| now - at >= PRUNE_EVERY_SECS) {
                        // Pruning can wait for the next hour.
                        if let Err(e) = self.prune(now).await {
                            tracing::warn!("delivery: pruning the queue failed: {e}");
                        }
                        last_prune = Some(now);
                    }
                    // At least a second: a due delivery may be waiting behind an earlier one
                    // of the same post, which no claim can take before its retry time.
                    let next = match store::blocking(&self.store, |s| s.next_delivery_at()).await {
                        Ok(next) => next,
                        Err(e) => {
                            self.after_store_error(mode, e, &mut run, &mut shutdown)
                                .await?;
                            continue;
                        }
                    };
                    let idle = if self.store.is_postgres() {
                        SHARED_IDLE_POLL_SECS
                    } else {
                        IDLE_POLL_SECS
                    };
                    let wait = match next {
                        Some(at) => (at - now).clamp(1, idle),
                        None => idle,
                    };
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(wait as u64)) => {}
                        () = self.wake.notified() => {}
                        () = &mut shutdown => run.stopping = true,
                    }
                }
            }
        }
    }

    /// A store call failed. `relais publish` and a Lambda invocation stop with the error (the
    /// queue keeps what they did not finish); the background worker of `relais inbox` must
    /// not stop delivering for good over a busy database or a dropped connection: it says so,
    /// waits (longer each time, up to half a minute) and goes on, its answers kept.
    async fn after_store_error(
        &self,
        mode: Mode,
        error: StoreError,
        run: &mut Run,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<(), StoreError> {
        if mode == Mode::UntilIdle || run.stopping {
            return Err(error);
        }
        let (first, most) = STORE_RETRY_SECS;
        let wait = run.store_retry.map_or(Duration::from_secs(first), |last| {
            (last * 2).min(Duration::from_secs(most))
        });
        run.store_retry = Some(wait);
        tracing::error!(
            "delivery: the store failed ({error}); trying again in {} s",
            wait.as_secs()
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown, if !run.stopping => run.stopping = true,
        }
        Ok(())
    }

    /// Records the judged attempts and claims up to `free` due deliveries, in one store
    /// transaction off the async threads. On an error the attempts stay to be recorded.
    async fn record_and_claim(
        &self,
        run: &mut Run,
        now: i64,
        free: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let finished = Arc::new(std::mem::take(&mut run.finished));
        let busy: Vec<(String, usize)> = run.busy.iter().map(|(h, n)| (h.clone(), *n)).collect();
        // Long enough for every request the delivery may make, so that no other claim
        // (this worker's or another's) takes it while it is still in flight.
        let lease_until =
            now + REQUESTS_PER_DELIVERY * self.options.timeout.as_secs() as i64 + LEASE_MARGIN_SECS;
        let per_host = self.options.per_host;
        // Only busy hosts can fill the front of the queue with deliveries no claim takes.
        let max_scan = match run.scanned_all_at {
            Some(at) if at == now && !busy.is_empty() => 0,
            _ => WHOLE_QUEUE,
        };
        let recording = finished.clone();
        let claimed = store::blocking(&self.store, move |store| {
            let request = ClaimRequest {
                limit: free,
                per_host,
                busy: &busy,
                lease_until,
                cooling_failures: COOLING_FAILURES,
                cooling_secs: COOLING_SECS,
                max_scan,
            };
            store.finish_and_claim(&recording, now, Some(&request))
        })
        .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(e) => {
                // Reported already: they are only to be recorded.
                run.finished = Arc::try_unwrap(finished).unwrap_or_else(|f| f.as_ref().clone());
                run.reported = run.finished.len();
                return Err(e);
            }
        };
        run.reported = 0;
        run.finished_since = None;
        run.store_retry = None;
        if max_scan == WHOLE_QUEUE && claimed.len() < free {
            run.scanned_all_at = Some(now);
        }
        Ok(claimed)
    }

    /// Starts a request for each claimed delivery; one to a host cooling off is finished
    /// unsent instead.
    fn send(&self, run: &mut Run, claimed: Vec<ClaimedDelivery>, now: i64) {
        for mut delivery in claimed {
            if delivery.host_cooling {
                run.finished.push(self.cool_off(delivery, now));
                continue;
            }
            *run.busy.entry(delivery.host.clone()).or_default() += 1;
            let host = delivery.host.clone();
            let body = run.bodies.take(&mut delivery);
            let handle = run.tasks.spawn(attempt(
                self.transport.clone(),
                self.signers.for_actor(&delivery.actor_name),
                body,
                delivery,
            ));
            run.hosts_of_tasks.insert(handle.id(), host);
        }
    }

    /// Forgets old finished deliveries and gives up on those held too long.
    async fn prune(&self, now: i64) -> Result<(), StoreError> {
        let held = self.options.held_expiry.as_secs() as i64;
        let expired = store::blocking(&self.store, move |store| {
            store.prune_deliveries(now - KEEP_FINISHED_SECS)?;
            store.expire_held(now, held)
        })
        .await?;
        if expired > 0 {
            tracing::info!(
                "delivery: dropped {expired} deliveries held over {} days for unavailable servers",
                held / 86_400
            );
        }
        Ok(())
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
            lease_until: delivery.lease_until,
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

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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
        /// How long each request takes...
        delay: Mutex<Duration>,
        /// ...unless its inbox has a delay of its own.
        delays: Mutex<HashMap<String, Duration>>,
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
            let delay = match self.delays.lock().unwrap().get(inbox) {
                Some(delay) => *delay,
                None => *self.delay.lock().unwrap(),
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
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

    /// Runs `worker` in the background, as `relais inbox` does, until the sender is used.
    fn in_background(
        worker: Worker<FakeTransport, ManualClock>,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<RunSummary, StoreError>>,
    ) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(async move {
            worker
                .run(async {
                    let _ = stopped.await;
                })
                .await
        });
        (stop, run)
    }

    async fn drain(worker: &Worker<FakeTransport, ManualClock>) -> RunSummary {
        worker
            .run_until_idle(std::future::pending(), &mut |_| {})
            .await
            .unwrap()
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
            fetched_at: "2027-01-01T00:00:00Z".parse().unwrap(),
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

    /// One server's many personal inboxes fill the front of the queue: claims that look
    /// only at the earliest deliveries (the whole queue was looked at this second) still
    /// deliver everything once, the other server's delivery queued behind them included.
    #[tokio::test]
    async fn a_server_with_many_personal_inboxes_does_not_hide_the_others() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        let clock = ManualClock::new(START);
        let recipients: Vec<Recipient> = (0..150)
            .map(|user| to(&format!("https://big.example/users/{user}/inbox")))
            .collect();
        queue(&store, "a", "blog", recipients);
        queue(&store, "b", "blog", vec![to("https://small.example/inbox")]);
        let w = worker(&store, &transport, &clock, options(8, 2));
        let summary = drain(&w).await;
        assert_eq!(summary.delivered, 151);
        let calls = transport.calls.lock().unwrap();
        let mut inboxes: Vec<&str> = calls.iter().map(|(inbox, _)| inbox.as_str()).collect();
        inboxes.sort_unstable();
        inboxes.dedup();
        assert_eq!((calls.len(), inboxes.len()), (151, 151));
        assert!(inboxes.contains(&"https://small.example/inbox"));
        assert_eq!(*transport.peak_per_host.lock().unwrap(), 2);
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
                    max_scan: WHOLE_QUEUE,
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

    /// Hides the queue's table from the store, which then fails every queue call (as a
    /// lock held too long or a dropped connection would), until [`mend_queue`].
    fn break_queue(store: &Store) {
        store
            .with_conn(|c| c.execute_batch("ALTER TABLE deliveries RENAME TO deliveries_away"))
            .unwrap();
    }

    fn mend_queue(store: &Store) {
        store
            .with_conn(|c| c.execute_batch("ALTER TABLE deliveries_away RENAME TO deliveries"))
            .unwrap();
    }

    #[tokio::test]
    async fn the_background_worker_outlives_a_failing_store() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        let clock = ManualClock::new(START);
        queue(&store, "a", "blog", vec![to("https://m.example/inbox")]);
        break_queue(&store);
        let w = worker(&store, &transport, &clock, options(4, 2));
        let (stop, run) = in_background(w);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !run.is_finished(),
            "the worker stopped at the store's error"
        );
        assert_eq!(transport.calls_to("https://m.example/inbox"), 0);
        mend_queue(&store);
        // It tries again after a second.
        for _ in 0..40 {
            if store.queue_counts(START).unwrap().done == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(store.queue_counts(START).unwrap().done, 1);
        stop.send(()).unwrap();
        assert_eq!(run.await.unwrap().unwrap().delivered, 1);
        assert_eq!(transport.calls_to("https://m.example/inbox"), 1);
    }

    #[tokio::test]
    async fn a_publish_stops_at_a_store_error_and_its_delivery_stays_leased() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        *transport.delay.lock().unwrap() = Duration::from_millis(200);
        let clock = ManualClock::new(START);
        queue(&store, "a", "blog", vec![to("https://m.example/inbox")]);
        let w = worker(&store, &transport, &clock, options(4, 2));
        let breaker = store.clone();
        let run =
            tokio::spawn(
                async move { w.run_until_idle(std::future::pending(), &mut |_| {}).await },
            );
        // The request is in flight when the store fails: the record of its answer fails.
        tokio::time::sleep(Duration::from_millis(50)).await;
        break_queue(&breaker);
        assert!(run.await.unwrap().is_err());
        mend_queue(&store);
        // Nothing recorded: still leased, so sent again once its lease ends, not lost.
        assert_eq!(store.queue_counts(START).unwrap().leased, 1);
    }

    #[tokio::test]
    async fn a_delivery_stays_leased_for_as_long_as_its_requests_may_take() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        *transport.delay.lock().unwrap() = Duration::from_millis(300);
        let clock = ManualClock::new(START);
        queue(&store, "a", "blog", vec![to("https://m.example/inbox")]);
        let w = worker(&store, &transport, &clock, options(4, 2));
        let run =
            tokio::spawn(
                async move { w.run_until_idle(std::future::pending(), &mut |_| {}).await },
            );
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A 401 is tried again in the other signature style: two whole timeouts (10 s).
        let leased_at = |t: i64| store.queue_counts(t).unwrap().leased;
        assert_eq!(leased_at(START + 20), 1);
        assert_eq!(leased_at(START + 30), 0);
        assert_eq!(run.await.unwrap().unwrap().delivered, 1);
    }

    #[tokio::test]
    async fn an_answer_is_recorded_within_a_second_though_slower_requests_are_in_flight() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        let clock = ManualClock::new(START);
        let mut inboxes = vec![to("https://fast.example/inbox")];
        for u in 0..14 {
            let inbox = format!("https://slow{u}.example/inbox");
            transport
                .delays
                .lock()
                .unwrap()
                .insert(inbox.clone(), Duration::from_secs(5));
            inboxes.push(to(&inbox));
        }
        queue(&store, "a", "blog", inboxes);
        // Sixteen slots: a claim waits for four free ones or four answers, but the one fast
        // answer among fourteen slow requests waits no more than a second.
        let w = worker(&store, &transport, &clock, options(16, 2));
        let (stop, run) = in_background(w);
        tokio::time::sleep(Duration::from_millis(1_600)).await;
        let state_of = |inbox: &str| {
            store
                .deliveries_of("a")
                .unwrap()
                .into_iter()
                .find(|r| r.inbox == inbox)
                .unwrap()
                .state
        };
        assert_eq!(state_of("https://fast.example/inbox"), "done");
        assert_eq!(state_of("https://slow0.example/inbox"), "pending");
        stop.send(()).unwrap();
        assert_eq!(run.await.unwrap().unwrap().delivered, 15);
    }

    #[tokio::test]
    async fn a_drain_until_a_deadline_claims_nothing_after_it_and_leaves_the_rest_queued() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        *transport.delay.lock().unwrap() = Duration::from_millis(100);
        let clock = ManualClock::new(START);
        let inboxes: Vec<Recipient> = (0..20)
            .map(|u| to(&format!("https://slow.example/users/{u}/inbox")))
            .collect();
        queue(&store, "a", "blog", inboxes);
        // One request at a time: the 20 take 2 s, the drain may claim for 0.5 s.
        let w = worker(&store, &transport, &clock, options(4, 1));
        let summary = w
            .drain_until(tokio::time::Instant::now() + Duration::from_millis(500))
            .await
            .unwrap();
        let sent = transport.calls.lock().unwrap().len() as u64;
        assert_eq!(summary.delivered, sent);
        assert!(sent < 20, "{summary:?}");
        // Nothing is left leased: what was not sent waits, due, for the next run.
        let counts = store.queue_counts(START).unwrap();
        assert_eq!(counts.leased, 0, "{counts:?}");
        assert_eq!(counts.done, sent, "{counts:?}");
        assert_eq!(counts.due, 20 - sent, "{counts:?}");
        assert_eq!(
            w.drain_until(tokio::time::Instant::now() + Duration::from_secs(30))
                .await
                .unwrap()
                .delivered,
            20 - sent
        );
    }

    #[tokio::test]
    async fn run_sends_what_is_queued_while_it_waits_and_stops_on_shutdown() {
        let store = Store::open_in_memory().unwrap();
        let transport = Arc::new(FakeTransport::default());
        let clock = ManualClock::new(START);
        let wake = Arc::new(Notify::new());
        let w = worker(&store, &transport, &clock, options(4, 2)).with_waker(wake.clone());
        let (stop, run) = in_background(w);
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
        let summary = run.await.unwrap().unwrap();
        assert_eq!(summary.delivered, 1);
        assert_eq!(store.queue_counts(START).unwrap().done, 1);
    }
}
