//! Delivery end to end: sites written in Markdown and built by the real `relais build`,
//! published by the real `relais publish` (and, for retries, by the library worker with a
//! hand-moved clock) to fake remote servers on 127.0.0.1 (`common::peer::Peer`, failing,
//! gone or slow as a test asks), each on its own port, so each is its own host. The servers
//! check nothing themselves: they record every request, and the tests verify each one's HTTP
//! signature and Digest against the site's public key with relais's verifier, as Mastodon
//! would.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::common::peer::{Answers, Peer, Received};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, FixedOffset, Utc};
use relais::config::SiteConfig;
use relais::delivery::{
    load_published_posts, plan_and_enqueue, ManualClock, RunSummary, Signers, Worker, WorkerOptions,
};
use relais::federation::fetch::{ClientOptions, FederationClient};
use relais::federation::keys::PrivateKey;
use relais::federation::signature::{verify_request, IncomingRequest, SignatureParams};
use relais::federation::urls::Urls;
use relais::store::{FollowState, NewFollower, RemoteActor, Store};
use serde_json::Value;

const SITE_KEY: &str = include_str!("fixtures/site_key.pem");
const AS_PUBLIC: &str = "https://www.w3.org/ns/activitystreams#Public";
const BASE_URL: &str = "https://blog.example";
/// Only a guard against a hung test.
const GUARD: Duration = Duration::from_secs(120);

/// Every request `server` received since the last call, verified: (path, key id, activity).
fn verified(server: &Peer) -> Vec<(String, String, Value)> {
    server
        .take()
        .into_iter()
        .map(|r| {
            let (key_id, activity) = verify(&r, &server.host);
            (r.path, key_id, activity)
        })
        .collect()
}

/// Checks the request's signature (covering `(request-target) host date digest
/// content-type`) and Digest with the site's public key; returns its key id and body.
fn verify(received: &Received, host: &str) -> (String, Value) {
    let params = SignatureParams::from_headers(&received.headers).unwrap();
    assert_eq!(
        params.headers,
        vec!["(request-target)", "host", "date", "digest", "content-type"]
    );
    let public_key = PrivateKey::from_pem(SITE_KEY).unwrap().public_key();
    let request = IncomingRequest {
        method: &Method::POST,
        path_and_query: &received.path,
        headers: &received.headers,
        public_host: host,
        body: Some(&received.bytes),
    };
    verify_request(&params, &request, &public_key, SystemTime::now())
        .unwrap_or_else(|e| panic!("request to {host}{} does not verify: {e}", received.path));
    assert_eq!(
        received.headers["content-type"],
        "application/activity+json"
    );
    (params.key_id, received.body.clone())
}

fn key_id(actor: &str) -> String {
    format!("{BASE_URL}/ap/users/{actor}.json#main-key")
}

/// A site folder: config, key, built output, store.
struct Site {
    dir: tempfile::TempDir,
    config: SiteConfig,
    backend: common::Backend,
}

impl Site {
    /// A site whose store is on `backend`.
    fn new_on(backend: common::Backend, delivery: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "title = \"Test blog\"\nbase_url = \"{BASE_URL}\"\n\
             [[authors]]\nid = \"alice\"\nname = \"Alice\"\n\
             [inbox]\nallow_private_addresses = true\n{}\
             [delivery]\n{delivery}\n",
            backend.config_line()
        );
        let path = dir.path().join("config.toml");
        std::fs::write(&path, &text).unwrap();
        std::fs::write(dir.path().join("relais-key.pem"), SITE_KEY).unwrap();
        let config = SiteConfig::parse(&text, &path).unwrap();
        Site {
            dir,
            config,
            backend,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn public(&self) -> PathBuf {
        self.path().join("public")
    }

    fn store(&self) -> Store {
        self.backend.open(self.path())
    }

    /// Writes `content/posts/SLUG.md`.
    fn write_post(&self, slug: &str, authors: &[&str], date: DateTime<FixedOffset>, body: &str) {
        let dir = self.path().join("content/posts");
        std::fs::create_dir_all(&dir).unwrap();
        let authors: Vec<String> = authors.iter().map(|a| format!("{a:?}")).collect();
        let text = format!(
            "+++\ntitle = \"Post {slug}\"\ndate = {}\nauthors = [{}]\n+++\n\n{body}\n",
            date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            authors.join(", ")
        );
        std::fs::write(dir.join(format!("{slug}.md")), text).unwrap();
    }

    fn remove_post(&self, slug: &str) {
        std::fs::remove_file(self.path().join(format!("content/posts/{slug}.md"))).unwrap();
    }

    fn build(&self) {
        common::build_site(self.path());
    }

    fn follow(
        &self,
        actor_name: &str,
        server: &Peer,
        user: &str,
        shared: bool,
        state: FollowState,
    ) {
        let id = server.actor(user);
        let remote = RemoteActor {
            inbox: format!("{id}/inbox"),
            shared_inbox: shared.then(|| server.shared_inbox()),
            name: user.into(),
            handle: format!("@{user}@{}", server.host),
            url: id.clone(),
            avatar: None,
            public_key_pem: "unused".into(),
            key_id: format!("{id}#main-key"),
            also_known_as: vec![],
            moved_to: None,
            fetched_at: "2027-01-01T00:00:00Z".parse().unwrap(),
            id,
        };
        self.store()
            .upsert_follower(&NewFollower {
                actor_name,
                follower: &remote,
                follow_activity_id: &format!("{}#follow-{actor_name}", remote.id),
                state,
            })
            .unwrap();
    }

    fn publish_command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_relais"));
        command
            .args(["publish", "--site"])
            .arg(self.path())
            .stdin(Stdio::null());
        command
    }

    /// Runs `relais publish` to the end; returns its standard output.
    async fn publish(&self) -> String {
        let mut command = self.publish_command();
        let output =
            tokio::time::timeout(GUARD, tokio::task::spawn_blocking(move || command.output()))
                .await
                .expect("relais publish hung")
                .unwrap()
                .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "relais publish failed:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

fn days_ago(days: i64) -> DateTime<FixedOffset> {
    (Utc::now() - chrono::Duration::days(days)).fixed_offset()
}

fn object_id(slug: &str) -> String {
    format!("{BASE_URL}/ap/posts/{slug}.json")
}

/// (type, object id) of each activity, sorted, for comparisons.
fn kinds(requests: &[(String, String, Value)]) -> Vec<(String, String)> {
    let mut kinds: Vec<(String, String)> = requests
        .iter()
        .map(|(_, _, a)| {
            let object = match &a["object"] {
                Value::String(id) => id.clone(),
                object => object["id"].as_str().unwrap().to_string(),
            };
            (a["type"].as_str().unwrap().to_string(), object)
        })
        .collect();
    kinds.sort();
    kinds
}

fn pair(kind: &str, slug: &str) -> (String, String) {
    (kind.to_string(), object_id(slug))
}

async fn publish_sends_new_edited_and_deleted_posts_once_per_inbox(backend: common::Backend) {
    let big = Peer::start(&[]).await;
    let authors_only = Peer::start(&[]).await;
    let personal = Peer::start(&[]).await;
    let gone = Peer::start_with(
        &[],
        Answers {
            gone: true,
            ..Answers::default()
        },
    )
    .await;
    let site = Site::new_on(backend, "timeout_secs = 5");
    for user in ["a", "b", "c"] {
        site.follow("blog", &big, user, true, FollowState::Accepted);
    }
    site.follow("alice", &big, "d", true, FollowState::Accepted);
    site.follow("alice", &authors_only, "e", true, FollowState::Accepted);
    site.follow("alice", &authors_only, "f", true, FollowState::Accepted);
    site.follow("blog", &personal, "g", false, FollowState::Accepted);
    site.follow("blog", &personal, "h", false, FollowState::Accepted);
    site.follow("blog", &personal, "waiting", false, FollowState::Pending);
    site.follow("blog", &gone, "deleted", false, FollowState::Accepted);

    site.write_post("site-post", &[], days_ago(1), "By the site");
    site.write_post("alice-post", &["alice"], days_ago(2), "By Alice");
    site.write_post("old-post", &[], days_ago(30), "From last month");
    site.build();

    // First publish: the two recent posts; the old one only recorded.
    let out = site.publish().await;
    assert!(
        out.contains(
            "Queued 2 new, 0 edited, 0 deleted post(s) (+1 boost(s) by the site actor): \
             13 deliveries; 1 older post(s) recorded as already published"
        ),
        "{out}"
    );
    assert!(out.contains("delivered 10, retrying 0, failed 3"), "{out}");

    let on_big = verified(&big);
    assert!(
        on_big.iter().all(|(path, _, _)| path == "/inbox"),
        "one shared inbox"
    );
    assert_eq!(
        kinds(&on_big),
        vec![
            pair("Announce", "alice-post"),
            pair("Create", "alice-post"),
            pair("Create", "site-post")
        ]
    );
    for (_, key, activity) in &on_big {
        let actor = activity["actor"].as_str().unwrap();
        assert_eq!(
            *key,
            format!("{actor}#main-key"),
            "signed by the activity's actor"
        );
        assert_eq!(activity["to"][0], AS_PUBLIC);
        assert!(activity["@context"].is_array());
    }
    let alice_create = on_big
        .iter()
        .find(|(_, _, a)| {
            a["type"] == "Create" && a["actor"] == format!("{BASE_URL}/ap/users/alice.json")
        })
        .unwrap();
    assert_eq!(alice_create.1, key_id("alice"));
    assert!(alice_create.2["object"]["content"]
        .as_str()
        .unwrap()
        .contains("By Alice"));

    // Followers of Alice only: her Create, not the site's boost.
    let on_authors_only = verified(&authors_only);
    assert_eq!(kinds(&on_authors_only), vec![pair("Create", "alice-post")]);

    // No shared inbox: each follower's own inbox gets everything, the pending one nothing.
    let mut on_personal = verified(&personal);
    on_personal.sort_by(|a, b| a.0.cmp(&b.0));
    let paths: Vec<&str> = on_personal.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [["/users/g/inbox"; 3], ["/users/h/inbox"; 3]].concat()
    );
    assert_eq!(
        kinds(&on_personal),
        [
            [
                pair("Announce", "alice-post"),
                pair("Announce", "alice-post")
            ],
            [pair("Create", "alice-post"), pair("Create", "alice-post")],
            [pair("Create", "site-post"), pair("Create", "site-post")],
        ]
        .concat()
    );

    // 410 from a personal inbox: not retried, the follower is gone.
    assert_eq!(verified(&gone).len(), 3);
    let followers = site.store().followers(None).unwrap();
    assert!(followers
        .iter()
        .all(|f| !f.follower_id.ends_with("/deleted")));

    // Nothing changed: nothing sent.
    let out = site.publish().await;
    assert!(
        out.contains("Queued 0 new, 0 edited, 0 deleted post(s): 0 deliveries"),
        "{out}"
    );
    assert!(out.contains("delivered 0, retrying 0, failed 0"), "{out}");
    assert_eq!(
        big.count() + authors_only.count() + personal.count() + gone.count(),
        0
    );

    // An edit: an Update, with a new `updated`, to the site's followers.
    site.write_post("site-post", &[], days_ago(1), "By the site, corrected");
    site.build();
    let out = site.publish().await;
    assert!(
        out.contains("Queued 0 new, 1 edited, 0 deleted post(s): 3 deliveries"),
        "{out}"
    );
    let updates: Vec<_> = verified(&big)
        .into_iter()
        .chain(verified(&personal))
        .collect();
    assert_eq!(kinds(&updates), vec![pair("Update", "site-post"); 3]);
    for (_, key, update) in &updates {
        assert_eq!(*key, key_id("blog"));
        assert!(update["object"]["content"]
            .as_str()
            .unwrap()
            .contains("corrected"));
        let updated =
            DateTime::parse_from_rfc3339(update["object"]["updated"].as_str().unwrap()).unwrap();
        assert!(updated > days_ago(1));
    }
    assert_eq!(authors_only.count() + gone.count(), 0);

    // A removal: a Delete of a Tombstone, to the author's and the site's followers.
    site.remove_post("alice-post");
    site.build();
    let out = site.publish().await;
    assert!(
        out.contains("Queued 0 new, 0 edited, 1 deleted post(s): 4 deliveries"),
        "{out}"
    );
    let deletes: Vec<_> = verified(&big)
        .into_iter()
        .chain(verified(&authors_only))
        .chain(verified(&personal))
        .collect();
    assert_eq!(kinds(&deletes), vec![pair("Delete", "alice-post"); 4]);
    for (_, key, delete) in &deletes {
        assert_eq!(*key, key_id("alice"));
        assert_eq!(delete["object"]["type"], "Tombstone");
    }

    let status = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["status", "--site"])
        .arg(site.path())
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("Queue: 0 pending"), "{status}");
    assert!(status.contains("17 delivered, 3 failed"), "{status}");
    assert!(
        status.contains("Followers: 8 (alice 3, blog 5), 1 awaiting approval"),
        "{status}"
    );
    assert!(
        status.contains("Posts published: 2 (1 deleted since)"),
        "{status}"
    );
}

async fn run(worker: &Worker<FederationClient, ManualClock>) -> RunSummary {
    worker
        .run_until_idle(std::future::pending(), &mut |_| {})
        .await
        .unwrap()
}

async fn a_failing_server_gets_retries_until_it_recovers(backend: common::Backend) {
    let flaky = Peer::start_with(
        &[],
        Answers {
            fail_first: 2,
            ..Answers::default()
        },
    )
    .await;
    let healthy = Peer::start(&[]).await;
    let site = Site::new_on(backend, "timeout_secs = 5");
    site.follow("blog", &flaky, "a", true, FollowState::Accepted);
    site.follow("blog", &flaky, "b", true, FollowState::Accepted);
    site.follow("blog", &healthy, "c", true, FollowState::Accepted);
    site.write_post("p", &[], days_ago(0), "Hello");
    site.build();

    let store = site.store();
    let posts = load_published_posts(&site.config, &site.public()).unwrap();
    let report = plan_and_enqueue(&store, &site.config, &posts, Utc::now(), false).unwrap();
    assert_eq!(report.deliveries, 2);

    let clock = ManualClock::new(Utc::now().timestamp());
    let client = FederationClient::new(ClientOptions::from_config(&site.config)).unwrap();
    let worker = Worker::new(
        store.clone(),
        Arc::new(client),
        Signers::new(
            Arc::new(PrivateKey::from_pem(SITE_KEY).unwrap()),
            Urls::new(&site.config),
        ),
        WorkerOptions::from_config(&site.config.delivery),
        clock.clone(),
    );
    assert_eq!(
        run(&worker).await,
        RunSummary {
            delivered: 1,
            retried: 1,
            failed: 0
        }
    );
    assert_eq!(verified(&flaky).len(), 1);
    assert_eq!(verified(&healthy).len(), 1);
    // Not due yet: Sidekiq's first retry comes 15 to 24 s later.
    clock.advance(14);
    assert_eq!(run(&worker).await, RunSummary::default());
    assert_eq!(flaky.count(), 0);
    clock.advance(10);
    assert_eq!(
        run(&worker).await,
        RunSummary {
            delivered: 0,
            retried: 1,
            failed: 0
        }
    );
    clock.advance(34);
    assert_eq!(
        run(&worker).await,
        RunSummary {
            delivered: 1,
            retried: 0,
            failed: 0
        }
    );
    let retried = verified(&flaky);
    assert_eq!(kinds(&retried), vec![pair("Create", "p"); 2]);
    // The same activity each time.
    assert_eq!(retried[0].2, retried[1].2);
    let host = flaky.host.clone();
    let records = store
        .deliveries_of(&format!("{}#create", object_id("p")))
        .unwrap();
    let record = records.iter().find(|r| r.inbox.contains(&host)).unwrap();
    assert_eq!((record.state.as_str(), record.attempts), ("done", 3));
    assert!(
        store.troubled_hosts().unwrap().is_empty(),
        "the success cleared the failures"
    );
}

async fn a_publish_killed_mid_delivery_completes_on_restart(backend: common::Backend) {
    let slow = Peer::start_with(
        &[],
        Answers {
            delay: Duration::from_millis(150),
            ..Answers::default()
        },
    )
    .await;
    let site = Site::new_on(
        backend,
        "timeout_secs = 1\nconcurrency = 4\nper_host_connections = 1",
    );
    let users: Vec<String> = (0..20).map(|n| format!("u{n}")).collect();
    for user in &users {
        site.follow("blog", &slow, user, false, FollowState::Accepted);
    }
    site.write_post("p", &[], days_ago(0), "Hello");
    site.build();

    let mut child = site
        .publish_command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    while slow.count() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "publish ended before it was killed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before_restart = slow.count();
    assert!(before_restart < users.len());

    // The restart waits for the lease of the request cut short, then sends the rest.
    let out = site.publish().await;
    assert!(out.contains("Queued 0 new"), "{out}");
    assert!(out.contains("retrying 0, failed 0"), "{out}");
    let received = verified(&slow);
    let mut per_inbox: HashMap<String, usize> = HashMap::new();
    for (path, _, activity) in &received {
        assert_eq!(activity["type"], "Create");
        *per_inbox.entry(path.clone()).or_default() += 1;
    }
    assert_eq!(per_inbox.len(), users.len(), "every follower got the post");
    // The request cut short by the kill may have reached the server: sent again (at least
    // once), but nothing else is.
    let repeats = received.len() - users.len();
    assert!(
        repeats <= 1,
        "{repeats} repeated deliveries with one request in flight"
    );
    let counts = site.store().queue_counts(Utc::now().timestamp()).unwrap();
    assert_eq!((counts.done, counts.pending()), (users.len() as u64, 0));
}

/// An inbox on 127.0.0.1 that accepts only one signature style, as a server refusing
/// cavage (or one that knows nothing newer) does: 401 for the other, and for a signature
/// that does not verify. Records the style of every request.
#[derive(Clone)]
struct PickyInbox {
    wants_rfc9421: bool,
    key: relais::federation::keys::PublicKey,
    seen: Arc<Mutex<Vec<&'static str>>>,
}

async fn picky(
    State(inbox): State<PickyInbox>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    use relais::federation::signature9421::RequestSignature;
    let Ok(signature) = RequestSignature::from_headers(&headers) else {
        return StatusCode::UNAUTHORIZED;
    };
    let rfc9421 = matches!(signature, RequestSignature::Message(_));
    inbox
        .seen
        .lock()
        .unwrap()
        .push(if rfc9421 { "rfc9421" } else { "cavage" });
    let host = headers["host"].to_str().unwrap().to_string();
    let request = IncomingRequest {
        method: &method,
        path_and_query: uri.path_and_query().unwrap().as_str(),
        headers: &headers,
        public_host: &host,
        body: Some(&body),
    };
    let verified = signature
        .verify(&request, "http", &inbox.key, SystemTime::now())
        .is_ok();
    if verified && rfc9421 == inbox.wants_rfc9421 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::UNAUTHORIZED
    }
}

async fn start_picky(wants_rfc9421: bool) -> (String, PickyInbox) {
    let key = PrivateKey::from_pem(SITE_KEY).unwrap().public_key();
    let state = PickyInbox {
        wants_rfc9421,
        key,
        seen: Arc::default(),
    };
    let app = Router::new()
        .route("/inbox", post(picky))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/inbox"), state)
}

/// A delivery client allowed to reach loopback, the site's key as the blog's actor, and a
/// Create to send.
fn signed_client() -> (
    FederationClient,
    relais::federation::signature::SigningKey,
    relais::federation::signature::DigestedBody,
) {
    use relais::federation::signature::{DigestedBody, SigningKey};
    let config = SiteConfig::parse(
        &format!(
            "title = \"T\"\nbase_url = \"{BASE_URL}\"\n[inbox]\nallow_private_addresses = true\n"
        ),
        Path::new("config.toml"),
    )
    .unwrap();
    let client = FederationClient::new(ClientOptions::from_config(&config)).unwrap();
    let key = SigningKey::new(
        key_id(&format!("{BASE_URL}/ap/users/blog.json")),
        Arc::new(PrivateKey::from_pem(SITE_KEY).unwrap()),
    );
    let body = DigestedBody::new(Bytes::from_static(br#"{"type":"Create"}"#));
    (client, key, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_double_knock_and_remember_the_style_per_host() {
    use relais::federation::fetch::SignatureStyle;
    use relais::federation::signature::SigningKey;
    let (client, key, body) = signed_client();

    // A server that refuses cavage: the 401 gets a second knock in RFC 9421, remembered.
    let (new_url, new_server) = start_picky(true).await;
    let status = client.post_digested(&new_url, &body, &key).await.unwrap();
    assert_eq!(status, 202);
    assert_eq!(*new_server.seen.lock().unwrap(), ["cavage", "rfc9421"]);
    assert_eq!(
        client.signature_style("127.0.0.1"),
        Some(SignatureStyle::MessageSignature)
    );
    let status = client.post_digested(&new_url, &body, &key).await.unwrap();
    assert_eq!(status, 202);
    assert_eq!(
        *new_server.seen.lock().unwrap(),
        ["cavage", "rfc9421", "rfc9421"]
    );

    // The same host (loopback) now serves a cavage-only inbox: the remembered style gets a
    // 401, cavage succeeds and is remembered in its place.
    let (old_url, old_server) = start_picky(false).await;
    let status = client.post_digested(&old_url, &body, &key).await.unwrap();
    assert_eq!(status, 202);
    assert_eq!(*old_server.seen.lock().unwrap(), ["rfc9421", "cavage"]);
    assert_eq!(
        client.signature_style("127.0.0.1"),
        Some(SignatureStyle::Cavage)
    );

    // A server that takes neither gets two knocks and its 401, and changes no memory.
    let bad_key = SigningKey::new(
        key_id(&format!("{BASE_URL}/ap/users/blog.json")),
        Arc::new(PrivateKey::generate().unwrap()),
    );
    let status = client
        .post_digested(&old_url, &body, &bad_key)
        .await
        .unwrap();
    assert_eq!(status, 401);
    assert_eq!(old_server.seen.lock().unwrap().len(), 4);
    assert_eq!(
        client.signature_style("127.0.0.1"),
        Some(SignatureStyle::Cavage)
    );
}

/// A server that accepts the delivery but drops the connection halfway through its
/// answer's body, as a proxy timing out or a restarting server may: the status line was
/// the verdict, so the delivery counts as done and is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_delivery_whose_answer_is_cut_off_counts_as_delivered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/inbox", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            *counted.lock().unwrap() += 1;
            let mut request = vec![0; 64 * 1024];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\n{\"ok\":")
                .await;
            // Dropped: 94 bytes of the promised 100 never come.
        }
    });
    let (client, key, body) = signed_client();
    let status = client.post_digested(&url, &body, &key).await.unwrap();
    assert_eq!(status, 202);
    assert_eq!(*requests.lock().unwrap(), 1);
}

// The delivery tests on each store (`…::on_sqlite::…`, `…::on_postgres::…`).
on_both_stores!(
    (flavor = "multi_thread", worker_threads = 2),
    publish_sends_new_edited_and_deleted_posts_once_per_inbox,
    a_failing_server_gets_retries_until_it_recovers,
    a_publish_killed_mid_delivery_completes_on_restart,
);
