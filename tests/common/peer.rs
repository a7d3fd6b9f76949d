//! The one fake fediverse server of the tests: a Mastodon-like server on 127.0.0.1 with
//! actor documents in Mastodon's shape (`tests/fixtures/mastodon_actor.json`), WebFinger,
//! statuses, inboxes that record what they receive, signed requests from its users (each
//! with `alice_key.pem` unless given its own key), and Mastodon's handling of a `Move`
//! (`ActivityPub::Activity::Move` then `MoveWorker`): the signature checked against the
//! mover's key, the target fetched and its `alsoKnownAs` checked, then each local follower
//! of the mover follows the target and unfollows the mover. `Blog` runs a site's
//! `relais inbox` for it to talk to.

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use relais::federation::keys::{parse_public_key_pem, PrivateKey};
use relais::federation::signature::{
    sign_request, verify_request, IncomingRequest, SignatureParams, SigningKey,
};
use relais::store::Store;
use serde_json::{json, Map, Value};

const SITE_KEY: &str = include_str!("../fixtures/site_key.pem");
pub const PEER_KEY: &str = include_str!("../fixtures/alice_key.pem");
const ACTOR_TEMPLATE: &str = include_str!("../fixtures/mastodon_actor.json");
const ACCEPT: &str = "application/activity+json, application/ld+json";
/// Only a guard against a hung test.
pub const GUARD: Duration = Duration::from_secs(60);

/// One request an inbox of the peer received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body as it came, for checking its signature.
    pub bytes: Bytes,
}

/// How the peer's inboxes answer: Mastodon's 202, unless a test asks for trouble.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answers {
    /// Answer 500 to this many requests first.
    pub fail_first: usize,
    /// Answer 410 on personal inboxes (`/users/NAME/inbox`): the account is gone.
    pub gone: bool,
    /// Wait this long before answering.
    pub delay: Duration,
}

#[derive(Clone)]
struct PeerState {
    answers: Answers,
    /// Requests the inboxes answered or are answering.
    served: Arc<AtomicUsize>,
    base: String,
    host: String,
    /// User → fields added to (or replacing) its actor document.
    profiles: Arc<Mutex<HashMap<String, Map<String, Value>>>>,
    /// Status id (path after `/users/NAME/statuses/`) → Note.
    statuses: Arc<Mutex<HashMap<String, Value>>>,
    received: Arc<Mutex<Vec<Received>>>,
    /// Remote actor → local users following it.
    follows: Arc<Mutex<HashMap<String, Vec<String>>>>,
    /// What the peer made of each `Move`.
    moves: Arc<Mutex<Vec<String>>>,
    /// User → its private key PEM, where it is not [`PEER_KEY`].
    keys: Arc<Mutex<HashMap<String, String>>>,
    /// User → GETs of its actor document.
    gets: Arc<Mutex<HashMap<String, usize>>>,
    /// How many of `received` [`Peer::next_of`] has looked at.
    cursor: Arc<Mutex<usize>>,
    http: reqwest::Client,
}

#[derive(Clone)]
pub struct Peer {
    state: PeerState,
    pub base: String,
    pub host: String,
}

fn private_pem(state: &PeerState, user: &str) -> String {
    let keys = state.keys.lock().unwrap();
    keys.get(user).map_or(PEER_KEY, String::as_str).to_string()
}

fn public_pem(private_pem: &str) -> String {
    PrivateKey::from_pem(private_pem)
        .unwrap()
        .public_key_pem()
        .unwrap()
}

async fn actor(State(state): State<PeerState>, Path(name): Path<String>) -> Response {
    *state.gets.lock().unwrap().entry(name.clone()).or_default() += 1;
    let Some(extra) = state.profiles.lock().unwrap().get(&name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let text = ACTOR_TEMPLATE
        .replace("{{BASE}}", &state.base)
        .replace("{{USER}}", &name)
        .replace(
            "{{PEM}}",
            &public_pem(&private_pem(&state, &name)).replace('\n', "\\n"),
        );
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["endpoints"] = json!({ "sharedInbox": format!("{}/inbox", state.base) });
    for (key, value) in extra {
        doc[key] = value;
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/activity+json; charset=utf-8",
        )],
        doc.to_string(),
    )
        .into_response()
}

async fn status(
    State(state): State<PeerState>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    match state.statuses.lock().unwrap().get(&format!("{name}/{id}")) {
        Some(note) => (
            [(header::CONTENT_TYPE, "application/activity+json")],
            note.to_string(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn webfinger(
    State(state): State<PeerState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let resource = query.get("resource").cloned().unwrap_or_default();
    let user = resource
        .strip_prefix("acct:")
        .and_then(|acct| acct.strip_suffix(&format!("@{}", state.host)))
        .unwrap_or_default()
        .to_string();
    if !state.profiles.lock().unwrap().contains_key(&user) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let actor = format!("{}/users/{user}", state.base);
    (
        [(header::CONTENT_TYPE, "application/jrd+json")],
        json!({
            "subject": resource,
            "aliases": [actor, format!("{}/@{user}", state.base)],
            "links": [
                { "rel": "http://webfinger.net/rel/profile-page", "type": "text/html",
                  "href": format!("{}/@{user}", state.base) },
                { "rel": "self", "type": "application/activity+json", "href": actor },
            ]
        })
        .to_string(),
    )
        .into_response()
}

async fn inbox(
    State(state): State<PeerState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let number = state.served.fetch_add(1, Ordering::SeqCst);
    if !state.answers.delay.is_zero() {
        tokio::time::sleep(state.answers.delay).await;
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let path = uri.path().to_string();
    state.received.lock().unwrap().push(Received {
        path: path.clone(),
        headers: headers.clone(),
        body: json.clone(),
        bytes: body.clone(),
    });
    if number < state.answers.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if state.answers.gone && path.starts_with("/users/") {
        return StatusCode::GONE;
    }
    if json["type"] == "Move" {
        // Mastodon answers at once and processes in the background.
        tokio::spawn(async move {
            let outcome = handle_move(&state, &path, &headers, &body, &json).await;
            state
                .moves
                .lock()
                .unwrap()
                .push(outcome.unwrap_or_else(|e| format!("refused: {e}")));
        });
    }
    StatusCode::ACCEPTED
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = http
        .get(url)
        .header(header::ACCEPT, ACCEPT)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: {}", response.status()));
    }
    response.json().await.map_err(|e| format!("GET {url}: {e}"))
}

async fn handle_move(
    state: &PeerState,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    activity: &Value,
) -> Result<String, String> {
    let origin = activity["actor"].as_str().ok_or("no actor")?.to_string();
    if activity["object"].as_str() != Some(origin.as_str()) {
        return Err("the actor moves someone else".into());
    }
    let origin_doc = fetch(&state.http, &origin).await?;
    let pem = origin_doc["publicKey"]["publicKeyPem"]
        .as_str()
        .ok_or("no key")?;
    let key = parse_public_key_pem(pem).map_err(|e| e.to_string())?;
    let params = SignatureParams::from_headers(headers).map_err(|e| e.to_string())?;
    if params.key_id != origin_doc["publicKey"]["id"] {
        return Err(format!("signed by {}", params.key_id));
    }
    let request = IncomingRequest {
        method: &Method::POST,
        path_and_query: path,
        headers,
        public_host: &state.host,
        body: Some(body),
    };
    verify_request(&params, &request, &key, SystemTime::now()).map_err(|e| e.to_string())?;
    let target = activity["target"].as_str().ok_or("no target")?.to_string();
    let target_doc = fetch(&state.http, &target).await?;
    let aliases: Vec<&str> = match &target_doc["alsoKnownAs"] {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        Value::String(one) => vec![one.as_str()],
        _ => vec![],
    };
    if !aliases.contains(&origin.as_str()) {
        return Err(format!("{target} does not list {origin} in alsoKnownAs"));
    }
    let target_inbox = target_doc["inbox"].as_str().ok_or("no inbox")?.to_string();
    let origin_inbox = origin_doc["inbox"].as_str().ok_or("no inbox")?.to_string();
    let movers = state
        .follows
        .lock()
        .unwrap()
        .get(&origin)
        .cloned()
        .unwrap_or_default();
    for user in &movers {
        let me = format!("{}/users/{user}", state.base);
        let already = state
            .follows
            .lock()
            .unwrap()
            .get(&target)
            .is_some_and(|f| f.contains(user));
        // Mastodon's FollowService sends nothing for an account already followed.
        if !already {
            let follow = json!({
                "@context": "https://www.w3.org/ns/activitystreams",
                "id": format!("{me}#follows/moved-{}", target.len()),
                "type": "Follow", "actor": me, "object": target,
            });
            post_signed(state, user, &target_inbox, &follow).await?;
        }
        let undo = json!({
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": format!("{me}#follows/undo-{}", origin.len()),
            "type": "Undo", "actor": me,
            "object": { "id": format!("{me}#follows/1"), "type": "Follow", "actor": me, "object": origin },
        });
        post_signed(state, user, &origin_inbox, &undo).await?;
        let mut follows = state.follows.lock().unwrap();
        follows
            .entry(origin.clone())
            .or_default()
            .retain(|u| u != user);
        follows
            .entry(target.clone())
            .or_default()
            .push(user.clone());
    }
    Ok(format!("moved {} follower(s) to {target}", movers.len()))
}

/// POSTs `activity`, signed by the peer's `user`, to `inbox`; fails unless it is accepted.
async fn post_signed(
    state: &PeerState,
    user: &str,
    inbox: &str,
    activity: &Value,
) -> Result<(), String> {
    let response = post_as(state, &state.http, user, inbox, activity).await?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "POST {inbox}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        ))
    }
}

/// POSTs `activity`, signed by the peer's `user`, to `inbox` through `client`.
async fn post_as(
    state: &PeerState,
    client: &reqwest::Client,
    user: &str,
    inbox: &str,
    activity: &Value,
) -> Result<reqwest::Response, String> {
    let body = activity.to_string().into_bytes();
    let key = SigningKey::new(
        format!("{}/users/{user}#main-key", state.base),
        Arc::new(PrivateKey::from_pem(&private_pem(state, user)).unwrap()),
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/activity+json"),
    );
    let url = url::Url::parse(inbox).map_err(|e| e.to_string())?;
    sign_request(
        &key,
        &Method::POST,
        &url,
        &mut headers,
        Some(&body),
        SystemTime::now(),
    )
    .map_err(|e| e.to_string())?;
    client
        .post(inbox)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST {inbox}: {e}"))
}

impl Peer {
    /// A peer whose `users` exist (actor documents, WebFinger) and whose inboxes answer 202.
    pub async fn start(users: &[&str]) -> Peer {
        Peer::start_with(users, Answers::default()).await
    }

    pub async fn start_with(users: &[&str], answers: Answers) -> Peer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let base = format!("http://{host}");
        let state = PeerState {
            answers,
            served: Arc::default(),
            base: base.clone(),
            host: host.clone(),
            profiles: Arc::new(Mutex::new(
                users.iter().map(|u| (u.to_string(), Map::new())).collect(),
            )),
            statuses: Arc::default(),
            received: Arc::default(),
            follows: Arc::default(),
            moves: Arc::default(),
            keys: Arc::default(),
            gets: Arc::default(),
            cursor: Arc::default(),
            http: reqwest::Client::new(),
        };
        let app = Router::new()
            .route("/users/{name}", get(actor))
            .route("/users/{name}/statuses/{id}", get(status))
            .route("/users/{name}/inbox", post(inbox))
            .route("/inbox", post(inbox))
            .route("/.well-known/webfinger", get(webfinger))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Peer { state, base, host }
    }

    pub fn actor(&self, user: &str) -> String {
        format!("{}/users/{user}", self.base)
    }

    pub fn key_id(&self, user: &str) -> String {
        format!("{}#main-key", self.actor(user))
    }

    pub fn shared_inbox(&self) -> String {
        format!("{}/inbox", self.base)
    }

    /// Sets a field of `user`'s actor document (`alsoKnownAs`, `movedTo`...).
    pub fn set_profile(&self, user: &str, key: &str, value: Value) {
        self.state
            .profiles
            .lock()
            .unwrap()
            .entry(user.to_string())
            .or_default()
            .insert(key.to_string(), value);
    }

    /// Publishes a status of `user` at `/users/USER/statuses/ID`; returns its id.
    pub fn add_status(&self, user: &str, id: &str, note: Value) -> String {
        self.state
            .statuses
            .lock()
            .unwrap()
            .insert(format!("{user}/{id}"), note);
        format!("{}/statuses/{id}", self.actor(user))
    }

    /// Records that the local `user` follows `actor` without telling anyone (a follow made
    /// before the test).
    pub fn already_follows(&self, user: &str, actor: &str) {
        self.state
            .follows
            .lock()
            .unwrap()
            .entry(actor.to_string())
            .or_default()
            .push(user.to_string());
    }

    /// Has `user` follow `actor`: a signed Follow to the actor's inbox.
    pub async fn follow(&self, user: &str, actor: &str) {
        let doc = fetch(&self.state.http, actor).await.unwrap();
        let inbox = doc["inbox"].as_str().unwrap();
        let me = self.actor(user);
        let follow = json!({
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": format!("{me}#follows/1"),
            "type": "Follow", "actor": me, "object": actor,
        });
        post_signed(&self.state, user, inbox, &follow)
            .await
            .unwrap();
        self.already_follows(user, actor);
    }

    /// POSTs `activity` signed by `user` to `inbox`; fails unless it is accepted.
    pub async fn send(&self, user: &str, inbox: &str, activity: &Value) -> Result<(), String> {
        post_signed(&self.state, user, inbox, activity).await
    }

    /// POSTs `activity` signed by `user` to `inbox` and returns the answer, whatever it is.
    pub async fn post(&self, user: &str, inbox: &str, activity: &Value) -> reqwest::Response {
        self.post_with(&self.state.http, user, inbox, activity)
            .await
    }

    /// [`Peer::post`] through `client` (one that trusts a test CA, say).
    pub async fn post_with(
        &self,
        client: &reqwest::Client,
        user: &str,
        inbox: &str,
        activity: &Value,
    ) -> reqwest::Response {
        post_as(&self.state, client, user, inbox, activity)
            .await
            .unwrap()
    }

    /// Gives `user` (a new user, or one that rotates its key) its own key pair (private key
    /// PEM): its actor document shows the public half and its requests are signed with it.
    pub fn set_key(&self, user: &str, private_pem: &str) {
        self.state
            .profiles
            .lock()
            .unwrap()
            .entry(user.to_string())
            .or_default();
        self.state
            .keys
            .lock()
            .unwrap()
            .insert(user.to_string(), private_pem.to_string());
    }

    /// How many times `user`'s actor document was fetched.
    pub fn gets(&self, user: &str) -> usize {
        self.state
            .gets
            .lock()
            .unwrap()
            .get(user)
            .copied()
            .unwrap_or(0)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// How many requests the inboxes received (and kept: see [`Peer::take`]).
    pub fn count(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    /// Every request received since the last call, forgotten by the peer.
    pub fn take(&self) -> Vec<Received> {
        let mut received = self.state.received.lock().unwrap();
        *self.state.cursor.lock().unwrap() = 0;
        std::mem::take(&mut *received)
    }

    /// The activities of `kind` received so far.
    pub fn received_of(&self, kind: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.body["type"] == kind)
            .map(|r| r.body)
            .collect()
    }

    /// The next activity of `kind` received after those earlier calls (of this or
    /// [`Peer::next`]) returned or passed over; fails after [`GUARD`].
    pub async fn next_of(&self, kind: &str) -> Value {
        self.next_matching(kind, |r| r.body["type"] == kind)
            .await
            .body
    }

    /// The next request received after those earlier calls returned or passed over; fails
    /// after [`GUARD`].
    pub async fn next(&self) -> Received {
        self.next_matching("delivery", |_| true).await
    }

    /// How many requests came that no earlier call returned or passed over; they count as
    /// passed over from now on.
    pub fn take_pending(&self) -> usize {
        let received = self.state.received.lock().unwrap().len();
        let mut cursor = self.state.cursor.lock().unwrap();
        std::mem::replace(&mut *cursor, received).abs_diff(received)
    }

    async fn next_matching(&self, what: &str, wanted: impl Fn(&Received) -> bool) -> Received {
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            {
                let received = self.state.received.lock().unwrap();
                let mut cursor = self.state.cursor.lock().unwrap();
                while *cursor < received.len() {
                    *cursor += 1;
                    if wanted(&received[*cursor - 1]) {
                        return received[*cursor - 1].clone();
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} was delivered; received {:?}",
                self.received()
                    .iter()
                    .map(|r| r.body.to_string())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn moves(&self) -> Vec<String> {
        self.state.moves.lock().unwrap().clone()
    }

    /// Waits until `done` holds for this peer, failing after [`GUARD`].
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Peer) -> bool) {
        let deadline = tokio::time::Instant::now() + GUARD;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} never happened; received {:?}; moves {:?}",
                self.received()
                    .iter()
                    .map(|r| r.body.to_string())
                    .collect::<Vec<_>>(),
                self.moves()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A site served by a running `relais inbox` at its own `base_url`, killed on drop.
pub struct Blog {
    dir: tempfile::TempDir,
    pub base: String,
    child: Child,
}

impl Drop for Blog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Blog {
    pub async fn start(fediverse_extra: &str) -> Blog {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let base = format!("http://127.0.0.1:{port}");
        std::fs::write(
            dir.path().join("config.toml"),
            format!(
                "title = \"Moving blog\"\nbase_url = \"{base}\"\n\
                 [fediverse]\ninbox_url = \"{base}\"\n{fediverse_extra}\n\
                 [inbox]\nlisten = \"127.0.0.1:{port}\"\nallow_private_addresses = true\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("relais-key.pem"), SITE_KEY).unwrap();
        super::write(
            dir.path(),
            "content/posts/hello.md",
            "+++\ntitle = \"Hello\"\ndate = 2026-01-01\n+++\n\nFirst post.\n",
        );
        super::build_site(dir.path());
        let log = std::fs::File::create(dir.path().join("inbox.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_relais"))
            .args(["inbox", "--site"])
            .arg(dir.path())
            .env("RUST_LOG", "relais=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut blog = Blog { dir, base, child };
        let log = blog.path().join("inbox.log");
        super::wait_healthy(&mut blog.child, &blog.base, &log).await;
        blog
    }

    pub fn path(&self) -> &FsPath {
        self.dir.path()
    }

    pub fn actor(&self) -> String {
        format!("{}/ap/users/blog.json", self.base)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("inbox.log")).unwrap_or_default()
    }

    pub fn store(&self) -> Store {
        Store::open(&self.path().join("relais.db")).unwrap()
    }

    pub fn followers(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .store()
            .followers(None)
            .unwrap()
            .into_iter()
            .map(|f| f.follower_id)
            .collect();
        ids.sort();
        ids
    }

    pub async fn wait_for_followers(&self, expected: &[String]) {
        let mut expected = expected.to_vec();
        expected.sort();
        let deadline = tokio::time::Instant::now() + GUARD;
        while self.followers() != expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "followers {:?}, expected {expected:?}:\n{}",
                self.followers(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn relais(&self, command: &str, extra: &[&str]) -> std::process::Output {
        super::relais_on(command, self.path(), extra)
    }
}
