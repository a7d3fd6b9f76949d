//! `relais serve` as the real binary on a loopback port: pages, 404, live reload on change.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::write;

/// Kills the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn post(body: &str) -> String {
    format!("+++\ntitle = \"Live\"\ndate = 2024-05-01\n+++\n\n{body}\n")
}

/// Status code and body of `GET path`.
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[test]
fn serves_pages_and_reloads_after_an_edit() {
    let site = tempfile::tempdir().unwrap();
    write(
        site.path(),
        "config.toml",
        "title = \"Served\"\nbase_url = \"https://served.example\"\n",
    );
    write(site.path(), "content/posts/live.md", post("First version."));

    let child = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["serve", "--port", "0", "--site"])
        .arg(site.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let stdout = server.0.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let address = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(120))
            .expect("serve printed its address");
        if let Some(rest) = line.split(" at http://").nth(1) {
            break rest
                .trim_end_matches(" (Ctrl-C to stop)")
                .trim_end_matches('/')
                .to_string();
        }
    };

    let (status, page) = get(&address, "/posts/live/");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("First version."), "{page}");
    assert!(
        page.contains("/__relais/livereload"),
        "reload script injected"
    );
    assert!(
        page.contains(&format!("href=\"http://{address}/posts/live/\"")),
        "links point at the local server: {page}"
    );
    let (status, _) = get(&address, "/no/such/page/");
    assert_eq!(status, 404);

    // The inbox runs in the same process: documents, WebFinger, and a guarded inbox.
    let (status, actor) = get(&address, "/ap/users/blog.json");
    assert_eq!(status, 200, "{actor}");
    assert!(
        actor.contains("content-type: application/activity+json"),
        "{actor}"
    );
    let (status, finger) = get(
        &address,
        &format!("/.well-known/webfinger?resource=acct:blog@{address}"),
    );
    assert_eq!(status, 200, "{finger}");
    assert!(finger.contains(&format!("http://{address}/ap/users/blog.json")));
    let mut unsigned = TcpStream::connect(&address).unwrap();
    write!(
        unsigned,
        "POST /ap/inbox HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/activity+json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut answer = String::new();
    unsigned.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    let mut events = TcpStream::connect(&address).unwrap();
    events
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        events,
        "GET /__relais/livereload HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut events = BufReader::new(events);
    let mut status_line = String::new();
    events.read_line(&mut status_line).unwrap();
    assert!(status_line.contains(" 200 "), "{status_line}");

    write(
        site.path(),
        "content/posts/live.md",
        post("Second version."),
    );
    let mut attempts = 0;
    loop {
        let (_, page) = get(&address, "/posts/live/");
        if page.contains("Second version.") {
            break;
        }
        attempts += 1;
        assert!(attempts < 600, "the edit was never served");
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut line = String::new();
    let mut reads = 0;
    while !line.contains("data: reload") {
        line.clear();
        let n = events.read_line(&mut line).unwrap();
        assert!(n > 0, "event stream closed");
        reads += 1;
        assert!(reads < 100, "no reload event");
    }
}
