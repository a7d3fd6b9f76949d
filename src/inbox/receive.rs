//! `POST` to an inbox: from the raw request to a verified activity applied to the store.
//!
//! Checks run cheapest first, so that junk costs no key fetch and no store write: content
//! type (415), body size (413, by the router's limit), signature present and well-formed
//! (401/400), rate per remote host (429), time window and `Digest` (401), JSON (400),
//! blocks (403), then the key and the signature itself (401) and the key owner against the
//! activity's `actor` (401). Only then is anything written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::Value;

use crate::federation::fetch::{FederationClient, FetchError, IdCheck, KEY_REFETCH_COOLDOWN};
use crate::federation::keys::public_key_to_pem;
use crate::federation::signature::{IncomingRequest, SignatureError, SigningKey};
use crate::federation::signature9421::RequestSignature;
use crate::federation::vocab::ACCEPTED_MEDIA_TYPES;
use crate::inbox::activity::{Activity, Kind};
use crate::inbox::process::{apply, Outcome};
use crate::inbox::remote::actor_from_document;
use crate::inbox::server::{blocking, HttpError, InboxState};
use crate::inbox::verify::SignedRequest;
use crate::store::{host_of, RemoteActor};

/// How long a request may wait for a remote key or actor. Senders give up after about 10 s
/// (Mastodon's HTTP timeout), and a cached key needs no wait at all.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// `POST /ap/inbox`.
pub async fn shared_inbox(
    State(state): State<InboxState>,
    // Through `Extension`: axum 0.8's `Option<ConnectInfo>` no longer extracts; absent when
    // the router runs without connect info (as in tests calling it directly).
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Received {
        peer: peer.map(|Extension(ConnectInfo(addr))| addr),
        method,
        uri,
        headers,
        body,
    };
    answer(receive(&state, &request).await)
}

/// `POST /ap/users/{name}/inbox`.
pub async fn actor_inbox(
    State(state): State<InboxState>,
    Path(name): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.site.actor_names.contains(&name) {
        return HttpError::not_found(format!("no actor {name:?} here")).into_response();
    }
    shared_inbox(State(state), peer, method, uri, headers, body).await
}

struct Received {
    peer: Option<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// A refused request: its status, why (logged and answered), and when to come back.
struct Refusal {
    error: HttpError,
    retry_after: Option<Duration>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            error: HttpError::new(status, message),
            retry_after: None,
        }
    }
}

impl From<HttpError> for Refusal {
    fn from(error: HttpError) -> Refusal {
        Refusal {
            error,
            retry_after: None,
        }
    }
}

impl From<SignatureError> for Refusal {
    fn from(e: SignatureError) -> Refusal {
        Refusal::new(e.status(), e.to_string())
    }
}

fn answer(result: Result<StatusCode, Refusal>) -> Response {
    match result {
        Ok(status) => status.into_response(),
        Err(refusal) => {
            let status = refusal.error.status;
            if status.is_server_error() {
                tracing::error!("inbox: {status}: {}", refusal.error.message);
            } else {
                tracing::info!("inbox: refused with {status}: {}", refusal.error.message);
            }
            let mut response = refusal.error.into_response();
            if let Some(wait) = refusal.retry_after {
                if let Ok(value) = wait.as_secs().max(1).to_string().parse() {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            response
        }
    }
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    Some(essence)
}

fn too_many(who: &str, wait: Duration) -> Refusal {
    Refusal {
        error: HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many requests from {who}"),
        ),
        retry_after: Some(wait),
    }
}

async fn receive(state: &InboxState, req: &Received) -> Result<StatusCode, Refusal> {
    // Before anything costs us work: the client's own allowance. The keyId's host is not
    // charged here, or anyone could spend a big server's allowance by naming its key.
    if let Some(peer) = req.peer {
        let client = state.limits.client_address(peer.ip(), &req.headers);
        if let Err(wait) = state.limits.clients.check(&client) {
            return Err(too_many(&client.to_string(), wait));
        }
    }
    // Mastodon itself reads any body; refusing form and text types keeps browsers' simple
    // cross-site POSTs out, since JSON types need a CORS preflight we never grant.
    match media_type(&req.headers) {
        Some(t) if ACCEPTED_MEDIA_TYPES.contains(&t.as_str()) => {}
        other => {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type {} is not application/activity+json",
                    other.as_deref().unwrap_or("(none)")
                ),
            ))
        }
    }
    // Draft-cavage `Signature`, or RFC 9421 when `Signature-Input` is present.
    let params = RequestSignature::from_headers(&req.headers)?;

    let public_host = state.config.host();
    let path_and_query = req
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_else(|| req.uri.path());
    let request = IncomingRequest {
        method: &req.method,
        path_and_query,
        headers: &req.headers,
        public_host: &public_host,
        body: Some(&req.body),
    };
    let now = SystemTime::now();
    params.check(&request, now)?;
    let signed = Arc::new(SignedRequest {
        method: req.method.clone(),
        path_and_query: path_and_query.to_string(),
        headers: req.headers.clone(),
        public_host: public_host.clone(),
        scheme: url::Url::parse(&state.config.base_url)
            .map_or_else(|_| "https".to_string(), |u| u.scheme().to_string()),
        body: req.body.clone(),
    });

    let json: Value = serde_json::from_slice(&req.body).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let activity =
        Activity::parse(&json).map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))?;

    let (actor, key_id) = (activity.actor.clone(), params.key_id().to_string());
    // One trip to the store for everything read before the signature is checked, on the
    // read connection: it does not wait for the writer's batch.
    let (blocked, known, cached_signer) = blocking(&state.store, move |store| {
        store.read(|store| {
            Ok((
                store.is_blocked(&actor)? || store.is_blocked(&key_id)?,
                store.cached_actor(&actor)?.is_some(),
                store.cached_actor_by_key(&key_id)?,
            ))
        })
    })
    .await?;
    if blocked {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("{} is blocked here", activity.actor),
        ));
    }
    // An actor deleting itself can no longer serve its key; if we never knew it there is
    // nothing to delete (Mastodon's shortcut, which spares a fetch bound to fail).
    if matches!(&activity.kind, Kind::Delete { object } if *object == activity.actor) && !known {
        return Ok(StatusCode::ACCEPTED);
    }

    let sender = authenticate(state, &params, cached_signer.clone(), &signed, now).await?;
    // Rewriting the cached row unchanged would only cost the writer time.
    let sender_changed = cached_signer.as_ref() != Some(&sender);
    // The sender is proven now: charge its server.
    let sender_server = host_of(&sender.id).unwrap_or_default();
    if let Err(wait) = state.limits.servers.check(&sender_server) {
        return Err(too_many(&sender_server, wait));
    }
    if sender.id != activity.actor {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "the key {} belongs to {}, not to the activity's actor {}",
                params.key_id(),
                sender.id,
                activity.actor
            ),
        ));
    }

    let move_target = match &activity.kind {
        // A move to one of our actors is checked against our own aliases.
        Kind::Move { target, .. } if state.site.actor_name(target).is_some() => None,
        Kind::Move { target, .. } => match fetch_actor(state, target).await {
            Ok(actor) => Some(actor),
            Err(e) => {
                tracing::info!("inbox: move to {target} ignored: {e}");
                None
            }
        },
        _ => None,
    };

    let aliases = match &activity.kind {
        Kind::Follow { object } => fresh_aliases(state, object, &activity.actor).await,
        _ => Vec::new(),
    };

    let site = state.site.clone();
    let sender_host = crate::store::host_of(&sender.id);
    let activity = Arc::new(activity);
    let unit_activity = activity.clone();
    // One transaction for everything the request changes: a failure (or a crash) leaves
    // nothing behind, the sender gets a 5xx and its retry is applied in full. It is committed
    // together with other requests' (group commit), and answered once committed.
    let outcome = state
        .store
        .atomically_grouped(move |store| {
            let refreshed: Vec<&RemoteActor> = sender_changed
                .then_some(&sender)
                .into_iter()
                .chain(&aliases)
                .collect();
            let outcome = apply(
                &site,
                store,
                &unit_activity,
                &sender,
                move_target.as_ref(),
                &refreshed,
            )?;
            // A server that talks to us is up: deliveries held for it go out again (Mastodon
            // resets its failure tracker the same way). Last: on PostgreSQL every unit locks
            // the activity's id, then actors, then the host (see `apply`).
            if let Some(host) = &sender_host {
                store.mark_host_reachable(host, chrono::Utc::now().timestamp())?;
            }
            Ok(outcome)
        })
        .await
        .map_err(HttpError::from)?;
    match outcome {
        Outcome::Accept(follower) => {
            tracing::info!(
                "inbox: {}; Accept queued for {}",
                describe(&activity),
                follower.inbox.escape_debug()
            );
            state.wake.notify_one();
        }
        Outcome::Answered(what) => {
            tracing::info!("inbox: {what}; answer queued ({})", describe(&activity));
            state.wake.notify_one();
        }
        Outcome::Done(what) => {
            tracing::info!("inbox: {what} ({})", describe(&activity));
        }
        Outcome::Ignored(why) => {
            tracing::debug!("inbox: ignored {}: {why}", describe(&activity));
        }
    }
    Ok(StatusCode::ACCEPTED)
}

fn describe(activity: &Activity) -> String {
    activity.summary()
}

/// The sender of a signed request: its cached actor when the cached key verifies, else the
/// actor fetched anew (once: a key that fails right after a fetch is not fetched again
/// before `KEY_REFETCH_COOLDOWN`, so forged requests cannot make us hammer a server).
async fn authenticate(
    state: &InboxState,
    params: &RequestSignature,
    cached: Option<RemoteActor>,
    request: &Arc<SignedRequest>,
    now: SystemTime,
) -> Result<RemoteActor, Refusal> {
    let verifier = &state.verifier;
    // Whether the copy we hold is what failed: then only a fresh fetch will do.
    let mut outdated = false;
    if let Some(actor) = cached {
        match verifier.key(params.key_id(), &actor.public_key_pem) {
            Ok(key) => match verifier.verify(params, request, key, now).await {
                Ok(()) => return Ok(actor),
                Err(SignatureError::Mismatch)
                    if fetched_before(&actor, now, KEY_REFETCH_COOLDOWN) =>
                {
                    tracing::info!(
                        "inbox: cached key {} does not verify; fetching it again",
                        params.key_id()
                    );
                    outdated = true;
                }
                Err(e) => return Err(e.into()),
            },
            Err(e) => tracing::info!("inbox: cached key {} unreadable: {e}", params.key_id()),
        }
    }
    let actor = fetch_signer(state, params.key_id(), !outdated)
        .await
        .map_err(|e| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                format!("cannot get the key {}: {e}", params.key_id()),
            )
        })?;
    let key = verifier
        .key(params.key_id(), &actor.public_key_pem)
        .map_err(|e| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                format!("the key {} is unreadable: {e}", params.key_id()),
            )
        })?;
    if let Err(e) = verifier.verify(params, request, key, now).await {
        if outdated {
            // The fresh copy replaces the outdated one, so the next forgery naming this key
            // waits out the cooldown instead of fetching again.
            blocking(&state.store, move |store| store.cache_actor(&actor)).await?;
        }
        return Err(e.into());
    }
    Ok(actor)
}

/// The `alsoKnownAs` accounts of our actor `object` fetched anew, for a follow by someone
/// new: Mastodon's re-follow after a `Move` is a plain `Follow`, so whether one of them
/// moved here (its `movedTo`) is how the follow is told apart (see
/// `process::arrived_through_move`). Only until a move is known: then the store has it.
/// A failed fetch is logged and changes nothing.
async fn fresh_aliases(state: &InboxState, object: &str, follower: &str) -> Vec<RemoteActor> {
    let Some(name) = state.site.actor_name(object).map(str::to_string) else {
        return Vec::new();
    };
    let aliases = state.site.aliases_of(&name).to_vec();
    if aliases.is_empty() {
        return Vec::new();
    }
    let follower = follower.to_string();
    let unknown = blocking(&state.store, move |store| {
        if store.follower(&name, &follower)?.is_some() {
            return Ok(Vec::new());
        }
        let mut unknown = Vec::new();
        for alias in aliases {
            let known = store.account_move(&name, crate::store::MoveDirection::In, &alias)?;
            if known.is_none() {
                unknown.push(alias);
            }
        }
        Ok(unknown)
    })
    .await
    .unwrap_or_default();
    let mut fetched = Vec::new();
    for alias in unknown {
        match fetch_actor(state, &alias).await {
            Ok(actor) if actor.id == alias => fetched.push(actor),
            Ok(actor) => tracing::info!("inbox: alias {alias:?} serves {:?}", actor.id),
            Err(e) => tracing::info!("inbox: cannot fetch our alias {alias:?}: {e}"),
        }
    }
    fetched
}

fn fetched_before(actor: &RemoteActor, now: SystemTime, age: Duration) -> bool {
    let now: chrono::DateTime<chrono::Utc> = now.into();
    now.signed_duration_since(actor.fetched_at)
        .to_std()
        .is_ok_and(|elapsed| elapsed >= age)
}

#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Document(#[from] crate::inbox::remote::ActorDocError),
    #[error("{0}")]
    Key(String),
    #[error("no answer within {} s", FETCH_TIMEOUT.as_secs())]
    Timeout,
}

/// The actor owning `key_id`, with that key: one fetch however many requests name the key
/// at once, and its outcome remembered for a while (see `inbox::keyfetch`).
async fn fetch_signer(
    state: &InboxState,
    key_id: &str,
    recent_success_will_do: bool,
) -> Result<RemoteActor, String> {
    let client = state.client.clone();
    let signer = state.signing_key(&state.config.fediverse.username);
    let key = key_id.to_string();
    let fetch = async move {
        match tokio::time::timeout(FETCH_TIMEOUT, resolve_signer(&client, &signer, &key)).await {
            Ok(resolved) => resolved.map_err(|e| e.to_string()),
            Err(_) => Err(ResolveError::Timeout.to_string()),
        }
    };
    state
        .key_fetches
        .get(key_id, recent_success_will_do, fetch)
        .await
}

/// The key and its owner's document come from one fetch when the keyId serves the actor
/// itself (Mastodon's `#main-key`): the document is not fetched a second time.
async fn resolve_signer(
    client: &FederationClient,
    signer: &SigningKey,
    key_id: &str,
) -> Result<RemoteActor, ResolveError> {
    let key = client.fetch_actor_key(key_id, Some(signer)).await?;
    let mut actor = actor_from_document(&key.actor)?;
    actor.public_key_pem =
        public_key_to_pem(&key.public_key).map_err(|e| ResolveError::Key(e.to_string()))?;
    actor.key_id = key_id.to_string();
    Ok(actor)
}

/// An actor document, fetched from its id.
async fn fetch_actor(state: &InboxState, id: &str) -> Result<RemoteActor, ResolveError> {
    let signer = state.signing_key(&state.config.fediverse.username);
    let work = state
        .client
        .fetch_json(id, Some(&signer), IdCheck::MatchUrl);
    let doc = tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| ResolveError::Timeout)??;
    Ok(actor_from_document(&doc)?)
}
