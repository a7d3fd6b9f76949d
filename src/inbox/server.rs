//! The axum application: shared state, routes and the error answer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::services::ServeDir;

use crate::config::SiteConfig;
use crate::federation::fetch::FederationClient;
use crate::federation::keys::PrivateKey;
use crate::federation::signature::SigningKey;
use crate::federation::urls::Urls;
use crate::inbox::keyfetch::KeyFetches;
use crate::inbox::listener::{self, serve_connections, ConnectionLimits};
use crate::inbox::process::OurSite;
use crate::inbox::ratelimit::Limits;
use crate::inbox::verify::Verifier;
use crate::inbox::{collections, deploy, public, receive};
use crate::store::{Store, StoreError};

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct InboxState {
    pub config: Arc<SiteConfig>,
    pub site: Arc<OurSite>,
    pub store: Store,
    /// The built site (`public/`), served when `inbox.serve_public`.
    pub public_dir: Arc<PathBuf>,
    pub key: Arc<PrivateKey>,
    pub client: FederationClient,
    pub limits: Arc<Limits>,
    /// Key fetches in flight and their recent outcomes.
    pub key_fetches: Arc<KeyFetches>,
    /// Signature checks, off the async threads, with parsed keys kept.
    pub verifier: Arc<Verifier>,
    /// Wakes the delivery worker when something was queued.
    pub wake: Arc<tokio::sync::Notify>,
}

impl InboxState {
    pub fn new(
        config: SiteConfig,
        public_dir: PathBuf,
        key: PrivateKey,
        store: Store,
        client: FederationClient,
    ) -> InboxState {
        let site = OurSite::new(&config, Some(public_dir.clone()));
        InboxState {
            limits: Arc::new(Limits::new(
                config.inbox.client_rate_limit_per_minute,
                config.inbox.rate_limit_per_minute,
                // Validated with the configuration.
                config.inbox.trusted_proxy_networks().unwrap_or_default(),
            )),
            key_fetches: Arc::new(KeyFetches::default()),
            verifier: Arc::new(Verifier::default()),
            config: Arc::new(config),
            site: Arc::new(site),
            store,
            public_dir: Arc::new(public_dir),
            key: Arc::new(key),
            client,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The key one of our actors signs with.
    pub fn signing_key(&self, actor_name: &str) -> SigningKey {
        SigningKey::new(self.site.urls.key_id(actor_name), self.key.clone())
    }
}

/// A refusal or failure, answered as plain text (as Mastodon answers signature failures).
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    pub retry_after: Option<Duration>,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 with `Retry-After: wait`.
    pub fn too_many(message: impl Into<String>, wait: Duration) -> HttpError {
        HttpError {
            retry_after: Some(wait),
            ..HttpError::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> HttpError {
        tracing::error!("{e}");
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "the store failed")
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.message).into_response();
        if let Some(wait) = self.retry_after {
            if let Ok(value) = wait.as_secs().max(1).to_string().parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// Runs store work off the async threads ([`crate::store::blocking`]), its failure an
/// HTTP 500.
pub async fn blocking<T, F>(store: &Store, work: F) -> Result<T, HttpError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
{
    Ok(crate::store::blocking(store, work).await?)
}

pub fn router(state: InboxState) -> Router {
    let serve_public = state.config.inbox.serve_public;
    let public_dir = state.public_dir.as_ref().clone();
    let router = routes(state);
    if serve_public {
        router.fallback_service(ServeDir::new(public_dir))
    } else {
        router
    }
}

/// The inbox's own routes, without the fallback to the built site's files: `relais serve`
/// puts its live-reloading file server there instead.
pub fn routes(state: InboxState) -> Router {
    let body_timeout = Duration::from_secs(state.config.inbox.body_timeout_secs.max(1));
    let max_body_bytes = state.config.inbox.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(Urls::SHARED_INBOX_PATH, post(receive::shared_inbox))
        .route(&Urls::inbox_path("{name}"), post(receive::actor_inbox))
        .route(&Urls::followers_path("{name}"), get(collections::followers))
        .route(Urls::INTERACTIONS_PATH, get(collections::interactions))
        .route(
            &Urls::quote_authorization_path("{token}"),
            get(collections::quote_authorization),
        )
        .route(deploy::DEPLOY_PATH, post(deploy::deploy))
        .route("/ap/{*rest}", get(public::ap_get))
        .route(Urls::WEBFINGER_PATH, get(public::webfinger))
        // `Urls::webfinger_file_path`: one file per actor, `NAME.json`.
        .route("/webfinger/{file}", get(public::webfinger_file))
        .route(Urls::NODEINFO_WELL_KNOWN_PATH, get(public::nodeinfo_links))
        .route(Urls::NODEINFO_PATH, get(public::nodeinfo))
        .layer(DefaultBodyLimit::max(state.config.inbox.max_body_bytes))
        .layer(axum::middleware::from_fn(move |request, next| {
            listener::read_body_within(body_timeout, max_body_bytes, request, next)
        }))
        .with_state(state)
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn serve(state: InboxState) -> std::io::Result<()> {
    let listen = state.config.inbox.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!("inbox listening on http://{}", listener.local_addr()?);
    let limits = ConnectionLimits::from_config(&state.config.inbox);
    serve_connections(listener, router(state), limits, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("inbox shutting down");
}
