//! `relais` as an AWS Lambda function, spoken to through the real Lambda Runtime API: a
//! loopback server here implements its `invocation/next`, `invocation/{id}/response`,
//! `invocation/{id}/error` and `init/error` endpoints (with the `Lambda-Runtime-*`
//! headers), and the real binary is started as the `provided.al2023` runtime starts
//! `bootstrap`: without arguments, `AWS_LAMBDA_RUNTIME_API` pointing here. It is fed Function
//! URL and API Gateway REST events and EventBridge scheduled events built from the payloads
//! in `tests/fixtures/lambda/`; a fake follower server and a loopback static host (the live
//! site the scheduled run polls) stand for the rest of the world.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use relais::federation::keys::PrivateKey;
use relais::federation::signature::{sign_request, SigningKey};
use relais::store::Store;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};

const SITE_KEY: &str = include_str!("fixtures/site_key.pem");
const ALICE_KEY: &str = include_str!("fixtures/alice_key.pem");
const ACTOR_TEMPLATE: &str = include_str!("fixtures/mastodon_actor.json");
const FUNCTION_URL_EVENT: &str = include_str!("fixtures/lambda/function-url-request.json");
const REST_API_EVENT: &str = include_str!("fixtures/lambda/apigw-v1-rest-request.json");
const SCHEDULED_EVENT: &str = include_str!("fixtures/lambda/eventbridge-scheduled.json");
/// Only a guard against a hung test: what is awaited normally comes at once.
const GUARD: Duration = Duration::from_secs(60);
const DEPLOY_TOKEN: &str = "deploy-token-for-tests";
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:blog-inbox";

/// What the function sent back to the Runtime API.
#[derive(Debug)]
enum Outcome {
    Response {
        id: String,
        body: Value,
    },
    Error {
        id: String,
        error_type: String,
        body: Value,
    },
    InitError {
        error_type: String,
        body: Value,
    },
}

/// An invocation waiting for the function's `next`.
struct Invocation {
    id: String,
    deadline_ms: u128,
    event: Value,
}

#[derive(Clone)]
struct ApiState {
    pending: Arc<Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

/// The Lambda Runtime API on 127.0.0.1, handing out invocations one at a time.
struct RuntimeApi {
    address: String,
    invocations: mpsc::UnboundedSender<Invocation>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    count: AtomicU64,
}

impl RuntimeApi {
    async fn start() -> RuntimeApi {
        let (invocations, pending) = mpsc::unbounded_channel();
        let (outcome_tx, outcomes) = mpsc::unbounded_channel();
        let state = ApiState {
            pending: Arc::new(Mutex::new(pending)),
            outcomes: outcome_tx,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        RuntimeApi {
            address,
            invocations,
            outcomes,
            count: AtomicU64::new(0),
        }
    }

    /// Invokes the function with `event` and `timeout` to run, and waits for its outcome.
    async fn invoke(&mut self, event: Value, timeout: Duration) -> Outcome {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        let id = format!("8476a536-e9f4-11e8-9739-2dfe598c{n:04}");
        let deadline = SystemTime::now() + timeout;
        self.invocations
            .send(Invocation {
                id: id.clone(),
                deadline_ms: deadline.duration_since(UNIX_EPOCH).unwrap().as_millis(),
                event,
            })
            .unwrap();
        let outcome = tokio::time::timeout(GUARD, self.outcomes.recv())
            .await
            .expect("the function did not answer")
            .unwrap();
        match &outcome {
            Outcome::Response { id: got, .. } | Outcome::Error { id: got, .. } => {
                assert_eq!(got, &id, "{outcome:?}")
            }
            Outcome::InitError { .. } => panic!("init error: {outcome:?}"),
        }
        outcome
    }

    /// An HTTP event's answer: status, headers, decoded body.
    async fn http(&mut self, event: Value) -> (u16, Value, Vec<u8>) {
        match self.invoke(event, Duration::from_secs(30)).await {
            Outcome::Response { body, .. } => {
                let bytes = match (body["body"].as_str(), body["isBase64Encoded"].as_bool()) {
                    (Some(text), Some(true)) => base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .unwrap(),
                    (Some(text), _) => text.as_bytes().to_vec(),
                    (None, _) => Vec::new(),
                };
                let status = body["statusCode"].as_u64().unwrap() as u16;
                (status, body, bytes)
            }
            other => panic!("not an answer: {other:?}"),
        }
    }
}

async fn next(State(state): State<ApiState>) -> Response {
    let mut pending = state.pending.lock().await;
    let Some(invocation) = pending.recv().await else {
        return StatusCode::GONE.into_response();
    };
    (
        [
            ("lambda-runtime-aws-request-id", invocation.id),
            (
                "lambda-runtime-deadline-ms",
                invocation.deadline_ms.to_string(),
            ),
            ("lambda-runtime-invoked-function-arn", FUNCTION_ARN.into()),
            (
                "lambda-runtime-trace-id",
                "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".into(),
            ),
            ("content-type", "application/json".into()),
        ],
        invocation.event.to_string(),
    )
        .into_response()
}

async fn response(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = state.outcomes.send(Outcome::Response { id, body });
    StatusCode::ACCEPTED
}

async fn error(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let _ = state.outcomes.send(Outcome::Error {
        id,
        error_type: error_type(&headers),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    StatusCode::ACCEPTED
}

async fn init_error(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let _ = state.outcomes.send(Outcome::InitError {
        error_type: error_type(&headers),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    StatusCode::ACCEPTED
}

fn error_type(headers: &HeaderMap) -> String {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A Function URL event for one request, from the fixture.
fn function_url_event(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Option<&[u8]>,
) -> Value {
    let mut event: Value = serde_json::from_str(FUNCTION_URL_EVENT).unwrap();
    event["rawPath"] = json!(path);
    event["rawQueryString"] = json!(query);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    event["requestContext"]["http"]["sourceIp"] = json!("198.51.100.7");
    for (name, value) in headers {
        // The Function URL's own host stays: the static host's proxy replaced the signed one.
        if name != header::HOST {
            event["headers"][name.as_str()] = json!(value.to_str().unwrap());
        }
    }
    if let Some(body) = body {
        // Function URLs pass text bodies as text and binary ones in base64.
        match std::str::from_utf8(body) {
            Ok(text) => event["body"] = json!(text),
            Err(_) => {
                event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
                event["isBase64Encoded"] = json!(true);
            }
        }
        event["headers"]["content-length"] = json!(body.len().to_string());
    }
    event
}

/// The remote server of the follower: alice's actor, and her inbox and the server's shared
/// inbox passing on what arrives.
async fn follower_server() -> (String, mpsc::UnboundedReceiver<(String, Bytes)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let remote = format!("http://{}", listener.local_addr().unwrap());
    let alice_pem = PrivateKey::from_pem(ALICE_KEY)
        .unwrap()
        .public_key_pem()
        .unwrap();
    let actor_doc = ACTOR_TEMPLATE
        .replace("{{BASE}}", &remote)
        .replace("{{USER}}", "alice")
        .replace("{{PEM}}", &alice_pem.replace('\n', "\\n"));
    let (tx, rx) = mpsc::unbounded_channel();
    let record = post(
        |State(tx): State<mpsc::UnboundedSender<(String, Bytes)>>, uri: Uri, body: Bytes| async move {
            let _ = tx.send((uri.path().to_string(), body));
            StatusCode::ACCEPTED
        },
    );
    let app = Router::new()
        .route(
            "/users/alice",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "application/activity+json")],
                    actor_doc,
                )
            }),
        )
        .route("/users/alice/inbox", record.clone())
        .route("/inbox", record)
        .with_state(tx);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (remote, rx)
}

/// The static host serving the built site, `/ap/*` as `application/activity+json`.
fn serve_site(listener: tokio::net::TcpListener, public: &Path) {
    let public = public.to_path_buf();
    let app = Router::new().route(
        "/ap/{*rest}",
        get(move |uri: Uri| {
            let public = public.clone();
            async move {
                match std::fs::read(public.join(uri.path().trim_start_matches('/'))) {
                    Ok(bytes) => ([(header::CONTENT_TYPE, "application/activity+json")], bytes)
                        .into_response(),
                    Err(_) => StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
}

fn write_post(site: &Path, slug: &str, date: &str) {
    common::write(
        site,
        &format!("content/posts/{slug}.md"),
        format!("+++\ntitle = \"{slug}\"\ndate = {date}\n+++\n\nThe post {slug}.\n"),
    );
}

/// The function process, as the Lambda service starts it.
struct Function {
    child: Child,
    log: std::path::PathBuf,
}

impl Function {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lambda_command(api: &RuntimeApi, log: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relais"));
    command
        .env("AWS_LAMBDA_RUNTIME_API", &api.address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "blog-inbox")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/blog-inbox")
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/30/[$LATEST]0123456789abcdef",
        )
        .env("AWS_REGION", "us-east-1")
        .env_remove("RELAIS_KEY_FILE")
        .env_remove("RELAIS_SITE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    command
}

/// The status and body `relais inbox` gives each of these POSTs, for comparison.
async fn inbox_answers(site: &Path, store: &Path, posts: &[(&str, &[u8])]) -> Vec<(u16, Vec<u8>)> {
    let port = common::free_port();
    let mut inbox = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["inbox", "--site"])
        .arg(site)
        .env("RELAIS_LISTEN", format!("127.0.0.1:{port}"))
        .env("RELAIS_STORE", store)
        .env("RELAIS_KEY", SITE_KEY)
        .env_remove("RELAIS_KEY_FILE")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + GUARD;
    while client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "inbox never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answers = Vec::new();
    for (path, body) in posts {
        let answer = client
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header(header::CONTENT_TYPE, "application/activity+json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        answers.push((
            answer.status().as_u16(),
            answer.bytes().await.unwrap().to_vec(),
        ));
    }
    let _ = inbox.kill();
    let _ = inbox.wait();
    answers
}

async fn function_url_and_scheduled_events_run_the_inbox_and_its_deliveries(
    backend: common::Backend,
) {
    let (remote, mut follower) = follower_server().await;
    let host_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", host_listener.local_addr().unwrap());
    let site = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    common::write(
        site.path(),
        "config.toml",
        format!(
            "title = \"Function blog\"\nbase_url = \"{base}\"\n[fediverse]\n\
             inbox_url = \"https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws\"\n\
             [inbox]\nallow_private_addresses = true\npoll_interval = \"1m\"\n"
        ),
    );
    let site_public = PrivateKey::from_pem(SITE_KEY)
        .unwrap()
        .public_key_pem()
        .unwrap();
    common::write(site.path(), "relais-key.pub.pem", &site_public);
    write_post(site.path(), "old", "2026-01-01");
    common::build_site(site.path());
    serve_site(host_listener, &site.path().join("public"));

    let mut api = RuntimeApi::start().await;
    let store_path = data.path().join("relais.db");
    let log = data.path().join("function.log");
    // As `provided.al2023` starts `bootstrap`: no arguments, everything in the environment.
    let mut command = lambda_command(&api, &log);
    match &backend {
        common::Backend::Sqlite => command.env("RELAIS_STORE", &store_path),
        common::Backend::Postgres(url) => command.env("RELAIS_STORE_URL", url),
    };
    let child = command
        .env("RELAIS_SITE", site.path())
        .env("RELAIS_KEY", SITE_KEY)
        .env("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true")
        .env("RELAIS_DEPLOY_TOKEN", DEPLOY_TOKEN)
        .spawn()
        .unwrap();
    let function = Function { child, log };

    // WebFinger, as the static host forwards a query it has no rule for.
    let webfinger: Value = common::read_json(&site.path().join("public/webfinger/blog.json"));
    let resource = webfinger["subject"].as_str().unwrap().to_string();
    let (status, answer, body) = api
        .http(function_url_event(
            "GET",
            "/.well-known/webfinger",
            &format!("resource={resource}"),
            &HeaderMap::new(),
            None,
        ))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", function.log());
    assert_eq!(answer["isBase64Encoded"], true, "{answer}");
    assert!(
        answer["headers"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("application/jrd+json"),
        "{answer}"
    );
    let document: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(document["subject"], resource.as_str());
    // A function's local files do not last: said for SQLite, not for PostgreSQL.
    assert_eq!(
        function.log().contains("is a local file"),
        matches!(backend, common::Backend::Sqlite),
        "{}",
        function.log()
    );

    // The same answer through an API Gateway REST API event.
    let mut rest: Value = serde_json::from_str(REST_API_EVENT).unwrap();
    rest["httpMethod"] = json!("GET");
    rest["path"] = json!("/.well-known/webfinger");
    rest["body"] = Value::Null;
    rest["queryStringParameters"] = json!({ "resource": resource });
    rest["multiValueQueryStringParameters"] = json!({ "resource": [resource] });
    let (status, answer, body) = api.http(rest).await;
    assert_eq!(status, 200, "{answer}\n{}", function.log());
    assert!(answer["multiValueHeaders"]["content-type"][0]
        .as_str()
        .unwrap()
        .starts_with("application/jrd+json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["subject"],
        resource.as_str()
    );

    // An unsigned POST, and one over `inbox.max_body_bytes` (1 MiB; a Function URL takes
    // 6 MB), are refused exactly as `relais inbox` refuses them.
    let follow = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{remote}/follows/1"),
        "type": "Follow",
        "actor": format!("{remote}/users/alice"),
        "object": format!("{base}/ap/users/blog.json"),
    });
    let follow_body = follow.to_string().into_bytes();
    let oversized = vec![b'x'; 1024 * 1024 + 1];
    let mut unsigned = HeaderMap::new();
    unsigned.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/activity+json"),
    );
    let posts: [(&str, &[u8]); 2] = [
        ("/ap/users/blog/inbox", &follow_body),
        ("/ap/inbox", &oversized),
    ];
    let inbox = inbox_answers(site.path(), &data.path().join("inbox.db"), &posts).await;
    let mut statuses = Vec::new();
    for ((path, body), (inbox_status, inbox_body)) in posts.iter().zip(inbox) {
        let (status, answer, body) = api
            .http(function_url_event("POST", path, "", &unsigned, Some(body)))
            .await;
        assert_eq!(status, inbox_status, "{path}: {answer}");
        assert_eq!(body, inbox_body, "{path}");
        statuses.push(status);
    }
    assert_eq!(statuses, [401, 413]);
    assert!(
        follower.try_recv().is_err(),
        "an unsigned follow was answered"
    );

    // A signed Follow: stored, and its Accept delivered before the invocation returned.
    let url = url::Url::parse(&format!("{base}/ap/users/blog/inbox")).unwrap();
    let mut signed = unsigned.clone();
    let alice = SigningKey::new(
        format!("{remote}/users/alice#main-key"),
        Arc::new(PrivateKey::from_pem(ALICE_KEY).unwrap()),
    );
    sign_request(
        &alice,
        &Method::POST,
        &url,
        &mut signed,
        Some(&follow_body),
        SystemTime::now(),
    )
    .unwrap();
    let (status, answer, _) = api
        .http(function_url_event(
            "POST",
            "/ap/users/blog/inbox",
            "",
            &signed,
            Some(&follow_body),
        ))
        .await;
    assert_eq!(status, 202, "{answer}\n{}", function.log());
    let (path, accept) = follower
        .try_recv()
        .expect("the Accept was not sent within the Follow's invocation");
    assert_eq!(path, "/users/alice/inbox");
    let accept: Value = serde_json::from_slice(&accept).unwrap();
    assert_eq!(accept["type"], "Accept", "{accept}");
    assert_eq!(accept["object"]["id"], follow["id"], "{accept}");
    let followers = match &backend {
        common::Backend::Sqlite => Store::open(&store_path).unwrap(),
        common::Backend::Postgres(url) => Store::connect(url).unwrap(),
    }
    .followers(None)
    .unwrap();
    assert_eq!(followers.len(), 1);
    assert_eq!(followers[0].follower_id, format!("{remote}/users/alice"));

    // A malformed event is an invocation error, and the function goes on serving.
    match api
        .invoke(json!({ "hello": "world" }), Duration::from_secs(10))
        .await
    {
        Outcome::Error {
            error_type, body, ..
        } => {
            // `lambda_runtime` sends its own `unhandled` type in the header.
            assert!(!error_type.is_empty(), "{body}");
            assert_eq!(body["errorType"], "relais.UnknownEvent", "{body}");
        }
        other => panic!("a malformed event was answered: {other:?}"),
    }

    // The schedule reads the live site (the old post is not sent)...
    let scheduled: Value = serde_json::from_str(SCHEDULED_EVENT).unwrap();
    match api.invoke(scheduled.clone(), Duration::from_secs(30)).await {
        Outcome::Response { body, .. } => assert_eq!(body["delivered"], 0, "{body}"),
        other => panic!("{other:?}\n{}", function.log()),
    }
    assert!(follower.try_recv().is_err(), "an old post was sent");
    // ...and delivers a new post before its invocation returns.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    write_post(site.path(), "fresh", &today);
    common::build_site(site.path());
    match api.invoke(scheduled, Duration::from_secs(30)).await {
        Outcome::Response { body, .. } => {
            assert_eq!(body["delivered"], 1, "{body}\n{}", function.log())
        }
        other => panic!("{other:?}\n{}", function.log()),
    }
    let (_, create) = follower
        .try_recv()
        .expect("the new post was not delivered within the scheduled invocation");
    let create: Value = serde_json::from_slice(&create).unwrap();
    assert_eq!(create["type"], "Create", "{create}");
    assert!(
        create["object"]["id"].as_str().unwrap().contains("fresh"),
        "{create}"
    );

    // A deploy notification publishes too, and its deliveries go out within its invocation.
    write_post(site.path(), "third", &today);
    common::build_site(site.path());
    let mut bearer = HeaderMap::new();
    bearer.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {DEPLOY_TOKEN}")).unwrap(),
    );
    bearer.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (status, answer, body) = api
        .http(function_url_event(
            "POST",
            "/relais/deploy",
            "",
            &bearer,
            Some(b"{}"),
        ))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", function.log());
    let report: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["creates"], 1, "{report}");
    let (_, create) = follower
        .try_recv()
        .expect("the deploy's delivery was not sent within its invocation");
    let create: Value = serde_json::from_slice(&create).unwrap();
    assert!(
        create["object"]["id"].as_str().unwrap().contains("third"),
        "{create}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn relais_inbox_under_lambda_reports_a_failed_start_to_init_error() {
    let mut api = RuntimeApi::start().await;
    let empty = tempfile::tempdir().unwrap();
    let log = empty.path().join("function.log");
    let mut child = lambda_command(&api, &log)
        .args(["inbox", "--site"])
        .arg(empty.path().join("no-site"))
        .spawn()
        .unwrap();
    let outcome = tokio::time::timeout(GUARD, api.outcomes.recv())
        .await
        .expect("no init error was reported")
        .unwrap();
    match outcome {
        Outcome::InitError { error_type, body } => {
            assert_eq!(error_type, "relais.InitError");
            assert!(
                body["errorMessage"]
                    .as_str()
                    .unwrap()
                    .contains("config.toml"),
                "{body}"
            );
        }
        other => panic!("{other:?}"),
    }
    let status = child.wait().unwrap();
    assert!(!status.success());
}

on_both_stores!(
    (flavor = "multi_thread"),
    function_url_and_scheduled_events_run_the_inbox_and_its_deliveries,
);
