//! The host files relais writes, run through each host's own implementation:
//!
//! - Netlify: `_redirects` and `_headers` parsed by `@netlify/redirect-parser` and
//!   `@netlify/headers-parser` and evaluated by `netlify-redirector`, Netlify's redirect
//!   engine in WebAssembly (tests/hosts/netlify/evaluate.mjs);
//! - Cloudflare Pages: the built folder with its `_worker.js` served by `wrangler pages dev`;
//! - Caddy (a server of one's own, or in front of GitHub Pages): the Caddyfile from
//!   `hostrules::caddyfile`, run by `caddy` on loopback with its internal CA.
//!
//! For the two servers, the real `relais inbox` runs behind them and a signed Follow from a
//! fake Mastodon server on loopback goes through the host, is accepted and answered.
//!
//! Each test skips with a message when its tool is missing (Node.js 20+ with npm, Caddy),
//! and fails instead when CI requires it: RELAIS_REQUIRE_NETLIFY, RELAIS_REQUIRE_WRANGLER,
//! RELAIS_REQUIRE_CADDY.

use crate::common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use relais::config::SiteConfig;
use relais::federation::hostrules::{self, ACTIVITY_JSON_UTF8, JRD_JSON_UTF8, NODEINFO_JSON};
use serde_json::{json, Value};

use crate::common::peer::Peer;
use crate::common::{BASE_URL, HOST, INBOX_SERVICE};

const SITE_KEY: &str = include_str!("fixtures/site_key.pem");
/// Only a guard against a hung step, far above what any step needs.
const GUARD: Duration = Duration::from_secs(90);
/// `fediverse.username` of the example site.
const BLOG: &str = "notes";

// ---------------------------------------------------------------------------------------
// Tools

/// Whether a tool can run; explains and returns false when it cannot and `require_var` is
/// not set, panics when it is.
fn available(what: &str, require_var: &str, problem: Option<String>) -> bool {
    let Some(problem) = problem else {
        return true;
    };
    if std::env::var_os(require_var).is_some() {
        panic!("{require_var} is set but {what} cannot run: {problem}");
    }
    eprintln!("SKIPPED {what}: {problem}");
    false
}

/// Why Node.js 20+ with npm cannot run here, if it cannot.
fn node_problem() -> Option<String> {
    let version = match Command::new("node").arg("--version").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Err(e) => return Some(format!("node not found ({e}); install Node.js 20+ and npm")),
    };
    let major: Option<u32> = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok());
    match (major, Command::new("npm").arg("--version").output()) {
        (Some(m), Ok(_)) if m >= 20 => None,
        (_, Err(e)) => Some(format!("npm not found: {e}")),
        _ => Some(format!("node {version:?} is older than 20")),
    }
}

fn tool_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hosts")
        .join(name)
}

/// A child process killed when the test ends, pass or fail.
struct Running {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(name: &'static str, command: &mut Command, log: PathBuf) -> Running {
        let file = fs::File::create(&log).unwrap();
        // Its own process group, so that Drop also ends what it starts (wrangler runs node,
        // which runs workerd: killing the first alone leaves the others serving).
        let child = std::os::unix::process::CommandExt::process_group(command, 0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Running { name, child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `url` until it answers, failing if the process exits first.
    async fn wait_for(&mut self, client: &reqwest::Client, url: &str) {
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            if client.get(url).send().await.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never answered {url}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The site

/// A copy of the example site in `dir`, with `base_url`, the inbox on `inbox_port` and the
/// host set, built by the real binary.
fn build_example(dir: &Path, base_url: &str, inbox_port: u16, host: &str) -> SiteConfig {
    common::copy_example_site(dir);
    let config_path = dir.join("config.toml");
    let text = fs::read_to_string(&config_path).unwrap();
    let inbox_url = format!("http://127.0.0.1:{inbox_port}");
    let text = text
        .replace(
            &format!("base_url = \"{BASE_URL}\""),
            &format!("base_url = \"{base_url}\""),
        )
        .replace(
            &format!("inbox_url = \"{INBOX_SERVICE}\""),
            &format!("inbox_url = \"{inbox_url}\""),
        );
    assert!(text.contains(&inbox_url), "example config changed shape");
    let text = format!(
        "{text}\n[deploy]\nhost = \"{host}\"\n\n[inbox]\nlisten = \"127.0.0.1:{inbox_port}\"\n\
         allow_private_addresses = true\n"
    );
    fs::write(&config_path, &text).unwrap();
    fs::write(dir.join("relais-key.pem"), SITE_KEY).unwrap();
    common::build_site(dir);
    SiteConfig::parse(&text, &config_path).unwrap()
}

/// Every federation URL of a built site, with the content type it must be served with.
fn typed_urls(public: &Path, base: &str) -> Vec<(String, &'static str)> {
    common::json_documents(public)
        .into_iter()
        .map(|(path, _)| {
            let want = if path.starts_with("/ap/") {
                ACTIVITY_JSON_UTF8
            } else if path.starts_with("/webfinger/") {
                JRD_JSON_UTF8
            } else if path == "/nodeinfo/2.1.json" {
                NODEINFO_JSON
            } else {
                "application/json"
            };
            (format!("{base}{path}"), want)
        })
        .collect()
}

/// The three forms of WebFinger query for `name`: Mastodon's unencoded `acct:`, Fedify's
/// percent-encoded one, and the actor id.
fn webfinger_urls(base: &str, host: &str, name: &str) -> [String; 3] {
    let encoded = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    [
        format!("{base}/.well-known/webfinger?resource=acct:{name}@{host}"),
        format!(
            "{base}/.well-known/webfinger?resource={}",
            encoded(&format!("acct:{name}@{host}"))
        ),
        format!(
            "{base}/.well-known/webfinger?resource={}",
            encoded(&format!("{base}/ap/users/{name}.json"))
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Netlify

#[test]
fn netlify_engines_type_route_and_proxy_every_federation_url() {
    if !available(
        "Netlify's rule engines",
        "RELAIS_REQUIRE_NETLIFY",
        node_problem(),
    ) {
        return;
    }
    let dir = tool_dir("netlify");
    common::npm_ci(&dir);
    static BUILT: std::sync::OnceLock<common::Built> = std::sync::OnceLock::new();
    let built = common::build_once(&BUILT, "hosts-netlify", |_| {});

    let mut expect: HashMap<String, Expect> = HashMap::new();
    for (url, content_type) in typed_urls(&built.public, BASE_URL) {
        expect.insert(url, Expect::File(content_type));
    }
    let actors: Vec<String> = common::actor_documents(&built.public)
        .into_iter()
        .map(|(path, _)| {
            path.trim_start_matches("/ap/users/")
                .trim_end_matches(".json")
                .to_string()
        })
        .collect();
    assert!(actors.len() >= 3, "{actors:?}");
    for name in &actors {
        for url in webfinger_urls(BASE_URL, HOST, name) {
            expect.insert(url, Expect::Webfinger(format!("/webfinger/{name}.json")));
        }
        for path in [
            format!("/ap/users/{name}/inbox"),
            format!("/ap/users/{name}/followers"),
        ] {
            expect.insert(format!("{BASE_URL}{path}"), Expect::Proxy(path));
        }
    }
    let (post, _) = common::post_objects(&built.public).remove(0);
    let replies = format!("{}/replies", post.trim_end_matches(".json"));
    for path in [
        "/ap/inbox".to_string(),
        replies,
        "/ap/interactions".to_string(),
        "/ap/quote_authorizations/0f3a9c".to_string(),
        // A resource the site does not know: the inbox answers it.
        "/.well-known/webfinger".to_string(),
    ] {
        expect.insert(format!("{BASE_URL}{path}"), Expect::Proxy(path));
    }
    expect.insert(
        format!("{BASE_URL}/.well-known/webfinger?resource=acct:nobody@{HOST}"),
        Expect::Proxy("/.well-known/webfinger".into()),
    );

    let urls: Vec<&String> = expect.keys().collect();
    let output = Command::new("node")
        .arg("evaluate.mjs")
        .arg(&built.public)
        .args(&urls)
        .current_dir(&dir)
        .output()
        .expect("run node evaluate.mjs");
    assert!(
        output.status.success(),
        "evaluate.mjs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["redirectErrors"], json!([]), "{report:#}");
    assert_eq!(report["headerErrors"], json!([]), "{report:#}");
    let redirects = fs::read_to_string(built.public.join("_redirects")).unwrap();
    let rule_lines = redirects
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(
        report["rules"], rule_lines,
        "a rule was dropped: {report:#}"
    );

    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), expect.len());
    for result in results {
        let url = result["url"].as_str().unwrap();
        let header = |key: &str, name: &str| result[key][name].as_str().map(str::to_string);
        match &expect[url] {
            Expect::File(content_type) => {
                assert_eq!(result["status"], 200, "{result:#}");
                assert_eq!(result["rule"], Value::Null, "a rule shadows {url}");
                assert_eq!(
                    header("headers", "Content-Type").as_deref(),
                    Some(*content_type),
                    "{result:#}"
                );
                assert_eq!(
                    header("headers", "Access-Control-Allow-Origin").as_deref(),
                    Some("*")
                );
            }
            Expect::Webfinger(file) => {
                assert_eq!(result["status"], 200, "{result:#}");
                assert_eq!(result["file"], file.as_str(), "{result:#}");
                // Whichever path Netlify matches header rules against for a rewrite, the
                // answer is JRD.
                for key in ["headers", "targetHeaders"] {
                    assert_eq!(
                        header(key, "Content-Type").as_deref(),
                        Some(JRD_JSON_UTF8),
                        "{key}: {result:#}"
                    );
                }
            }
            Expect::Proxy(path) => {
                assert_eq!(result["status"], 200, "{result:#}");
                assert_eq!(result["to"], format!("{INBOX_SERVICE}{path}"), "{result:#}");
            }
        }
    }
    eprintln!(
        "Netlify's engines: {} URLs checked against {rule_lines} redirect rules",
        results.len()
    );
}

enum Expect {
    /// A file of the folder, with this content type.
    File(&'static str),
    /// Rewritten (200) to this JRD file.
    Webfinger(String),
    /// Proxied (200) to the inbox service at this path.
    Proxy(String),
}

// ---------------------------------------------------------------------------------------
// The inbox behind a host (the remote server is `common::peer::Peer`)

/// Starts `relais inbox` for the site in `dir` and waits until it answers.
async fn start_inbox(dir: &Path, port: u16, client: &reqwest::Client) -> Running {
    let mut inbox = Running::start(
        "relais inbox",
        Command::new(env!("CARGO_BIN_EXE_relais"))
            .args(["inbox", "--site"])
            .arg(dir)
            .env("RUST_LOG", "relais=debug"),
        dir.join("inbox.log"),
    );
    inbox
        .wait_for(client, &format!("http://127.0.0.1:{port}/healthz"))
        .await;
    inbox
}

async fn fetch(client: &reqwest::Client, url: &str) -> (StatusCode, String, Bytes) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, response.bytes().await.unwrap())
}

/// What a fediverse server meets at `base` (a host in front of `public/` and the inbox):
/// every document with its type, WebFinger in its three forms, and a signed Follow that the
/// inbox behind the host accepts and answers.
async fn check_through_host(
    client: &reqwest::Client,
    config: &SiteConfig,
    public: &Path,
    inbox: &Running,
    what: &str,
) -> usize {
    let base = config.base_url.as_str();
    let mut checked = 0;
    for (url, content_type) in typed_urls(public, base) {
        let (status, got, body) = fetch(client, &url).await;
        assert_eq!(status, 200, "{what}: GET {url}");
        assert_eq!(got, content_type, "{what}: GET {url}");
        serde_json::from_slice::<Value>(&body).unwrap_or_else(|e| panic!("{url}: {e}"));
        checked += 1;
    }
    for url in webfinger_urls(base, &config.host(), BLOG) {
        let (status, got, body) = fetch(client, &url).await;
        assert_eq!(status, 200, "{what}: GET {url}");
        assert_eq!(got, JRD_JSON_UTF8, "{what}: GET {url}");
        let jrd: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(jrd["subject"], format!("acct:{BLOG}@{}", config.host()));
        checked += 1;
    }
    // An unknown resource reaches the inbox, which knows nothing of it either.
    let unknown = format!(
        "{base}/.well-known/webfinger?resource=acct:nobody@{}",
        config.host()
    );
    let (status, _, _) = fetch(client, &unknown).await;
    assert_eq!(status, 404, "{what}: GET {unknown}");
    // The followers collection is the inbox's: only it answers this path.
    let followers = format!("{base}/ap/users/{BLOG}/followers");
    let (status, got, _) = fetch(client, &followers).await;
    assert!(
        status == 200 || status == 401 || status == 403,
        "{what}: GET {followers} gave {status}"
    );
    if status == 200 {
        assert!(got.starts_with("application/activity+json"), "{got}");
    }
    checked += 2;

    // A signed Follow through the host: accepted, then answered with an Accept.
    let remote = Peer::start(&["alice"]).await;
    let actor = format!("{base}/ap/users/{BLOG}.json");
    let follow = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/follows/1", remote.base),
        "type": "Follow",
        "actor": remote.actor("alice"),
        "object": actor,
    });
    let inbox_url = format!("{base}/ap/users/{BLOG}/inbox");
    let response = remote.post_with(client, "alice", &inbox_url, &follow).await;
    assert_eq!(
        response.status(),
        202,
        "{what}: the signed Follow was not accepted:\n{}",
        inbox.log()
    );
    let accept = remote.next_of("Accept").await;
    assert_eq!(accept["type"], "Accept");
    assert_eq!(accept["actor"], actor);
    assert_eq!(accept["object"]["id"], follow["id"]);
    checked + 1
}

// ---------------------------------------------------------------------------------------
// Cloudflare Pages

#[tokio::test(flavor = "multi_thread")]
async fn cloudflare_pages_worker_serves_webfinger_and_forwards_to_the_inbox() {
    if !available("wrangler", "RELAIS_REQUIRE_WRANGLER", node_problem()) {
        return;
    }
    let tools = tool_dir("cloudflare");
    common::npm_ci(&tools);
    let site = tempfile::tempdir().unwrap();
    let (port, inbox_port) = (common::free_port(), common::free_port());
    let base = format!("http://127.0.0.1:{port}");
    let config = build_example(site.path(), &base, inbox_port, "cloudflare-pages");
    let public = site.path().join("public");
    assert!(
        !public.join("_redirects").exists(),
        "Pages rejects our _redirects rules"
    );

    let client = reqwest::Client::new();
    let inbox = start_inbox(site.path(), inbox_port, &client).await;
    let mut wrangler = Running::start(
        "wrangler pages dev",
        Command::new(tools.join("node_modules/.bin/wrangler"))
            .args(["pages", "dev"])
            .arg(&public)
            .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--compatibility-date", "2026-05-01"])
            .env("WRANGLER_SEND_METRICS", "false")
            .env("XDG_CONFIG_HOME", site.path().join("xdg"))
            .current_dir(site.path()),
        site.path().join("wrangler.log"),
    );
    wrangler.wait_for(&client, &format!("{base}/")).await;

    let checked = check_through_host(&client, &config, &public, &inbox, "wrangler").await;
    // The worker itself is not served.
    let (status, _, body) = fetch(&client, &format!("{base}/_worker.js")).await;
    assert!(
        status != 200 || !String::from_utf8_lossy(&body).contains("RULES"),
        "_worker.js is served as an asset"
    );
    let log = wrangler.log();
    assert!(log.contains("valid header rules"), "{log}");
    for line in log.lines() {
        assert!(
            !line.contains("Invalid") && !line.contains("rejected"),
            "wrangler complains: {line}\n{log}"
        );
    }
    eprintln!("wrangler pages dev: {checked} URLs checked");
}

// ---------------------------------------------------------------------------------------
// Caddy

fn caddy_problem() -> Option<String> {
    match Command::new("caddy").arg("version").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("caddy version failed: {}", out.status)),
        Err(e) => Some(format!("caddy not found ({e}); apt-get install caddy")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_serves_the_site_and_proxies_the_inbox() {
    if !available("Caddy", "RELAIS_REQUIRE_CADDY", caddy_problem()) {
        return;
    }
    let site = tempfile::tempdir().unwrap();
    let (port, inbox_port, http_port) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let base = format!("https://127.0.0.1:{port}");
    let config = build_example(site.path(), &base, inbox_port, "caddy");
    let public = site.path().join("public");

    // What a user puts on the server, wrapped in test-only global options: loopback, no
    // admin endpoint, Caddy's internal CA in a folder of the test, not the system store.
    let storage = site.path().join("caddy");
    let caddyfile = format!(
        "{{\n\tdefault_bind 127.0.0.1\n\tadmin off\n\thttp_port {http_port}\n\
         \tauto_https disable_redirects\n\tlocal_certs\n\tskip_install_trust\n\
         \tdefault_sni 127.0.0.1\n\tstorage file_system {}\n}}\n\n{}",
        storage.display(),
        hostrules::caddyfile(&config, &public.to_string_lossy())
    );
    let caddyfile_path = site.path().join("Caddyfile");
    fs::write(&caddyfile_path, &caddyfile).unwrap();

    let plain = reqwest::Client::new();
    let inbox = start_inbox(site.path(), inbox_port, &plain).await;
    let mut caddy = Running::start(
        "caddy",
        Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile_path)
            .env("HOME", site.path())
            .env("XDG_DATA_HOME", site.path().join("data"))
            .env("XDG_CONFIG_HOME", site.path().join("config")),
        site.path().join("caddy.log"),
    );
    // The root certificate exists once Caddy has issued the site's certificate.
    let root = storage.join("pki/authorities/local/root.crt");
    let deadline = tokio::time::Instant::now() + GUARD;
    while !root.exists() {
        if let Some(status) = caddy.child.try_wait().unwrap() {
            panic!("caddy exited with {status}:\n{}\n{caddyfile}", caddy.log());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no CA:\n{}",
            caddy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&fs::read(&root).unwrap()).unwrap())
        .build()
        .unwrap();
    caddy.wait_for(&client, &format!("{base}/")).await;

    let checked = check_through_host(&client, &config, &public, &inbox, "caddy").await;
    eprintln!("caddy: {checked} URLs checked over https");
    drop(caddy);

    // Without an inbox service: the known resources still win over the 404 for the rest.
    let mut alone = config.clone();
    let alone_port = common::free_port();
    alone.base_url = format!("http://127.0.0.1:{alone_port}");
    alone.fediverse.inbox_url = None;
    let alone_path = site.path().join("Caddyfile.alone");
    fs::write(
        &alone_path,
        format!(
            "{{\n\tdefault_bind 127.0.0.1\n\tadmin off\n\thttp_port {alone_port}\n}}\n\n{}",
            hostrules::caddyfile(&alone, &public.to_string_lossy())
        ),
    )
    .unwrap();
    let mut caddy = Running::start(
        "caddy without inbox",
        Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&alone_path)
            .env("HOME", site.path())
            .env("XDG_DATA_HOME", site.path().join("data"))
            .env("XDG_CONFIG_HOME", site.path().join("config")),
        site.path().join("caddy-alone.log"),
    );
    caddy
        .wait_for(&plain, &format!("{}/", alone.base_url))
        .await;
    for url in webfinger_urls(&alone.base_url, &alone.host(), BLOG) {
        let (status, got, _) = fetch(&plain, &url).await;
        assert_eq!(
            (status.as_u16(), got.as_str()),
            (200, JRD_JSON_UTF8),
            "{url}"
        );
    }
    let unknown = format!(
        "{}/.well-known/webfinger?resource=acct:nobody@x",
        alone.base_url
    );
    assert_eq!(fetch(&plain, &unknown).await.0, 404);
    let inbox_path = format!("{}/ap/users/{BLOG}/inbox", alone.base_url);
    assert_eq!(fetch(&plain, &inbox_path).await.0, 404);
}

/// `relais doctor` against a deployment served by Caddy (plain http on loopback): the
/// generated Caddyfile passes every check; one without the inbox proxy fails on the inbox
/// with the fix.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_through_caddy_and_names_a_missing_proxy() {
    if !available("Caddy", "RELAIS_REQUIRE_CADDY", caddy_problem()) {
        return;
    }
    let site = tempfile::tempdir().unwrap();
    let (port, inbox_port) = (common::free_port(), common::free_port());
    let base = format!("http://127.0.0.1:{port}");
    let config = build_example(site.path(), &base, inbox_port, "caddy");
    let public = site.path().join("public");
    let plain = reqwest::Client::new();
    let _inbox = start_inbox(site.path(), inbox_port, &plain).await;

    let run_caddy = |name: &'static str, config: &SiteConfig| {
        let path = site.path().join(format!("Caddyfile.{name}"));
        fs::write(
            &path,
            format!(
                "{{\n\tdefault_bind 127.0.0.1\n\tadmin off\n\thttp_port {port}\n}}\n\n{}",
                hostrules::caddyfile(config, &public.to_string_lossy())
            ),
        )
        .unwrap();
        Running::start(
            name,
            Command::new("caddy")
                .args(["run", "--adapter", "caddyfile", "--config"])
                .arg(&path)
                .env("HOME", site.path())
                .env("XDG_DATA_HOME", site.path().join("data"))
                .env("XDG_CONFIG_HOME", site.path().join("config")),
            site.path().join(format!("caddy-{name}.log")),
        )
    };
    let doctor = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_relais"));
        command.arg("doctor").arg("--site").arg(site.path());
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };

    let mut caddy = run_caddy("good", &config);
    caddy.wait_for(&plain, &format!("{base}/")).await;
    let output = doctor().await.unwrap();
    assert!(
        output.status.success(),
        "doctor failed through Caddy:\n{}{}",
        common::stdout(&output),
        common::stderr(&output)
    );
    drop(caddy);

    // The same site behind a Caddyfile written without the inbox: nothing proxies.
    let mut no_proxy = config.clone();
    no_proxy.fediverse.inbox_url = None;
    let mut caddy = run_caddy("no-proxy", &no_proxy);
    caddy.wait_for(&plain, &format!("{base}/")).await;
    let output = doctor().await.unwrap();
    let stdout = common::stdout(&output);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("/ap/inbox") && l.contains("proxy")),
        "no line names the missing proxy:\n{stdout}"
    );
    drop(caddy);
}
