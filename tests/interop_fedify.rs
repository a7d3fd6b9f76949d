//! Interoperability with Fedify, an ActivityPub implementation relais did not write: a blog
//! built by the real `relais` binary and served by `relais inbox` is followed by a Fedify
//! account (tests/interop/peer.mjs), publishes, edits and deletes a post, receives a reply,
//! answers it from Markdown with a mention, and moves to another account (Fedify 1.5 has no
//! FEP-044f quote requests, so quotes are tested against loopback peers in tests/quotes.rs).
//! Fedify checks every activity relais sends with its default HTTP signature verification.
//!
//! The peer also runs the blog's HTTPS front (tests/interop/front.mjs): WebFinger is
//! HTTPS-only, so `base_url` is `https://127.0.0.1:FRONT` and the front forwards to
//! `relais inbox`, the way a static host proxies to it in production.
//!
//! Needs Node.js 20+ and npm. Without them the test says so and passes, unless
//! RELAIS_REQUIRE_INTEROP is set (as CI does), when it fails instead.

use crate::common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::write;
use serde_json::{json, Value};

/// How long one step may take before the test gives up: a guard against hangs, far above
/// what any step needs, not a speed check.
const STEP_LIMIT: Duration = Duration::from_secs(60);
const AS_PUBLIC: &str = "https://www.w3.org/ns/activitystreams#Public";

/// A child process killed when the test ends, pass or fail.
struct Running {
    name: &'static str,
    child: Child,
    /// The peer exits when its stdin closes, should this process die without running Drop.
    _stdin: Option<ChildStdin>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early with {status}", self.name);
        }
    }
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The major version of the `node` on PATH, or why there is none.
fn node_major() -> Result<u32, String> {
    let output = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node not found: {e}"))?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .ok_or(format!("cannot read node version {version:?}"))
}

/// Whether the peer can run here; explains and returns false when it cannot and CI does
/// not require it.
fn node_available() -> bool {
    let problem = match (node_major(), Command::new("npm").arg("--version").output()) {
        (Err(why), _) => why,
        (Ok(major), _) if major < 20 => format!("node {major} is too old: Fedify 1.5 needs 20+"),
        (Ok(_), Err(e)) => format!("npm not found: {e}"),
        (Ok(_), Ok(_)) => return true,
    };
    if std::env::var_os("RELAIS_REQUIRE_INTEROP").is_some() {
        panic!("RELAIS_REQUIRE_INTEROP is set but the Fedify peer cannot run: {problem}");
    }
    eprintln!("SKIPPED interop_fedify: {problem}; install Node.js 20+ and npm to run it");
    false
}

/// Installs the pinned peer dependencies (`npm ci` honours package-lock.json) unless
/// node_modules was installed from the current lock file.
fn install_peer() {
    common::npm_ci(&interop_dir());
}

/// Runs `relais ARGS --site SITE` to completion and insists that it succeeds.
fn relais(args: &[&str], site: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(args)
        .arg("--site")
        .arg(site)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "relais {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!("relais {args:?}:\n{stdout}{stderr}");
    stdout
}

struct Peer {
    process: Running,
    control: String,
    blog_origin: String,
}

/// Starts the Fedify peer and its HTTPS front before `relais inbox` on `inbox_port`.
fn start_peer(inbox_port: u16) -> Peer {
    let dir = interop_dir();
    let mut child = Command::new("node")
        .arg("peer.mjs")
        .arg("--upstream")
        .arg(format!("127.0.0.1:{inbox_port}"))
        .current_dir(&dir)
        .env("NODE_EXTRA_CA_CERTS", dir.join("tls/ca.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node peer.mjs");
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    let mut process = Running {
        name: "Fedify peer",
        child,
        _stdin: stdin,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(STEP_LIMIT)
        .unwrap_or_else(|e| panic!("the peer printed no ready line: {e}"));
    process.assert_alive();
    let ready: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["ready"], true, "{line}");
    Peer {
        process,
        control: ready["peer"].as_str().unwrap().to_string(),
        blog_origin: ready["blog_origin"].as_str().unwrap().to_string(),
    }
}

fn site_config(blog_origin: &str, inbox_port: u16) -> String {
    format!(
        "title = \"Interop\"\n\
         base_url = \"{blog_origin}\"\n\
         [fediverse]\n\
         username = \"blog\"\n\
         inbox_url = \"http://127.0.0.1:{inbox_port}\"\n\
         [inbox]\n\
         listen = \"127.0.0.1:{inbox_port}\"\n\
         allow_private_addresses = true\n\
         serve_public = true\n"
    )
}

fn post(title: &str, date: &str, updated: Option<&str>, body: &str) -> String {
    let updated = updated
        .map(|u| format!("updated = {u}\n"))
        .unwrap_or_default();
    format!("+++\ntitle = \"{title}\"\ndate = {date}\n{updated}+++\n\n{body}\n")
}

/// Waits until `relais inbox` accepts connections.
fn wait_listening(inbox: &mut Running, port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        inbox.assert_alive();
        assert!(
            start.elapsed() < STEP_LIMIT,
            "relais inbox is not listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Control {
    http: reqwest::Client,
    base: String,
}

impl Control {
    async fn post(&self, route: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/control/{route}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert!(
            status.is_success(),
            "peer {route} failed: {status} {answer:#}"
        );
        answer
    }

    /// The first inbox event after `after` matching `query`, once Fedify has verified it.
    async fn wait(&self, after: u64, query: &[(&str, &str)]) -> Value {
        let after = after.to_string();
        let mut params = vec![("after", after.as_str())];
        params.extend_from_slice(query);
        let response = self
            .http
            .get(format!("{}/control/wait", self.base))
            .query(&params)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert!(
            status.is_success(),
            "the peer received no {query:?}: {status} {answer:#}"
        );
        answer
    }
}

fn seq(event: &Value) -> u64 {
    event["seq"].as_u64().unwrap()
}

/// The JSON of a collection and of its first page, whether embedded or linked.
async fn collection_text(http: &reqwest::Client, url: &str) -> String {
    let get = |url: String| async move {
        http.get(url)
            .header("Accept", "application/activity+json")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let text = get(url.to_string()).await;
    let first = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|c| c["first"].as_str().map(str::to_string));
    match first {
        Some(page) => format!("{text}\n{}", get(page).await),
        None => text,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fedify_follows_receives_and_replies() {
    if !node_available() {
        return;
    }
    install_peer();

    let inbox_port = common::free_port();
    let mut peer = start_peer(inbox_port);
    let blog = peer.blog_origin.clone();
    let host = blog.trim_start_matches("https://").to_string();
    let control = Control {
        http: reqwest::Client::builder()
            .timeout(STEP_LIMIT * 2)
            .build()
            .unwrap(),
        base: peer.control.clone(),
    };
    let blog_http = reqwest::Client::builder()
        .tls_certs_merge([
            reqwest::Certificate::from_pem(include_bytes!("interop/tls/ca.pem")).unwrap(),
        ])
        .timeout(STEP_LIMIT)
        .build()
        .unwrap();

    // The peer must refuse what nobody signed, or its acceptance below would prove nothing.
    let unsigned = control
        .http
        .post(format!("{}/users/alice/inbox", peer.control))
        .header("Content-Type", "application/activity+json")
        .body(
            json!({
                "@context": "https://www.w3.org/ns/activitystreams",
                "id": format!("{blog}/forged"),
                "type": "Create",
                "actor": format!("{blog}/ap/users/blog.json"),
                "object": { "type": "Note", "content": "forged" },
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 401, "unsigned POST accepted");

    let site = tempfile::tempdir().unwrap();
    let site_dir = site.path();
    write(site_dir, "config.toml", site_config(&blog, inbox_port));
    write(
        site_dir,
        "content/posts/older.md",
        post("An older post", "2024-01-01", None, "Written long ago."),
    );
    relais(&["build"], site_dir);

    let inbox = Command::new(env!("CARGO_BIN_EXE_relais"))
        .arg("inbox")
        .arg("--site")
        .arg(site_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut inbox = Running {
        name: "relais inbox",
        child: inbox,
        _stdin: None,
    };
    wait_listening(&mut inbox, inbox_port);

    // 1. WebFinger over HTTPS, the actor as activity+json, Follow, Accept.
    let actor_id = format!("{blog}/ap/users/blog.json");
    let key_id = format!("{actor_id}#main-key");
    let followed = control
        .post("follow", json!({ "handle": format!("@blog@{host}") }))
        .await;
    assert_eq!(
        followed["webfinger"]["subject"],
        format!("acct:blog@{host}")
    );
    let actor = &followed["actor"];
    assert_eq!(actor["id"], actor_id);
    assert_eq!(actor["type"], "Person");
    assert_eq!(actor["preferredUsername"], "blog");
    assert_eq!(actor["inbox"], format!("{blog}/ap/users/blog/inbox"));
    assert_eq!(actor["sharedInbox"], format!("{blog}/ap/inbox"));
    assert_eq!(actor["publicKeyId"], key_id);
    assert_eq!(actor["publicKeyOwner"], actor_id);

    let accept = control.wait(0, &[("type", "Accept")]).await;
    assert_eq!(accept["actor"], actor_id);
    assert_eq!(accept["objectId"], followed["follow"]);
    assert_eq!(accept["signedBy"], key_id);

    // 2. A first publish records the existing posts; then a new post is delivered.
    relais(&["publish"], site_dir);
    let now = chrono::Utc::now();
    let date =
        (now - chrono::Duration::minutes(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    write(
        site_dir,
        "content/posts/hello-fedify.md",
        post(
            "Hello Fedify",
            &date,
            None,
            "A post delivered to a server relais did not write.",
        ),
    );
    relais(&["build"], site_dir);
    relais(&["publish"], site_dir);
    let object_id = format!("{blog}/ap/posts/hello-fedify.json");
    let create = control
        .wait(
            seq(&accept) + 1,
            &[("type", "Create"), ("object", &object_id)],
        )
        .await;
    assert_eq!(create["actor"], actor_id);
    assert_eq!(create["signedBy"], key_id);
    let note = &create["object"];
    assert_eq!(note["type"], "Note");
    assert_eq!(note["attributedTo"], actor_id);
    assert_eq!(note["url"], format!("{blog}/posts/hello-fedify/"));
    assert!(note["to"].as_array().unwrap().contains(&json!(AS_PUBLIC)));
    let content = note["content"].as_str().unwrap();
    assert!(content.contains("Hello Fedify"), "{content}");
    assert!(
        content.contains("a server relais did not write"),
        "{content}"
    );

    // Replayed as delivered, Fedify knows the activity; with its body altered, the Digest
    // no longer matches and Fedify refuses it.
    let delivery = create["deliverySeq"].as_u64().unwrap();
    let replayed = control
        .post("replay", json!({ "seq": delivery, "tamper": false }))
        .await;
    assert_eq!(replayed["status"], 202, "{replayed:#}");
    let tampered = control
        .post("replay", json!({ "seq": delivery, "tamper": true }))
        .await;
    assert_eq!(tampered["status"], 401, "{tampered:#}");

    // 3. Fedify replies; the reply is stored and shown on the rebuilt page.
    let replied = control
        .post(
            "reply",
            json!({
                "inReplyTo": object_id,
                "content": "<p>Greetings from Fedify, reply-token-7f3a.</p>",
            }),
        )
        .await;
    let note_id = replied["note"].as_str().unwrap().to_string();
    let replies_url = format!("{blog}/ap/posts/hello-fedify/replies");
    let start = Instant::now();
    // The inbox may store the reply after answering 202; wait until its collection lists it.
    while !collection_text(&blog_http, &replies_url)
        .await
        .contains(&note_id)
    {
        inbox.assert_alive();
        assert!(
            start.elapsed() < STEP_LIMIT,
            "{replies_url} never listed {note_id}:\n{}",
            collection_text(&blog_http, &replies_url).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relais(&["build"], site_dir);
    let page = fs::read_to_string(site_dir.join("public/posts/hello-fedify/index.html")).unwrap();
    assert!(page.contains("reply-token-7f3a"), "reply missing:\n{page}");

    // 4. An edit reaches the peer as an Update of the same object.
    let updated = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    write(
        site_dir,
        "content/posts/hello-fedify.md",
        post(
            "Hello Fedify",
            &date,
            Some(&updated),
            "A post delivered to a server relais did not write, edit-token-41c9.",
        ),
    );
    relais(&["build"], site_dir);
    relais(&["publish"], site_dir);
    let update = control
        .wait(
            seq(&create) + 1,
            &[
                ("type", "Update"),
                ("object", &object_id),
                ("contains", "edit-token-41c9"),
            ],
        )
        .await;
    assert_eq!(update["actor"], actor_id);
    assert_eq!(update["signedBy"], key_id);
    assert_ne!(
        update["id"], create["id"],
        "an Update needs an id of its own"
    );

    // 5. Removing the post reaches the peer as a Delete of that object.
    fs::remove_file(site_dir.join("content/posts/hello-fedify.md")).unwrap();
    relais(&["build"], site_dir);
    relais(&["publish"], site_dir);
    let delete = control
        .wait(
            seq(&update) + 1,
            &[("type", "Delete"), ("object", &object_id)],
        )
        .await;
    assert_eq!(delete["actor"], actor_id);
    assert_eq!(delete["signedBy"], key_id);

    // 6. The blog answers Alice's reply from Markdown (in_reply_to) and mentions her: the
    //    build resolves her through Fedify's WebFinger and actor, Fedify reads the reply's
    //    inReplyTo, cc and Mention tag.
    let alice_id = format!("{}/users/alice", peer.control);
    let alice_handle = format!("@alice@{}", peer.control.trim_start_matches("http://"));
    write(
        site_dir,
        "content/posts/answer.md",
        format!(
            "+++\ntitle = \"An answer\"\ndate = {date}\nin_reply_to = \"{note_id}\"\n+++\n\n\
             Thanks {alice_handle}, answer-token-2d8e.\n"
        ),
    );
    relais(&["build"], site_dir);
    relais(&["publish"], site_dir);
    let answer_id = format!("{blog}/ap/posts/answer.json");
    let answer = control
        .wait(
            seq(&delete) + 1,
            &[("type", "Create"), ("object", &answer_id)],
        )
        .await;
    assert_eq!(answer["signedBy"], key_id);
    assert_eq!(answer["object"]["inReplyTo"], note_id);
    assert!(
        answer["object"]["cc"]
            .as_array()
            .unwrap()
            .contains(&json!(alice_id)),
        "{answer:#}"
    );
    assert_eq!(
        answer["mentions"],
        json!([{ "href": alice_id, "name": alice_handle }])
    );
    let content = answer["object"]["content"].as_str().unwrap();
    assert!(
        content.contains("class=\"u-url mention\"") && content.contains("answer-token-2d8e"),
        "{content}"
    );

    // 7. The blog moves to another account (`home` on the Fedify server, which lists the
    //    blog as an alias): Fedify, a follower, verifies the signed Move.
    let alias = control.post("alias", json!({ "alias": actor_id })).await;
    let home = alias["home"].as_str().unwrap().to_string();
    relais(&["move", "--to", &home], site_dir);
    let moved = control
        .wait(seq(&answer) + 1, &[("type", "Move"), ("object", &actor_id)])
        .await;
    assert_eq!(moved["actor"], actor_id);
    assert_eq!(moved["target"], home);
    assert_eq!(moved["signedBy"], key_id);
    relais(&["build"], site_dir);
    let actor_doc: Value = serde_json::from_str(
        &fs::read_to_string(site_dir.join("public/ap/users/blog.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(actor_doc["movedTo"], home);

    inbox.assert_alive();
    peer.process.assert_alive();
}

/// A one-post site (`extra_config` before its `[fediverse]` table) whose interactions come
/// from an inbox service, built by the real binary.
fn one_post_site(extra_config: &str, date: &str) -> tempfile::TempDir {
    let site = tempfile::tempdir().unwrap();
    write(
        site.path(),
        "config.toml",
        format!(
            "title = \"T\"\nbase_url = \"https://blog.example\"\n{extra_config}\
             [fediverse]\ninbox_url = \"https://inbox.blog.example\"\n"
        ),
    );
    write(
        site.path(),
        "content/posts/hello.md",
        format!("+++\ntitle = \"Hello\"\ndate = {date}\n+++\n\nText.\n"),
    );
    common::build_site(site.path());
    site
}

/// Runs the built page script of the post of [`one_post_site`] in jsdom, the inbox
/// endpoint answering `data`; what the page then shows.
fn run_page_script(site: &Path, data: &Value) -> Value {
    let public = site.join("public");
    let data_path = site.join("interactions.json");
    fs::write(&data_path, data.to_string()).unwrap();
    let output = Command::new("node")
        .arg(interop_dir().join("page_script.mjs"))
        .arg(public.join("posts/hello/index.html"))
        .arg(public.join("interactions.js"))
        .arg(&data_path)
        .arg("https://blog.example/posts/hello/")
        .output()
        .unwrap();
    common::assert_success(&output, "page_script.mjs");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The default theme's page script, run in jsdom on a page built by the real binary: it asks
/// the inbox endpoint the page names and redraws replies and reactions from the answer,
/// never turning a remote `javascript:` URL into a link.
#[test]
fn page_script_redraws_fresh_interactions() {
    if !node_available() {
        return;
    }
    install_peer();
    let site = one_post_site("", "2026-01-01");
    let page = site.path().join("public/posts/hello/index.html");
    assert!(fs::read_to_string(&page)
        .unwrap()
        .contains("No replies yet."));

    let reactor = |n: u32| {
        json!({ "actor_id": format!("https://m.example/users/r{n}"), "name": format!("R{n}"),
                "url": format!("https://m.example/@r{n}"), "avatar": null })
    };
    let reply = |id: &str, depth: u32, author_url: &str| {
        json!({ "id": id, "url": id, "in_reply_to": "x", "author_id": "https://m.example/users/a",
                "author_name": "Alice <b>", "author_handle": "@alice@m.example",
                "author_url": author_url, "author_avatar": null,
                "content": "<p>Fresh reply</p>", "published": "2026-02-01T10:00:00Z", "depth": depth })
    };
    let data = json!({
        "replies": [
            reply("https://m.example/n/1", 0, "https://m.example/@alice"),
            reply("https://m.example/n/2", 1, "javascript:alert(1)"),
        ],
        "likes": [reactor(1), reactor(2)],
        "boosts": [reactor(3)],
        "quotes": [
            { "actor_id": "https://q.example/users/quinn", "name": "",
              "actor_url": "https://q.example/@quinn", "avatar": null,
              "url": "https://q.example/@quinn/7" },
            { "actor_id": "https://q.example/users/evil", "name": "Evil",
              "actor_url": "https://q.example/@evil", "avatar": null,
              "url": "javascript:alert(1)" },
        ],
    });
    let shown = run_page_script(site.path(), &data);
    assert_eq!(
        shown["requested"],
        json!(["/ap/interactions?post=https%3A%2F%2Fblog.example%2Fap%2Fposts%2Fhello.json"])
    );
    assert_eq!(shown["counts"], "2 likes · 1 boost");
    assert_eq!(shown["reactors"], 3);
    assert_eq!(shown["noReplies"], 0);
    let replies = shown["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 2);
    assert_eq!(
        replies[0]["author"], "Alice <b>",
        "names are text, not HTML"
    );
    assert_eq!(replies[0]["authorIsLink"], true);
    assert_eq!(replies[0]["content"], "<p>Fresh reply</p>");
    assert_eq!(replies[1]["depth"], "1");
    assert_eq!(replies[1]["authorIsLink"], false);
    assert_eq!(
        shown["quotedBy"],
        json!([
            { "text": "Q quinn@q.example", "href": "https://q.example/@quinn/7" },
            { "text": "E Evil", "href": null },
        ])
    );
    assert_eq!(shown["javascriptLinks"], 0);
}

/// The page script prints reply times with the site's pattern and month names (the ones the
/// build uses, here in French), and a liker whose profile was never fetched (their name is
/// their actor URL) gets `user@host` and its initial, not the "h" of "https".
#[test]
fn page_script_formats_like_the_build() {
    if !node_available() {
        return;
    }
    install_peer();
    let site = one_post_site("language = \"fr\"\n", "2025-02-11");
    let html = fs::read_to_string(site.path().join("public/posts/hello/index.html")).unwrap();
    assert!(html.contains(">11 février 2025</time>"), "{html}");

    let data = json!({
        "replies": [{ "id": "https://m.example/n/1", "url": "https://m.example/n/1",
            "in_reply_to": "x", "author_id": "https://m.example/users/a", "author_name": "Alice",
            "author_handle": "@alice@m.example", "author_url": "https://m.example/@alice",
            "author_avatar": null, "content": "<p>Hi</p>",
            "published": "2025-02-11T10:00:00Z", "depth": 0 }],
        "likes": [
            { "actor_id": "https://h.example/users/bob", "name": "https://h.example/users/bob",
              "url": "https://h.example/users/bob", "avatar": null },
            { "actor_id": "https://m.example/users/eve", "name": "Ève",
              "url": "https://m.example/@eve", "avatar": null },
        ],
        "boosts": [],
    });
    let shown = run_page_script(site.path(), &data);
    assert_eq!(shown["replies"][0]["time"], "11 février 2025, 10:00 UTC");
    assert_eq!(
        shown["fallbacks"],
        json!([
            { "title": "bob@h.example", "label": "bob@h.example", "text": "B" },
            { "title": "Ève", "label": "Ève", "text": "È" },
        ])
    );
}
