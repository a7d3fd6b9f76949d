//! The inbox service end to end: the real `relais inbox` binary on a free 127.0.0.1 port,
//! and this test process acting as a remote Mastodon server (`common::peer::Peer`): its
//! actors (Mastodon's actor shape, `fixtures/mastodon_actor.json`) served on another loopback
//! port, its activities signed with relais's signer, its inbox recording what the blog sends
//! back.
//!
//! The site's `base_url` is the inbox itself, with `serve_public`: the inbox then serves the
//! site's actor documents too, the way a blog on a host without header rules runs, and
//! signatures are checked against that one host.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::common::peer::Peer;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use relais::federation::keys::{parse_public_key_pem, PrivateKey};
use relais::federation::signature::{
    sign_request, verify_request, IncomingRequest, SignatureParams, SigningKey,
};
use relais::federation::signature9421::sign_message;
use relais::store::{FollowState, ReplyState, Store};
use serde_json::{json, Value};

const SITE_KEY: &str = include_str!("fixtures/site_key.pem");
const ALICE_KEY: &str = include_str!("fixtures/alice_key.pem");
const MALLORY_KEY: &str = include_str!("fixtures/mallory_key.pem");
const AS_PUBLIC: &str = "https://www.w3.org/ns/activitystreams#Public";
/// Only a guard against a hung test: what is awaited normally comes at once.
const GUARD: Duration = Duration::from_secs(60);

fn public_pem(private_pem: &str) -> String {
    PrivateKey::from_pem(private_pem)
        .unwrap()
        .public_key_pem()
        .unwrap()
}

/// The remote server: alice and mallory, each with her own key.
async fn remote() -> Peer {
    let remote = Peer::start(&["alice"]).await;
    remote.set_key("alice", ALICE_KEY);
    remote.set_key("mallory", MALLORY_KEY);
    remote
}

/// A running `relais inbox`, killed on drop.
struct Inbox {
    dir: tempfile::TempDir,
    backend: common::Backend,
    base: String,
    post_id: String,
    client: reqwest::Client,
    child: Child,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Inbox {
    /// Starts an inbox; `inbox_extra` goes into `[inbox]`, `fediverse_extra` into
    /// `[fediverse]`.
    async fn start(inbox_extra: &str, fediverse_extra: &str) -> Inbox {
        Inbox::start_on(common::Backend::Sqlite, inbox_extra, fediverse_extra).await
    }

    /// [`Inbox::start`] with its store on `backend`.
    async fn start_on(backend: common::Backend, inbox_extra: &str, fediverse_extra: &str) -> Inbox {
        let dir = tempfile::tempdir().unwrap();
        let inbox_extra = format!("{}{inbox_extra}", backend.config_line());
        let port = common::free_port();
        let base = format!("http://127.0.0.1:{port}");
        let config_text = format!(
            "title = \"Test blog\"\nbase_url = \"{base}\"\n\
             [fediverse]\ninbox_url = \"{base}\"\n{fediverse_extra}\n\
             [inbox]\nlisten = \"127.0.0.1:{port}\"\nallow_private_addresses = true\n\
             max_body_bytes = 65536\n{inbox_extra}\n"
        );
        std::fs::write(dir.path().join("config.toml"), &config_text).unwrap();
        std::fs::write(dir.path().join("relais-key.pem"), SITE_KEY).unwrap();

        // The built site: one post, built by the real binary.
        std::fs::create_dir_all(dir.path().join("content/posts")).unwrap();
        std::fs::write(
            dir.path().join("content/posts/hello.md"),
            "+++\ntitle = \"Hello\"\ndate = 2026-01-01\n+++\n\nFirst post.\n",
        )
        .unwrap();
        common::build_site(dir.path());
        let post_id = format!("{base}/ap/posts/hello.json");
        assert!(dir.path().join("public/ap/posts/hello.json").exists());

        let child = Inbox::spawn(dir.path());
        let mut inbox = Inbox {
            dir,
            backend,
            base,
            post_id,
            client: reqwest::Client::new(),
            child,
        };
        inbox.wait_ready().await;
        inbox
    }

    fn spawn(dir: &std::path::Path) -> Child {
        Inbox::command(dir).spawn().unwrap()
    }

    fn command(dir: &std::path::Path) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("inbox.log"))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_relais"));
        command
            .args(["inbox", "--site"])
            .arg(dir)
            .env("RUST_LOG", "relais=debug")
            .env("RELAIS_DEPLOY_TOKEN", DEPLOY_TOKEN)
            .stdout(Stdio::null())
            .stderr(log);
        command
    }

    /// SIGKILL: no shutdown, no flush, whatever was in flight is cut.
    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn restart(&mut self) {
        self.child = Inbox::spawn(self.dir.path());
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let log = self.dir.path().join("inbox.log");
        common::wait_healthy(&mut self.child, &self.base, &log).await;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("inbox.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn actor(&self) -> String {
        self.url("/ap/users/blog.json")
    }

    fn store(&self) -> Store {
        self.backend.open(self.dir.path())
    }

    fn moderate(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_relais"))
            .args(["moderate", "--site"])
            .arg(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "relais moderate {args:?} failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// POSTs `body` to `path`, signed now by `key` under `key_id`.
    async fn post_signed(
        &self,
        path: &str,
        body: &Value,
        key: &str,
        key_id: &str,
    ) -> reqwest::Response {
        let bytes = body.to_string().into_bytes();
        let headers = signed_headers(&self.url(path), &bytes, key, key_id, SystemTime::now());
        self.send(path, headers, bytes).await
    }

    async fn send(&self, path: &str, headers: HeaderMap, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    async fn get_json(&self, path: &str) -> (reqwest::header::HeaderMap, Value) {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let headers = response.headers().clone();
        (headers, response.json().await.unwrap())
    }

    async fn interactions(&self) -> Value {
        let path = format!("/ap/interactions?post={}", self.post_id);
        self.get_json(&path).await.1
    }
}

const DEPLOY_TOKEN: &str = "deploy-secret";

fn signed_headers(url: &str, body: &[u8], key: &str, key_id: &str, date: SystemTime) -> HeaderMap {
    let key = SigningKey::new(key_id, Arc::new(PrivateKey::from_pem(key).unwrap()));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/activity+json"),
    );
    let url = url::Url::parse(url).unwrap();
    sign_request(&key, &Method::POST, &url, &mut headers, Some(body), date).unwrap();
    headers
}

fn follow(remote: &Peer, inbox: &Inbox, id: &str) -> Value {
    json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/{id}", remote.base),
        "type": "Follow",
        "actor": remote.actor("alice"),
        "object": inbox.actor(),
    })
}

/// A reply as Mastodon sends it.
fn create_reply(remote: &Peer, in_reply_to: &str, n: u32) -> Value {
    let alice = remote.actor("alice");
    let note = format!("{alice}/statuses/{n}");
    json!({
        "@context": ["https://www.w3.org/ns/activitystreams", { "sensitive": "as:sensitive" }],
        "id": format!("{note}/activity"),
        "type": "Create",
        "actor": alice,
        "published": "2026-02-01T10:00:00Z",
        "to": [AS_PUBLIC],
        "cc": [format!("{alice}/followers")],
        "object": {
            "id": note,
            "type": "Note",
            "summary": null,
            "inReplyTo": in_reply_to,
            "published": format!("2026-02-01T10:{n:02}:00Z"),
            "url": format!("{}/@alice/{n}", remote.base),
            "attributedTo": alice,
            "to": [AS_PUBLIC],
            "cc": [format!("{alice}/followers")],
            "sensitive": false,
            "content": format!("<p>Reply {n} <script>alert(1)</script><a href=\"javascript:x\">x</a></p>"),
            "contentMap": { "en": format!("<p>Reply {n}</p>") },
            "attachment": [],
            "tag": []
        }
    })
}

async fn follow_gets_a_signed_accept_and_undo_removes_it(backend: common::Backend) {
    let remote = remote().await;
    let inbox = Inbox::start_on(backend, "", "").await;
    let follow = follow(&remote, &inbox, "follows/1");
    let response = inbox
        .post_signed(
            "/ap/users/blog/inbox",
            &follow,
            ALICE_KEY,
            &remote.key_id("alice"),
        )
        .await;
    assert_eq!(response.status(), 202, "{}", inbox.log());

    let accept = remote.next().await;
    assert_eq!(accept.path, "/users/alice/inbox");
    let body: Value = accept.body.clone();
    assert_eq!(body["type"], "Accept");
    assert_eq!(body["actor"], inbox.actor());
    assert_eq!(body["object"]["id"], follow["id"]);
    // The Accept verifies against the key the blog's actor document publishes.
    let (_, actor) = inbox.get_json("/ap/users/blog.json").await;
    let key = parse_public_key_pem(actor["publicKey"]["publicKeyPem"].as_str().unwrap()).unwrap();
    let params = SignatureParams::from_headers(&accept.headers).unwrap();
    assert_eq!(params.key_id, format!("{}#main-key", inbox.actor()));
    verify_request(
        &params,
        &IncomingRequest {
            method: &Method::POST,
            path_and_query: &accept.path,
            headers: &accept.headers,
            public_host: &remote.host,
            body: Some(&accept.bytes),
        },
        &key,
        SystemTime::now(),
    )
    .unwrap();

    let (_, followers) = inbox.get_json("/ap/users/blog/followers").await;
    assert_eq!(followers["totalItems"], 1);
    assert_eq!(followers["type"], "OrderedCollection");
    assert!(followers.get("first").is_none(), "followers are not public");
    let stored = inbox
        .store()
        .follower("blog", &remote.actor("alice"))
        .unwrap()
        .unwrap();
    assert_eq!(stored.inbox, format!("{}/inbox", remote.actor("alice")));
    assert_eq!(stored.shared_inbox, Some(format!("{}/inbox", remote.base)));

    let undo = json!({
        "id": format!("{}/follows/1/undo", remote.base),
        "type": "Undo",
        "actor": remote.actor("alice"),
        "object": follow,
    });
    // The shared inbox takes it too; the key is now cached.
    let response = inbox
        .post_signed("/ap/inbox", &undo, ALICE_KEY, &remote.key_id("alice"))
        .await;
    assert_eq!(response.status(), 202);
    let (_, followers) = inbox.get_json("/ap/users/blog/followers").await;
    assert_eq!(followers["totalItems"], 0);
}

/// Headers of a POST signed the RFC 9421 way (`Signature-Input`), as Mastodon 4.5 signs
/// when it double-knocks.
fn message_signed_headers(url: &str, body: &[u8], key: &str, key_id: &str) -> HeaderMap {
    let key = SigningKey::new(key_id, Arc::new(PrivateKey::from_pem(key).unwrap()));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/activity+json"),
    );
    let url = url::Url::parse(url).unwrap();
    sign_message(
        &key,
        &Method::POST,
        &url,
        &mut headers,
        Some(body),
        SystemTime::now(),
    )
    .unwrap();
    assert!(headers.contains_key("signature-input") && !headers.contains_key("digest"));
    headers
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc_9421_signed_follow_is_accepted_and_tampered_ones_refused() {
    let remote = remote().await;
    let inbox = Inbox::start("", "").await;
    let key_id = remote.key_id("alice");
    let follow = follow(&remote, &inbox, "follows/9421");
    let bytes = follow.to_string().into_bytes();
    let path = "/ap/users/blog/inbox";

    // Signed for the shared inbox, posted to the actor's: @target-uri differs.
    let headers = message_signed_headers(&inbox.url("/ap/inbox"), &bytes, ALICE_KEY, &key_id);
    let response = inbox.send(path, headers, bytes.clone()).await;
    assert_eq!(response.status(), 401, "{}", inbox.log());
    // The body changed after signing: Content-Digest no longer matches.
    let headers = message_signed_headers(&inbox.url(path), &bytes, ALICE_KEY, &key_id);
    let mut changed = follow.clone();
    changed["id"] = json!(format!("{}/follows/forged", remote.base));
    let response = inbox
        .send(path, headers.clone(), changed.to_string().into_bytes())
        .await;
    assert_eq!(response.status(), 401, "{}", inbox.log());
    // Signed by another key than the actor's.
    let forged = message_signed_headers(&inbox.url(path), &bytes, MALLORY_KEY, &key_id);
    let response = inbox.send(path, forged, bytes.clone()).await;
    assert_eq!(response.status(), 401, "{}", inbox.log());
    assert!(inbox
        .store()
        .follower("blog", &remote.actor("alice"))
        .unwrap()
        .is_none());

    let response = inbox.send(path, headers, bytes).await;
    assert_eq!(response.status(), 202, "{}", inbox.log());
    let accept = remote.next().await;
    let body: Value = accept.body.clone();
    assert_eq!(body["type"], "Accept");
    assert_eq!(body["object"]["id"], follow["id"]);
    assert!(inbox
        .store()
        .follower("blog", &remote.actor("alice"))
        .unwrap()
        .is_some());
}

async fn replies_likes_and_boosts_are_shown_and_undone(backend: common::Backend) {
    let remote = remote().await;
    let inbox = Inbox::start_on(backend, "", "").await;
    let alice_key_id = remote.key_id("alice");
    let first = create_reply(&remote, &inbox.post_id, 1);
    let first_note = first["object"]["id"].as_str().unwrap().to_string();
    for activity in [
        first.clone(),
        first.clone(), // delivered twice: stored once
        create_reply(&remote, &first_note, 2),
    ] {
        let response = inbox
            .post_signed("/ap/inbox", &activity, ALICE_KEY, &alice_key_id)
            .await;
        assert_eq!(response.status(), 202, "{}", inbox.log());
    }
    let like = json!({
        "id": format!("{}/users/alice#likes/1", remote.base),
        "type": "Like", "actor": remote.actor("alice"), "object": inbox.post_id,
    });
    let boost = json!({
        "id": format!("{}/users/alice/statuses/9/activity", remote.base),
        "type": "Announce", "actor": remote.actor("alice"), "object": inbox.post_id,
        "published": "2026-02-01T11:00:00Z", "to": [AS_PUBLIC], "cc": [inbox.actor()],
    });
    for activity in [&like, &boost] {
        let response = inbox
            .post_signed("/ap/inbox", activity, ALICE_KEY, &alice_key_id)
            .await;
        assert_eq!(response.status(), 202);
    }

    let found = inbox.interactions().await;
    let replies = found["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 2, "{found}");
    assert_eq!(replies[0]["id"], first_note);
    assert_eq!(replies[0]["depth"], 0);
    assert_eq!(replies[1]["depth"], 1);
    assert_eq!(
        replies[0]["author_handle"],
        format!("@alice@{}", remote.host)
    );
    assert_eq!(replies[0]["author_name"], "Alice Example");
    let content = replies[0]["content"].as_str().unwrap();
    assert!(content.starts_with("<p>Reply 1 "), "{content}");
    assert!(
        !content.contains("script") && !content.contains("javascript"),
        "{content}"
    );
    assert_eq!(found["likes"][0]["actor_id"], remote.actor("alice"));
    assert_eq!(found["boosts"].as_array().unwrap().len(), 1);

    // What the build reads is the same.
    let built = inbox
        .store()
        .interactions(std::slice::from_ref(&inbox.post_id))
        .unwrap();
    assert_eq!(serde_json::to_value(&built[&inbox.post_id]).unwrap(), found);

    // The next build shows them under the post.
    common::build_site(inbox.dir.path());
    let page =
        std::fs::read_to_string(inbox.dir.path().join("public/posts/hello/index.html")).unwrap();
    assert!(page.contains("<p>Reply 1 "), "reply missing from the page");
    assert!(
        page.contains("Alice Example"),
        "reply author missing from the page"
    );
    assert!(
        !page.contains("<script>alert"),
        "unsanitized reply on the page"
    );
    // The page's script asks the inbox for fresh ones at the address the page names.
    let source = page
        .split("data-source=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the interactions section names its source")
        .replace("&amp;", "&");
    assert!(page.contains("<script src=\"/interactions.js\" defer>"));
    assert!(inbox.dir.path().join("public/interactions.js").exists());
    let (_, fresh) = inbox.get_json(&source).await;
    assert_eq!(fresh, found, "the page script gets what the inbox serves");

    // A build host without the store reads the same from the inbox's public endpoint.
    let elsewhere = tempfile::tempdir().unwrap();
    let output = common::relais_on(
        "build",
        inbox.dir.path(),
        &[
            "--remote-interactions",
            "--out",
            elsewhere.path().to_str().unwrap(),
        ],
    );
    common::assert_success(&output, "relais build --remote-interactions");
    let remote_page =
        std::fs::read_to_string(elsewhere.path().join("posts/hello/index.html")).unwrap();
    assert!(
        remote_page.contains("<p>Reply 1 "),
        "remote build lacks the reply"
    );

    let (headers, replies_doc) = inbox.get_json("/ap/posts/hello/replies").await;
    assert_eq!(
        headers[reqwest::header::CONTENT_TYPE],
        "application/activity+json; charset=utf-8"
    );
    assert_eq!(replies_doc["type"], "Collection");
    assert_eq!(replies_doc["first"]["items"], json!([first_note]));

    let undo_like = json!({
        "id": format!("{}/users/alice#likes/1/undo", remote.base),
        "type": "Undo", "actor": remote.actor("alice"), "object": like,
    });
    let response = inbox
        .post_signed("/ap/inbox", &undo_like, ALICE_KEY, &alice_key_id)
        .await;
    assert_eq!(response.status(), 202);
    let found = inbox.interactions().await;
    assert_eq!(found["likes"], json!([]));
    assert_eq!(found["boosts"].as_array().unwrap().len(), 1);
}

async fn refused_requests_store_nothing(backend: common::Backend) {
    let remote = remote().await;
    let inbox = Inbox::start_on(backend, "", "").await;
    let alice_key_id = remote.key_id("alice");
    let path = "/ap/users/blog/inbox";
    let mut ids = Vec::new();
    let mut next = |name: &str| {
        let activity = follow(&remote, &inbox, name);
        ids.push(activity["id"].as_str().unwrap().to_string());
        activity
    };

    // Signed with Mallory's key under Alice's key id.
    let forged = inbox
        .post_signed(path, &next("forged"), MALLORY_KEY, &alice_key_id)
        .await;
    assert_eq!(forged.status(), 401);

    // The body changed after signing.
    let activity = next("tampered");
    let signed = activity.to_string().into_bytes();
    let headers = signed_headers(
        &inbox.url(path),
        &signed,
        ALICE_KEY,
        &alice_key_id,
        SystemTime::now(),
    );
    let mut other = activity.clone();
    other["object"] = json!(inbox.url("/ap/users/other.json"));
    let tampered = inbox
        .send(path, headers, other.to_string().into_bytes())
        .await;
    assert_eq!(tampered.status(), 401);

    // Signed thirteen hours ago.
    let body = next("stale").to_string().into_bytes();
    let old = SystemTime::now() - Duration::from_secs(13 * 3600);
    let headers = signed_headers(&inbox.url(path), &body, ALICE_KEY, &alice_key_id, old);
    assert_eq!(inbox.send(path, headers, body).await.status(), 401);

    // Mallory signs correctly, but the activity claims to be Alice's.
    let impersonation = inbox
        .post_signed(
            path,
            &next("impersonation"),
            MALLORY_KEY,
            &remote.key_id("mallory"),
        )
        .await;
    assert_eq!(impersonation.status(), 401);

    // No signature at all.
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/activity+json"),
    );
    let unsigned = inbox
        .send(path, headers, next("unsigned").to_string().into_bytes())
        .await;
    assert_eq!(unsigned.status(), 401);

    // Over `max_body_bytes`.
    let mut big = next("big");
    big["padding"] = json!("x".repeat(70_000));
    let oversized = inbox
        .post_signed(path, &big, ALICE_KEY, &alice_key_id)
        .await;
    assert_eq!(oversized.status(), 413);

    // A form post.
    let body = next("form").to_string().into_bytes();
    let mut headers = signed_headers(
        &inbox.url(path),
        &body,
        ALICE_KEY,
        &alice_key_id,
        SystemTime::now(),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    assert_eq!(inbox.send(path, headers, body).await.status(), 415);

    // Signed, but not JSON.
    let body = b"not json".to_vec();
    let headers = signed_headers(
        &inbox.url(path),
        &body,
        ALICE_KEY,
        &alice_key_id,
        SystemTime::now(),
    );
    assert_eq!(inbox.send(path, headers, body).await.status(), 400);

    let store = inbox.store();
    assert!(store.followers(None).unwrap().is_empty());
    assert_eq!(store.cached_actor(&remote.actor("alice")).unwrap(), None);
    assert_eq!(store.cached_actor(&remote.actor("mallory")).unwrap(), None);
    for id in &ids {
        assert!(store.mark_seen(id).unwrap(), "{id} was recorded");
    }
    assert_eq!(remote.take_pending(), 0);

    // And a proper request still goes through.
    let fine = inbox
        .post_signed(
            path,
            &follow(&remote, &inbox, "fine"),
            ALICE_KEY,
            &alice_key_id,
        )
        .await;
    assert_eq!(fine.status(), 202);
    assert_eq!(inbox.store().followers(None).unwrap().len(), 1);
}

async fn blocked_domains_are_refused_and_purged(backend: common::Backend) {
    let remote = remote().await;
    let inbox = Inbox::start_on(backend, "", "").await;
    // Alice likes the post; then her server's domain is blocked.
    let like = json!({
        "id": format!("{}/likes/1", remote.base), "type": "Like",
        "actor": remote.actor("alice"), "object": inbox.post_id,
    });
    let response = inbox
        .post_signed("/ap/inbox", &like, ALICE_KEY, &remote.key_id("alice"))
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        inbox.interactions().await["likes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let said = inbox.moderate(&["block-domain", "127.0.0.1"]);
    assert!(said.contains("1 reactions removed"), "{said}");
    assert_eq!(inbox.interactions().await["likes"], json!([]));
    let response = inbox
        .post_signed(
            "/ap/inbox",
            &follow(&remote, &inbox, "follows/blocked"),
            ALICE_KEY,
            &remote.key_id("alice"),
        )
        .await;
    assert_eq!(response.status(), 403);
    assert!(inbox.store().followers(None).unwrap().is_empty());
    let listed = inbox.moderate(&["list", "blocks"]);
    assert!(listed.contains("127.0.0.1 (from moderate)"), "{listed}");
}

async fn approval_mode_waits_for_moderation(backend: common::Backend) {
    let remote = remote().await;
    let inbox = Inbox::start_on(
        backend,
        "approve_replies = true",
        "manually_approves_followers = true",
    )
    .await;
    let alice_key_id = remote.key_id("alice");
    for activity in [
        follow(&remote, &inbox, "follows/1"),
        create_reply(&remote, &inbox.post_id, 1),
    ] {
        let response = inbox
            .post_signed("/ap/inbox", &activity, ALICE_KEY, &alice_key_id)
            .await;
        assert_eq!(response.status(), 202);
    }
    assert_eq!(inbox.interactions().await["replies"], json!([]));
    let store = inbox.store();
    let pending = store.followers(Some(FollowState::Pending)).unwrap();
    assert_eq!(pending.len(), 1);
    let reply = &store.replies(Some(ReplyState::Pending)).unwrap()[0];

    let listed = inbox.moderate(&["list"]);
    assert!(listed.contains("Follow requests: 1"), "{listed}");
    assert!(
        listed.contains("Replies waiting for approval: 1"),
        "{listed}"
    );
    assert!(listed.contains("Reply 1"), "{listed}");

    inbox.moderate(&["approve", &reply.id.to_string()]);
    assert_eq!(
        inbox.interactions().await["replies"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    inbox.moderate(&["hide", &reply.id.to_string()]);
    assert_eq!(inbox.interactions().await["replies"], json!([]));

    inbox.moderate(&["approve-follower", &pending[0].id.to_string()]);
    let accept: Value = remote.next().await.body;
    assert_eq!(accept["type"], "Accept");
    assert_eq!(accept["object"]["id"], format!("{}/follows/1", remote.base));
    assert_eq!(
        remote.take_pending(),
        0,
        "the inbox itself sent no Accept for a pending request"
    );
    let (_, followers) = inbox.get_json("/ap/users/blog/followers").await;
    assert_eq!(followers["totalItems"], 1);

    inbox.moderate(&["reject-follower", &pending[0].id.to_string()]);
    let reject: Value = remote.next().await.body;
    assert_eq!(reject["type"], "Reject");
    let (_, followers) = inbox.get_json("/ap/users/blog/followers").await;
    assert_eq!(followers["totalItems"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_is_fetched_again() {
    let remote = remote().await;
    let inbox = Inbox::start("", "").await;
    let key_id = remote.key_id("alice");
    let like = |n: u32| {
        json!({
            "id": format!("{}/likes/{n}", remote.base), "type": "Like",
            "actor": remote.actor("alice"), "object": inbox.post_id,
        })
    };
    assert_eq!(
        inbox
            .post_signed("/ap/inbox", &like(1), ALICE_KEY, &key_id)
            .await
            .status(),
        202
    );
    // Alice's server rotates her key; the cached one is old enough to be refetched.
    remote.set_key("alice", MALLORY_KEY);
    rusqlite::Connection::open(inbox.dir.path().join("relais.db"))
        .unwrap()
        .execute(
            // 2000-01-01T00:00:00Z: the store keeps Unix seconds.
            "UPDATE remote_actors SET fetched_at = 946684800",
            [],
        )
        .unwrap();
    let undo = json!({
        "id": format!("{}/likes/1/undo", remote.base), "type": "Undo",
        "actor": remote.actor("alice"), "object": like(1),
    });
    let response = inbox
        .post_signed("/ap/inbox", &undo, MALLORY_KEY, &key_id)
        .await;
    assert_eq!(response.status(), 202, "{}", inbox.log());
    assert_eq!(inbox.interactions().await["likes"], json!([]));
    // The old key no longer verifies: it was replaced, not kept beside the new one.
    let response = inbox
        .post_signed("/ap/inbox", &like(2), ALICE_KEY, &key_id)
        .await;
    assert_eq!(response.status(), 401);
}

/// Makes every insert into `table` of the inbox's store fail until [`heal`] is called: a
/// store that breaks at one step of processing, without any test hook in relais.
fn break_inserts(inbox: &Inbox, table: &str) {
    rusqlite::Connection::open(inbox.dir.path().join("relais.db"))
        .unwrap()
        .execute_batch(&format!(
            "CREATE TRIGGER injected_fault BEFORE INSERT ON {table} \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
        ))
        .unwrap();
}

fn heal(inbox: &Inbox) {
    rusqlite::Connection::open(inbox.dir.path().join("relais.db"))
        .unwrap()
        .execute_batch("DROP TRIGGER injected_fault")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_at_any_step_loses_nothing_and_the_retry_applies_in_full() {
    let remote = remote().await;
    let inbox = Inbox::start("", "").await;
    let key_id = remote.key_id("alice");
    let alice = remote.actor("alice");
    // Each step a follow writes: the seen mark, the sender's cached actor, the follower and
    // the queued Accept. Whichever fails, the follow must be refused with a 5xx (so the
    // sender retries) and leave nothing; the retry must then give one follower, one Accept.
    let steps = [
        "seen_activities",
        "remote_actors",
        "followers",
        "deliveries",
    ];
    for (n, table) in steps.iter().enumerate() {
        let follow = follow(&remote, &inbox, &format!("follows/fault-{n}"));
        break_inserts(&inbox, table);
        let response = inbox
            .post_signed("/ap/users/blog/inbox", &follow, ALICE_KEY, &key_id)
            .await;
        assert_eq!(
            response.status(),
            500,
            "a follow whose {table} write failed must be retried: {}",
            inbox.log()
        );
        let store = inbox.store();
        assert!(store.follower("blog", &alice).unwrap().is_none(), "{table}");
        heal(&inbox);

        let response = inbox
            .post_signed("/ap/users/blog/inbox", &follow, ALICE_KEY, &key_id)
            .await;
        assert_eq!(
            response.status(),
            202,
            "retry after {table}: {}",
            inbox.log()
        );
        let follower = store.follower("blog", &alice).unwrap();
        assert_eq!(
            follower.map(|f| f.follow_activity_id),
            Some(follow["id"].as_str().unwrap().to_string()),
            "{table}"
        );
        let accept = remote.next().await;
        let accept: Value = accept.body.clone();
        assert_eq!(accept["type"], "Accept", "{table}");
        assert_eq!(accept["object"]["id"], follow["id"], "{table}");
        let queued = store.deliveries_of(accept["id"].as_str().unwrap()).unwrap();
        assert_eq!(queued.len(), 1, "one Accept after {table}");

        // A third copy is a duplicate: answered, changing nothing.
        let response = inbox
            .post_signed("/ap/users/blog/inbox", &follow, ALICE_KEY, &key_id)
            .await;
        assert_eq!(response.status(), 202);
        let undo = json!({
            "id": format!("{}/follows/fault-{n}/undo", remote.base), "type": "Undo",
            "actor": alice, "object": follow,
        });
        let response = inbox
            .post_signed("/ap/inbox", &undo, ALICE_KEY, &key_id)
            .await;
        assert_eq!(response.status(), 202);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(remote.take_pending(), 0, "an Accept was sent twice");

    // A reply whose write fails is not lost either.
    let reply = create_reply(&remote, &inbox.post_id, 1);
    break_inserts(&inbox, "replies");
    let response = inbox
        .post_signed("/ap/inbox", &reply, ALICE_KEY, &key_id)
        .await;
    assert_eq!(response.status(), 500);
    heal(&inbox);
    let response = inbox
        .post_signed("/ap/inbox", &reply, ALICE_KEY, &key_id)
        .await;
    assert_eq!(response.status(), 202, "{}", inbox.log());
    let replies = inbox.interactions().await["replies"].clone();
    assert_eq!(replies.as_array().map(Vec::len), Some(1), "{replies}");
}

/// Concurrent activities are committed together; one whose write fails must fail alone:
/// its neighbours are stored and answered 202, it is answered 500 and stored on its retry.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_activity_does_not_fail_its_group_commit_neighbours() {
    let remote = remote().await;
    let inbox = Inbox::start("rate_limit_per_minute = 1000000", "").await;
    let key_id = remote.key_id("alice");
    // Alice's key is cached first, so the replies below reach the writer together.
    let first = create_reply(&remote, &inbox.post_id, 100);
    let response = inbox
        .post_signed("/ap/inbox", &first, ALICE_KEY, &key_id)
        .await;
    assert_eq!(response.status(), 202, "{}", inbox.log());
    rusqlite::Connection::open(inbox.dir.path().join("relais.db"))
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER injected_fault BEFORE INSERT ON replies \
             WHEN CAST(substr(NEW.object_id, -3) AS INTEGER) % 8 = 3 \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
        )
        .unwrap();
    let poisoned = |n: u32| n % 8 == 3;
    let url = inbox.url("/ap/inbox");
    let replies: Vec<(u32, Value)> = (200..264)
        .map(|n| (n, create_reply(&remote, &inbox.post_id, n)))
        .collect();
    let client = reqwest::Client::new();
    let sends: Vec<_> = replies
        .iter()
        .map(|(n, reply)| {
            let bytes = reply.to_string().into_bytes();
            let headers = signed_headers(&url, &bytes, ALICE_KEY, &key_id, SystemTime::now());
            let request = client.post(&url).headers(headers).body(bytes);
            let n = *n;
            tokio::spawn(async move { (n, request.send().await.unwrap().status()) })
        })
        .collect();
    for send in sends {
        let (n, status) = send.await.unwrap();
        let expected = if poisoned(n) { 500 } else { 202 };
        assert_eq!(status, expected, "reply {n}: {}", inbox.log());
    }
    let store = inbox.store();
    for (n, reply) in &replies {
        let id = reply["object"]["id"].as_str().unwrap();
        assert_eq!(
            store.reply_by_object(id).unwrap().is_some(),
            !poisoned(*n),
            "reply {n}"
        );
    }
    heal(&inbox);
    for (_, reply) in replies.iter().filter(|(n, _)| poisoned(*n)) {
        let response = inbox
            .post_signed("/ap/inbox", reply, ALICE_KEY, &key_id)
            .await;
        assert_eq!(response.status(), 202, "{}", inbox.log());
    }
    assert_eq!(store.replies(None).unwrap().len(), 1 + replies.len());
}

async fn kill_9_under_concurrent_senders_loses_no_acknowledged_activity(backend: common::Backend) {
    const SENDERS: u32 = 4;
    const EACH: u32 = 100;
    let remote = Arc::new(remote().await);
    let mut inbox = Inbox::start_on(backend, "rate_limit_per_minute = 1000000", "").await;
    let (base, post_id) = (inbox.base.clone(), inbox.post_id.clone());
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let (remote, acknowledged) = (remote.clone(), acknowledged.clone());
        let (base, post_id) = (base.clone(), post_id.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let url = format!("{base}/ap/inbox");
            for n in 0..EACH {
                let reply = create_reply(&remote, &post_id, 100 + sender * EACH + n);
                let bytes = reply.to_string().into_bytes();
                // Like a real server: retry until the inbox answers 2xx.
                loop {
                    let headers = signed_headers(
                        &url,
                        &bytes,
                        ALICE_KEY,
                        &remote.key_id("alice"),
                        SystemTime::now(),
                    );
                    let sent = client
                        .post(&url)
                        .headers(headers)
                        .body(bytes.clone())
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status().is_success()) {
                        let id = reply["object"]["id"].as_str().unwrap().to_string();
                        acknowledged.lock().unwrap().push(id);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let mut kills_mid_flight = 0;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        inbox.kill9();
        // The process is dead: every reply it acknowledged must already be in the store.
        let seen: Vec<String> = acknowledged.lock().unwrap().clone();
        if seen.len() < (SENDERS * EACH) as usize {
            kills_mid_flight += 1;
        }
        let store = inbox.store();
        for id in &seen {
            assert!(
                store.reply_by_object(id).unwrap().is_some(),
                "{id} was acknowledged but is not in the store"
            );
        }
        drop(store);
        inbox.restart().await;
    }
    assert!(
        kills_mid_flight > 0,
        "every kill came after the senders were done"
    );
    for sender in senders {
        tokio::time::timeout(GUARD, sender).await.unwrap().unwrap();
    }
    let store = inbox.store();
    let all = acknowledged.lock().unwrap().clone();
    assert_eq!(all.len(), (SENDERS * EACH) as usize);
    for id in &all {
        assert!(store.reply_by_object(id).unwrap().is_some(), "{id} lost");
    }
    let stored = store.replies(None).unwrap();
    assert_eq!(stored.len(), all.len(), "a reply was stored twice or lost");
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_text_cannot_forge_a_log_line_or_drive_a_terminal() {
    let remote = remote().await;
    let inbox = Inbox::start("", "").await;
    let forged = format!(
        "{}\u{1b}]0;owned\u{7}\n2026-01-01T00:00:00Z ERROR relais: forged line",
        remote.actor("alice")
    );
    let like = json!({
        "id": format!("{}/likes/forged", remote.base), "type": "Like",
        "actor": forged, "object": inbox.post_id,
    });
    let response = inbox
        .post_signed("/ap/inbox", &like, ALICE_KEY, &remote.key_id("alice"))
        .await;
    assert_eq!(response.status(), 401);
    // Refusals are logged at info; give the line a moment to reach the file.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = inbox.log();
    assert!(
        log.contains("forged line"),
        "the refusal was not logged: {log}"
    );
    assert!(
        !log.lines()
            .any(|line| line.contains("ERROR relais: forged") && !line.contains("refused")),
        "a forged line reached the log:\n{log}"
    );
    assert!(!log.contains('\u{1b}') && !log.contains('\u{7}'), "{log:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_remote_host_is_rate_limited() {
    let remote = remote().await;
    let inbox = Inbox::start("rate_limit_per_minute = 2", "").await;
    let key_id = remote.key_id("alice");
    let mut statuses = Vec::new();
    for n in 0..3 {
        let like = json!({
            "id": format!("{}/likes/{n}", remote.base), "type": "Like",
            "actor": remote.actor("alice"), "object": inbox.post_id,
        });
        let response = inbox
            .post_signed("/ap/inbox", &like, ALICE_KEY, &key_id)
            .await;
        if response.status() == 429 {
            assert!(response
                .headers()
                .contains_key(reqwest::header::RETRY_AFTER));
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, vec![202, 202, 429]);
}

#[tokio::test(flavor = "multi_thread")]
async fn junk_naming_a_server_s_key_does_not_spend_its_allowance() {
    let remote = remote().await;
    let inbox = Inbox::start(
        "rate_limit_per_minute = 2\nclient_rate_limit_per_minute = 8",
        "",
    )
    .await;
    let key_id = remote.key_id("alice");
    let like = |n: u32| {
        json!({
            "id": format!("{}/likes/{n}", remote.base), "type": "Like",
            "actor": remote.actor("alice"), "object": inbox.post_id,
        })
    };
    // Five forgeries naming Alice's key: signed with Mallory's. Refused, and not counted
    // against Alice's server.
    for n in 0..5 {
        let response = inbox
            .post_signed("/ap/inbox", &like(n), MALLORY_KEY, &key_id)
            .await;
        assert_eq!(response.status(), 401);
    }
    for n in 10..12 {
        let response = inbox
            .post_signed("/ap/inbox", &like(n), ALICE_KEY, &key_id)
            .await;
        assert_eq!(response.status(), 202, "{}", inbox.log());
    }
    // The client address pays for everything it sent: 7 so far, one more passes.
    let made_up = |n: u32| format!("http://made-up-{n}.example/users/x#main-key");
    let statuses = {
        let mut statuses = Vec::new();
        for n in 0..2 {
            let response = inbox
                .post_signed("/ap/inbox", &like(20 + n), MALLORY_KEY, &made_up(n))
                .await;
            statuses.push(response.status().as_u16());
        }
        statuses
    };
    assert_eq!(
        statuses[1], 429,
        "rotating made-up hosts escapes the limit: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_the_site_documents_with_their_content_types() {
    let inbox = Inbox::start("", "").await;
    let (headers, actor) = inbox.get_json("/ap/users/blog.json").await;
    assert_eq!(
        headers[reqwest::header::CONTENT_TYPE],
        "application/activity+json; charset=utf-8"
    );
    assert_eq!(actor["id"], inbox.actor());

    let host = inbox.base.trim_start_matches("http://").to_string();
    for resource in [format!("acct:blog@{host}"), inbox.actor()] {
        let response = inbox
            .client
            .get(inbox.url("/.well-known/webfinger"))
            .query(&[("resource", &resource)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{resource}");
        assert_eq!(
            response.headers()[reqwest::header::CONTENT_TYPE],
            "application/jrd+json; charset=utf-8"
        );
        let jrd: Value = response.json().await.unwrap();
        assert_eq!(jrd["subject"], format!("acct:blog@{host}"));
        assert_eq!(jrd["links"][0]["href"], inbox.actor());
    }
    let unknown = inbox
        .get("/.well-known/webfinger?resource=acct:nobody@elsewhere.example")
        .await;
    assert_eq!(unknown.status(), 404);
    let missing = inbox.get("/.well-known/webfinger").await;
    assert_eq!(missing.status(), 400);

    let (_, links) = inbox.get_json("/.well-known/nodeinfo").await;
    let href = links["links"][0]["href"].as_str().unwrap();
    let (headers, nodeinfo) = inbox.get_json(href.trim_start_matches(&inbox.base)).await;
    assert!(headers[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .contains("nodeinfo.diaspora.software/ns/schema/2.1"));
    assert_eq!(nodeinfo["version"], "2.1");

    let escape = inbox.get("/ap/..%2Fconfig.toml").await;
    assert_eq!(escape.status(), 404);
    let missing_post = inbox.get("/ap/posts/none/replies").await;
    assert_eq!(missing_post.status(), 404);
}

#[test]
fn keys_in_fixtures_differ() {
    // The forged-signature tests mean something only if the keys are distinct.
    let pems: Vec<String> = [SITE_KEY, ALICE_KEY, MALLORY_KEY]
        .iter()
        .map(|k| public_pem(k))
        .collect();
    assert_ne!(pems[0], pems[1]);
    assert_ne!(pems[1], pems[2]);
}

async fn public_followers_are_listed_by_page(backend: common::Backend) {
    let remote = remote().await;
    let inbox = Inbox::start_on(backend, "", "followers_public = true").await;
    let response = inbox
        .post_signed(
            "/ap/users/blog/inbox",
            &follow(&remote, &inbox, "follows/1"),
            ALICE_KEY,
            &remote.key_id("alice"),
        )
        .await;
    assert_eq!(response.status(), 202);
    let (_, followers) = inbox.get_json("/ap/users/blog/followers").await;
    assert_eq!(followers["totalItems"], 1);
    let first = followers["first"].as_str().unwrap();
    let (_, page) = inbox.get_json(first.trim_start_matches(&inbox.base)).await;
    assert_eq!(page["type"], "OrderedCollectionPage");
    assert_eq!(page["partOf"], followers["id"]);
    assert_eq!(page["orderedItems"], json!([remote.actor("alice")]));
    assert!(page.get("next").is_none());
}

async fn deploy_webhook_queues_new_posts_for_followers(backend: common::Backend) {
    let remote = remote().await;
    let inbox = Inbox::start_on(backend, "", "").await;
    let follow = follow(&remote, &inbox, "follows/deploy");
    let response = inbox
        .post_signed("/ap/inbox", &follow, ALICE_KEY, &remote.key_id("alice"))
        .await;
    assert_eq!(response.status(), 202, "{}", inbox.log());
    let accept = remote.next().await;
    assert_eq!(accept.body["type"], "Accept");

    // The webhook reads the live site at base_url over HTTP: here the inbox itself, which
    // serves the built documents (`tests/live_site.rs` has a separate static host).
    let deploy = |token: &'static str| {
        inbox
            .client
            .post(inbox.url("/relais/deploy"))
            .header("authorization", format!("bearer {token}"))
            .send()
    };
    assert_eq!(deploy("wrong").await.unwrap().status(), 401);

    // A new post, built, then the deploy hook: the old post is only recorded (first
    // publish), the new one goes to the follower's shared inbox as a Create.
    let today = chrono::Utc::now().format("%Y-%m-%d");
    std::fs::write(
        inbox.dir.path().join("content/posts/fresh.md"),
        format!("+++\ntitle = \"Fresh\"\ndate = {today}\n+++\n\nJust written.\n"),
    )
    .unwrap();
    common::build_site(inbox.dir.path());
    let response = deploy(DEPLOY_TOKEN).await.unwrap();
    assert_eq!(response.status(), 200, "{}", inbox.log());
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["creates"], 1, "{report}");
    assert_eq!(report["skipped_old"], 1, "{report}");

    let create = remote.next().await;
    assert_eq!(create.path, "/inbox", "to the shared inbox");
    let body: Value = create.body.clone();
    assert_eq!(body["type"], "Create");
    assert_eq!(body["object"]["id"], inbox.url("/ap/posts/fresh.json"));

    // Deploying again changes nothing and sends nothing.
    let report: Value = deploy(DEPLOY_TOKEN).await.unwrap().json().await.unwrap();
    assert_eq!(report["deliveries"], 0, "{report}");

    // A live outbox that does not add up is an error, not deleted posts.
    let outbox = inbox.dir.path().join("public/ap/users/blog/outbox.json");
    let mut broken: Value = serde_json::from_slice(&std::fs::read(&outbox).unwrap()).unwrap();
    broken["totalItems"] = json!(3);
    std::fs::write(&outbox, broken.to_string()).unwrap();
    let response = deploy(DEPLOY_TOKEN).await.unwrap();
    assert_eq!(response.status(), 502);
    let message = response.text().await.unwrap();
    assert!(message.contains("nothing was queued"), "{message}");
}

/// The soft open-file limit service managers commonly start a service with (systemd's
/// `LimitNOFILE` default), whatever this test process was given.
#[cfg(unix)]
fn with_soft_fd_limit(command: &mut Command, soft: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    use std::os::unix::process::CommandExt;
    let hard = getrlimit(Resource::Nofile).maximum;
    // SAFETY: setrlimit is async-signal-safe and touches no memory shared with the parent.
    unsafe {
        command.pre_exec(move || {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(soft),
                    maximum: hard,
                },
            )
            .map_err(std::io::Error::from)
        });
    }
}

/// Raises this test process's own open-file limit so it can hold many connections.
#[cfg(unix)]
fn raise_own_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            ..limit
        },
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn idle_and_half_sent_connections_cannot_stop_the_service() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raise_own_fd_limit();
    let remote = remote().await;
    let mut inbox = Inbox::start("header_timeout_secs = 3\nbody_timeout_secs = 3", "").await;
    // Restarted as a service manager would start it.
    inbox.kill9();
    let mut command = Inbox::command(inbox.dir.path());
    with_soft_fd_limit(&mut command, 1024);
    inbox.child = command.spawn().unwrap();
    inbox.wait_ready().await;

    let address = inbox.base.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for n in 0..1100 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let part: &[u8] = match n % 3 {
            // Connected, nothing sent.
            0 => b"",
            // Half a request head.
            1 => b"POST /ap/inbox HTTP/1.1\r\nHost: x\r\nContent-Type: application/activity+json\r\n",
            // A whole head, and a body that stops early.
            _ => b"POST /ap/inbox HTTP/1.1\r\nHost: x\r\nContent-Type: application/activity+json\r\nContent-Length: 4000\r\n\r\n{\"type\":",
        };
        stream.write_all(part).await.unwrap();
        held.push(stream);
    }

    let follow = follow(&remote, &inbox, "follows/while-held");
    let answer = tokio::time::timeout(
        Duration::from_secs(1),
        inbox.post_signed("/ap/inbox", &follow, ALICE_KEY, &remote.key_id("alice")),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no answer within 1 s while 1,100 connections are held:\n{}",
            inbox.log()
        )
    });
    assert_eq!(answer.status(), 202, "{}", inbox.log());

    // The held connections are closed by the header and body timeouts (the body ones with
    // a 408), not kept forever.
    let mut closed = 0;
    for stream in held.iter_mut().step_by(50) {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(GUARD, stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "a held connection was never closed");
        closed += 1;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    assert_eq!(closed, 22);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let inbox = Inbox::start("header_timeout_secs = 1", "").await;
    let address = inbox.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(GUARD, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the idle connection was kept open");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_key_is_fetched_once_however_many_ask() {
    let remote = remote().await;
    let inbox = Arc::new(
        Inbox::start(
            "client_rate_limit_per_minute = 100000\nrate_limit_per_minute = 100000",
            "",
        )
        .await,
    );
    // Mastodon's keyId serves the actor itself: one GET gives key and actor.
    let follow = follow(&remote, &inbox, "follows/once");
    let response = inbox
        .post_signed("/ap/inbox", &follow, ALICE_KEY, &remote.key_id("alice"))
        .await;
    assert_eq!(response.status(), 202, "{}", inbox.log());
    assert_eq!(remote.gets("alice"), 1, "the actor was fetched twice");

    // Twenty concurrent likes from someone new wait for one fetch of their key.
    remote.set_key("carol", MALLORY_KEY);
    let sent: Vec<_> = (0..20)
        .map(|n| {
            let (inbox, like) = (
                inbox.clone(),
                json!({
                    "id": format!("{}/likes/carol-{n}", remote.base), "type": "Like",
                    "actor": remote.actor("carol"), "object": inbox.post_id,
                }),
            );
            let key_id = remote.key_id("carol");
            tokio::spawn(async move {
                inbox
                    .post_signed("/ap/inbox", &like, MALLORY_KEY, &key_id)
                    .await
                    .status()
            })
        })
        .collect();
    for response in sent {
        assert_eq!(response.await.unwrap(), 202, "{}", inbox.log());
    }
    assert_eq!(remote.gets("carol"), 1);

    // 300 junk requests, 30 at a time: naming a key that does not exist, and forged with
    // the wrong key in the name of someone real but not known here yet.
    remote.set_key("dave", ALICE_KEY);
    for round in 0..10 {
        let sent: Vec<_> = (0..30)
            .map(|n| {
                let inbox = inbox.clone();
                let name = if n % 2 == 0 { "ghost" } else { "dave" };
                let like = json!({
                    "id": format!("{}/likes/junk-{round}-{n}", remote.base), "type": "Like",
                    "actor": remote.actor(name), "object": inbox.post_id,
                });
                let key_id = remote.key_id(name);
                tokio::spawn(async move {
                    inbox
                        .post_signed("/ap/inbox", &like, MALLORY_KEY, &key_id)
                        .await
                        .status()
                })
            })
            .collect();
        for response in sent {
            assert_eq!(response.await.unwrap(), 401);
        }
    }
    assert!(
        remote.gets("ghost") <= 2 && remote.gets("dave") <= 2,
        "300 junk requests made {} fetches of a missing key and {} of a real one",
        remote.gets("ghost"),
        remote.gets("dave")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deploy_webhook_stops_a_guesser() {
    let inbox = Inbox::start("", "").await;
    let deploy = |token: &'static str| {
        inbox
            .client
            .post(inbox.url("/relais/deploy"))
            .header("authorization", format!("BEARER {token}"))
            .send()
    };
    for n in 0..10 {
        let response = deploy("guess").await.unwrap();
        assert_eq!(response.status(), 401, "guess {n}");
    }
    let response = deploy("guess").await.unwrap();
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()[reqwest::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    // While refused, even the right token is not looked at: guessing cannot go on.
    assert_eq!(deploy(DEPLOY_TOKEN).await.unwrap().status(), 429);
}

/// A `QuoteRequest` as Mastodon 4.5 sends it (`ActivityPub::QuoteRequestSerializer`), with
/// the quoting post embedded as `instrument` when `embed` is set.
fn quote_request(remote: &Peer, object: &str, n: u32, embed: bool) -> Value {
    let alice = remote.actor("alice");
    let status = format!("{alice}/statuses/{n}");
    let instrument = if embed {
        json!({
            "id": status,
            "type": "Note",
            "attributedTo": alice,
            "content": "<p>Look at this</p>",
            "quote": object,
            "to": [AS_PUBLIC],
        })
    } else {
        json!(status)
    };
    json!({
        "@context": [
            "https://www.w3.org/ns/activitystreams",
            { "QuoteRequest": "https://w3id.org/fep/044f#QuoteRequest" }
        ],
        "id": format!("{alice}#quote_requests/{n}"),
        "type": "QuoteRequest",
        "actor": alice,
        "instrument": instrument,
        "object": object,
    })
}

async fn quote_requests_are_accepted_with_a_fetchable_authorization_or_rejected(
    backend: common::Backend,
) {
    let remote = remote().await;
    let inbox = Inbox::start_on(backend, "", "").await;
    let alice = remote.actor("alice");
    // The post says who may quote it: Mastodon reads no policy as nobody.
    let (_, post) = inbox.get_json("/ap/posts/hello.json").await;
    assert_eq!(
        post["interactionPolicy"],
        json!({ "canQuote": { "automaticApproval": [AS_PUBLIC] } })
    );

    let request = quote_request(&remote, &inbox.post_id, 7, true);
    let response = inbox
        .post_signed("/ap/inbox", &request, ALICE_KEY, &remote.key_id("alice"))
        .await;
    assert_eq!(response.status(), 202, "{}", inbox.log());
    let accept = remote.next().await;
    assert_eq!(accept.path, "/users/alice/inbox");
    let body: Value = accept.body.clone();
    assert_eq!(body["type"], "Accept");
    assert_eq!(body["actor"], inbox.actor());
    assert_eq!(body["object"]["type"], "QuoteRequest");
    assert_eq!(body["object"]["id"], request["id"]);
    assert_eq!(body["object"]["instrument"], format!("{alice}/statuses/7"));
    assert_eq!(body["object"]["object"], inbox.post_id);
    let result = body["result"].as_str().unwrap().to_string();
    let path = result.strip_prefix(&inbox.base).unwrap().to_string();
    assert!(path.starts_with("/ap/quote_authorizations/"), "{path}");
    // The Accept is signed by the blog's key, like every delivery.
    assert!(SignatureParams::from_headers(&accept.headers).is_ok());

    let (headers, auth) = inbox.get_json(&path).await;
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/activity+json"));
    assert_eq!(auth["id"], result);
    assert_eq!(auth["type"], "QuoteAuthorization");
    assert_eq!(auth["attributedTo"], inbox.actor());
    assert_eq!(auth["interactingObject"], format!("{alice}/statuses/7"));
    assert_eq!(auth["interactionTarget"], inbox.post_id);

    // The same quote asked again (a new request id) keeps its authorization.
    let mut again = quote_request(&remote, &inbox.post_id, 7, false);
    again["id"] = json!(format!("{alice}#quote_requests/7b"));
    let response = inbox
        .post_signed("/ap/inbox", &again, ALICE_KEY, &remote.key_id("alice"))
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = remote.next().await.body;
    assert_eq!(body["type"], "Accept");
    assert_eq!(body["result"], result);

    // A post this site does not have.
    let missing = format!("{}/ap/posts/nope.json", inbox.base);
    let response = inbox
        .post_signed(
            "/ap/inbox",
            &quote_request(&remote, &missing, 8, false),
            ALICE_KEY,
            &remote.key_id("alice"),
        )
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = remote.next().await.body;
    assert_eq!(body["type"], "Reject");
    assert_eq!(body["object"]["object"], missing);
    assert!(body.get("result").is_none());

    let response = inbox.get("/ap/quote_authorizations/0123").await;
    assert_eq!(response.status(), 404);
}

async fn followers_only_quotes_wait_for_the_follow(backend: common::Backend) {
    let remote = remote().await;
    let inbox = Inbox::start_on(backend, "", "quotes = \"followers\"").await;
    let (_, post) = inbox.get_json("/ap/posts/hello.json").await;
    assert_eq!(
        post["interactionPolicy"]["canQuote"]["automaticApproval"],
        json!([inbox.url("/ap/users/blog/followers")])
    );
    let key_id = remote.key_id("alice");
    let response = inbox
        .post_signed(
            "/ap/inbox",
            &quote_request(&remote, &inbox.post_id, 1, false),
            ALICE_KEY,
            &key_id,
        )
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = remote.next().await.body;
    assert_eq!(body["type"], "Reject");

    let follow = follow(&remote, &inbox, "follows/q");
    let response = inbox
        .post_signed("/ap/users/blog/inbox", &follow, ALICE_KEY, &key_id)
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = remote.next().await.body;
    assert_eq!(body["object"]["type"], "Follow");
    let response = inbox
        .post_signed(
            "/ap/inbox",
            &quote_request(&remote, &inbox.post_id, 2, false),
            ALICE_KEY,
            &key_id,
        )
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = remote.next().await.body;
    assert_eq!(body["type"], "Accept");
    assert!(body["result"].as_str().is_some());
}

// The main inbox tests again with the store on PostgreSQL (`…::on_postgres::…`).
on_both_stores!(
    (flavor = "multi_thread"),
    follow_gets_a_signed_accept_and_undo_removes_it,
    replies_likes_and_boosts_are_shown_and_undone,
    refused_requests_store_nothing,
    blocked_domains_are_refused_and_purged,
    approval_mode_waits_for_moderation,
    kill_9_under_concurrent_senders_loses_no_acknowledged_activity,
    public_followers_are_listed_by_page,
    deploy_webhook_queues_new_posts_for_followers,
    quote_requests_are_accepted_with_a_fetchable_authorization_or_rejected,
    followers_only_quotes_wait_for_the_follow,
);
