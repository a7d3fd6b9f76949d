//! `relais federate` on sites built by real generators: Hugo and Jekyll (Debian packages),
//! Eleventy 3 (npm, pinned in `tests/bridge/eleventy/package-lock.json`). Each fixture under
//! `tests/bridge/` is built by its generator, federated by the real binary, and its
//! documents are compared with what `relais build` writes; then a follow, a delivered
//! `Create` and a reply go round on loopback with a fake Mastodon server.
//!
//! A generator that is missing makes its part skip with a message, unless
//! RELAIS_REQUIRE_GENERATORS is set (as CI does), when it fails instead.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::peer::Peer;
use crate::common::{assert_success, read_json, relais, stderr, stdout, BASE_URL};
use serde_json::{json, Value};

const SITE_KEY: &str = include_str!("fixtures/site_key.pem");
const INBOX_URL: &str = "https://inbox.relais.example";
const GUARD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Generator {
    Hugo,
    Jekyll,
    Eleventy,
}

impl Generator {
    fn name(self) -> &'static str {
        match self {
            Generator::Hugo => "hugo",
            Generator::Jekyll => "jekyll",
            Generator::Eleventy => "eleventy",
        }
    }

    /// The fixture folder under `tests/bridge/`.
    fn fixture(self) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bridge");
        match self {
            Generator::Eleventy => dir.join("eleventy/site"),
            other => dir.join(other.name()),
        }
    }

    /// Where the generator writes the site.
    fn out(self, dir: &Path) -> PathBuf {
        match self {
            Generator::Hugo => dir.join("public"),
            Generator::Jekyll | Generator::Eleventy => dir.join("_site"),
        }
    }

    /// Whether the generator can run here; explains and returns false when it cannot and
    /// CI does not require it.
    fn available(self) -> bool {
        let (program, args): (&str, &[&str]) = match self {
            Generator::Hugo => ("hugo", &["version"]),
            Generator::Jekyll => ("jekyll", &["--version"]),
            Generator::Eleventy => ("node", &["--version"]),
        };
        let problem = match Command::new(program).args(args).output() {
            Ok(out) if out.status.success() => {
                if self == Generator::Eleventy && !node_20(&String::from_utf8_lossy(&out.stdout)) {
                    "node is older than 20 (Eleventy 3 needs 20+)".to_string()
                } else {
                    return true;
                }
            }
            Ok(out) => format!(
                "`{program}` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("`{program}` not found: {e}"),
        };
        if std::env::var_os("RELAIS_REQUIRE_GENERATORS").is_some() {
            panic!(
                "RELAIS_REQUIRE_GENERATORS is set but {} cannot run: {problem}",
                self.name()
            );
        }
        eprintln!(
            "SKIPPED bridge/{}: {problem}; install it (.ci/run does) to run this part",
            self.name()
        );
        false
    }

    /// Copies the fixture to `dir` and builds it for `base` (no trailing slash).
    fn build(self, dir: &Path, base: &str) -> PathBuf {
        copy_fixture(&self.fixture(), dir);
        let output = match self {
            Generator::Hugo => Command::new("hugo")
                .args(["--quiet", "--baseURL", &format!("{base}/"), "-s"])
                .arg(dir)
                .arg("-d")
                .arg(self.out(dir))
                .output(),
            Generator::Jekyll => {
                fs::write(dir.join("_test.yml"), format!("url: \"{base}\"\n")).unwrap();
                Command::new("jekyll")
                    .args(["build", "--quiet", "--config", "_config.yml,_test.yml"])
                    .current_dir(dir)
                    .output()
            }
            Generator::Eleventy => {
                let modules = install_eleventy();
                std::os::unix::fs::symlink(&modules, dir.join("node_modules")).unwrap();
                Command::new("node")
                    .arg(modules.join("@11ty/eleventy/cmd.cjs"))
                    .args(["--config=eleventy.config.mjs", "--quiet", "--output=_site"])
                    .env("SITE_URL", format!("{base}/"))
                    .current_dir(dir)
                    .output()
            }
        }
        .unwrap_or_else(|e| panic!("running {}: {e}", self.name()));
        assert_success(&output, self.name());
        self.out(dir)
    }
}

fn node_20(version: &str) -> bool {
    version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| m >= 20)
}

/// `npm ci` of the pinned Eleventy unless node_modules matches the lock file already.
fn install_eleventy() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bridge/eleventy");
    common::npm_ci(&dir);
    dir.join("node_modules")
}

/// Every file under `dir`: relative path → bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    common::files_under(dir, "/")
        .into_iter()
        .map(|(path, file)| (path, fs::read(file).unwrap()))
        .collect()
}

/// Copies a generator's fixture without what installs and builds leave in it.
fn copy_fixture(from: &Path, to: &Path) {
    common::copy_dir(from, to, &|name| {
        name == "node_modules" || name == "_site" || name == "public"
    });
}

fn write_config(dir: &Path, base: &str, inbox_url: &str, extra: &str) {
    fs::write(
        dir.join("config.toml"),
        format!(
            "title = \"Bridged blog\"\nbase_url = \"{base}\"\ndescription = \"A blog\"\n\
             [fediverse]\nusername = \"blog\"\ninbox_url = \"{inbox_url}\"\n{extra}"
        ),
    )
    .unwrap();
    fs::write(dir.join("relais-key.pem"), SITE_KEY).unwrap();
}

fn federate(dir: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "federate",
        "--site",
        dir.to_str().unwrap(),
        "--site-dir",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    relais(&args)
}

/// What one generator's fixture must give.
struct Expected {
    /// Page path of the first post, its object path, words only its full text has.
    page: &'static str,
    object: &'static str,
    full_text: &'static str,
    hashtags: &'static [&'static str],
    attachment: (&'static str, &'static str),
    /// Extra `relais federate` arguments.
    args: &'static [&'static str],
}

fn expected(generator: Generator) -> Expected {
    match generator {
        Generator::Hugo => Expected {
            page: "/posts/hello-hugo/",
            object: "/ap/posts/hello-hugo.json",
            full_text: "only on its page, never in the RSS feed",
            hashtags: &["#Rust", "#OpenWeb"],
            attachment: ("/posts/hello-hugo/cat.png", "A cat asleep"),
            // Hugo's home feed lists every page, the About page too: the section feed only.
            args: &["--feed-from-out", "posts/index.xml"],
        },
        Generator::Jekyll => Expected {
            page: "/2024/05/01/hello-jekyll.html",
            object: "/ap/2024/05/01/hello-jekyll.html.json",
            full_text: "<a href=\"https://relais.example/about/\">relative link</a>",
            hashtags: &["#Rust", "#OpenWeb"],
            attachment: ("/assets/lake.png", ""),
            args: &[],
        },
        Generator::Eleventy => Expected {
            page: "/posts/hello-eleventy/",
            object: "/ap/posts/hello-eleventy.json",
            full_text: "with a picture",
            hashtags: &["#Rust", "#OpenWeb"],
            attachment: ("/posts/hello-eleventy/lake.png", "A lake at dawn"),
            args: &[],
        },
    }
}

/// The documents of a `relais build` of one post at `/posts/hello/`, for shape comparisons.
fn relais_build_reference() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), BASE_URL, INBOX_URL, "");
    common::write(
        dir.path(),
        "content/posts/hello-hugo.md",
        "+++\ntitle = \"Hello\"\ndate = 2024-05-01\ntags = [\"rust\"]\n+++\n\nHello.\n",
    );
    common::build_site(dir.path());
    let public = dir.path().join("public");
    (dir, public)
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// Removes what `relais federate` adds to a post page; what is left must be the page the
/// generator wrote, byte for byte.
fn without_federate_additions(page: &str, object: &str) -> String {
    let mut page = page.replace(
        &format!(
            "<link rel=\"alternate\" type=\"application/activity+json\" href=\"{object}\">\n\
             <meta name=\"fediverse:creator\" content=\"@blog@relais.example\">\n"
        ),
        "",
    );
    let start = page
        .find("\n<section class=\"fediverse-interactions\"")
        .expect("interactions section");
    let end_marker = "<script src=\"/interactions.js\" defer></script>";
    let end = page.find(end_marker).expect("interactions script") + end_marker.len();
    page.replace_range(start..end, "");
    page
}

fn check_generator(generator: Generator, reference: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let out = generator.build(dir.path(), BASE_URL);
    let generated = snapshot(&out);
    write_config(dir.path(), BASE_URL, INBOX_URL, "");
    let want = expected(generator);
    let mut args: Vec<String> = vec!["--comments".into()];
    if let ["--feed-from-out", feed] = want.args {
        args.push("--feed".into());
        args.push(out.join(feed).to_string_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = federate(dir.path(), &out, &args);
    assert_success(&first, "relais federate");
    assert!(
        stdout(&first).contains("Federated 2 post(s)"),
        "{}: {}{}",
        generator.name(),
        stdout(&first),
        stderr(&first)
    );

    // The same documents as `relais build`: same files for the actor, same shapes.
    let object = read_json(&out.join(want.object.trim_start_matches('/')));
    let reference_object = read_json(&reference.join("ap/posts/hello-hugo.json"));
    assert_eq!(
        keys(&object),
        keys(&reference_object),
        "{}",
        generator.name()
    );
    assert_eq!(object["id"], format!("{BASE_URL}{}", want.object));
    assert_eq!(object["url"], format!("{BASE_URL}{}", want.page));
    assert_eq!(
        object["replies"],
        format!("{BASE_URL}/ap{}/replies", want.page.trim_end_matches('/'))
    );
    let content = object["content"].as_str().unwrap();
    assert!(
        content.contains(want.full_text),
        "{}: {content}",
        generator.name()
    );
    let hashtags: Vec<&str> = object["tag"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(hashtags, want.hashtags, "{}", generator.name());
    let attachment = &object["attachment"][0];
    assert_eq!(
        attachment["url"],
        format!("{BASE_URL}{}", want.attachment.0)
    );
    assert_eq!(attachment["name"], want.attachment.1);
    assert_eq!(attachment["mediaType"], "image/png");
    assert!(object["published"]
        .as_str()
        .unwrap()
        .starts_with("2024-05-01T"));
    if generator != Generator::Hugo {
        // An object id `relais build` gives a post at the same page path.
        assert_eq!(
            reference_object["id"],
            format!("{BASE_URL}/ap/posts/hello-hugo.json")
        );
    } else {
        assert_eq!(object["id"], reference_object["id"]);
    }
    for (path, reference_path) in [
        ("ap/users/blog.json", "ap/users/blog.json"),
        ("ap/users/blog/outbox.json", "ap/users/blog/outbox.json"),
        ("webfinger/blog.json", "webfinger/blog.json"),
        ("nodeinfo/2.1.json", "nodeinfo/2.1.json"),
    ] {
        let ours = read_json(&out.join(path));
        let theirs = read_json(&reference.join(reference_path));
        assert_eq!(keys(&ours), keys(&theirs), "{path}");
    }
    let actor = read_json(&out.join("ap/users/blog.json"));
    let reference_actor = read_json(&reference.join("ap/users/blog.json"));
    assert_eq!(actor["id"], reference_actor["id"]);
    assert_eq!(actor["publicKey"], reference_actor["publicKey"]);
    assert_eq!(actor["inbox"], reference_actor["inbox"]);
    let outbox_page = read_json(&out.join("ap/users/blog/outbox/page-1.json"));
    let items = outbox_page["orderedItems"].as_array().unwrap();
    assert_eq!(items.len(), 2, "both posts in the outbox");
    assert_eq!(items[1]["object"]["id"], object["id"], "newest first");
    assert_eq!(items[1]["type"], "Create");
    // The host files carry exactly relais build's rules.
    let headers = fs::read_to_string(out.join("_headers")).unwrap();
    let reference_headers = fs::read_to_string(reference.join("_headers")).unwrap();
    assert!(headers.contains(&reference_headers), "{headers}");
    let redirects = fs::read_to_string(out.join("_redirects")).unwrap();
    assert!(redirects.contains(&fs::read_to_string(reference.join("_redirects")).unwrap()));

    // Pages: the post pages gain their links and nothing else; every other file is as the
    // generator wrote it.
    let federated = snapshot(&out);
    let page_key = common_page_key(want.page);
    for (path, bytes) in &generated {
        let now = &federated[path];
        if path.ends_with(".html") && now != bytes {
            let page = String::from_utf8(now.clone()).unwrap();
            let object_url = if *path == page_key {
                format!("{BASE_URL}{}", want.object)
            } else {
                page.split("type=\"application/activity+json\" href=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap()
                    .to_string()
            };
            assert_eq!(
                without_federate_additions(&page, &object_url),
                String::from_utf8(bytes.clone()).unwrap(),
                "{}: {path} changed beyond the added links",
                generator.name()
            );
        } else {
            assert_eq!(now, bytes, "{}: {path} changed", generator.name());
        }
    }
    assert_ne!(generated[&page_key], federated[&page_key]);
    assert!(federated.contains_key("/interactions.js"));

    // A second run changes no byte.
    let second = federate(dir.path(), &out, &args);
    assert_success(&second, "second relais federate");
    assert!(
        stdout(&second).contains("0 page(s) linked, 2 already linked; 0 file(s) written"),
        "{}",
        stdout(&second)
    );
    assert_eq!(
        snapshot(&out),
        federated,
        "{}: not idempotent",
        generator.name()
    );
}

/// The snapshot key of a page path (`/posts/a/` → `/posts/a/index.html`).
fn common_page_key(page: &str) -> String {
    if page.ends_with('/') {
        format!("{page}index.html")
    } else {
        page.to_string()
    }
}

#[test]
fn sites_built_by_hugo_jekyll_and_eleventy_federate_like_relais_build() {
    let (_keep, reference) = relais_build_reference();
    let mut ran = 0;
    for generator in [Generator::Hugo, Generator::Jekyll, Generator::Eleventy] {
        if generator.available() {
            check_generator(generator, &reference);
            ran += 1;
        }
    }
    eprintln!("federated the sites of {ran} generator(s)");
}

/// A built site written by hand: a feed and its pages.
fn hand_built(dir: &Path, entries: &[(&str, bool)]) -> PathBuf {
    let out = dir.join("public");
    let mut items = String::new();
    for (path, with_page) in entries {
        items.push_str(&format!(
            "<item><title>Post {path}</title><link>{path}</link>\
             <pubDate>Wed, 01 May 2024 10:00:00 +0000</pubDate>\
             <description>&lt;p&gt;Body of {path}&lt;/p&gt;</description></item>"
        ));
        if *with_page {
            if let Some(site_path) = path.strip_prefix(BASE_URL) {
                common::write(
                    &out,
                    common_page_key(site_path).trim_start_matches('/'),
                    format!("<!doctype html><html><head><title>{path}</title></head><body><p>x</p></body></html>"),
                );
            }
        }
    }
    common::write(
        &out,
        "rss.xml",
        format!(
            "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>T</title>\
             <link>{BASE_URL}/</link><description>d</description>{items}</channel></rss>"
        ),
    );
    out
}

#[test]
fn a_feed_and_site_that_disagree_are_named_and_posts_outlive_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), BASE_URL, INBOX_URL, "");
    let a = format!("{BASE_URL}/notes/a/");
    let b = format!("{BASE_URL}/notes/b.html");
    let elsewhere = "https://elsewhere.example/post/";
    let out = hand_built(dir.path(), &[(&a, true), (&b, true), (elsewhere, false)]);
    let run = federate(dir.path(), &out, &[]);
    assert_success(&run, "relais federate");
    assert!(
        stderr(&run).contains(&format!(
            "warning: {}: entry \"{elsewhere}\" is not under base_url",
            out.join("rss.xml").display()
        )),
        "{}",
        stderr(&run)
    );
    let outbox = read_json(&out.join("ap/users/blog/outbox.json"));
    assert_eq!(outbox["totalItems"], 2);
    assert!(out.join("ap/notes/a.json").is_file());
    assert!(out.join("ap/notes/b.html.json").is_file());

    // The feed now lists only `a` (feeds keep the newest posts), `b`'s page is still there:
    // it stays federated, or `relais publish` would delete it.
    hand_built(dir.path(), &[(&a, true)]);
    assert_success(&federate(dir.path(), &out, &[]), "relais federate");
    assert_eq!(
        read_json(&out.join("ap/users/blog/outbox.json"))["totalItems"],
        2
    );
    // Its page gone, it is gone.
    fs::remove_file(out.join("notes/b.html")).unwrap();
    assert_success(&federate(dir.path(), &out, &[]), "relais federate");
    assert_eq!(
        read_json(&out.join("ap/users/blog/outbox.json"))["totalItems"],
        1
    );
    assert!(
        !out.join("ap/notes/b.html.json").exists(),
        "stale object removed"
    );

    // A feed entry whose page is missing is an error naming both.
    let missing = format!("{BASE_URL}/notes/missing/");
    hand_built(dir.path(), &[(&a, true), (&missing, false)]);
    let run = federate(dir.path(), &out, &[]);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains(&format!("entry \"{missing}\": its page is not in"))
            && stderr(&run).contains("notes/missing/index.html"),
        "{}",
        stderr(&run)
    );
    // No feed at all.
    fs::remove_file(out.join("rss.xml")).unwrap();
    let run = federate(dir.path(), &out, &[]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("no feed found"), "{}", stderr(&run));
}

// ---- The round trip: the fake Mastodon server of tests/common/peer.rs. ----

/// A running `relais inbox`, killed on drop.
struct InboxProcess(Child);

impl Drop for InboxProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hugo_site_is_followed_delivers_its_new_post_and_gets_a_reply() {
    if !Generator::Hugo.available() {
        return;
    }
    let remote = Peer::start(&["alice"]).await;
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(&Generator::Hugo.fixture(), dir.path());
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    common::write(
        dir.path(),
        "content/posts/fresh/index.md",
        format!("---\ntitle: \"Fresh\"\ndate: {yesterday}\ntags: [\"news\"]\n---\nJust written.\n"),
    );
    let out = Generator::Hugo.build(dir.path(), &base);
    write_config(
        dir.path(),
        &base,
        &base,
        &format!("[inbox]\nlisten = \"127.0.0.1:{port}\"\nallow_private_addresses = true\n"),
    );
    let feed = out.join("posts/index.xml");
    let run = federate(dir.path(), &out, &["--feed", feed.to_str().unwrap()]);
    assert_success(&run, "relais federate");
    let object_id = format!("{base}/ap/posts/fresh.json");

    let log = fs::File::create(dir.path().join("inbox.log")).unwrap();
    let _inbox = InboxProcess(
        Command::new(env!("CARGO_BIN_EXE_relais"))
            .args(["inbox", "--site"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + GUARD;
    while !client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the inbox never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let inbox_log = || fs::read_to_string(dir.path().join("inbox.log")).unwrap_or_default();

    // The inbox serves what federate wrote, and the post page links it.
    let object: Value = client
        .get(&object_id)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(object["id"], object_id);
    let page = fs::read_to_string(out.join("posts/fresh/index.html")).unwrap();
    assert!(page.contains(&format!(
        "<link rel=\"alternate\" type=\"application/activity+json\" href=\"{object_id}\">"
    )));

    // Follow → Accept.
    let follow = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/follows/1", remote.base),
        "type": "Follow",
        "actor": remote.actor("alice"),
        "object": format!("{base}/ap/users/blog.json"),
    });
    let response = remote
        .post("alice", &format!("{base}/ap/users/blog/inbox"), &follow)
        .await;
    assert_eq!(response.status(), 202, "{}", inbox_log());
    let accept = remote.next_of("Accept").await;
    assert_eq!(accept["object"]["id"], follow["id"]);

    // Publish: the fresh post goes out as a Create; the 2024 posts are only recorded.
    let site = dir.path().to_path_buf();
    let publish = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_relais"))
            .args(["publish", "--site"])
            .arg(&site)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_success(&publish, "relais publish");
    assert!(
        stdout(&publish).contains("Queued 1 new, 0 edited, 0 deleted post(s)"),
        "{}",
        stdout(&publish)
    );
    let create = remote.next_of("Create").await;
    assert_eq!(create["object"]["id"], object_id);
    assert!(create["object"]["content"]
        .as_str()
        .unwrap()
        .contains("Just written."));

    // A reply to it is accepted and shown where the page script asks.
    let note = format!("{}/statuses/1", remote.actor("alice"));
    let reply = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{note}/activity"),
        "type": "Create",
        "actor": remote.actor("alice"),
        "published": "2026-02-01T10:00:00Z",
        "to": [common::AS_PUBLIC],
        "object": {
            "id": note, "type": "Note", "inReplyTo": object_id,
            "published": "2026-02-01T10:00:00Z", "url": note,
            "attributedTo": remote.actor("alice"), "to": [common::AS_PUBLIC],
            "content": "<p>Nice post from Hugo!</p>",
        }
    });
    let response = remote
        .post("alice", &format!("{base}/ap/inbox"), &reply)
        .await;
    assert_eq!(response.status(), 202, "{}", inbox_log());
    let interactions: Value = client
        .get(format!("{base}/ap/interactions"))
        .query(&[("post", object_id.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(interactions["replies"][0]["id"], note, "{interactions}");
    let replies: Value = client
        .get(format!("{base}/ap/posts/fresh/replies"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replies["first"]["items"], json!([note]));
}
