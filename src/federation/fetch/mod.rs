//! Outbound HTTP for federation: fetching ActivityPub documents and actor keys, and signed
//! deliveries. Every connection goes through an SSRF guard: a remote document names the URLs
//! we fetch, so it must not be able to point us at the machine's own network.
//!
//! `guard`: the SSRF filter (URLs and resolved addresses); `actor_key`: finding the key a
//! `keyId` names and the actor owning it; this module: the client, documents and deliveries.

mod actor_key;
mod guard;

pub use actor_key::ActorKey;
use guard::{check_url, PublicOnlyResolver};
pub use guard::{is_public_address, BlockedAddress};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;
use url::Url;

use super::signature::{
    sign_request, sign_request_digested, DigestedBody, SignatureError, SigningKey,
};
use super::signature9421::sign_message;
use crate::config::SiteConfig;
use crate::federation::vocab::{is_accepted_media_type, ACTIVITY_JSON, ACTIVITY_JSON_ACCEPT};

/// Mastodon's limit for fetched JSON.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_REDIRECTS: usize = 3;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// A cached key that fails to verify is refetched only if it is at least this old, so forged
/// signatures naming someone's key cannot make us hammer their server.
pub const KEY_REFETCH_COOLDOWN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0:?} is not an absolute http(s) URL")]
    InvalidUrl(String),
    #[error("refusing to connect to {0}")]
    Blocked(BlockedAddress),
    #[error("{url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: content type {content_type:?} is not ActivityPub JSON")]
    ContentType { url: String, content_type: String },
    #[error("{url}: the response is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: invalid JSON: {source}")]
    Json {
        url: String,
        source: serde_json::Error,
    },
    #[error("{url}: the document's id {found:?} is not the URL it was fetched from")]
    IdMismatch { url: String, found: Option<String> },
    #[error("key {key_id}: {reason}")]
    Key { key_id: String, reason: String },
    #[error("cannot sign the request: {0}")]
    Sign(#[from] SignatureError),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub user_agent: String,
    /// Lets requests reach loopback and private networks (tests, LANs).
    pub allow_private_addresses: bool,
    pub connect_timeout: Duration,
    /// For the whole request, body included.
    pub timeout: Duration,
    /// Followed by fetches only; deliveries never follow redirects (a redirected POST would
    /// become a GET or break the signature).
    pub max_redirects: usize,
    pub max_response_bytes: usize,
    pub max_idle_per_host: usize,
}

impl ClientOptions {
    /// Defaults for a site at `base_url`, which the user agent names as Mastodon's does.
    pub fn new(base_url: &str) -> ClientOptions {
        ClientOptions {
            user_agent: format!("relais/{} (+{base_url})", env!("CARGO_PKG_VERSION")),
            allow_private_addresses: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_idle_per_host: 4,
        }
    }

    pub fn from_config(config: &SiteConfig) -> ClientOptions {
        let timeout = Duration::from_secs(config.delivery.timeout_secs.max(1));
        ClientOptions {
            allow_private_addresses: config.inbox.allow_private_addresses,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT.min(timeout),
            timeout,
            max_idle_per_host: config.delivery.per_host_connections.max(1),
            ..ClientOptions::new(&config.base_url)
        }
    }

    fn builder(&self) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder()
            .user_agent(&self.user_agent)
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .pool_max_idle_per_host(self.max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            // A proxy would resolve names itself, out of the guard's sight.
            .no_proxy()
            // The same compiled-in Mozilla roots as before reqwest 0.13, whatever the OS
            // store holds (or lacks, in a minimal container).
            .tls_certs_only(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS
                    .iter()
                    .filter_map(|der| reqwest::Certificate::from_der(der).ok()),
            );
        if self.allow_private_addresses {
            builder
        } else {
            builder.dns_resolver(Arc::new(PublicOnlyResolver))
        }
    }
}

/// Whether the id of a fetched document must equal the URL it came from (Mastodon's rule
/// against one server passing off documents as another's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdCheck {
    MatchUrl,
    Skip,
}

/// What identifies the version of a document a server sent (`ETag`, `Last-Modified`), for
/// asking later whether it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// The answer to [`FederationClient::fetch_json_if_changed`].
#[derive(Debug, Clone)]
pub enum Conditional {
    NotModified,
    Changed {
        document: Value,
        validators: Validators,
    },
}

/// The outbound HTTP client: cheap to clone, connections pooled (HTTP/2 where offered).
#[derive(Debug, Clone)]
pub struct FederationClient {
    fetcher: reqwest::Client,
    deliverer: reqwest::Client,
    options: ClientOptions,
    /// Per host, the signature style its inbox last accepted (double-knocking); clones
    /// share it. Hosts absent get draft-cavage first.
    knocks: Arc<parking_lot::Mutex<HashMap<String, SignatureStyle>>>,
}

/// How a delivery is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureStyle {
    /// draft-cavage `Signature` with `Digest`: what every server has read for years.
    Cavage,
    /// RFC 9421 `Signature-Input`/`Signature` with `Content-Digest`.
    MessageSignature,
}

impl SignatureStyle {
    fn other(self) -> SignatureStyle {
        match self {
            SignatureStyle::Cavage => SignatureStyle::MessageSignature,
            SignatureStyle::MessageSignature => SignatureStyle::Cavage,
        }
    }
}

/// Hosts whose preferred style is remembered at most; past that the memory starts over.
const MAX_KNOCK_HOSTS: usize = 50_000;

impl FederationClient {
    pub fn new(options: ClientOptions) -> Result<FederationClient, FetchError> {
        let allow_private = options.allow_private_addresses;
        let max_redirects = options.max_redirects;
        let follow = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                return attempt.error(format!("more than {max_redirects} redirects"));
            }
            match check_url(attempt.url(), allow_private) {
                Ok(()) => attempt.follow(),
                Err(FetchError::Blocked(blocked)) => attempt.error(blocked),
                Err(other) => attempt.error(other.to_string()),
            }
        });
        let fetcher = options
            .builder()
            .redirect(follow)
            .build()
            .map_err(FetchError::Client)?;
        let deliverer = options
            .builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(FetchError::Client)?;
        Ok(FederationClient {
            fetcher,
            deliverer,
            options,
            knocks: Arc::default(),
        })
    }

    /// GETs an ActivityPub document, signed with `signer` when given (servers in Mastodon's
    /// authorized-fetch mode require it). The response must be `application/activity+json`
    /// or `application/ld+json`; plain `application/json` is accepted too, as some servers
    /// mislabel their documents (Mastodon refuses it). The URL's fragment is not sent, and
    /// with [`IdCheck::MatchUrl`] the document's `id` must equal the URL it was finally
    /// served from, after redirects.
    pub async fn fetch_json(
        &self,
        url: &str,
        signer: Option<&SigningKey>,
        id_check: IdCheck,
    ) -> Result<Value, FetchError> {
        Ok(self.fetch_document(url, signer, id_check).await?.0)
    }

    /// [`Self::fetch_json`], with the URL the document was finally served from. That URL,
    /// not the one asked for, is what the document may speak for: an open redirect on one
    /// server must not let another's document pass as the first server's.
    async fn fetch_document(
        &self,
        url: &str,
        signer: Option<&SigningKey>,
        id_check: IdCheck,
    ) -> Result<(Value, Url), FetchError> {
        let mut url = self.checked_url(url)?;
        url.set_fragment(None);
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(ACTIVITY_JSON_ACCEPT));
        if let Some(key) = signer {
            sign_request(
                key,
                &Method::GET,
                &url,
                &mut headers,
                None,
                SystemTime::now(),
            )?;
        }
        let response = self
            .fetcher
            .get(url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| send_error(&url, e))?;
        self.read_document(response, id_check).await
    }

    /// A conditional, unsigned GET of an ActivityPub document: with the validators of the
    /// version last seen (`If-None-Match`, `If-Modified-Since`), a `304` answers
    /// [`Conditional::NotModified`] without a body; any other answer is checked as
    /// [`Self::fetch_json`] checks it and comes with its own validators. Empty validators
    /// make it a plain GET that also says how to ask again.
    pub async fn fetch_json_if_changed(
        &self,
        url: &str,
        known: &Validators,
        id_check: IdCheck,
    ) -> Result<Conditional, FetchError> {
        let mut url = self.checked_url(url)?;
        url.set_fragment(None);
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(ACTIVITY_JSON_ACCEPT));
        let conditions = [
            (http::header::IF_NONE_MATCH, &known.etag),
            (http::header::IF_MODIFIED_SINCE, &known.last_modified),
        ];
        for (name, value) in conditions {
            if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, value);
            }
        }
        let response = self
            .fetcher
            .get(url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| send_error(&url, e))?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Conditional::NotModified);
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let validators = Validators {
            etag: header(http::header::ETAG),
            last_modified: header(http::header::LAST_MODIFIED),
        };
        let (document, _) = self.read_document(response, id_check).await?;
        Ok(Conditional::Changed {
            document,
            validators,
        })
    }

    /// The checks of a fetched document: a success status, an ActivityPub content type, the
    /// size limit, JSON, and with [`IdCheck::MatchUrl`] an `id` equal to the URL it was
    /// served from (after redirects). Returns that URL too.
    async fn read_document(
        &self,
        response: reqwest::Response,
        id_check: IdCheck,
    ) -> Result<(Value, Url), FetchError> {
        let mut final_url = response.url().clone();
        final_url.set_fragment(None);
        let url = &final_url;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if !is_accepted_media_type(&content_type) {
            return Err(FetchError::ContentType {
                url: url.to_string(),
                content_type,
            });
        }
        let body = read_limited(url, response, self.options.max_response_bytes).await?;
        let document: Value = serde_json::from_slice(&body).map_err(|source| FetchError::Json {
            url: url.to_string(),
            source,
        })?;
        if id_check == IdCheck::MatchUrl {
            let found = document.get("id").and_then(Value::as_str);
            if found.and_then(|id| Url::parse(id).ok()).as_ref() != Some(url) {
                return Err(FetchError::IdMismatch {
                    url: url.to_string(),
                    found: found.map(str::to_string),
                });
            }
        }
        Ok((document, final_url))
    }

    /// Delivers an activity: a signed POST with `Content-Type: application/activity+json`.
    /// Any HTTP status is returned for the caller to judge (retry, drop, remove the inbox);
    /// redirects are not followed. Errors are transport failures and refused addresses.
    pub async fn post_signed(
        &self,
        url: &str,
        body: Bytes,
        key: &SigningKey,
    ) -> Result<StatusCode, FetchError> {
        self.post_digested(url, &DigestedBody::new(body), key).await
    }

    /// [`FederationClient::post_signed`] of a body digested once for all its inboxes.
    ///
    /// Double-knocking, as Mastodon 4.5 does: the host's remembered style first (cavage for
    /// a host never seen); a 401 is tried once more with the other style, and the style
    /// that got a success is remembered for the host.
    pub async fn post_digested(
        &self,
        url: &str,
        body: &DigestedBody,
        key: &SigningKey,
    ) -> Result<StatusCode, FetchError> {
        let checked = self.checked_url(url)?;
        let host = checked.host_str().unwrap_or_default().to_string();
        let first = self
            .knocks
            .lock()
            .get(&host)
            .copied()
            .unwrap_or(SignatureStyle::Cavage);
        let mut style = first;
        let mut status = self.post_digested_as(url, body, key, style).await?;
        if status == StatusCode::UNAUTHORIZED {
            style = first.other();
            status = self.post_digested_as(url, body, key, style).await?;
        }
        if status.is_success() {
            let mut knocks = self.knocks.lock();
            if knocks.get(&host) != Some(&style) {
                if knocks.len() >= MAX_KNOCK_HOSTS {
                    knocks.clear();
                }
                knocks.insert(host, style);
            }
        }
        Ok(status)
    }

    /// The style remembered for `host`, if a delivery there succeeded.
    pub fn signature_style(&self, host: &str) -> Option<SignatureStyle> {
        self.knocks.lock().get(host).copied()
    }

    /// One signed POST in the given style.
    pub async fn post_digested_as(
        &self,
        url: &str,
        body: &DigestedBody,
        key: &SigningKey,
        style: SignatureStyle,
    ) -> Result<StatusCode, FetchError> {
        let url = self.checked_url(url)?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(ACTIVITY_JSON));
        match style {
            SignatureStyle::Cavage => sign_request_digested(
                key,
                &Method::POST,
                &url,
                &mut headers,
                Some(body.digest()),
                SystemTime::now(),
            )?,
            SignatureStyle::MessageSignature => sign_message(
                key,
                &Method::POST,
                &url,
                &mut headers,
                Some(body.bytes()),
                SystemTime::now(),
            )?,
        }
        let response = self
            .deliverer
            .post(url.clone())
            .headers(headers)
            .body(body.bytes().clone())
            .send()
            .await
            .map_err(|e| send_error(&url, e))?;
        let status = response.status();
        // Reading the answer lets the connection go back to the pool; its content is unused.
        // The status line is the verdict: an answer cut off after a 2xx was still accepted,
        // and treating it as a failure would deliver the activity twice.
        if let Err(e) = read_limited(&url, response, self.options.max_response_bytes).await {
            tracing::debug!("delivery to {url}: answer {status} not read whole: {e}");
        }
        Ok(status)
    }

    fn checked_url(&self, text: &str) -> Result<Url, FetchError> {
        let url = Url::parse(text).map_err(|_| FetchError::InvalidUrl(text.to_string()))?;
        check_url(&url, self.options.allow_private_addresses)?;
        Ok(url)
    }
}

/// A reqwest failure, with a refusal by the guard recovered from deep in its cause chain.
fn send_error(url: &Url, error: reqwest::Error) -> FetchError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = cause {
        if let Some(blocked) = current.downcast_ref::<BlockedAddress>() {
            return FetchError::Blocked(blocked.clone());
        }
        cause = current.source();
    }
    FetchError::Http {
        url: url.to_string(),
        source: error,
    }
}

/// The body, refused as soon as it exceeds `limit` bytes (announced or actually sent).
async fn read_limited(
    url: &Url,
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit,
    };
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| send_error(url, e))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An answer read whole (up to the size limit), whatever its status and content type.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl FederationClient {
    /// One unsigned request through the SSRF guard, redirects not followed, answered as is:
    /// for callers that judge status, headers and body themselves (`relais doctor`).
    pub async fn request_raw(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<RawResponse, FetchError> {
        let url = self.checked_url(url)?;
        let response = self
            .deliverer
            .request(method, url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| send_error(&url, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_limited(&url, response, self.options.max_response_bytes).await?;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use crate::federation::keys::PublicKey;

    use crate::federation::signature::{verify_request, IncomingRequest, SignatureParams};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use axum::extract::State;
    use axum::http::Uri;
    use axum::response::Response;
    use serde_json::json;

    use super::*;
    use crate::federation::keys::test_keys::{OTHER_PRIVATE_PEM, TEST_PRIVATE_PEM};
    use crate::federation::keys::PrivateKey;

    fn private(pem: &str) -> PrivateKey {
        PrivateKey::from_pem(pem).unwrap()
    }

    fn pem(key: &str) -> String {
        private(key).public_key_pem().unwrap()
    }

    /// A fediverse server on 127.0.0.1 serving a few actors and keys.
    struct Peer {
        base: String,
        /// Our key, which it checks on protected fetches and deliveries.
        our_key: PublicKey,
        alice_fetches: AtomicUsize,
        deliveries: AtomicUsize,
    }

    fn json_response(status: StatusCode, content_type: &str, body: String) -> Response {
        Response::builder()
            .status(status)
            .header(CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap()
    }

    fn redirect(to: String) -> Response {
        Response::builder()
            .status(StatusCode::FOUND)
            .header("location", to)
            .body(Body::empty())
            .unwrap()
    }

    fn verify_ours(
        peer: &Peer,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> bool {
        let Ok(params) = SignatureParams::from_headers(headers) else {
            return false;
        };
        let public_host = peer.base.trim_start_matches("http://");
        let request = IncomingRequest {
            method,
            path_and_query: uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            headers,
            public_host,
            body,
        };
        verify_request(&params, &request, &peer.our_key, SystemTime::now()).is_ok()
    }

    async fn serve(
        State(peer): State<Arc<Peer>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let base = &peer.base;
        let activity =
            |value: Value| json_response(StatusCode::OK, ACTIVITY_JSON, value.to_string());
        let alice = json!({
            "id": format!("{base}/users/alice"),
            "type": "Person",
            "inbox": format!("{base}/users/alice/inbox"),
            "publicKey": {
                "id": format!("{base}/users/alice#main-key"),
                "owner": format!("{base}/users/alice"),
                "publicKeyPem": pem(TEST_PRIVATE_PEM),
            },
        });
        let bob = json!({
            "id": format!("{base}/users/bob"),
            "type": "Person",
            "publicKey": {
                "id": format!("{base}/users/bob/main-key"),
                "owner": format!("{base}/users/bob"),
                "publicKeyPem": pem(OTHER_PRIVATE_PEM),
            },
        });
        match (method.as_str(), uri.path()) {
            ("GET", "/users/alice") => {
                peer.alice_fetches.fetch_add(1, Ordering::SeqCst);
                activity(alice)
            }
            ("GET", "/users/bob" | "/users/bob/main-key") => activity(bob),
            ("GET", "/keys/carol") => json_response(
                StatusCode::OK,
                "application/ld+json; profile=\"https://www.w3.org/ns/activitystreams\"",
                json!({
                    "id": format!("{base}/keys/carol"),
                    "owner": format!("{base}/users/carol"),
                    "publicKeyPem": pem(TEST_PRIVATE_PEM),
                })
                .to_string(),
            ),
            ("GET", "/users/carol") => activity(json!({
                "id": format!("{base}/users/carol"),
                "type": "Service",
                "publicKey": [
                    format!("{base}/keys/carol-old"),
                    {"id": format!("{base}/keys/carol")},
                    format!("{base}/keys/dave"),
                ],
            })),
            ("GET", "/keys/mallory") => activity(json!({
                "id": format!("{base}/keys/mallory"),
                "owner": format!("{base}/users/alice"),
                "publicKeyPem": pem(OTHER_PRIVATE_PEM),
            })),
            ("GET", "/users/eve/main-key") => activity(json!({
                "id": format!("{base}/users/alice"),
                "type": "Person",
                "publicKey": {
                    "id": format!("{base}/users/eve/main-key"),
                    "owner": format!("{base}/users/alice"),
                    "publicKeyPem": pem(OTHER_PRIVATE_PEM),
                },
            })),
            ("GET", "/plain") => json_response(
                StatusCode::OK,
                "application/json; charset=utf-8",
                json!({"id": format!("{base}/plain")}).to_string(),
            ),
            ("GET", "/html") => json_response(StatusCode::OK, "text/html", "<p>hi</p>".into()),
            ("GET", "/wrong-id") => activity(json!({"id": format!("{base}/users/alice")})),
            ("GET", "/big") => json_response(
                StatusCode::OK,
                ACTIVITY_JSON,
                format!("\"{}\"", "a".repeat(2 * DEFAULT_MAX_RESPONSE_BYTES)),
            ),
            ("GET", "/big-stream") => {
                let chunks =
                    (0..64).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 64 * 1024])));
                Response::builder()
                    .header(CONTENT_TYPE, ACTIVITY_JSON)
                    .body(Body::from_stream(futures::stream::iter(chunks)))
                    .unwrap()
            }
            ("GET", "/protected") => {
                if verify_ours(&peer, &method, &uri, &headers, None) {
                    activity(json!({"id": format!("{base}/protected")}))
                } else {
                    json_response(StatusCode::UNAUTHORIZED, "text/plain", "sign it".into())
                }
            }
            ("GET", "/redirect") => redirect(format!("{base}/users/alice")),
            // An open redirect to a document claiming the redirecting URL as its id.
            ("GET", "/claimed") => redirect(format!("{base}/claimer")),
            ("GET", "/claimer") => activity(json!({"id": format!("{base}/claimed")})),
            ("GET", "/keys/dave") => redirect(format!("{base}/keys/dave-elsewhere")),
            ("GET", "/keys/dave-elsewhere") => activity(json!({
                "id": format!("{base}/keys/dave"),
                "owner": format!("{base}/users/carol"),
                "publicKeyPem": pem(OTHER_PRIVATE_PEM),
            })),
            ("GET", "/loop") => redirect(format!("{base}/loop")),
            ("POST", "/inbox") => {
                let typed = headers
                    .get(CONTENT_TYPE)
                    .is_some_and(|v| v == ACTIVITY_JSON);
                if typed && verify_ours(&peer, &method, &uri, &headers, Some(&body)) {
                    peer.deliveries.fetch_add(1, Ordering::SeqCst);
                    json_response(StatusCode::ACCEPTED, "text/plain", String::new())
                } else {
                    json_response(
                        StatusCode::UNAUTHORIZED,
                        "text/plain",
                        "bad signature".into(),
                    )
                }
            }
            ("POST", "/moved") => redirect(format!("{base}/inbox")),
            _ => json_response(StatusCode::NOT_FOUND, "text/plain", String::new()),
        }
    }

    async fn start_peer() -> Arc<Peer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = Arc::new(Peer {
            base: format!("http://{}", listener.local_addr().unwrap()),
            our_key: private(TEST_PRIVATE_PEM).public_key(),
            alice_fetches: AtomicUsize::new(0),
            deliveries: AtomicUsize::new(0),
        });
        let app = axum::Router::new().fallback(serve).with_state(peer.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        peer
    }

    fn client(allow_private_addresses: bool) -> FederationClient {
        FederationClient::new(ClientOptions {
            allow_private_addresses,
            ..ClientOptions::new("https://blog.example")
        })
        .unwrap()
    }

    fn our_key(peer: &Peer) -> SigningKey {
        SigningKey::new(
            format!("{}/users/relais#main-key", peer.base),
            Arc::new(private(TEST_PRIVATE_PEM)),
        )
    }

    #[test]
    fn user_agent_names_the_site() {
        let options = ClientOptions::new("https://blog.example");
        assert_eq!(
            options.user_agent,
            format!(
                "relais/{} (+https://blog.example)",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn options_follow_the_site_config() {
        let config = SiteConfig::parse(
            "title = \"T\"\nbase_url = \"https://blog.example/\"\n\
             [inbox]\nallow_private_addresses = true\n[delivery]\ntimeout_secs = 3\n",
            std::path::Path::new("config.toml"),
        )
        .unwrap();
        let options = ClientOptions::from_config(&config);
        assert!(options.allow_private_addresses);
        assert_eq!(options.timeout, Duration::from_secs(3));
        assert_eq!(options.connect_timeout, Duration::from_secs(3));
        assert!(
            options.user_agent.ends_with("(+https://blog.example)"),
            "{}",
            options.user_agent
        );
        assert!(!ClientOptions::new("https://blog.example").allow_private_addresses);
    }

    #[tokio::test]
    async fn fetches_checked_documents() {
        let peer = start_peer().await;
        let client = client(true);
        let base = &peer.base;
        let alice = client
            .fetch_json(
                &format!("{base}/users/alice#ignored"),
                None,
                IdCheck::MatchUrl,
            )
            .await
            .unwrap();
        assert_eq!(alice["type"], "Person");

        let plain = client
            .fetch_json(&format!("{base}/plain"), None, IdCheck::MatchUrl)
            .await
            .unwrap();
        assert_eq!(plain["id"], format!("{base}/plain"));

        let err = client
            .fetch_json(&format!("{base}/wrong-id"), None, IdCheck::MatchUrl)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::IdMismatch { .. }), "{err}");
        client
            .fetch_json(&format!("{base}/wrong-id"), None, IdCheck::Skip)
            .await
            .unwrap();

        let err = client
            .fetch_json(&format!("{base}/html"), None, IdCheck::Skip)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::ContentType { ref content_type, .. } if content_type == "text/html"),
            "{err}"
        );

        let err = client
            .fetch_json(&format!("{base}/nowhere"), None, IdCheck::Skip)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FetchError::Status {
                    status: StatusCode::NOT_FOUND,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn oversized_responses_are_cut_off() {
        let peer = start_peer().await;
        let client = client(true);
        for path in ["/big", "/big-stream"] {
            let err = client
                .fetch_json(&format!("{}{path}", peer.base), None, IdCheck::Skip)
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    FetchError::TooLarge {
                        limit: DEFAULT_MAX_RESPONSE_BYTES,
                        ..
                    }
                ),
                "{path}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn redirects_are_followed_a_few_times_and_ids_still_checked() {
        let peer = start_peer().await;
        let client = client(true);
        let redirected = format!("{}/redirect", peer.base);
        let doc = client
            .fetch_json(&redirected, None, IdCheck::Skip)
            .await
            .unwrap();
        assert_eq!(doc["type"], "Person");
        // The id is judged against where the document was finally served from.
        let doc = client
            .fetch_json(&redirected, None, IdCheck::MatchUrl)
            .await
            .unwrap();
        assert_eq!(doc["id"], format!("{}/users/alice", peer.base));
        let err = client
            .fetch_json(&format!("{}/claimed", peer.base), None, IdCheck::MatchUrl)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::IdMismatch { .. }), "{err}");
        let err = client
            .fetch_json(&format!("{}/loop", peer.base), None, IdCheck::Skip)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("redirect"), "{err}");
    }

    #[tokio::test]
    async fn authorized_fetch_servers_get_a_signed_get() {
        let peer = start_peer().await;
        let client = client(true);
        let url = format!("{}/protected", peer.base);
        let err = client
            .fetch_json(&url, None, IdCheck::MatchUrl)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FetchError::Status {
                    status: StatusCode::UNAUTHORIZED,
                    ..
                }
            ),
            "{err}"
        );
        client
            .fetch_json(&url, Some(&our_key(&peer)), IdCheck::MatchUrl)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn actor_keys_are_found_in_every_shape() {
        let peer = start_peer().await;
        let client = client(true);
        let base = &peer.base;

        let alice = client
            .fetch_actor_key(&format!("{base}/users/alice#main-key"), None)
            .await
            .unwrap();
        assert_eq!(alice.actor_id, format!("{base}/users/alice"));
        assert_eq!(alice.public_key, private(TEST_PRIVATE_PEM).public_key());

        // GoToSocial: the key URL serves the actor, whose id is elsewhere.
        let bob = client
            .fetch_actor_key(&format!("{base}/users/bob/main-key"), None)
            .await
            .unwrap();
        assert_eq!(bob.actor_id, format!("{base}/users/bob"));
        assert_eq!(bob.public_key, private(OTHER_PRIVATE_PEM).public_key());

        // A standalone key document, confirmed by its owner.
        let carol = client
            .fetch_actor_key(&format!("{base}/keys/carol"), None)
            .await
            .unwrap();
        assert_eq!(carol.actor_id, format!("{base}/users/carol"));
        assert_eq!(carol.public_key, private(TEST_PRIVATE_PEM).public_key());
    }

    #[tokio::test]
    async fn keys_their_actor_does_not_claim_are_refused() {
        let peer = start_peer().await;
        let client = client(true);
        let base = &peer.base;
        for key_id in [
            format!("{base}/keys/mallory"),
            format!("{base}/users/eve/main-key"),
            format!("{base}/users/alice#other-key"),
            // Served, after a redirect, from a URL that is not its id.
            format!("{base}/keys/dave"),
        ] {
            let err = client.fetch_actor_key(&key_id, None).await.unwrap_err();
            assert!(matches!(err, FetchError::Key { .. }), "{key_id}: {err}");
        }
    }

    #[tokio::test]
    async fn deliveries_are_signed_and_redirects_not_followed() {
        let peer = start_peer().await;
        let client = client(true);
        let key = our_key(&peer);
        let body = Bytes::from_static(br#"{"type":"Create"}"#);
        let status = client
            .post_signed(&format!("{}/inbox", peer.base), body.clone(), &key)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(peer.deliveries.load(Ordering::SeqCst), 1);

        let status = client
            .post_signed(&format!("{}/moved", peer.base), body.clone(), &key)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::FOUND);

        let stranger = SigningKey::new(key.key_id.clone(), Arc::new(private(OTHER_PRIVATE_PEM)));
        let status = client
            .post_signed(&format!("{}/inbox", peer.base), body, &stranger)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(peer.deliveries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        let peer = start_peer().await;
        let port = peer.base.rsplit(':').next().unwrap().to_string();
        let guarded = client(false);
        for url in [
            format!("http://127.0.0.1:{port}/users/alice"),
            format!("http://localhost:{port}/users/alice"),
            format!("http://[::1]:{port}/users/alice"),
            format!("http://[::ffff:127.0.0.1]:{port}/users/alice"),
            format!("http://2130706433:{port}/users/alice"),
        ] {
            let err = guarded
                .fetch_json(&url, None, IdCheck::Skip)
                .await
                .unwrap_err();
            assert!(matches!(err, FetchError::Blocked(_)), "{url}: {err}");
        }
        let err = guarded
            .post_signed(
                &format!("http://localhost:{port}/inbox"),
                Bytes::new(),
                &our_key(&peer),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Blocked(_)), "{err}");
        assert!(err.to_string().contains("localhost"), "{err}");
        let err = guarded
            .fetch_actor_key(
                &format!("http://localhost:{port}/users/alice#main-key"),
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Blocked(_)), "{err}");
        assert_eq!(peer.alice_fetches.load(Ordering::SeqCst), 0);
        assert_eq!(peer.deliveries.load(Ordering::SeqCst), 0);

        // The very same requests go through once allowed.
        client(true)
            .fetch_json(
                &format!("http://localhost:{port}/users/alice"),
                None,
                IdCheck::Skip,
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn only_http_urls_are_fetched() {
        let client = client(true);
        for url in [
            "ftp://example.com/actor",
            "file:///etc/passwd",
            "not a url",
            "/relative",
        ] {
            let err = client
                .fetch_json(url, None, IdCheck::Skip)
                .await
                .unwrap_err();
            assert!(matches!(err, FetchError::InvalidUrl(_)), "{url}: {err}");
        }
    }

    #[test]
    fn address_classification() {
        let blocked = [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b:1::a00:1",
            "64:ff9b:1:ffff::808:808",
            "192.88.99.1",
            "192.88.99.255",
            "::ffff:192.88.99.1",
        ];
        for text in blocked {
            let ip: IpAddr = text.parse().unwrap();
            assert!(!is_public_address(ip), "{text} should be blocked");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "192.169.0.1",
            "198.20.0.1",
            "2606:4700:4700::1111",
            "2a01:4f8::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:1::1",
            "2001:4860:4860::8888",
            "64:ff9b:2::1",
            "192.88.98.1",
            "192.88.100.1",
        ];
        for text in public {
            let ip: IpAddr = text.parse().unwrap();
            assert!(is_public_address(ip), "{text} should be public");
        }
        assert!(!is_public_address(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }
}
