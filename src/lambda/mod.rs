//! The inbox as an AWS Lambda function (`relais lambda`, or `relais inbox` and plain
//! `relais` when the Lambda runtime's `AWS_LAMBDA_RUNTIME_API` is set).
//!
//! One process serves invocations one at a time through the Lambda Runtime API
//! (`lambda_runtime`). Two kinds of event:
//! - an HTTP event (a Function URL, or API Gateway HTTP or REST API) goes through the same
//!   axum router as `relais inbox`: the same signature checks against `base_url`, limits
//!   and answers. A function has no background, so what the request queued (the `Accept` of
//!   a follow) is sent before the invocation returns, for at most [`AFTER_REQUEST`];
//! - a scheduled event (EventBridge, `"source": "aws.events"`) checks the live outbox when
//!   `inbox.poll_interval` is set and drains the delivery queue until the invocation's
//!   deadline is nearly spent ([`stop_claiming_at`]).
//!
//! The store must outlive the execution environment: PostgreSQL. A local SQLite file works
//! (tests use one) but lives only as long as one warm environment, which is warned about.

pub mod http;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tower::ServiceExt;

use crate::inbox::poll::{check_once, LastRead};
use crate::inbox::{router, InboxState};

/// Set by the Lambda service in a function's environment: the Runtime API's `host:port`.
pub const RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";
/// What `lambda_runtime` reads at start besides [`RUNTIME_API`]; Lambda sets them all.
const RUNTIME_ENV: [&str; 3] = [
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];
/// How long an HTTP invocation goes on claiming deliveries after its answer is ready: long
/// enough to send a follow's `Accept`, short enough that the sender (Mastodon waits about
/// 10 s) gets its answer; the scheduled run sends the rest.
pub const AFTER_REQUEST: Duration = Duration::from_secs(2);
/// Left of the invocation's time when a scheduled drain stops claiming: at least this...
const MIN_MARGIN: Duration = Duration::from_secs(5);
/// ...or this share of the time left, whichever is larger.
const MARGIN_SHARE: f64 = 0.2;

/// Whether this process was started by the Lambda service.
pub fn in_lambda() -> bool {
    std::env::var_os(RUNTIME_API).is_some_and(|v| !v.is_empty())
}

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error("{0} is not set: `relais lambda` runs under the Lambda service (or its emulator)")]
    MissingEnv(&'static str),
    #[error("the Lambda runtime stopped: {0}")]
    Runtime(String),
}

/// Whether the store named in the config is a file, which under Lambda lives in one
/// execution environment's `/tmp` at best and is lost with it.
pub fn store_is_local_file(store: &Path) -> bool {
    let name = store.to_string_lossy();
    !(name.starts_with("postgres://") || name.starts_with("postgresql://"))
}

/// Serves invocations until the Runtime API stops answering (the environment is shut down).
pub async fn run(state: InboxState) -> Result<(), LambdaError> {
    for name in std::iter::once(RUNTIME_API).chain(RUNTIME_ENV) {
        if std::env::var_os(name).is_none() {
            return Err(LambdaError::MissingEnv(name));
        }
    }
    if store_is_local_file(&state.config.inbox.store) {
        tracing::warn!(
            "lambda: the store {:?} is a local file: it is lost with this execution environment \
             and not shared with others; use a PostgreSQL store (RELAIS_STORE=postgres://…)",
            state.config.inbox.store
        );
    }
    let function = Arc::new(Function {
        router: router(state.clone()),
        state,
        last_read: Mutex::new(LastRead::default()),
    });
    let handler = lambda_runtime::service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let function = function.clone();
        async move { function.invoke(event).await }
    });
    lambda_runtime::run(handler)
        .await
        .map_err(|e| LambdaError::Runtime(e.to_string()))
}

/// Reports a failure to start to the Runtime API's `init/error`, so that the Lambda service
/// shows it (and does not wait for invocations this process will never take).
pub async fn report_init_error(message: &str) {
    let Ok(api) = std::env::var(RUNTIME_API) else {
        return;
    };
    let url = format!("http://{api}/2018-06-01/runtime/init/error");
    let body = json!({ "errorType": "relais.InitError", "errorMessage": message });
    let client = match reqwest::Client::builder().no_proxy().build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("lambda: cannot report the init error: {e}");
            return;
        }
    };
    if let Err(e) = client
        .post(url)
        .header("Lambda-Runtime-Function-Error-Type", "relais.InitError")
        .json(&body)
        .send()
        .await
    {
        tracing::error!("lambda: cannot report the init error: {e}");
    }
}

/// What stays between the invocations of one warm execution environment.
struct Function {
    state: InboxState,
    router: axum::Router,
    /// The live outbox as the last scheduled check read it.
    last_read: Mutex<LastRead>,
}

/// The fields that tell an EventBridge event from an HTTP one.
#[derive(Deserialize)]
struct EventSource {
    source: Option<String>,
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
}

impl Function {
    async fn invoke(&self, event: LambdaEvent<Box<RawValue>>) -> Result<Value, Diagnostic> {
        let deadline = event.context.deadline();
        let raw = event.payload.get();
        let source = serde_json::from_str::<EventSource>(raw).ok();
        match source {
            Some(EventSource {
                source: Some(source),
                detail_type,
            }) if source == "aws.events" => {
                tracing::info!(
                    "lambda: {:?} from EventBridge: polling and delivering",
                    detail_type.unwrap_or_default()
                );
                Ok(self.scheduled(deadline).await)
            }
            _ => self.http(raw, deadline).await,
        }
    }

    async fn http(&self, raw: &str, deadline: SystemTime) -> Result<Value, Diagnostic> {
        let (origin, request) = http::request_of(raw).map_err(|e| {
            tracing::warn!("lambda: {:?}", e.to_string());
            Diagnostic {
                error_type: "relais.UnknownEvent".into(),
                error_message: e.to_string(),
            }
        })?;
        // The router's error type is `Infallible`.
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        // `notify_one` leaves a permit when nobody waits: it says whether this request queued
        // anything (a follow's `Accept`, a deploy notification's deliveries).
        let queued = tokio::time::timeout(Duration::ZERO, self.state.wake.notified())
            .await
            .is_ok();
        if queued {
            let stop = tokio::time::Instant::now() + AFTER_REQUEST;
            let stop = stop.min(stop_claiming_at(deadline, SystemTime::now()));
            self.deliver(stop).await;
        }
        Ok(http::answer_of(origin, response).await)
    }

    async fn scheduled(&self, deadline: SystemTime) -> Value {
        if self.state.config.inbox.poll_interval.is_some() {
            let mut last = self.last_read.lock().await;
            check_once(&self.state, &mut last).await;
        }
        let worker = self.worker();
        if let Err(e) = worker.housekeeping().await {
            tracing::error!("lambda: delivery housekeeping failed: {e}");
        }
        let summary = self
            .deliver(stop_claiming_at(deadline, SystemTime::now()))
            .await;
        // What the poll queued was just sent: no HTTP invocation should wait for it.
        let _ = tokio::time::timeout(Duration::ZERO, self.state.wake.notified()).await;
        json!({
            "delivered": summary.delivered,
            "retried": summary.retried,
            "failed": summary.failed,
        })
    }

    /// Sends due deliveries until `stop` (then finishes those in flight).
    async fn deliver(&self, stop: tokio::time::Instant) -> crate::delivery::RunSummary {
        match self.worker().drain_until(stop).await {
            Ok(summary) => {
                tracing::info!("lambda: deliveries: {summary:?}");
                summary
            }
            Err(e) => {
                tracing::error!("lambda: the delivery queue failed: {e}");
                Default::default()
            }
        }
    }

    fn worker(
        &self,
    ) -> crate::delivery::Worker<
        crate::federation::fetch::FederationClient,
        crate::delivery::SystemClock,
    > {
        crate::delivery::worker(
            self.state.store.clone(),
            self.state.client.clone(),
            self.state.key.clone(),
            &self.state.config,
        )
    }
}

/// When a drain stops claiming: [`claim_window`] from now.
pub fn stop_claiming_at(deadline: SystemTime, now: SystemTime) -> tokio::time::Instant {
    tokio::time::Instant::now() + claim_window(deadline, now)
}

/// How long a drain may claim deliveries: the time left until the invocation's deadline
/// less a margin of [`MIN_MARGIN`] or [`MARGIN_SHARE`] of it, whichever is larger, so that
/// the requests in flight and the answer fit before Lambda ends the invocation.
pub fn claim_window(deadline: SystemTime, now: SystemTime) -> Duration {
    let left = deadline.duration_since(now).unwrap_or_default();
    let margin = MIN_MARGIN.max(left.mul_f64(MARGIN_SHARE));
    left.saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_stops_claiming_well_before_the_deadline() {
        let now = SystemTime::now();
        let window = |left: u64| claim_window(now + Duration::from_secs(left), now);
        // 20% of a long invocation, at least 5 s of a short one, nothing past the deadline.
        assert_eq!(window(60), Duration::from_secs(48));
        assert_eq!(window(900), Duration::from_secs(720));
        assert_eq!(window(10), Duration::from_secs(5));
        assert_eq!(window(3), Duration::ZERO);
        assert_eq!(
            claim_window(now - Duration::from_secs(1), now),
            Duration::ZERO
        );
    }

    #[test]
    fn only_postgres_urls_are_shared_stores() {
        assert!(store_is_local_file(Path::new("relais.db")));
        assert!(store_is_local_file(Path::new("/tmp/relais.db")));
        assert!(!store_is_local_file(Path::new("postgres://u@db/relais")));
        assert!(!store_is_local_file(Path::new("postgresql://db/relais")));
    }
}
