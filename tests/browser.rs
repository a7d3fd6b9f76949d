//! The default theme in a real browser: Debian's `chromium`, headless, driven by
//! `playwright-core` (pinned in `tests/browser/package-lock.json`) over pages the real
//! binary built and `relais inbox` serves on 127.0.0.1. Light and dark schemes at desktop
//! and mobile widths (no sideways scrolling, handles on one line, highlighted code readable),
//! the reply section redrawn from the inbox's store, the follow and reply dialogs (the
//! address typed, the navigation target), the copy button, and the page without JavaScript.
//!
//! Needs `chromium` (or `RELAIS_CHROMIUM`), Node.js 20+ and npm. Without them the test says
//! so and passes, unless RELAIS_REQUIRE_BROWSER is set (as CI does), when it fails instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use relais::interactions::Reply;
use relais::store::{NewReply, ReplyState, Store};
use serde_json::{json, Value};

use crate::common;

const POST: &str = "error-handling-in-small-tools";
const USERNAME: &str = "field-notes-from-the-coast";
/// WCAG's minimum contrast for large text; code at 3:1 is legible, the bug it guards
/// against (a token in the light theme's colour on the dark background) was near 1:1.
const MIN_CODE_CONTRAST: f64 = 3.0;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("RELAIS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Whether Chromium, Node 20+ and npm are here; explains and returns false when not and CI
/// does not require them.
fn browser_available() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let major = node.as_deref().and_then(|v| {
        v.trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
    });
    let problem = if !chromium().is_file() {
        format!(
            "no Chromium at {} (apt-get install chromium, or set RELAIS_CHROMIUM)",
            chromium().display()
        )
    } else if major.is_none_or(|m| m < 20) {
        format!("Node.js 20+ is needed, found {node:?}")
    } else if Command::new("npm").arg("--version").output().is_err() {
        "npm not found".to_string()
    } else {
        return true;
    };
    if std::env::var_os("RELAIS_REQUIRE_BROWSER").is_some() {
        panic!("RELAIS_REQUIRE_BROWSER is set but the browser test cannot run: {problem}");
    }
    eprintln!("SKIPPED browser: {problem}");
    false
}

/// `npm ci` of the pinned lock unless node_modules was installed from it.
fn install_driver() {
    common::npm_ci(&browser_dir());
}

/// Stops a relais process when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_ready(server: &mut Running, address: &str, log: &Path) {
    for _ in 0..600 {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!(
                "relais exited with {status}:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        if std::net::TcpStream::connect(address).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("relais never listened on {address}");
}

/// Runs `pages.mjs` in Chromium with `config`; what it found on the pages. On failure,
/// `context` adds what else explains it.
fn run_pages(config: &Value, context: impl Fn() -> String) -> Value {
    let output = Command::new("node")
        .arg(browser_dir().join("pages.mjs"))
        .arg(chromium())
        .arg(config.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        context()
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_theme_works_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    install_driver();

    let dir = tempfile::tempdir().unwrap();
    let site = dir.path();
    common::copy_example_site(site);
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = fs::read_to_string(site.join("config.toml"))
        .unwrap()
        .replace("https://relais.example", &base)
        .replace("https://inbox.relais.example", &base)
        // Long enough not to fit a phone's width: it must scroll in its box, not wrap.
        .replace(
            "username = \"notes\"",
            &format!("username = \"{USERNAME}\""),
        );
    fs::write(
        site.join("config.toml"),
        format!(
            "{config}\n[inbox]\nlisten = \"127.0.0.1:{port}\"\nserve_public = true\n\
             allow_private_addresses = true\n"
        ),
    )
    .unwrap();
    common::build_site(site);

    // A reply that arrived after the build: only the page script can show it.
    let post_id = format!("{base}/ap/posts/{POST}.json");
    let reply = Reply {
        id: "https://social.test/users/ana/statuses/1".into(),
        url: "https://social.test/@ana/1".into(),
        in_reply_to: post_id.clone(),
        author_id: "https://social.test/users/ana".into(),
        author_name: "Ana Reader".into(),
        author_handle: "@ana@social.test".into(),
        author_url: "https://social.test/@ana".into(),
        author_avatar: None,
        content: "<p>Fresh from the inbox.</p>".into(),
        published: chrono::DateTime::parse_from_rfc3339("2025-02-11T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc),
        depth: 0,
    };
    let store = Store::open(&site.join("relais.db")).unwrap();
    assert!(store
        .insert_reply(&NewReply {
            reply: &reply,
            root_id: &post_id,
            state: ReplyState::Visible,
        })
        .unwrap());
    drop(store);

    let log = site.join("inbox.log");
    let mut inbox = Running(
        Command::new(env!("CARGO_BIN_EXE_relais"))
            .args(["inbox", "--site"])
            .arg(site)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut inbox, &format!("127.0.0.1:{port}"), &log);

    let reply_page = format!("/posts/{POST}/");
    let config = json!({
        "base": base,
        "pages": ["/", reply_page, "/posts/why-a-static-blog/", "/posts/backups-that-restore/"],
        "replyPage": reply_page,
        "server": "@reader@Social.Test/",
    });
    let facts = run_pages(&config, || {
        format!(
            "inbox log:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        )
    });
    eprintln!("browser: {}", facts["version"]);

    let layouts = facts["layouts"].as_array().unwrap();
    assert_eq!(
        layouts.len(),
        2 * 2 * 4,
        "two schemes × two widths × four pages"
    );
    let mut code_seen = 0;
    for page in layouts {
        let at = format!("{} {} {}", page["scheme"], page["viewport"], page["path"]);
        assert!(
            page["overflow"].as_f64().unwrap() <= 0.0,
            "{at}: the page scrolls sideways by {}px",
            page["overflow"]
        );
        let handles = page["handles"].as_array().unwrap();
        assert!(!handles.is_empty(), "{at}: no handle shown");
        for handle in handles {
            assert_eq!(handle["lines"], 1, "{at}: handle wrapped: {handle}");
            assert!(
                handle["height"].as_f64().unwrap() < 2.0 * handle["lineHeight"].as_f64().unwrap(),
                "{at}: handle taller than a line: {handle}"
            );
            assert_eq!(handle["fitsPage"], true, "{at}: {handle}");
        }
        assert!(
            page["bodyContrast"].as_f64().unwrap() >= 4.5,
            "{at}: body text contrast {}",
            page["bodyContrast"]
        );
        if page["codeBlocks"].as_u64().unwrap() > 0 {
            code_seen += 1;
            let worst = &page["worstCode"];
            assert!(
                worst["ratio"].as_f64().unwrap() >= MIN_CODE_CONTRAST,
                "{at}: code {:?} has contrast {:.2}",
                worst["text"],
                worst["ratio"]
            );
        }
        assert!(
            page["copyButtonsShown"].as_u64().unwrap() >= 1,
            "{at}: the page script shows the copy buttons"
        );
    }
    assert!(code_seen >= 8, "highlighted code checked in every layout");

    let replies = &facts["replies"];
    let built = fs::read_to_string(site.join(format!("public/posts/{POST}/index.html"))).unwrap();
    assert!(
        built.contains("No replies yet.") && !built.contains("Fresh from the inbox."),
        "the build did not know the reply"
    );
    assert_eq!(
        replies["shown"],
        json!([{ "author": "Ana Reader", "content": "Fresh from the inbox.", "time": "11 February 2025, 10:00 UTC" }]),
        "{replies}"
    );
    assert_eq!(replies["noRepliesAfter"], false);

    let handle = format!("{USERNAME}@127.0.0.1:{port}");
    let follow = &facts["follow"];
    assert_eq!(follow["opened"], true, "{follow}");
    assert_eq!(
        follow["title"],
        format!("Follow @{handle} from your server")
    );
    assert_eq!(follow["refused"]["open"], true, "{follow}");
    assert!(follow["refused"]["error"].is_string(), "{follow}");
    assert_eq!(
        follow["target"],
        format!("https://social.test/authorize_interaction?uri={USERNAME}%40127.0.0.1%3A{port}"),
        "{follow}"
    );
    let reply = &facts["reply"];
    assert_eq!(reply["title"], "Reply from your server", "{reply}");
    let encoded: String = url::form_urlencoded::byte_serialize(post_id.as_bytes()).collect();
    assert_eq!(
        reply["target"],
        format!("https://social.test/authorize_interaction?uri={encoded}"),
        "{reply}"
    );

    let no_script = &facts["noScript"];
    assert_eq!(no_script["handle"], format!("@{handle}"), "{no_script}");
    assert_eq!(no_script["followHref"], "#follow");
    assert_eq!(no_script["copyHidden"], true);
    assert_eq!(no_script["afterClick"]["url"], format!("{base}/#follow"));
    assert_eq!(no_script["afterClick"]["dialogOpen"], false);

    assert_eq!(
        facts["copy"]["copied"],
        format!("@{handle}"),
        "{}",
        facts["copy"]
    );
    assert_eq!(facts["copy"]["label"], "Copied");
}

/// `relais serve` in the browser: a broken file shows its error over the open page, and
/// fixing it reloads the page without it.
#[test]
fn serve_shows_build_errors_over_the_page() {
    if !browser_available() {
        return;
    }
    install_driver();
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path();
    fs::write(
        site.join("config.toml"),
        "title = \"Served\"\nbase_url = \"https://served.example\"\n",
    )
    .unwrap();
    fs::create_dir_all(site.join("content/posts")).unwrap();
    let post = site.join("content/posts/live.md");
    fs::write(
        &post,
        "+++\ntitle = \"Live\"\ndate = 2024-05-01\n+++\n\nFirst.\n",
    )
    .unwrap();
    let port = common::free_port();
    let log = site.join("serve.log");
    let mut server = Running(
        Command::new(env!("CARGO_BIN_EXE_relais"))
            .args(["serve", "--port", &port.to_string(), "--site"])
            .arg(site)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let address = format!("127.0.0.1:{port}");
    wait_ready(&mut server, &address, &log);
    let config = json!({ "overlay": {
        "base": format!("http://{address}"),
        "page": "/posts/live/",
        "file": post,
        "broken": "+++\ntitle = \"Live\ndate = 2024-05-01\n+++\n\nBroken.\n",
        "fixed": "+++\ntitle = \"Live\"\ndate = 2024-05-01\n+++\n\nFixed at last.\n",
    }});
    let facts = run_pages(&config, String::new);
    let shown = facts["shown"].as_str().unwrap_or_default();
    assert!(
        shown.contains("the build failed") && shown.contains("content/posts/live.md"),
        "{facts}\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(facts["didReload"], true, "{facts}");
    assert_eq!(facts["overlayAfter"], false, "{facts}");
    assert_eq!(facts["fixedShown"], true, "{facts}");
}
