//! The release `relais inbox` under a migration wave, on loopback:
//!
//! 1. **Cached keys**: 64 remote actors (on 8 servers) send validly signed replies and likes,
//!    64 at a time, each waiting for its answer before sending the next (as a server's
//!    delivery workers do). Their keys are cached by a first activity each, not counted.
//!    Reports accepted activities per second and p50/p99 latency, and checks that every
//!    activity answered 202 is in the store exactly once.
//! 2. **New followers**: 2 000 actors never seen before (on 200 servers, each its own
//!    loopback address 127.31.x.y) follow at once; the inbox fetches each actor, and the
//!    delivery worker sends each an `Accept`. Reports the time until all got their Accept.
//!
//! ```text
//! cargo bench --bench inbox                 # 100 activities per actor, 2 000 followers
//! cargo bench --bench inbox -- 200 4000
//! ```
//!
//! With `RELAIS_BENCH_STORE_URL` (a PostgreSQL URL) the store is that database, and with
//! `RELAIS_BENCH_REPLICAS=N` N inbox processes share it, each request going to the next one
//! in turn (`bench/replicas.sh` runs both, on a throwaway cluster).
//!
//! Every request is signed before the clock starts: the remote side's RSA signing would
//! otherwise compete with the inbox for the same cores. The fake servers run in this
//! process.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use rayon::prelude::*;
use relais::config::SiteConfig;
use relais::content::{Document, DocumentKind};
use relais::federation::keys::PrivateKey;
use relais::federation::signature::{sign_request, SigningKey};
use serde_json::{json, Value};

const CONCURRENT_ACTORS: usize = 64;
const CACHED_SERVERS: usize = 8;
const FOLLOWERS_PER_SERVER: usize = 10;
const AS_PUBLIC: &str = "https://www.w3.org/ns/activitystreams#Public";

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let per_actor = sizes.first().copied().unwrap_or(100);
    let followers = sizes.get(1).copied().unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(per_actor, followers));
}

/// Loopback address of remote server `n` of a scenario.
fn address(scenario: u8, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, scenario, (n / 200) as u8, (1 + n % 200) as u8)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The fake remote servers: actor documents for any name, and a shared inbox recording the
/// followers whose `Accept` arrived.
#[derive(Clone)]
struct Remotes {
    pem: Arc<String>,
    accepted: Arc<Mutex<HashSet<String>>>,
    /// Every Accept received, repeated ones included.
    accepts: Arc<std::sync::atomic::AtomicUsize>,
    all_accepted: Arc<tokio::sync::Notify>,
    expected: usize,
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
        "endpoints": { "sharedInbox": format!("http://{host}/inbox") },
        "publicKey": { "id": format!("{id}#main-key"), "owner": id, "publicKeyPem": *remotes.pem },
    });
    (
        [(header::CONTENT_TYPE, "application/activity+json")],
        doc.to_string(),
    )
}

async fn shared_inbox(State(remotes): State<Remotes>, body: Bytes) -> StatusCode {
    let Ok(activity) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if activity["type"] == "Accept" {
        remotes
            .accepts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(follower) = activity["object"]["actor"].as_str() {
            let mut accepted = remotes.accepted.lock().unwrap();
            accepted.insert(follower.to_string());
            if accepted.len() == remotes.expected {
                remotes.all_accepted.notify_one();
            }
        }
    }
    StatusCode::ACCEPTED
}

/// Starts `count` servers of `scenario` on one port; returns it.
async fn start_remotes(remotes: &Remotes, scenario: u8, count: usize) -> u16 {
    let app = Router::new()
        .route("/users/{name}", get(actor_document))
        .route("/inbox", post(shared_inbox))
        .route("/users/{name}/inbox", post(shared_inbox))
        .with_state(remotes.clone());
    let mut port = 0;
    for n in 0..count {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((address(scenario, n), port)))
                .await
                .unwrap_or_else(|e| panic!("bind {}: {e}", address(scenario, n)));
        port = listener.local_addr().unwrap().port();
        let app = app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    port
}

/// A request signed in advance.
struct Signed {
    url: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn sign(inbox_url: &str, actor: &str, activity: &Value, key: &Arc<PrivateKey>) -> Signed {
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
    Signed {
        url: inbox_url.to_string(),
        headers,
        body,
    }
}

fn like(actor: &str, n: usize, post: &str) -> Value {
    json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{actor}/likes/{n}"), "type": "Like", "actor": actor, "object": post,
    })
}

fn reply(actor: &str, n: usize, post: &str) -> Value {
    let note = format!("{actor}/statuses/{n}");
    json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{note}/activity"), "type": "Create", "actor": actor,
        "published": "2027-02-01T10:00:00Z", "to": [AS_PUBLIC], "cc": [format!("{actor}/followers")],
        "object": {
            "id": note, "type": "Note", "inReplyTo": post, "attributedTo": actor,
            "published": "2027-02-01T10:00:00Z", "url": note,
            "to": [AS_PUBLIC], "cc": [format!("{actor}/followers")],
            "content": format!("<p>Reply {n}: a few words, <a href=\"{actor}\">a link</a> and <em>emphasis</em>.</p>"),
        }
    })
}

async fn send(client: &reqwest::Client, request: &Signed) -> (StatusCode, Duration) {
    let started = Instant::now();
    let status = client
        .post(&request.url)
        .headers(request.headers.clone())
        .body(request.body.clone())
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (status, started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(per_actor: usize, followers: usize) {
    let site = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    // One post per like of an actor (one like per actor and post counts).
    let posts = per_actor / 2 + 1;
    let store_url = std::env::var("RELAIS_BENCH_STORE_URL").ok();
    let replicas: usize = std::env::var("RELAIS_BENCH_REPLICAS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1);
    let config = write_site(site.path(), &base, posts);
    let inbox_url = format!("{base}/ap/inbox");
    let post = |n: usize| format!("{base}/ap/posts/p{n}.json");
    let mut listens = vec![port];
    while listens.len() < replicas {
        let other = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        listens.push(other);
    }
    let mut inboxes = Vec::new();
    for listen in &listens {
        inboxes.push(Inbox::start(site.path(), *listen, store_url.as_deref()).await);
    }
    let inbox = &inboxes[0];
    // Request n goes to replica n % replicas; all are signed for the public address.
    let spread = |requests: &mut [Signed]| {
        for (n, request) in requests.iter_mut().enumerate() {
            request.url = format!("http://127.0.0.1:{}/ap/inbox", listens[n % listens.len()]);
        }
    };
    println!(
        "store: {}, {replicas} inbox process(es)",
        if store_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );

    let remote_key = Arc::new(PrivateKey::generate().unwrap());
    let remotes = Remotes {
        pem: Arc::new(remote_key.public_key_pem().unwrap()),
        accepted: Arc::new(Mutex::new(HashSet::new())),
        accepts: Arc::default(),
        all_accepted: Arc::new(tokio::sync::Notify::new()),
        expected: followers,
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .build()
        .unwrap();
    println!("machine load before: {}", load());

    // 1. Cached keys.
    let cached_port = start_remotes(&remotes, 30, CACHED_SERVERS).await;
    let actors: Vec<String> = (0..CONCURRENT_ACTORS)
        .map(|n| {
            format!(
                "http://{}:{cached_port}/users/a{n}",
                address(30, n % CACHED_SERVERS)
            )
        })
        .collect();
    let mut warm_up: Vec<Signed> = actors
        .par_iter()
        .map(|actor| sign(&inbox_url, actor, &like(actor, 0, &post(0)), &remote_key))
        .collect();
    spread(&mut warm_up);
    for request in &warm_up {
        let (status, _) = send(&client, request).await;
        assert_eq!(status, 202, "warm-up:\n{}", inbox.log());
    }
    let signing = Instant::now();
    let mut batches: Vec<Vec<Signed>> = actors
        .par_iter()
        .map(|actor| {
            (1..=per_actor)
                .map(|n| {
                    let activity = if n % 2 == 0 {
                        like(actor, n, &post(n / 2))
                    } else {
                        reply(actor, n, &post(0))
                    };
                    sign(&inbox_url, actor, &activity, &remote_key)
                })
                .collect()
        })
        .collect();
    for batch in &mut batches {
        spread(batch);
    }
    eprintln!(
        "signed {} requests in {:.1} s",
        CONCURRENT_ACTORS * per_actor,
        signing.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut results = Vec::with_capacity(batch.len());
                for request in &batch {
                    results.push(send(&client, request).await);
                }
                results
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut refused = 0;
    for task in tasks {
        for (status, latency) in task.await.unwrap() {
            if status == StatusCode::ACCEPTED {
                latencies.push(latency);
            } else {
                refused += 1;
            }
        }
    }
    let wall = started.elapsed();
    latencies.sort();
    let accepted = latencies.len();
    println!("machine load after scenario 1: {}", load());
    println!(
        "cached keys:  {accepted} accepted ({refused} refused) from {CONCURRENT_ACTORS} actors \
         in {:.2} s: {:.0} accepted/s, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        wall.as_secs_f64(),
        accepted as f64 / wall.as_secs_f64(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
    );
    let store = match &store_url {
        Some(url) => relais::store::Store::connect(url).unwrap(),
        None => relais::store::Store::open(&site.path().join(&config.inbox.store)).unwrap(),
    };
    let replies = store.replies(None).unwrap().len();
    let likes: usize = store
        .all_interactions()
        .unwrap()
        .values()
        .map(|post| post.likes.len())
        .sum();
    let expected_replies = CONCURRENT_ACTORS * per_actor.div_ceil(2);
    let expected_likes = CONCURRENT_ACTORS * (1 + per_actor / 2);
    println!(
        "stored:       {replies} replies (sent {expected_replies}), {likes} likes (sent {expected_likes})"
    );
    assert_eq!(refused, 0, "every activity is accepted:\n{}", inbox.log());
    assert_eq!(
        (replies, likes),
        (expected_replies, expected_likes),
        "each activity stored exactly once"
    );

    // 2. New followers, all at once.
    let servers = followers.div_ceil(FOLLOWERS_PER_SERVER);
    let new_port = start_remotes(&remotes, 31, servers).await;
    let site_actor = format!("{base}/ap/users/blog.json");
    let mut follows: Vec<Signed> = (0..followers)
        .into_par_iter()
        .map(|n| {
            let actor = format!("http://{}:{new_port}/users/f{n}", address(31, n % servers));
            let follow = json!({
                "@context": "https://www.w3.org/ns/activitystreams",
                "id": format!("{actor}/follows/1"), "type": "Follow",
                "actor": actor, "object": site_actor,
            });
            sign(&inbox_url, &actor, &follow, &remote_key)
        })
        .collect();
    spread(&mut follows);
    let all_accepted = remotes.all_accepted.clone();
    let started = Instant::now();
    let tasks: Vec<_> = follows
        .into_iter()
        .map(|request| {
            let client = client.clone();
            tokio::spawn(async move { send(&client, &request).await })
        })
        .collect();
    let mut answered = Vec::new();
    for task in tasks {
        answered.push(task.await.unwrap());
    }
    let all_answered = started.elapsed();
    let refused = answered.iter().filter(|(s, _)| *s != 202).count();
    let waited = tokio::time::timeout(Duration::from_secs(120), all_accepted.notified()).await;
    let all_got_accept = started.elapsed();
    let got = remotes.accepted.lock().unwrap().len();
    let accepts = remotes.accepts.load(std::sync::atomic::Ordering::SeqCst);
    println!("machine load after scenario 2: {}", load());
    println!(
        "new followers: {followers} on {servers} servers: all answered in {:.2} s ({refused} refused), \
         {got} Accepts received ({} twice), all within {:.2} s",
        all_answered.as_secs_f64(),
        accepts - got,
        all_got_accept.as_secs_f64()
    );
    assert!(waited.is_ok() && refused == 0, "{}", inbox.log());
    for inbox in &mut inboxes {
        inbox.stop();
    }
}

/// The release `relais inbox` of the site in `dir`.
struct Inbox {
    child: Child,
    log: std::path::PathBuf,
}

impl Inbox {
    async fn start(dir: &Path, port: u16, store_url: Option<&str>) -> Inbox {
        let base = format!("http://127.0.0.1:{port}");
        let log = dir.join(format!("inbox-{port}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_relais"));
        if let Some(url) = store_url {
            command.env("RELAIS_STORE_URL", url);
        }
        let child = command
            .args(["inbox", "--site"])
            .arg(dir)
            .env("RELAIS_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "relais=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let inbox = Inbox { child, log };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return inbox;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the inbox did not start:\n{}", inbox.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A site with one post, its documents written as a build would, a fresh key, and rate
/// limits out of the way (all remote actors share loopback).
fn write_site(dir: &Path, base: &str, posts: usize) -> SiteConfig {
    let listen = base.trim_start_matches("http://");
    let text = format!(
        "title = \"Bench\"\nbase_url = \"{base}\"\n[fediverse]\ninbox_url = \"{base}\"\n\
         [inbox]\nlisten = \"{listen}\"\nallow_private_addresses = true\n\
         client_rate_limit_per_minute = 100000000\nrate_limit_per_minute = 100000000\n"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, &text).unwrap();
    let config = SiteConfig::parse(&text, &path).unwrap();
    let key = PrivateKey::generate().unwrap();
    key.save(&dir.join(&config.fediverse.key_path), false)
        .unwrap();
    let post = |n: usize| Document {
        kind: DocumentKind::Post,
        source: format!("content/posts/p{n}.md").into(),
        slug: format!("p{n}"),
        path: format!("/posts/p{n}/"),
        title: "Hello, followers".into(),
        untitled: false,
        date: Some(Utc::now().fixed_offset()),
        updated: None,
        draft: false,
        tags: vec![],
        summary: None,
        authors: vec![],
        language: None,
        image: None,
        content_warning: None,
        federate_as: None,
        quotes: None,
        in_reply_to: None,
        content: "<p>A post.</p>".into(),
        text: "A post.".into(),
        images: vec![],
        assets: vec![],
        word_count: 2,
        reading_minutes: 1,
        source_hash: format!("p{n}"),
        description: None,
        aliases: Vec::new(),
        weight: None,
        extra: Default::default(),
        taxonomies: Default::default(),
        kept_fields: Vec::new(),
    };
    let posts: Vec<Document> = (0..posts).map(post).collect();
    let pem = key.public_key_pem().unwrap();
    for file in relais::federation::output_files(&config, &posts, &pem) {
        let path = dir.join("public").join(file.path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, file.bytes).unwrap();
    }
    config
}
