//! `relais inbox` configured only through the environment, as in a container: the listen
//! address, the store path and the private key itself (`RELAIS_KEY`, no key file on disk)
//! come from variables. A signed Follow from the loopback remote server (`common::peer`) gets a
//! signed Accept that verifies against the published key.

use crate::common;

use std::process::{Command, Stdio};
use std::time::SystemTime;

use crate::common::peer::Peer;
use axum::http::Method;
use relais::federation::keys::{parse_public_key_pem, PrivateKey};
use relais::federation::signature::{verify_request, IncomingRequest, SignatureParams};
use serde_json::json;

const SITE_KEY: &str = include_str!("fixtures/site_key.pem");

#[tokio::test(flavor = "multi_thread")]
async fn inbox_runs_from_environment_variables_alone() {
    // The remote server: alice's actor and an inbox recording what the blog sends.
    let remote = Peer::start(&["alice"]).await;

    // The site: only the public key on disk, built with it.
    let site = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    common::write(
        site.path(),
        "config.toml",
        format!(
            "title = \"Env blog\"\nbase_url = \"{base}\"\n[fediverse]\ninbox_url = \"{base}\"\n\
             [inbox]\nallow_private_addresses = true\n"
        ),
    );
    let site_public = PrivateKey::from_pem(SITE_KEY)
        .unwrap()
        .public_key_pem()
        .unwrap();
    common::write(site.path(), "relais-key.pub.pem", &site_public);
    common::write(
        site.path(),
        "content/posts/hello.md",
        "+++\ntitle = \"Hello\"\ndate = 2026-01-01\n+++\n\nFirst post.\n",
    );
    common::build_site(site.path());
    assert!(!site.path().join("relais-key.pem").exists());

    let store = data.path().join("store/relais.db");
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    let log = data.path().join("inbox.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["inbox", "--site"])
        .arg(site.path())
        .env("RELAIS_LISTEN", format!("127.0.0.1:{port}"))
        .env("RELAIS_STORE", &store)
        .env("RELAIS_KEY", SITE_KEY)
        .env_remove("RELAIS_KEY_FILE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    common::wait_healthy(&mut child, &base, &log).await;
    assert!(store.exists(), "the store is where RELAIS_STORE says");
    assert!(!site.path().join("relais.db").exists());

    // A signed Follow: accepted, and answered with an Accept signed by the key from the env.
    let blog = format!("{base}/ap/users/blog.json");
    let follow = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/follows/1", remote.base),
        "type": "Follow",
        "actor": remote.actor("alice"),
        "object": blog,
    });
    let response = remote
        .post("alice", &format!("{base}/ap/users/blog/inbox"), &follow)
        .await;
    assert_eq!(
        response.status(),
        202,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let accept = remote.next().await;
    assert_eq!(accept.body["type"], "Accept");
    let params = SignatureParams::from_headers(&accept.headers).unwrap();
    assert_eq!(params.key_id, format!("{blog}#main-key"));
    verify_request(
        &params,
        &IncomingRequest {
            method: &Method::POST,
            path_and_query: &accept.path,
            headers: &accept.headers,
            public_host: &remote.host,
            body: Some(&accept.bytes),
        },
        &parse_public_key_pem(&site_public).unwrap(),
        SystemTime::now(),
    )
    .unwrap();

    let _ = child.kill();
    let _ = child.wait();
    // The key from the environment was written nowhere.
    for dir in [site.path(), data.path()] {
        for entry in walk(dir) {
            let text = std::fs::read(&entry).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&text).contains("PRIVATE KEY"),
                "{} holds a private key",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
