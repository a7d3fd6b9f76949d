//! Three `relais inbox` processes on one PostgreSQL database behave as one service:
//! activities sent to all three at once are stored once, a fan-out is delivered once per
//! inbox, and the deliveries a killed replica held are finished by the others after their
//! lease. Skips where PostgreSQL cannot run (fails with `RELAIS_REQUIRE_POSTGRES=1`).

use crate::common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::common::Backend;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use relais::federation::keys::PrivateKey;
use relais::federation::signature::{sign_request, SigningKey};
use relais::store::queue::QueuedActivity;
use relais::store::{FollowState, NewFollower, RemoteActor, Store};
use serde_json::{json, Value};

const REPLICAS: usize = 3;
/// Remote actors sending follows, replies and likes.
const SENDERS: usize = 12;
/// The fan-outs: inboxes on this many loopback hosts, ten each (20,000 followers on 2,000
/// inboxes, the size).
const FAN_OUT_HOSTS: usize = 200;
const FAN_OUT_INBOXES: usize = 10 * FAN_OUT_HOSTS;
/// Followers per inbox (they share it): a post goes once to each inbox.
const FOLLOWERS_PER_INBOX: usize = 10;
const GUARD: Duration = Duration::from_secs(90);
/// Deliveries one replica sends at once: at most these arrive twice after it is killed.
const CONCURRENCY: usize = 16;

/// (inbox URL, activity type, activity id): what an inbox got, counted.
type Reception = (String, String, String);

/// The fake fediverse: actor documents for any name, and inboxes that count what they got.
#[derive(Clone, Default)]
struct Remotes {
    pem: Arc<String>,
    received: Arc<Mutex<HashMap<Reception, usize>>>,
    /// Answers wait this long: a fan-out takes a while, so a replica can die in the middle.
    delay: Arc<Mutex<Duration>>,
}

impl Remotes {
    fn count(&self, activity_id: &str) -> (usize, usize) {
        let received = self.received.lock().unwrap();
        let mine: Vec<usize> = received
            .iter()
            .filter(|((_, _, id), _)| id == activity_id)
            .map(|(_, n)| *n)
            .collect();
        (mine.len(), mine.iter().sum())
    }

    fn accepts_of(&self, follower: &str) -> usize {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|((inbox, kind, _), _)| {
                kind == "Accept" && inbox == &format!("{follower}/inbox")
            })
            .map(|(_, n)| *n)
            .sum()
    }
}

async fn actor_document(
    State(remotes): State<Remotes>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> impl IntoResponse {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let id = format!("http://{host}/users/{name}");
    let doc = json!({
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
        "id": id, "type": "Person", "preferredUsername": name, "name": name,
        "inbox": format!("{id}/inbox"),
        "publicKey": { "id": format!("{id}#main-key"), "owner": id, "publicKeyPem": *remotes.pem },
    });
    (
        [(header::CONTENT_TYPE, "application/activity+json")],
        doc.to_string(),
    )
}

async fn inbox(
    State(remotes): State<Remotes>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Bytes,
) -> StatusCode {
    let Ok(activity) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let delay = *remotes.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let key = (
        format!("http://{host}{}", uri.path()),
        activity["type"].as_str().unwrap_or_default().to_string(),
        activity["id"].as_str().unwrap_or_default().to_string(),
    );
    *remotes.received.lock().unwrap().entry(key).or_default() += 1;
    StatusCode::ACCEPTED
}

fn address(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 41, 0, (1 + n) as u8)
}

/// Starts the fake servers on `hosts` loopback addresses, one port; returns it.
async fn start_remotes(remotes: &Remotes, hosts: usize) -> u16 {
    let app = Router::new()
        .route("/users/{name}", get(actor_document))
        .route("/users/{name}/inbox", post(inbox))
        .route("/inboxes/{n}", post(inbox))
        .with_state(remotes.clone());
    let mut port = 0;
    for n in 0..hosts {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((address(n), port)))
            .await
            .unwrap_or_else(|e| panic!("bind {}: {e}", address(n)));
        port = listener.local_addr().unwrap().port();
        let app = app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    port
}

/// One `relais inbox` of the site, on its own port.
struct Replica {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Replica {
    async fn start(site: &Path, n: usize) -> Replica {
        let port = common::free_port();
        let log = site.join(format!("inbox-{n}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_relais"))
            .args(["inbox", "--site"])
            .arg(site)
            .env("RELAIS_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "relais=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut replica = Replica { child, port, log };
        let base = format!("http://127.0.0.1:{port}");
        common::wait_healthy_within(&mut replica.child, &base, &replica.log, GUARD).await;
        replica
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Signs `activity` for the public inbox URL: any replica checks it against `base_url`.
fn signed(inbox_url: &str, actor: &str, activity: &Value, key: &Arc<PrivateKey>) -> HeaderMap {
    let body = activity.to_string().into_bytes();
    let signer = SigningKey::new(format!("{actor}#main-key"), key.clone());
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/activity+json"),
    );
    let url = url::Url::parse(inbox_url).unwrap();
    sign_request(
        &signer,
        &Method::POST,
        &url,
        &mut headers,
        Some(&body),
        SystemTime::now(),
    )
    .unwrap();
    headers
}

fn write_site(dir: &Path, base: &str, backend: &Backend) {
    let text = format!(
        "title = \"Replicas\"\nbase_url = \"{base}\"\n[fediverse]\ninbox_url = \"{base}\"\n\
         [inbox]\nallow_private_addresses = true\n{}\
         client_rate_limit_per_minute = 100000000\nrate_limit_per_minute = 100000000\n\
         [delivery]\ntimeout_secs = 2\nconcurrency = {CONCURRENCY}\n",
        backend.config_line()
    );
    std::fs::write(dir.join("config.toml"), text).unwrap();
    std::fs::create_dir_all(dir.join("content/posts")).unwrap();
    std::fs::write(
        dir.join("content/posts/hello.md"),
        "+++\ntitle = \"Hello\"\ndate = 2026-01-01\n+++\n\nFirst post.\n",
    )
    .unwrap();
    common::build_site(dir);
}

/// `FOLLOWERS_PER_INBOX` followers on each fan-out inbox, which they share.
async fn add_followers(store: &Store, port: u16) {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        store.atomically(|store| {
            for n in 0..FAN_OUT_INBOXES * FOLLOWERS_PER_INBOX {
                let inbox = n % FAN_OUT_INBOXES;
                let host = address(inbox % FAN_OUT_HOSTS);
                let id = format!("http://{host}:{port}/users/f{n}");
                let follower = RemoteActor {
                    inbox: format!("{id}/inbox"),
                    shared_inbox: Some(format!("http://{host}:{port}/inboxes/{inbox}")),
                    name: format!("f{n}"),
                    handle: format!("@f{n}@{host}"),
                    url: id.clone(),
                    avatar: None,
                    public_key_pem: "unused".into(),
                    key_id: format!("{id}#main-key"),
                    also_known_as: vec![],
                    moved_to: None,
                    fetched_at: "2027-01-01T00:00:00Z".parse().unwrap(),
                    id,
                };
                store.upsert_follower(&NewFollower {
                    actor_name: "blog",
                    follower: &follower,
                    follow_activity_id: &format!("{}#follow", follower.id),
                    state: FollowState::Accepted,
                })?;
            }
            Ok::<_, relais::store::StoreError>(())
        })
    })
    .await
    .unwrap()
    .unwrap();
}

/// Queues `activity_id` for the followers, one delivery per inbox (shared ones once), as a
/// publish does.
async fn fan_out(store: &Store, activity_id: &str) -> usize {
    let store = store.clone();
    let activity_id = activity_id.to_string();
    tokio::task::spawn_blocking(move || {
        let now = chrono::Utc::now().timestamp();
        store.queue_transaction(|q| {
            let activity = QueuedActivity {
                activity_id: activity_id.clone(),
                object_id: Some(format!("{activity_id}/object")),
                actor_name: "blog".into(),
                body: json!({ "id": activity_id, "type": "Create" }).to_string(),
                recipients: q.delivery_recipients(&["blog"])?,
            };
            q.enqueue(&activity, now)
        })
    })
    .await
    .unwrap()
    .unwrap()
}

/// Waits until `inboxes` inboxes got `activity_id`; panics after `GUARD`.
async fn all_received(remotes: &Remotes, activity_id: &str, inboxes: usize, replicas: &[Replica]) {
    let deadline = Instant::now() + GUARD;
    while remotes.count(activity_id).0 < inboxes {
        assert!(
            Instant::now() < deadline,
            "{activity_id}: {:?} of {inboxes} inboxes reached; log of replica 0:\n{}",
            remotes.count(activity_id),
            replicas[0].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_store_once_deliver_once_and_survive_a_kill_9() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let site = tempfile::tempdir().unwrap();
    // The public address (what a load balancer would answer on); the replicas listen on
    // ports of their own.
    let base = format!("http://127.0.0.1:{}", common::free_port());
    write_site(site.path(), &base, &backend);
    let mut replicas = Vec::new();
    for n in 0..REPLICAS {
        replicas.push(Replica::start(site.path(), n).await);
    }

    let key = Arc::new(PrivateKey::generate().unwrap());
    let remotes = Remotes {
        pem: Arc::new(key.public_key_pem().unwrap()),
        ..Remotes::default()
    };
    let port = start_remotes(&remotes, FAN_OUT_HOSTS).await;
    let client = reqwest::Client::new();
    let inbox_url = format!("{base}/ap/inbox");
    let post = format!("{base}/ap/posts/hello.json");
    let site_actor = format!("{base}/ap/users/blog.json");

    // 1. Each sender follows, replies and likes; every activity goes to all three replicas
    // at once, as a retrying sender behind a load balancer may do.
    let mut activities = Vec::new();
    for n in 0..SENDERS {
        let actor = format!("http://{}:{port}/users/s{n}", address(n % FAN_OUT_HOSTS));
        let note = format!("{actor}/notes/1");
        activities.push((actor.clone(), json!({
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": format!("{actor}/follows/1"), "type": "Follow", "actor": actor, "object": site_actor,
        })));
        activities.push((
            actor.clone(),
            json!({
                "@context": "https://www.w3.org/ns/activitystreams",
                "id": format!("{note}/activity"), "type": "Create", "actor": actor,
                "to": ["https://www.w3.org/ns/activitystreams#Public"],
                "object": {
                    "id": note, "type": "Note", "inReplyTo": post, "attributedTo": actor,
                    "published": "2027-02-01T10:00:00Z", "url": note,
                    "to": ["https://www.w3.org/ns/activitystreams#Public"],
                    "content": format!("<p>Reply from s{n}</p>"),
                }
            }),
        ));
        activities.push((
            actor.clone(),
            json!({
                "@context": "https://www.w3.org/ns/activitystreams",
                "id": format!("{actor}/likes/1"), "type": "Like", "actor": actor, "object": post,
            }),
        ));
    }
    let mut sends = Vec::new();
    for (actor, activity) in &activities {
        let headers = signed(&inbox_url, actor, activity, &key);
        for replica in &replicas {
            let request = client
                .post(format!("http://127.0.0.1:{}/ap/inbox", replica.port))
                .headers(headers.clone())
                .body(activity.to_string());
            sends.push(tokio::spawn(async move {
                request.send().await.map(|r| r.status())
            }));
        }
    }
    for send in sends {
        let status = send.await.unwrap().unwrap();
        if status != StatusCode::ACCEPTED {
            let logs: Vec<String> = replicas.iter().map(Replica::log).collect();
            panic!("answered {status}:\n{}", logs.join("\n----\n"));
        }
    }
    let store = backend.open(site.path());
    let (followers, replies) = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            (
                store.followers(None).unwrap().len(),
                store.replies(None).unwrap().len(),
            )
        })
        .await
        .unwrap()
    };
    let likes = {
        let store = store.clone();
        let post = post.clone();
        tokio::task::spawn_blocking(move || store.post_interactions(&post).unwrap().likes.len())
            .await
            .unwrap()
    };
    assert_eq!((followers, replies, likes), (SENDERS, SENDERS, SENDERS));
    // One Accept per follower, whichever replica took the Follow.
    let deadline = Instant::now() + GUARD;
    for n in 0..SENDERS {
        let actor = format!("http://{}:{port}/users/s{n}", address(n % FAN_OUT_HOSTS));
        while remotes.accepts_of(&actor) == 0 {
            assert!(Instant::now() < deadline, "no Accept for {actor}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // 2. A post to the followers of many inboxes: each inbox gets it exactly once.
    add_followers(&store, port).await;
    let first = format!("{base}/ap/posts/a#create");
    let queued = fan_out(&store, &first).await;
    // The senders follow too, each on its own inbox.
    assert_eq!(queued, FAN_OUT_INBOXES + SENDERS);
    all_received(&remotes, &first, queued, &replicas).await;
    let (inboxes, deliveries) = remotes.count(&first);
    assert_eq!(
        (inboxes, deliveries),
        (queued, queued),
        "{} followers on {queued} inboxes, each inbox once",
        FAN_OUT_INBOXES * FOLLOWERS_PER_INBOX + SENDERS
    );
    for n in 0..SENDERS {
        let actor = format!("http://{}:{port}/users/s{n}", address(n % FAN_OUT_HOSTS));
        assert_eq!(remotes.accepts_of(&actor), 1, "one Accept for {actor}");
    }

    // 3. Replica 1 alone starts the next fan-out, to slow inboxes, and is killed in the
    // middle: the other two, started again, finish it, its leased deliveries once their
    // lease has ended.
    replicas[0].kill9();
    replicas[2].kill9();
    *remotes.delay.lock().unwrap() = Duration::from_millis(300);
    let second = format!("{base}/ap/posts/b#create");
    fan_out(&store, &second).await;
    let deadline = Instant::now() + GUARD;
    while remotes.count(&second).0 < queued / 10 {
        assert!(
            Instant::now() < deadline,
            "the second fan-out never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replicas[1].kill9();
    let leased = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            store
                .leased_deliveries(chrono::Utc::now().timestamp())
                .unwrap()
        })
        .await
        .unwrap()
    };
    assert!(leased > 0, "replica 1 held leases when killed");
    let killed_at = Instant::now();
    replicas[0] = Replica::start(site.path(), 3).await;
    replicas[2] = Replica::start(site.path(), 4).await;
    all_received(&remotes, &second, queued, &replicas).await;
    // What replica 1 had in flight may have arrived already; its rows are done once the
    // others took them over after the lease, and sent them again.
    let deadline = Instant::now() + GUARD;
    loop {
        let store = store.clone();
        let counts = tokio::task::spawn_blocking(move || {
            store.queue_counts(chrono::Utc::now().timestamp()).unwrap()
        })
        .await
        .unwrap();
        if counts.pending() == 0 {
            assert_eq!(counts.failed, 0, "{counts:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never finished: {counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (inboxes, deliveries) = remotes.count(&second);
    assert_eq!(inboxes, queued);
    // Only what the killed replica had in flight may arrive twice.
    assert!(
        deliveries - inboxes <= CONCURRENCY,
        "{deliveries} deliveries to {inboxes} inboxes"
    );
    eprintln!(
        "replica 1 killed holding {leased} leases; the others finished {:.1} s later; \
         {} duplicate deliveries",
        killed_at.elapsed().as_secs_f64(),
        deliveries - inboxes
    );
}
