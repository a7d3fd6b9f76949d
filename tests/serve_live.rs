//! `relais serve --bind`, `--open` and build errors shown in the browser, with the real
//! binary on loopback: the live-reload stream carries a failed build's error to open pages
//! (and to pages opened while it stands) until a build succeeds and reloads them.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::serve::{get, serve, Server};
use crate::common::write;

fn site() -> tempfile::TempDir {
    let site = tempfile::tempdir().unwrap();
    write(
        site.path(),
        "config.toml",
        "title = \"Served\"\nbase_url = \"https://served.example\"\n",
    );
    write(
        site.path(),
        "content/posts/live.md",
        "+++\ntitle = \"Live\"\ndate = 2024-05-01\n+++\n\nFirst version.\n",
    );
    site
}

/// Lines printed after the address, up to the first containing `wanted`.
fn printed(server: &Server, wanted: &str) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(line) = server.lines.recv_timeout(Duration::from_secs(60)) {
        let found = line.contains(wanted);
        seen.push(line);
        if found {
            return seen;
        }
    }
    panic!("never printed {wanted:?}: {seen:?}");
}

/// An open live-reload stream, read line by line.
struct Events(BufReader<TcpStream>);

impl Events {
    fn open(address: &str) -> Events {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            stream,
            "GET /__relais/livereload HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        Events(BufReader::new(stream))
    }

    /// The next server-sent event as (event name, data lines joined by `\n`); keep-alive
    /// comments are skipped.
    fn next(&mut self) -> (String, String) {
        let (mut name, mut data) = (String::from("message"), Vec::new());
        loop {
            let mut line = String::new();
            let read = self
                .0
                .read_line(&mut line)
                .expect("an event before the timeout");
            assert!(read > 0, "the stream ended");
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(value) = line.strip_prefix("event: ").or(line.strip_prefix("event:")) {
                name = value.to_string();
            } else if let Some(value) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
                data.push(value.to_string());
            } else if line.is_empty() && !data.is_empty() {
                return (name, data.join("\n"));
            }
        }
    }
}

#[test]
fn build_errors_reach_the_page_until_fixed() {
    let site = site();
    let (_server, address) = serve(site.path(), &["--bind", "127.0.0.1"], &[]);
    let page = get(&address, "/posts/live/").1;
    assert!(page.contains("addEventListener(\"build-error\""), "{page}");
    assert!(
        page.contains("textContent"),
        "the error is shown as text: {page}"
    );

    let mut open_page = Events::open(&address);
    // The stream is subscribed once its headers are out; wait for them before editing.
    let mut status = String::new();
    open_page.0.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    write(
        site.path(),
        "content/posts/live.md",
        "+++\ntitle = \"Live\ndate = 2024-05-01\n+++\n\nBroken.\n",
    );
    let (name, data) = open_page.next();
    assert_eq!(name, "build-error", "{data}");
    assert!(data.contains("content/posts/live.md"), "{data}");

    // A page opened while the error stands is shown it at once.
    let mut later_page = Events::open(&address);
    let (name, data) = later_page.next();
    assert_eq!(
        (name.as_str(), data.contains("live.md")),
        ("build-error", true),
        "{data}"
    );

    write(
        site.path(),
        "content/posts/live.md",
        "+++\ntitle = \"Live\"\ndate = 2024-05-01\n+++\n\nFixed.\n",
    );
    assert_eq!(
        open_page.next(),
        ("message".to_string(), "reload".to_string())
    );
    assert_eq!(
        later_page.next(),
        ("message".to_string(), "reload".to_string())
    );
    assert!(get(&address, "/posts/live/").1.contains("Fixed."));
}

#[test]
fn bind_sets_the_address_and_open_runs_the_browser() {
    let site = site();
    let opened = site.path().join("opened.txt");
    let browser = site.path().join("browser.sh");
    write(
        site.path(),
        "browser.sh",
        format!("#!/bin/sh\necho \"$1\" > '{}'\n", opened.display()),
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&browser, fs::Permissions::from_mode(0o755)).unwrap();
    }
    // 127.0.0.2 is loopback too on Linux: proof that --bind is honoured, not 127.0.0.1.
    let (server, address) = serve(
        site.path(),
        &["--bind", "127.0.0.2", "--open"],
        &[("BROWSER", browser.to_str().unwrap())],
    );
    assert!(address.starts_with("127.0.0.2:"), "{address}");
    let page = get(&address, "/posts/live/").1;
    assert!(
        page.contains(&format!("href=\"http://{address}/posts/live/\"")),
        "{page}"
    );
    let mut waited = 0;
    while fs::read_to_string(&opened).unwrap_or_default().trim() != format!("http://{address}/") {
        assert!(
            waited < 300,
            "the browser was not opened on http://{address}/"
        );
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    }
    drop(server);

    // No opener at all: serving goes on, with a message.
    let empty = tempfile::tempdir().unwrap();
    let (server, _) = serve(
        site.path(),
        &["--open"],
        &[("PATH", empty.path().to_str().unwrap())],
    );
    let lines = printed(&server, "--open");
    assert!(
        lines.iter().any(|l| l.contains("no browser opener found")),
        "{lines:?}"
    );
}
