//! The inbox learning what was published from the live site, end to end: a site built by the
//! real `relais build` and served by a loopback "static host" (axum + tower-http's
//! `ServeDir`, `/ap/*` as `application/activity+json` as Netlify's `_headers` gives it, with
//! ETags, and pages that can be made to fail or lose items on demand), the real
//! `relais inbox` elsewhere with `base_url` = the static host, and a fake follower server on
//! loopback recording what it is sent.
//!
//! Deploy notifications are signed outside relais: Netlify's JWS with PyJWT, the GitHub-style
//! HMAC with Python's `hmac`. Without PyJWT the Netlify step is skipped with a message, and
//! fails instead when `RELAIS_REQUIRE_PYJWT=1`.

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use relais::federation::keys::PrivateKey;
use relais::federation::signature::{verify_request, IncomingRequest, SignatureParams};
use relais::store::{FollowState, NewFollower, RemoteActor, Store};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tower_http::services::ServeDir;

const SITE_KEY: &str = include_str!("fixtures/site_key.pem");
/// Only a guard against a hung test: what is awaited normally comes at once.
const GUARD: Duration = Duration::from_secs(60);
const NETLIFY_SECRET: &str = "netlify-jws-secret-for-tests";
const HMAC_SECRET: &str = "hub-hmac-secret-for-tests";
const TOKEN: &str = "bearer-token-for-tests";

/// How the static host misbehaves on one path.
#[derive(Debug, Clone, Copy)]
enum Fault {
    ServerError,
    /// Serves the page without its last item, as a truncated upload would.
    DropLastItem,
}

#[derive(Clone)]
struct HostState {
    public: PathBuf,
    faults: Arc<Mutex<HashMap<String, Fault>>>,
    /// Every `/ap/` request: path and answer status.
    log: Arc<Mutex<Vec<(String, u16)>>>,
}

/// A static host on 127.0.0.1 serving a built `public/`.
struct StaticHost {
    base: String,
    state: HostState,
}

impl StaticHost {
    /// Binds first: the site's `base_url` needs the port before the build.
    async fn bind() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        (listener, base)
    }

    fn serve(listener: tokio::net::TcpListener, base: String, public: &Path) -> StaticHost {
        let state = HostState {
            public: public.to_path_buf(),
            faults: Arc::default(),
            log: Arc::default(),
        };
        let app = Router::new()
            .route("/ap/{*rest}", get(ap_document))
            .with_state(state.clone())
            .fallback_service(ServeDir::new(public));
        tokio::spawn(async move { axum::serve(listener, app).await });
        StaticHost { base, state }
    }

    fn fault(&self, path: &str, fault: Option<Fault>) {
        let mut faults = self.state.faults.lock().unwrap();
        match fault {
            Some(fault) => faults.insert(path.to_string(), fault),
            None => faults.remove(path),
        };
    }

    fn log(&self) -> Vec<(String, u16)> {
        self.state.log.lock().unwrap().clone()
    }
}

/// `/ap/*`: the file as `application/activity+json` with a content ETag, honouring
/// `If-None-Match` as Netlify does.
async fn ap_document(State(state): State<HostState>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_string();
    let fault = state.faults.lock().unwrap().get(&path).copied();
    let response = match std::fs::read(state.public.join(path.trim_start_matches('/'))) {
        _ if matches!(fault, Some(Fault::ServerError)) => {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
        Ok(mut bytes) => {
            if matches!(fault, Some(Fault::DropLastItem)) {
                let mut doc: Value = serde_json::from_slice(&bytes).unwrap();
                doc["orderedItems"].as_array_mut().unwrap().pop();
                bytes = doc.to_string().into_bytes();
            }
            let digest = Sha256::digest(&bytes);
            let etag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            let etag = format!("\"{etag}\"");
            let matches = headers
                .get(header::IF_NONE_MATCH)
                .is_some_and(|v| v.as_bytes() == etag.as_bytes());
            if matches {
                (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response()
            } else {
                (
                    [
                        (
                            header::CONTENT_TYPE,
                            "application/activity+json".to_string(),
                        ),
                        (header::ETAG, etag),
                    ],
                    bytes,
                )
                    .into_response()
            }
        }
    };
    state
        .log
        .lock()
        .unwrap()
        .push((path, response.status().as_u16()));
    response
}

/// What the blog POSTed to the follower's server.
#[derive(Debug)]
struct Delivery {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A Mastodon-like server on 127.0.0.1 with one follower of the blog.
struct Follower {
    base: String,
    host: String,
    deliveries: tokio::sync::Mutex<mpsc::UnboundedReceiver<Delivery>>,
}

async fn record(
    State(tx): State<mpsc::UnboundedSender<Delivery>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let _ = tx.send(Delivery {
        path: uri.path().to_string(),
        headers,
        body,
    });
    StatusCode::ACCEPTED
}

impl Follower {
    async fn start() -> Follower {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/inbox", post(record))
            .route("/users/reader/inbox", post(record))
            .with_state(tx);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Follower {
            base: format!("http://{host}"),
            host,
            deliveries: tokio::sync::Mutex::new(rx),
        }
    }

    /// Records the follower in the site's store, as an accepted Follow would.
    fn follow(&self, store: &Store) {
        let id = format!("{}/users/reader", self.base);
        let remote = RemoteActor {
            id: id.clone(),
            inbox: format!("{id}/inbox"),
            shared_inbox: Some(format!("{}/inbox", self.base)),
            name: "Reader".into(),
            handle: format!("@reader@{}", self.host),
            url: id.clone(),
            avatar: None,
            public_key_pem: "unused".into(),
            key_id: format!("{id}#main-key"),
            also_known_as: vec![],
            moved_to: None,
            fetched_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        };
        store
            .upsert_follower(&NewFollower {
                actor_name: "blog",
                follower: &remote,
                follow_activity_id: &format!("{id}#follow"),
                state: FollowState::Accepted,
            })
            .unwrap();
    }

    async fn next(&self) -> Delivery {
        tokio::time::timeout(GUARD, self.deliveries.lock().await.recv())
            .await
            .expect("nothing was delivered to the follower")
            .unwrap()
    }

    fn nothing_pending(&self) -> bool {
        self.deliveries
            .try_lock()
            .map(|mut rx| rx.try_recv().is_err())
            .unwrap_or(false)
    }
}

/// A site whose `base_url` is the static host, and its running `relais inbox`.
struct Live {
    dir: tempfile::TempDir,
    host: StaticHost,
    inbox_base: String,
    client: reqwest::Client,
    child: Option<Child>,
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Live {
    /// Builds a site with `posts` (slug, date) on a new static host; `inbox_extra` goes into
    /// `[inbox]`. The inbox is not started yet.
    async fn build(posts: &[(&str, &str)], inbox_extra: &str) -> Live {
        let dir = tempfile::tempdir().unwrap();
        let (listener, base) = StaticHost::bind().await;
        let port = common::free_port();
        let inbox_base = format!("http://127.0.0.1:{port}");
        let config = format!(
            "title = \"Live blog\"\nbase_url = \"{base}\"\n\
             [fediverse]\ninbox_url = \"{inbox_base}\"\noutbox_page_size = 2\n\
             [inbox]\nlisten = \"127.0.0.1:{port}\"\nallow_private_addresses = true\n\
             serve_public = false\n{inbox_extra}\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        std::fs::write(dir.path().join("relais-key.pem"), SITE_KEY).unwrap();
        for (slug, date) in posts {
            write_post(dir.path(), slug, date, "First version.");
        }
        common::build_site(dir.path());
        let host = StaticHost::serve(listener, base, &dir.path().join("public"));
        Live {
            dir,
            host,
            inbox_base,
            client: reqwest::Client::new(),
            child: None,
        }
    }

    fn store(&self) -> Store {
        Store::open(&self.dir.path().join("relais.db")).unwrap()
    }

    async fn start_inbox(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("inbox.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_relais"))
            .args(["inbox", "--site"])
            .arg(self.dir.path())
            .env("RUST_LOG", "relais=debug")
            .env("RELAIS_NETLIFY_JWS_SECRET", NETLIFY_SECRET)
            .env("RELAIS_DEPLOY_HMAC_SECRET", HMAC_SECRET)
            .env("RELAIS_DEPLOY_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let child = self.child.insert(child);
        let log = self.dir.path().join("inbox.log");
        common::wait_healthy(child, &self.inbox_base, &log).await;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("inbox.log")).unwrap_or_default()
    }

    fn rebuild(&self) {
        common::build_site(self.dir.path());
    }

    fn post_id(&self, slug: &str) -> String {
        format!("{}/ap/posts/{slug}.json", self.host.base)
    }

    /// POSTs a deploy notification with the given headers.
    async fn deploy(&self, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
        let mut request = self
            .client
            .post(format!("{}/relais/deploy", self.inbox_base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// A deploy announced with a Bearer token (lowercase scheme); must succeed.
    async fn deploy_ok(&self, headers: &[(&str, String)], body: &[u8]) -> Value {
        let (status, text) = self.deploy(headers, body).await;
        assert_eq!(status, 200, "{text}\n{}", self.log());
        serde_json::from_str(&text).unwrap()
    }
}

fn write_post(site: &Path, slug: &str, date: &str, text: &str) {
    common::write(
        site,
        &format!("content/posts/{slug}.md"),
        format!("+++\ntitle = \"{slug}\"\ndate = {date}\n+++\n\n{text}\n"),
    );
}

fn bearer() -> Vec<(&'static str, String)> {
    vec![("authorization", format!("bearer {TOKEN}"))]
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

const NOTIFICATION: &[u8] = br#"{"id":"65f0c0de","state":"ready","context":"production"}"#;

/// Runs `python3 -c script secret` with `body` on stdin; its output, trimmed.
fn python(script: &str, secret: &str, body: &[u8]) -> String {
    let mut child = Command::new("python3")
        .args(["-c", script, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// `X-Hub-Signature-256` as GitHub computes it, with Python's standard library.
fn hub_signature(secret: &str, body: &[u8]) -> String {
    python(
        "import hashlib, hmac, sys\n\
         body = sys.stdin.buffer.read()\n\
         print('sha256=' + hmac.new(sys.argv[1].encode(), body, hashlib.sha256).hexdigest())",
        secret,
        body,
    )
}

/// Netlify's `X-Webhook-Signature`, made with PyJWT; `None` (skipped) when PyJWT is missing.
fn netlify_signature(secret: &str, body: &[u8]) -> Option<String> {
    let present = Command::new("python3")
        .args(["-c", "import jwt"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var("RELAIS_REQUIRE_PYJWT").as_deref() != Ok("1"),
            "PyJWT is required (RELAIS_REQUIRE_PYJWT=1) but `python3 -c 'import jwt'` fails"
        );
        eprintln!("skipping the Netlify JWS checks: PyJWT is not installed (pip install pyjwt)");
        return None;
    }
    Some(python(
        "import hashlib, sys, jwt\n\
         body = sys.stdin.buffer.read()\n\
         claims = {'iss': 'netlify', 'sha256': hashlib.sha256(body).hexdigest()}\n\
         print(jwt.encode(claims, sys.argv[1], algorithm='HS256'))",
        secret,
        body,
    ))
}

/// Checks the delivery's signature against the site key, as the follower's server would.
fn assert_signed(delivery: &Delivery, follower: &Follower) {
    let key = PrivateKey::from_pem(SITE_KEY).unwrap();
    let public =
        relais::federation::keys::parse_public_key_pem(&key.public_key_pem().unwrap()).unwrap();
    let params = SignatureParams::from_headers(&delivery.headers).unwrap();
    verify_request(
        &params,
        &IncomingRequest {
            method: &Method::POST,
            path_and_query: &delivery.path,
            headers: &delivery.headers,
            public_host: &follower.host,
            body: Some(&delivery.body),
        },
        &public,
        SystemTime::now(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_deploy_notifications_publish_new_edited_and_deleted_posts() {
    let follower = Follower::start().await;
    let old = [
        ("old-1", "2026-01-01"),
        ("old-2", "2026-01-02"),
        ("old-3", "2026-01-03"),
        ("old-4", "2026-01-04"),
    ];
    let mut live = Live::build(&old, "").await;
    follower.follow(&live.store());
    live.start_inbox().await;

    // Refused callers: nothing is fetched, nothing queued.
    let unsigned = live.deploy(&[], NOTIFICATION).await;
    assert_eq!(unsigned.0, 401, "{}", unsigned.1);
    let wrong_token = live
        .deploy(&[("authorization", "Bearer nope".into())], NOTIFICATION)
        .await;
    assert_eq!(wrong_token.0, 401);
    let signed_other_body = hub_signature(HMAC_SECRET, b"{\"state\":\"error\"}");
    let tampered = live
        .deploy(&[("x-hub-signature-256", signed_other_body)], NOTIFICATION)
        .await;
    assert_eq!(tampered.0, 401);
    let wrong_secret = hub_signature("another-secret", NOTIFICATION);
    let forged = live
        .deploy(&[("x-hub-signature-256", wrong_secret)], NOTIFICATION)
        .await;
    assert_eq!(forged.0, 401);
    let netlify = netlify_signature(NETLIFY_SECRET, NOTIFICATION);
    if netlify.is_some() {
        let forged = netlify_signature("another-secret", NOTIFICATION).unwrap();
        let refused = live
            .deploy(&[("x-webhook-signature", forged)], NOTIFICATION)
            .await;
        assert_eq!(refused.0, 401);
        let good = netlify.clone().unwrap();
        let tampered = live
            .deploy(
                &[("x-webhook-signature", good)],
                br#"{"id":"65f0c0de","state":"error"}"#,
            )
            .await;
        assert_eq!(tampered.0, 401);
    }
    assert!(live.host.log().is_empty(), "{:?}", live.host.log());

    // The first deploy records the old posts without sending them.
    let first = live.deploy_ok(&bearer(), NOTIFICATION).await;
    assert_eq!(
        (first["skipped_old"].as_u64(), first["creates"].as_u64()),
        (Some(4), Some(0))
    );

    // A new post, announced by Netlify's notification (or a Bearer token without PyJWT).
    write_post(live.dir.path(), "fresh", &today(), "Just written.");
    live.rebuild();
    let headers = match &netlify {
        Some(_) => vec![(
            "x-webhook-signature",
            netlify_signature(NETLIFY_SECRET, NOTIFICATION).unwrap(),
        )],
        None => bearer(),
    };
    let report = live.deploy_ok(&headers, NOTIFICATION).await;
    assert_eq!(report["creates"], 1, "{report}");
    let create = follower.next().await;
    assert_eq!(create.path, "/inbox", "to the shared inbox");
    assert_signed(&create, &follower);
    let body = create.json();
    assert_eq!(body["type"], "Create");
    assert_eq!(body["object"]["id"], live.post_id("fresh"));

    // An edit, announced by a GitHub-style HMAC.
    write_post(live.dir.path(), "fresh", &today(), "Written, then edited.");
    live.rebuild();
    let ci_body = br#"{"ref":"refs/heads/main"}"#;
    let report = live
        .deploy_ok(
            &[("x-hub-signature-256", hub_signature(HMAC_SECRET, ci_body))],
            ci_body,
        )
        .await;
    assert_eq!(report["updates"], 1, "{report}");
    let update = follower.next().await;
    assert_signed(&update, &follower);
    let body = update.json();
    assert_eq!(body["type"], "Update");
    assert_eq!(body["object"]["id"], live.post_id("fresh"));
    assert!(
        body["object"]["content"]
            .as_str()
            .unwrap()
            .contains("edited"),
        "{body}"
    );

    // A page that lost an item, or fails, is not read as deleted posts.
    let last_page = "/ap/users/blog/outbox/page-3.json";
    live.host.fault(last_page, Some(Fault::DropLastItem));
    let (status, message) = live.deploy(&bearer(), NOTIFICATION).await;
    assert_eq!(status, 502, "{message}");
    assert!(message.contains("counts 5 items"), "{message}");
    live.host.fault(last_page, None);
    live.host.fault(
        "/ap/users/blog/outbox/page-1.json",
        Some(Fault::ServerError),
    );
    let (status, message) = live.deploy(&bearer(), NOTIFICATION).await;
    assert_eq!(status, 502, "{message}");
    assert!(message.contains("500"), "{message}");
    live.host.fault("/ap/users/blog/outbox/page-1.json", None);
    let unchanged = live.deploy_ok(&bearer(), NOTIFICATION).await;
    assert_eq!(
        unchanged,
        json!({"creates": 0, "updates": 0, "deletes": 0, "announces": 0,
               "skipped_old": 0, "deliveries": 0}),
        "the failed reads recorded nothing"
    );
    assert!(follower.nothing_pending());

    // A deletion.
    std::fs::remove_file(live.dir.path().join("content/posts/old-1.md")).unwrap();
    live.rebuild();
    let report = live.deploy_ok(&bearer(), NOTIFICATION).await;
    assert_eq!(report["deletes"], 1, "{report}");
    let delete = follower.next().await;
    assert_signed(&delete, &follower);
    let body = delete.json();
    assert_eq!(body["type"], "Delete");
    assert_eq!(body["object"]["id"], live.post_id("old-1"));

    // Three of the four remaining posts gone: held until confirmed.
    for slug in ["old-2", "old-3", "old-4"] {
        std::fs::remove_file(live.dir.path().join(format!("content/posts/{slug}.md"))).unwrap();
    }
    live.rebuild();
    let (status, message) = live.deploy(&bearer(), NOTIFICATION).await;
    assert_eq!(status, 409, "{message}");
    assert!(
        message.contains("delete 3 of the 4") && message.contains("--confirm-deletes"),
        "{message}"
    );
    let site = live.dir.path().to_str().unwrap().to_string();
    let elsewhere = common::relais(&[
        "publish",
        "--site",
        &site,
        "--from",
        "http://127.0.0.1:9/",
        "--confirm-deletes",
    ]);
    assert!(!elsewhere.status.success());
    assert!(
        common::stderr(&elsewhere).contains("not the site's address"),
        "{}",
        common::stderr(&elsewhere)
    );
    let base = live.host.base.clone();
    let confirmed = tokio::task::spawn_blocking(move || {
        common::relais(&[
            "publish",
            "--site",
            &site,
            "--from",
            &base,
            "--confirm-deletes",
        ])
    })
    .await
    .unwrap();
    common::assert_success(&confirmed, "relais publish --from --confirm-deletes");
    assert!(
        common::stdout(&confirmed).contains("0 new, 0 edited, 3 deleted"),
        "{}",
        common::stdout(&confirmed)
    );
    let mut deleted = Vec::new();
    for _ in 0..3 {
        let delete = follower.next().await;
        assert_signed(&delete, &follower);
        let body = delete.json();
        assert_eq!(body["type"], "Delete");
        deleted.push(body["object"]["id"].as_str().unwrap().to_string());
    }
    deleted.sort();
    let expected: Vec<String> = ["old-2", "old-3", "old-4"]
        .iter()
        .map(|slug| live.post_id(slug))
        .collect();
    assert_eq!(deleted, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn polling_publishes_without_webhooks_and_an_unchanged_site_costs_only_304s() {
    let follower = Follower::start().await;
    let mut live = Live::build(
        &[("old-1", "2026-01-01"), ("old-2", "2026-01-02")],
        "poll_interval = \"1s\"",
    )
    .await;
    follower.follow(&live.store());
    live.start_inbox().await;

    // The inbox reads the site at once (outbox and its one page), then only asks whether
    // they changed.
    let deadline = tokio::time::Instant::now() + GUARD;
    while live.host.log().iter().filter(|(_, s)| *s == 304).count() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no conditional GETs: {:?}\n{}",
            live.host.log(),
            live.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = live.host.log();
    let statuses: Vec<u16> = log.iter().map(|(_, s)| *s).collect();
    assert_eq!(&statuses[..2], &[200, 200], "{log:?}");
    assert!(statuses[2..].iter().all(|s| *s == 304), "{log:?}");
    assert!(
        log.iter()
            .all(|(path, _)| path.starts_with("/ap/users/blog/outbox")),
        "{log:?}"
    );
    assert!(follower.nothing_pending(), "old posts are not sent");

    // A new post, deployed without any webhook, reaches the follower.
    write_post(live.dir.path(), "fresh", &today(), "Found by polling.");
    live.rebuild();
    let create = follower.next().await;
    assert_signed(&create, &follower);
    let body = create.json();
    assert_eq!(body["type"], "Create", "{body}");
    assert_eq!(body["object"]["id"], live.post_id("fresh"));
}
