//! What the integration tests share: running the real binary, writing and copying sites
//! (`write`, `copy_sources`, `snapshot`), building a copy of `example-site/` and reading the
//! output the way a fediverse server meets it, through a static host that applies the
//! build's `_headers` and `_redirects` as Netlify does; `peer`, the one fake fediverse server.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

pub mod peer;
pub mod serve;

/// `base_url` of `example-site/config.toml`.
pub const BASE_URL: &str = "https://relais.example";
pub const HOST: &str = "relais.example";
/// `fediverse.inbox_url` of `example-site/config.toml`.
pub const INBOX_SERVICE: &str = "https://inbox.relais.example";
pub const AS_PUBLIC: &str = "https://www.w3.org/ns/activitystreams#Public";
pub const AS_CONTEXT: &str = "https://www.w3.org/ns/activitystreams";
/// `SUPPORTED_TYPES` of Mastodon's `app/services/activitypub/fetch_remote_actor_service.rb`.
pub const MASTODON_ACTOR_TYPES: [&str; 5] =
    ["Application", "Group", "Organization", "Person", "Service"];

pub fn relais(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(args)
        .output()
        .expect("run relais")
}

/// `relais <command> --site <site> <extra...>`.
pub fn relais_on(command: &str, site: &Path, extra: &[&str]) -> Output {
    let mut args = vec![command, "--site", site.to_str().unwrap()];
    args.extend_from_slice(extra);
    relais(&args)
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        stdout(output),
        stderr(output)
    );
}

/// Warning lines a command printed (`warning: ` taken off).
pub fn warnings(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter_map(|l| l.strip_prefix("warning: "))
        .map(String::from)
        .collect()
}

/// Waits until the `relais inbox` at `base` answers `GET /healthz`; fails the test with its
/// log (`log`) if the process exits first or does not answer within a minute.
pub async fn wait_healthy(child: &mut std::process::Child, base: &str, log: &Path) {
    wait_healthy_within(child, base, log, std::time::Duration::from_secs(60)).await
}

/// [`wait_healthy`] with a longer guard, for inboxes that start against a busy database.
pub async fn wait_healthy_within(
    child: &mut std::process::Child,
    base: &str,
    log: &Path,
    guard: std::time::Duration,
) {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + guard;
    let log = || fs::read_to_string(log).unwrap_or_default();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("relais inbox exited with {status}:\n{}", log());
        }
        let health = client.get(format!("{base}/healthz")).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "inbox never answered:\n{}",
            log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs the real `relais build` on `site`, failing the test on error.
pub fn build_site(site: &Path) {
    assert_success(&relais_on("build", site, &[]), "relais build");
}

/// Copies the sources of `example-site/` into `to`, leaving out what a build of the
/// checked-out example may have left there (output, cache, keys).
pub fn copy_example_site(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("example-site");
    copy_dir(&from, to, &|name| {
        name == "public"
            || name == ".relais"
            || name.starts_with("relais-key")
            || name.starts_with("relais.db")
    });
}

/// Copies the folder `from` to `to`, leaving out the entries of its top level that `skip`
/// names.
pub fn copy_dir(from: &Path, to: &Path, skip: &dyn Fn(&str) -> bool) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip(&name) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target, &|_| false);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Copies a site's sources to `to`: not its output (`public/`) nor its build index.
pub fn copy_sources(from: &Path, to: &Path) {
    copy_dir(from, to, &|name| name == "public" || name == ".relais");
}

/// Every file under `dir` (none if it does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(listing) = fs::read_dir(dir) else {
        return out;
    };
    for entry in listing.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Every file under `dir`, relative, with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(dir)
        .into_iter()
        .map(|entry| {
            let bytes = fs::read(&entry).unwrap();
            (entry.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

/// Writes `bytes` to `root/rel`, making its folders.
pub fn write(root: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// A 1×1 PNG.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x02, 0x00,
    0x00, 0x05, 0x00, 0x01, 0xe9, 0xfa, 0xdc, 0xd8, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44,
    0xae, 0x42, 0x60, 0x82,
];

/// A copy of the example site, built once per test binary.
pub struct Built {
    pub site: PathBuf,
    pub public: PathBuf,
}

/// Copies the example site to `<cargo test tmpdir>/<name>`, lets `prepare` change it, runs
/// `relais build` on it, and keeps the result for every test of the binary. The directory is
/// rebuilt from scratch on each run of the tests.
pub fn build_once(
    cell: &'static OnceLock<Built>,
    name: &str,
    prepare: fn(&Path),
) -> &'static Built {
    cell.get_or_init(|| {
        let site = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        if site.exists() {
            fs::remove_dir_all(&site).unwrap();
        }
        copy_example_site(&site);
        prepare(&site);
        assert_success(&relais_on("build", &site, &[]), "relais build");
        Built {
            public: site.join("public"),
            site,
        }
    })
}

/// Site path (`/ap/users/notes.json`) of a URL of the example site, if it is one.
pub fn site_path(url: &str) -> Option<&str> {
    url.strip_prefix(BASE_URL).filter(|p| p.starts_with('/'))
}

pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .unwrap_or_else(|e| panic!("{url:?} is not a URL: {e}"))
        .host_str()
        .unwrap_or_else(|| panic!("{url} has no host"))
        .to_string()
}

pub fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every file under `dir`, recursively, as `(site path, file)`, sorted.
pub fn files_under(public: &Path, dir: &str) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let root = public.join(dir.trim_start_matches('/'));
    if !root.exists() {
        return found;
    }
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(public).unwrap();
                let site_path = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
                found.push((site_path, path));
            }
        }
    }
    found.sort();
    found
}

/// Every JSON document of the federation stage: `(site path, document)`.
pub fn json_documents(public: &Path) -> Vec<(String, Value)> {
    ["/ap", "/webfinger", "/nodeinfo", "/.well-known"]
        .iter()
        .flat_map(|dir| files_under(public, dir))
        .map(|(site_path, file)| (site_path, read_json(&file)))
        .collect()
}

/// The actor documents, `/ap/users/<name>.json`.
pub fn actor_documents(public: &Path) -> Vec<(String, Value)> {
    json_documents(public)
        .into_iter()
        .filter(|(path, _)| {
            path.strip_prefix("/ap/users/")
                .is_some_and(|rest| !rest.contains('/'))
        })
        .collect()
}

/// The object documents of the posts, `/ap/posts/<slug>.json`.
pub fn post_objects(public: &Path) -> Vec<(String, Value)> {
    json_documents(public)
        .into_iter()
        .filter(|(path, _)| {
            path.strip_prefix("/ap/posts/")
                .is_some_and(|rest| !rest.contains('/'))
        })
        .collect()
}

/// The value of a string field, or a panic naming the document.
pub fn text<'v>(doc: &'v Value, key: &str) -> &'v str {
    doc[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {doc:#}"))
}

/// A `_headers` rule: a Netlify path pattern and the headers it sets.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    pub pattern: String,
    pub headers: Vec<(String, String)>,
}

/// A `_redirects` rule.
#[derive(Debug, Clone)]
pub struct RedirectRule {
    pub from: String,
    pub query: Vec<(String, String)>,
    pub to: String,
    pub status: u16,
}

/// What the static host does with a GET.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A file of the output folder, with the headers `_headers` gives it.
    File {
        site_path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Handed to another server (the inbox service) as a 200 rewrite.
    Proxied(String),
    NotFound,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            Answer::File { headers, .. } => headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    /// The media type of `Content-Type`, without parameters, lowercased.
    pub fn mime_type(&self) -> Option<String> {
        self.header("Content-Type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    pub fn json(&self) -> Value {
        match self {
            Answer::File {
                body, site_path, ..
            } => serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("{site_path} is not JSON: {e}")),
            other => panic!("expected a file, got {other:?}"),
        }
    }
}

/// The output folder served as Netlify serves it: an existing file wins over the rules
/// (no rule is forced with `!`), then the first matching `_redirects` rule applies, and
/// `_headers` rules add headers to files.
#[derive(Debug, Clone)]
pub struct StaticHost {
    pub public: PathBuf,
    pub headers: Vec<HeaderRule>,
    pub redirects: Vec<RedirectRule>,
}

impl StaticHost {
    pub fn new(public: &Path) -> StaticHost {
        let headers = fs::read_to_string(public.join("_headers")).expect("public/_headers");
        let redirects = fs::read_to_string(public.join("_redirects")).expect("public/_redirects");
        StaticHost {
            public: public.to_path_buf(),
            headers: parse_headers_file(&headers),
            redirects: parse_redirects_file(&redirects),
        }
    }

    /// GET of an absolute URL; the fragment is not sent, as with any HTTP client.
    pub fn get(&self, url: &str) -> Answer {
        let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url:?}: {e}"));
        assert_eq!(
            parsed.host_str(),
            Some(HOST),
            "{url} is not on the site's host"
        );
        let path = parsed.path().to_string();
        let query: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        if let Some(answer) = self.file(&path) {
            return answer;
        }
        for rule in &self.redirects {
            let Some(to) = match_path(&rule.from, &path, &rule.to) else {
                continue;
            };
            if !rule.query.iter().all(|cond| query.contains(cond)) {
                continue;
            }
            return match rule.status {
                200 if to.starts_with("https://") || to.starts_with("http://") => {
                    Answer::Proxied(to)
                }
                200 => self.file(&to).unwrap_or(Answer::NotFound),
                _ => Answer::NotFound,
            };
        }
        Answer::NotFound
    }

    fn file(&self, path: &str) -> Option<Answer> {
        let rel = path.trim_start_matches('/');
        let mut file = self.public.join(rel);
        if path.ends_with('/') {
            file = file.join("index.html");
        }
        if !file.is_file() {
            return None;
        }
        let headers = self
            .headers
            .iter()
            .filter(|rule| match_path(&rule.pattern, path, "").is_some())
            .flat_map(|rule| rule.headers.clone())
            .collect();
        Some(Answer::File {
            site_path: path.to_string(),
            headers,
            body: fs::read(file).unwrap(),
        })
    }
}

/// Netlify path matching: `*` at the end matches the rest (`:splat`), `:name` one segment.
/// Returns `to` with the placeholders filled in.
fn match_path(pattern: &str, path: &str, to: &str) -> Option<String> {
    let mut to = to.to_string();
    if let Some(prefix) = pattern.strip_suffix('*') {
        let rest = path.strip_prefix(prefix)?;
        return Some(to.replace(":splat", rest));
    }
    let pattern_parts: Vec<&str> = pattern.split('/').collect();
    let path_parts: Vec<&str> = path.split('/').collect();
    if pattern_parts.len() != path_parts.len() {
        return None;
    }
    for (want, got) in pattern_parts.iter().zip(&path_parts) {
        match want.strip_prefix(':') {
            Some(name) if !got.is_empty() => to = to.replace(&format!(":{name}"), got),
            _ if want == got => {}
            _ => return None,
        }
    }
    Some(to)
}

pub fn parse_headers_file(text: &str) -> Vec<HeaderRule> {
    let mut rules: Vec<HeaderRule> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let (name, value) = line
                .trim()
                .split_once(':')
                .unwrap_or_else(|| panic!("bad _headers line {line:?}"));
            rules
                .last_mut()
                .expect("a header line follows a path")
                .headers
                .push((name.trim().to_string(), value.trim().to_string()));
        } else {
            rules.push(HeaderRule {
                pattern: line.trim().to_string(),
                headers: Vec::new(),
            });
        }
    }
    rules
}

pub fn parse_redirects_file(text: &str) -> Vec<RedirectRule> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 3, "bad _redirects line {line:?}");
            let status = fields[fields.len() - 1]
                .parse()
                .unwrap_or_else(|_| panic!("no status in {line:?}"));
            let query = fields[1..fields.len() - 2]
                .iter()
                .map(|cond| {
                    let (k, v) = cond
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad condition in {line:?}"));
                    (k.to_string(), v.to_string())
                })
                .collect();
            RedirectRule {
                from: fields[0].to_string(),
                query,
                to: fields[fields.len() - 2].to_string(),
                status,
            }
        })
        .collect()
}

pub fn squash_spaces(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A `publicKeyPem` read as Mastodon's OpenSSL reads it, independently of relais: an SPKI
/// `PUBLIC KEY` block whose algorithm is rsaEncryption. Returns the PKCS#1 `RSAPublicKey` DER
/// inside and the modulus size in bits.
pub fn rsa_spki_pem(pem: &str) -> Result<(Vec<u8>, usize), String> {
    use base64::Engine;
    let body: String = pem
        .trim()
        .strip_prefix("-----BEGIN PUBLIC KEY-----")
        .and_then(|rest| rest.strip_suffix("-----END PUBLIC KEY-----"))
        .ok_or("not a PUBLIC KEY PEM block")?
        .split_ascii_whitespace()
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| e.to_string())?;
    let spki =
        spki::SubjectPublicKeyInfoRef::try_from(der.as_slice()).map_err(|e| e.to_string())?;
    // rsaEncryption (RFC 8017, A.1).
    const RSA_ENCRYPTION: spki::ObjectIdentifier =
        spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    if spki.algorithm.oid != RSA_ENCRYPTION {
        return Err(format!(
            "algorithm {} is not rsaEncryption",
            spki.algorithm.oid
        ));
    }
    let pkcs1_der = spki
        .subject_public_key
        .as_bytes()
        .ok_or("unaligned key bits")?
        .to_vec();
    let key = pkcs1::RsaPublicKey::try_from(pkcs1_der.as_slice()).map_err(|e| e.to_string())?;
    let bits = key.modulus.as_bytes().len() * 8;
    Ok((pkcs1_der, bits))
}

/// RSASSA-PKCS1-v1_5 SHA-256 verification by *ring*, not by relais's aws-lc.
pub fn ring_rsa_sha256_verifies(pkcs1_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, pkcs1_der)
        .verify(message, signature)
        .is_ok()
}

/// A free loopback port: the listener is dropped, so the port is free for the binary.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `npm ci` of the pinned lock file in `dir`, unless node_modules was installed from it
/// already. One install at a time: the tests of one binary share their folders.
pub fn npm_ci(dir: &Path) {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let modified = |path: PathBuf| fs::metadata(path).and_then(|m| m.modified()).ok();
    let installed = modified(dir.join("node_modules/.package-lock.json"));
    let locked = modified(dir.join("package-lock.json"));
    if matches!((installed, locked), (Some(i), Some(l)) if i >= l) {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("run npm ci");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

/// The throwaway PostgreSQL cluster the store's own tests use (one per test process).
#[path = "../../src/store/testdb.rs"]
mod testdb;
pub use testdb::tls_database;

/// The store a test's site works with.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The default: `relais.db` in the site folder.
    Sqlite,
    /// A fresh database on the test cluster, by URL.
    Postgres(String),
}

impl Backend {
    /// A fresh PostgreSQL database, or `None` (after printing why) where PostgreSQL cannot
    /// run and `RELAIS_REQUIRE_POSTGRES` is not set.
    pub fn postgres() -> Option<Backend> {
        testdb::database_url().map(Backend::Postgres)
    }

    /// What goes into `[inbox]` of `config.toml` to put the store there.
    pub fn config_line(&self) -> String {
        match self {
            Backend::Sqlite => String::new(),
            Backend::Postgres(url) => format!("store = \"{url}\"\n"),
        }
    }

    /// The site's store, as the binary sees it.
    pub fn open(&self, site: &Path) -> relais::store::Store {
        match self {
            Backend::Sqlite => relais::store::Store::open(&site.join("relais.db")).unwrap(),
            Backend::Postgres(url) => relais::store::Store::connect(url).unwrap(),
        }
    }
}

/// Runs the async test function `$name(backend)` once on each store:
/// `${name}_on_sqlite` and `${name}_on_postgres` (which skips where PostgreSQL cannot run).
#[macro_export]
macro_rules! on_both_stores {
    ($flavor:tt, $($name:ident),+ $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test $flavor]
                async fn $name() {
                    super::$name(super::common::Backend::Sqlite).await
                }
            )+
        }
        mod on_postgres {
            $(
                #[tokio::test $flavor]
                async fn $name() {
                    if let Some(backend) = super::common::Backend::postgres() {
                        super::$name(backend).await
                    }
                }
            )+
        }
    };
}
