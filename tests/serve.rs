//! `relais serve` as the real binary on a loopback port: pages, 404, live reload on change.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::common::serve::{get, serve};
use crate::common::write;

fn post(body: &str) -> String {
    format!("+++\ntitle = \"Live\"\ndate = 2024-05-01\n+++\n\n{body}\n")
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

    let (_server, address) = serve(site.path(), &[], &[]);

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

/// The first save after `serve` starts is patched like the next ones: the inbox's store,
/// created after the first build, and that build's index, written after it, used to make
/// it rebuild the whole site (269 ms instead of 14 at 10k posts).
#[test]
fn the_first_edit_while_serving_is_patched() {
    let site = tempfile::tempdir().unwrap();
    write(
        site.path(),
        "config.toml",
        "title = \"Served\"\nbase_url = \"https://served.example\"\n",
    );
    for n in 0..5 {
        write(
            site.path(),
            &format!("content/posts/p{n}.md"),
            post(&format!(
                "Post {n}.\n\n<!-- more -->\n\n{}",
                "The rest. ".repeat(60)
            )),
        );
    }
    // Sources written in the same instant as the index are parsed again to be sure.
    std::thread::sleep(Duration::from_millis(300));
    let (server, address) = serve(site.path(), &[], &[("RELAIS_BUILD_TIMINGS", "1")]);
    assert!(
        server
            .lines
            .recv_timeout(Duration::from_secs(60))
            .is_ok_and(|l| l.starts_with("Inbox on")),
        "the inbox runs"
    );
    std::thread::sleep(Duration::from_millis(300));
    while server.errors.try_recv().is_ok() {}
    // Past the summary and the start of the text that lists show: only the post's own
    // outputs change.
    write(
        site.path(),
        "content/posts/p2.md",
        post(&format!(
            "Post 2.\n\n<!-- more -->\n\n{}\n\nEdited.",
            "The rest. ".repeat(60)
        )),
    );
    let built = loop {
        let line = server
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the edit was built");
        if line.starts_with("Built") {
            break line;
        }
    };
    // stderr comes through its own pipe: read up to the build's last phase.
    let mut timings = Vec::new();
    let patched = loop {
        let line = server
            .errors
            .recv_timeout(Duration::from_secs(60))
            .expect("the build's timings");
        timings.push(line.clone());
        if line.starts_with("timing patch: index save") {
            break true;
        }
        if line.starts_with("timing index save") {
            break false;
        }
    };
    assert!(patched, "{built}\n{}", timings.join("\n"));
    let (_, page) = get(&address, "/posts/p2/");
    assert!(page.contains("Edited."), "{page}");
}

/// Every file under `dir` (`common::snapshot`) with `base` replaced by `BASE` in text.
fn snapshot(
    dir: &std::path::Path,
    base: &str,
) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    crate::common::snapshot(dir)
        .into_iter()
        .map(|(path, bytes)| match String::from_utf8(bytes) {
            Ok(text) => (path, text.replace(base, "BASE").into_bytes()),
            Err(e) => (path, e.into_bytes()),
        })
        .collect()
}

/// Posts edited in place while `relais serve` runs (the watcher then names the only files
/// that changed, and the build lists and stats nothing else), mixed with an added, a
/// renamed and a deleted post (a full listing): serve's folder ends byte-identical to a
/// cold build of the same sources for the same address.
#[test]
fn edits_in_place_while_serving_equal_a_cold_build() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    write(
        &site,
        "config.toml",
        "title = \"Served\"\nbase_url = \"https://served.example\"\npaginate_by = 2\n",
    );
    let post_at = |title: &str, day: u32, body: &str| {
        format!(
            "+++\ntitle = \"{title}\"\ndate = 2024-05-{day:02}\ntags = [\"t{}\"]\n+++\n\n{body}\n",
            day % 2
        )
    };
    for day in 1..=5 {
        write(
            &site,
            &format!("content/posts/p{day}.md"),
            post_at(&format!("Post {day}"), day, "First."),
        );
    }
    let (server, address) = serve(&site, &[], &[]);
    let lines = &server.lines;
    // Waits for the rebuild of a change, then for the watcher to have nothing more.
    let rebuilt = |what: &str| {
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("no rebuild after {what}"));
            if line.starts_with("Built") {
                break;
            }
        }
        while lines.recv_timeout(Duration::from_millis(700)).is_ok() {}
    };
    let append = |rel: &str, text: &str| {
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(site.join(rel))
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    };
    std::thread::sleep(Duration::from_millis(500));
    append("content/posts/p2.md", "\nA second paragraph.\n");
    rebuilt("an appended paragraph");
    // A new title changes the lists and the neighbours' pages.
    fs::write(
        site.join("content/posts/p4.md"),
        post_at("Post four, renamed", 4, "First."),
    )
    .unwrap();
    rebuilt("a new title");
    write(&site, "content/posts/p6.md", post_at("Post 6", 6, "New."));
    rebuilt("a new post");
    fs::rename(
        site.join("content/posts/p1.md"),
        site.join("content/posts/p1-moved.md"),
    )
    .unwrap();
    rebuilt("a rename");
    fs::remove_file(site.join("content/posts/p3.md")).unwrap();
    rebuilt("a deletion");
    append("content/posts/p6.md", "\nMore, in place.\n");
    rebuilt("an edit of the new post");
    fs::write(
        site.join("content/posts/p5.md"),
        post_at("Post 5", 5, "Rewritten body, tag unchanged."),
    )
    .unwrap();
    rebuilt("a rewritten body");
    let served = snapshot(&site.join(".relais/serve"), &format!("http://{address}"));
    drop(server);

    // The same sources, built cold for the same address.
    let cold = dir.path().join("cold");
    let mut stack = vec![site.clone()];
    while let Some(at) = stack.pop() {
        for entry in fs::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(&site).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            if first == ".relais"
                || first == "public"
                || first.to_string_lossy().starts_with("relais.db")
            {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                fs::create_dir_all(cold.join(rel).parent().unwrap()).unwrap();
                fs::copy(&path, cold.join(rel)).unwrap();
            }
        }
    }
    let config = fs::read_to_string(cold.join("config.toml")).unwrap();
    fs::write(
        cold.join("config.toml"),
        config.replace("https://served.example", &format!("http://{address}")),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["build", "--site"])
        .arg(&cold)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = snapshot(&cold.join("public"), &format!("http://{address}"));
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        built.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (path, bytes) in &served {
        assert!(
            built[path] == *bytes,
            "{} differs:\n--- serve\n{}\n--- cold\n{}",
            path.display(),
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&built[path])
        );
    }
}
