//! One post to 100 000 followers on 10 000 servers: the release `relais publish` against
//! fake Mastodon servers answering 202, each server its own host (its own loopback address,
//! 127.10.x.y). Reports wall time, requests per second and the peak RSS of `relais publish`
//! (from `/usr/bin/time -v`).
//!
//!     cargo bench --bench delivery            # 100 000 followers, 10 000 servers
//!     cargo bench --bench delivery -- 20000 2000
//!
//! The servers run in child processes (this same executable with `--serve`), at most 5 000
//! listening addresses each, so that no process needs more than the usual 20 000 files.
//! The large size (1 000 000 followers on 100 000 servers) runs 20 of them:
//!
//!     cargo bench --bench delivery -- 1000000 100000
//!
//! `PERSONAL=1` gives the followers no shared inbox (as GoToSocial's), so each gets its own
//! request: `PERSONAL=1 cargo bench --bench delivery -- 2000 1` is one server holding 2 000
//! followers, which the per-host connection limit sends to a few at a time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use relais::config::SiteConfig;
use relais::content::{Document, DocumentKind};
use relais::federation::keys::PrivateKey;
use relais::store::Store;

/// Listening addresses per server process, well under the usual 20 000 open files even
/// with a connection open to each.
const SERVERS_PER_PROCESS: usize = 5_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        let number = |i: usize| args[i].parse::<usize>().unwrap();
        serve(number(1), number(2), number(3) as u16);
        return;
    }
    // `cargo bench` passes `--bench`; sizes are the other arguments.
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let followers = sizes.first().copied().unwrap_or(100_000);
    let servers = sizes.get(1).copied().unwrap_or(10_000);
    run(followers, servers);
}

/// Loopback address of server number `n` (200 per /24, from 127.10.0.1 on: room for
/// millions).
fn address(n: usize) -> Ipv4Addr {
    let block = n / 200;
    Ipv4Addr::new(
        127,
        (10 + block / 256) as u8,
        (block % 256) as u8,
        (1 + n % 200) as u8,
    )
}

/// Child mode: servers `first..first + count`, on `port` (0: any, the same for all).
/// Prints `ready PORT`, then the number of requests served once stdin closes.
fn serve(first: usize, count: usize, port: u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        // The shared inbox, and any personal one.
        let accept = post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                StatusCode::ACCEPTED
            }
        });
        let app = Router::new()
            .route("/inbox", accept.clone())
            .route("/users/{user}/inbox", accept);
        let mut port = port;
        for n in first..first + count {
            let listener = tokio::net::TcpListener::bind(SocketAddr::from((address(n), port)))
                .await
                .unwrap_or_else(|e| panic!("bind {}:{port}: {e}", address(n)));
            port = listener.local_addr().unwrap().port();
            let app = app.clone();
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
        println!("ready {port}");
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
        })
        .await
        .unwrap();
        println!("{}", served.load(Ordering::Relaxed));
    });
}

struct ServerProcess {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    fn start(first: usize, count: usize, port: u16) -> (ServerProcess, u16) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--serve",
                &first.to_string(),
                &count.to_string(),
                &port.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("server did not start: {line:?}"))
            .parse()
            .unwrap();
        (ServerProcess { child, stdout }, port)
    }

    /// CPU seconds (user and system) the server has used so far, from `/proc` (Linux's
    /// clock tick is 1/100 s); 0 where that cannot be read.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime: fields 14 and 15 of the line; the first after `)` is field 3.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// Stops the server; returns how many requests it served.
    fn stop(mut self) -> usize {
        drop(self.child.stdin.take());
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        self.child.wait().unwrap();
        line.trim().parse().unwrap()
    }
}

fn run(followers: usize, servers: usize) {
    let site = tempfile::tempdir().unwrap();
    let config = write_site(site.path());

    let per_process = SERVERS_PER_PROCESS.min(servers.div_ceil(2)).max(1);
    let mut processes = Vec::new();
    let mut port = 0;
    for first in (0..servers).step_by(per_process) {
        let (process, bound) = ServerProcess::start(first, per_process.min(servers - first), port);
        port = bound;
        processes.push(process);
    }

    let personal = std::env::var_os("PERSONAL").is_some_and(|v| v == "1");
    let seeding = Instant::now();
    seed_followers(site.path(), &config, followers, servers, port, personal);
    eprintln!(
        "seeded {followers} followers on {servers} servers in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    let servers_cpu_before: f64 = processes.iter().map(ServerProcess::cpu_seconds).sum();
    let started = Instant::now();
    let mut publish = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_relais"))
        .args(["publish", "--site"])
        .arg(site.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut queued_after = None;
    let mut summary = String::new();
    for line in BufReader::new(publish.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("Queued") {
            queued_after = Some(started.elapsed());
        }
        summary.push_str(&line);
        summary.push('\n');
    }
    let mut time_report = String::new();
    publish
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut time_report)
        .unwrap();
    let status = publish.wait().unwrap();
    let wall = started.elapsed();
    assert!(
        status.success(),
        "relais publish failed:\n{summary}{time_report}"
    );

    let servers_cpu = processes
        .iter()
        .map(ServerProcess::cpu_seconds)
        .sum::<f64>()
        - servers_cpu_before;
    let served: usize = processes.into_iter().map(ServerProcess::stop).sum();
    let measure = |name: &str| -> f64 {
        time_report
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let peak_kib = measure("Maximum resident set size (kbytes): ");
    let cpu = measure("User time (seconds): ") + measure("System time (seconds): ");
    let queued = queued_after.unwrap_or_default();
    let sending = wall - queued;
    print!("{summary}");
    let inboxes = if personal { "personal" } else { "shared" };
    println!("followers:        {followers} on {servers} servers ({inboxes} inboxes)");
    println!("requests served:  {served}");
    println!("plan + enqueue:   {:.2} s", queued.as_secs_f64());
    println!("delivery:         {:.2} s", sending.as_secs_f64());
    println!("wall time:        {:.2} s", wall.as_secs_f64());
    println!(
        "requests/second:  {:.0} (delivery phase), {:.0} (overall)",
        served as f64 / sending.as_secs_f64(),
        served as f64 / wall.as_secs_f64()
    );
    println!("relais CPU time:  {cpu:.2} s");
    println!("servers CPU time: {servers_cpu:.2} s (the fake servers, on the same cores)");
    println!("peak RSS:         {:.1} MiB", peak_kib / 1024.0);
    if personal {
        assert_eq!(served, followers, "one request per follower");
    } else {
        assert_eq!(served, servers, "one request per shared inbox");
    }
}

/// A site with one post from today, already built, and a fresh RSA-2048 key.
fn write_site(dir: &Path) -> SiteConfig {
    let text = "title = \"Bench\"\nbase_url = \"https://blog.example\"\n\
                [inbox]\nallow_private_addresses = true\n";
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    let config = SiteConfig::parse(text, &path).unwrap();
    let key = PrivateKey::generate().unwrap();
    key.save(&dir.join(&config.fediverse.key_path), false)
        .unwrap();
    let post = Document {
        kind: DocumentKind::Post,
        source: "content/posts/hello.md".into(),
        slug: "hello".into(),
        path: "/posts/hello/".into(),
        title: "Hello, followers".into(),
        untitled: false,
        date: Some(Utc::now().fixed_offset()),
        updated: None,
        draft: false,
        tags: vec!["rust".into(), "fediverse".into()],
        summary: None,
        authors: vec![],
        language: None,
        image: None,
        content_warning: None,
        federate_as: None,
        quotes: None,
        in_reply_to: None,
        content: "<p>A post of a realistic size. ".repeat(40) + "</p>",
        text: "A post of a realistic size. ".repeat(40),
        images: vec![],
        assets: vec![],
        word_count: 240,
        reading_minutes: 1,
        source_hash: "hello".into(),
        description: None,
        aliases: Vec::new(),
        weight: None,
        extra: Default::default(),
        taxonomies: Default::default(),
        kept_fields: Vec::new(),
    };
    let pem = key.public_key_pem().unwrap();
    for file in relais::federation::output_files(&config, &[post], &pem) {
        let path = dir.join("public").join(file.path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, file.bytes).unwrap();
    }
    config
}

/// Accepted followers of the site actor, spread evenly over the servers, written in one
/// transaction (through the store's schema, as the inbox would have stored them); with a
/// shared inbox each, unless `personal`.
fn seed_followers(
    dir: &Path,
    config: &SiteConfig,
    followers: usize,
    servers: usize,
    port: u16,
    personal: bool,
) {
    let db = dir.join(&config.inbox.store);
    drop(Store::open(&db).unwrap());
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    let tx = conn.transaction().unwrap();
    {
        // followed_at: 2027-01-01T00:00:00Z, in Unix seconds as the store keeps times.
        let mut insert = tx
            .prepare(
                "INSERT INTO followers (actor_name, follower_id, follower_host, inbox, \
                 shared_inbox, follow_activity_id, state, followed_at) \
                 VALUES ('blog', ?1, ?2, ?3, ?4, ?5, 'accepted', 1798761600)",
            )
            .unwrap();
        for n in 0..followers {
            let host = format!("{}:{port}", address(n % servers));
            let id = format!("http://{host}/users/u{n}");
            insert
                .execute((
                    &id,
                    &host,
                    format!("{id}/inbox"),
                    (!personal).then(|| format!("http://{host}/inbox")),
                    format!("{id}#follow"),
                ))
                .unwrap();
        }
    }
    tx.commit().unwrap();
}
