//! `relais doctor` against loopback deployments, with the real binary on both sides:
//! - correct: `relais inbox` with `serve_public` serving the built site itself;
//! - broken: a small static host in this test serving `public/` as plain files, proxying
//!   the inbox paths to a real `relais inbox`, with the content types wrong or the proxy
//!   rule missing; and a site folder whose key is not the published one.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

const SITE_KEY: &str = include_str!("fixtures/site_key.pem");
const OTHER_KEY: &str = include_str!("fixtures/alice_key.pem");

/// A site with one post, built by the real binary; `inbox` goes into `[inbox]`.
fn make_site(dir: &Path, base: &str, inbox_url: &str, inbox: &str) {
    let config = format!(
        "title = \"Doctor test\"\nbase_url = \"{base}\"\n\
         [fediverse]\ninbox_url = \"{inbox_url}\"\n\
         [inbox]\nallow_private_addresses = true\n{inbox}\n\
         [deploy]\nhost = \"netlify\"\n"
    );
    common::write(dir, "config.toml", config);
    common::write(dir, "relais-key.pem", SITE_KEY);
    common::write(
        dir,
        "content/posts/hello.md",
        "+++\ntitle = \"Hello\"\ndate = 2026-01-01\n+++\n\nFirst post.\n",
    );
    common::build_site(dir);
}

/// A running `relais inbox`, killed on drop.
struct Inbox {
    child: Child,
    log: PathBuf,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_inbox(site: &Path, port: u16) -> Inbox {
    let log = site.join("inbox.log");
    let child = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["inbox", "--site"])
        .arg(site)
        .env("RELAIS_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut inbox = Inbox { child, log };
    let base = format!("http://127.0.0.1:{port}");
    common::wait_healthy(&mut inbox.child, &base, &inbox.log).await;
    inbox
}

async fn doctor(site: &Path, extra: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relais"));
    command.arg("doctor").arg("--site").arg(site).args(extra);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn fail_lines(output: &Output) -> Vec<String> {
    common::stdout(output)
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_correct_deployment_passes_and_a_wrong_key_fails() {
    let root = tempfile::tempdir().unwrap();
    let site = root.path().join("site");
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    make_site(&site, &base, &base, "serve_public = true");
    let _inbox = start_inbox(&site, port).await;

    let output = doctor(&site, &[]).await;
    let out = common::stdout(&output);
    assert!(
        output.status.success(),
        "doctor failed:\n{out}{}",
        common::stderr(&output)
    );
    for check in [
        "ok   webfinger blog (acct:)",
        "ok   webfinger blog (percent-encoded)",
        "ok   actor blog",
        "key matches",
        "ok   post page",
        "ok   post object",
        "ok   outbox blog",
        "ok   nodeinfo",
        "ok   inbox (shared): POST /ap/inbox unsigned → 401",
        "ok   followers blog",
        "ok   clock (site)",
    ] {
        assert!(out.contains(check), "{check:?} missing:\n{out}");
    }
    assert!(fail_lines(&output).is_empty(), "{out}");

    // The same deployment, checked from a folder whose key is not the published one.
    let stranger = root.path().join("stranger");
    common::write(
        &stranger,
        "config.toml",
        std::fs::read(site.join("config.toml")).unwrap(),
    );
    common::write(&stranger, "relais-key.pem", OTHER_KEY);
    let output = doctor(&stranger, &[]).await;
    assert!(!output.status.success());
    let fails = fail_lines(&output);
    assert_eq!(fails.len(), 1, "{}", common::stdout(&output));
    assert!(
        fails[0].starts_with("FAIL actor blog:") && fails[0].contains("another publicKeyPem"),
        "{fails:?}"
    );
}

/// How the test's static host serves the site.
#[derive(Clone)]
struct HostState {
    public: Arc<PathBuf>,
    inbox: String,
    /// 0: right content types, proxying; 1: every JSON as application/json; 2: no proxy.
    mode: Arc<AtomicU8>,
}

const RIGHT: u8 = 0;
const JSON_TYPES: u8 = 1;
const NO_PROXY: u8 = 2;

fn is_dynamic(path: &str) -> bool {
    path == "/ap/inbox"
        || (path.starts_with("/ap/users/")
            && (path.ends_with("/inbox") || path.ends_with("/followers")))
}

async fn static_host(State(state): State<HostState>, request: Request) -> Response {
    let mode = state.mode.load(Ordering::SeqCst);
    let path = request.uri().path().to_string();
    if is_dynamic(&path) {
        if mode == NO_PROXY {
            return (StatusCode::NOT_FOUND, "Not Found").into_response();
        }
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let url = format!("{}{}", state.inbox, parts.uri);
        let mut forwarded = reqwest::Client::new().request(parts.method.clone(), url);
        if let Some(t) = parts.headers.get(header::CONTENT_TYPE) {
            forwarded = forwarded.header(header::CONTENT_TYPE, t.clone());
        }
        let answer = forwarded.body(body).send().await.unwrap();
        let status = answer.status();
        let headers = answer.headers().clone();
        let bytes: Bytes = answer.bytes().await.unwrap();
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() = status;
        for (name, value) in &headers {
            response.headers_mut().insert(name, value.clone());
        }
        return response;
    }
    if request.method() != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let mut rel = path.trim_start_matches('/').to_string();
    if path == "/.well-known/webfinger" {
        // The host rule: resource=acct:NAME@HOST (decoded) → /webfinger/NAME.json.
        let query = request.uri().query().unwrap_or_default();
        let resource = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "resource")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let name = resource
            .strip_prefix("acct:")
            .and_then(|r| r.split('@').next())
            .unwrap_or_default()
            .to_string();
        rel = format!("webfinger/{name}.json");
    }
    if rel.is_empty() || rel.ends_with('/') {
        rel.push_str("index.html");
    }
    let Ok(bytes) = std::fs::read(state.public.join(&rel)) else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let content_type = if rel.ends_with(".html") {
        "text/html; charset=utf-8"
    } else if mode == JSON_TYPES {
        "application/json"
    } else if rel.starts_with("ap/") {
        "application/activity+json"
    } else if rel.starts_with("webfinger/") {
        "application/jrd+json"
    } else {
        "application/json"
    };
    ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_content_types_and_a_missing_proxy_rule_fail_with_the_fix() {
    let root = tempfile::tempdir().unwrap();
    let site = root.path().join("site");
    let (host_port, inbox_port) = (common::free_port(), common::free_port());
    let base = format!("http://127.0.0.1:{host_port}");
    let inbox_url = format!("http://127.0.0.1:{inbox_port}");
    make_site(&site, &base, &inbox_url, "serve_public = false");
    let _inbox = start_inbox(&site, inbox_port).await;

    let mode = Arc::new(AtomicU8::new(RIGHT));
    let state = HostState {
        public: Arc::new(site.join("public")),
        inbox: inbox_url.clone(),
        mode: mode.clone(),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", host_port))
        .await
        .unwrap();
    let app = Router::new().fallback(static_host).with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The host done right: the test's host itself is sound.
    let output = doctor(&site, &[]).await;
    assert!(
        output.status.success(),
        "{}{}",
        common::stdout(&output),
        common::stderr(&output)
    );

    mode.store(JSON_TYPES, Ordering::SeqCst);
    let output = doctor(&site, &[]).await;
    assert!(!output.status.success());
    let fails = fail_lines(&output);
    assert!(
        fails.iter().any(|l| l.starts_with("FAIL actor blog: /ap/users/blog.json is served as \"application/json\": the host does not apply _headers; on Netlify check that public/_headers was deployed")),
        "{}",
        common::stdout(&output)
    );
    // WebFinger as application/json is a warning only: Mastodon reads it.
    assert!(common::stdout(&output).contains("WARN webfinger blog (acct:)"));

    mode.store(NO_PROXY, Ordering::SeqCst);
    let output = doctor(&site, &[]).await;
    assert!(!output.status.success());
    let fails = fail_lines(&output);
    assert!(
        fails.iter().any(|l| l.starts_with(
            "FAIL inbox (shared): POST /ap/inbox answers 404 Not Found: the proxy rule is missing"
        )),
        "{}",
        common::stdout(&output)
    );
    assert!(fails
        .iter()
        .any(|l| l.starts_with("FAIL inbox blog: POST /ap/users/blog/inbox answers 404")));
    assert!(fails.iter().all(|l| !l.contains("actor blog")), "{fails:?}");
}
