//! `relais doctor`: checks a live deployment from outside, the way a Mastodon server meets
//! it — WebFinger, actor, a post's `rel=alternate` object, outbox, NodeInfo, the inbox
//! behind the host, followers, the clock and TLS — and says for each failure what to change.
//!
//! Every request goes through the SSRF-guarded [`FederationClient`] without following
//! redirects silently: a redirect is followed here, step by step, and an id is compared with
//! the URL that was asked for. Whatever the remote answers is quoted with `{:?}` (escaped)
//! in the messages.

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, DATE, LOCATION};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;
use url::Url;

use crate::config::HostKind;
use crate::federation::activities::{Like, LikeType, WithContext};
use crate::federation::fetch::{FederationClient, FetchError, RawResponse};
use crate::federation::urls::Urls;
use crate::federation::vocab::{ACTIVITY_JSON, ACTIVITY_JSON_ACCEPT, AS_CONTEXT, LD_JSON};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Warn,
    Fail,
}

/// One verdict: what was checked, how it went, and (unless ok) the one thing to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    /// For a warning or failure, what to change; for a pass, what was seen.
    pub fix: String,
}

/// What is known of the deployment before looking at it.
#[derive(Debug, Clone)]
pub struct Target {
    pub base_url: Url,
    /// Usernames of the actors; found on the home page when empty.
    pub actors: Vec<String>,
    /// The site's public key as the local site folder has it.
    pub public_key_pem: Option<String>,
    /// The host the site is deployed to, for host-specific advice.
    pub host: Option<HostKind>,
}

/// A clock further off than this is worth a warning...
const SKEW_WARN_SECS: u64 = 30;
/// ...and this much a failure: Mastodon refuses a signed request dated more than an hour
/// ahead, or older than its 5 minutes of validity plus an hour; stricter servers allow less.
const SKEW_FAIL_SECS: u64 = 5 * 60;
const MAX_REDIRECTS: usize = 3;

/// A fetched answer and where it finally came from.
struct Fetched {
    url: Url,
    redirected: bool,
    response: RawResponse,
}

impl Fetched {
    fn content_type(&self) -> String {
        header_text(&self.response.headers, CONTENT_TYPE)
    }

    fn media_type(&self) -> String {
        media_type(&self.content_type())
    }

    fn looks_like_html(&self) -> bool {
        self.media_type() == "text/html"
            || String::from_utf8_lossy(&self.response.body[..self.response.body.len().min(512)])
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("<!doctype html")
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.response.body).ok()
    }
}

struct Doctor<'a> {
    client: &'a FederationClient,
    target: &'a Target,
    urls: Urls,
    checks: Vec<Check>,
}

/// Runs every check against `target` and returns them in order. A check that cannot run
/// because an earlier one failed is left out rather than reported twice.
pub async fn diagnose(client: &FederationClient, target: &Target) -> Vec<Check> {
    let base = target.base_url.as_str().trim_end_matches('/').to_string();
    let mut doctor = Doctor {
        client,
        target,
        urls: Urls::from_base(&base),
        checks: Vec::new(),
    };
    doctor.run().await;
    doctor.checks
}

impl Doctor<'_> {
    fn push(&mut self, name: impl Into<String>, outcome: Outcome, fix: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            outcome,
            fix: one_line(&fix.into()),
        });
    }
    fn ok(&mut self, name: impl Into<String>, seen: impl Into<String>) {
        self.push(name, Outcome::Ok, seen);
    }
    fn warn(&mut self, name: impl Into<String>, fix: impl Into<String>) {
        self.push(name, Outcome::Warn, fix);
    }
    fn fail(&mut self, name: impl Into<String>, fix: impl Into<String>) {
        self.push(name, Outcome::Fail, fix);
    }

    async fn run(&mut self) {
        let Some(home) = self.home().await else {
            return;
        };
        self.clock("clock (site)", &home.response.headers);
        let actors = if self.target.actors.is_empty() {
            discover_actors(&home)
        } else {
            self.target.actors.clone()
        };
        if actors.is_empty() {
            self.fail(
                "actors",
                "the home page links no actor (rel=alternate application/activity+json): \
                 run `relais doctor --site DIR` so the usernames come from config.toml",
            );
            return;
        }
        let mut actor_docs = Vec::new();
        for name in &actors {
            let Some(actor_url) = self.webfinger(name).await else {
                continue;
            };
            if let Some(actor) = self.actor(name, &actor_url).await {
                actor_docs.push((name.clone(), actor));
            }
        }
        let actor_ids: Vec<String> = actors.iter().map(|n| self.urls.actor(n)).collect();
        let mut first_post = None;
        for (name, actor) in &actor_docs {
            let found = self.outbox(name, actor).await;
            if first_post.is_none() {
                first_post = found;
            }
        }
        if let Some((object_id, page)) = first_post {
            self.post(&object_id, page.as_deref(), &actor_ids).await;
        } else if !actor_docs.is_empty() {
            self.warn(
                "post",
                "no post in the outboxes: publish one to check a post page and its object",
            );
        }
        self.nodeinfo().await;
        let shared = actor_docs
            .iter()
            .find_map(|(_, a)| a["endpoints"]["sharedInbox"].as_str().map(str::to_string))
            .unwrap_or_else(|| self.urls.shared_inbox());
        self.inbox("inbox (shared)", &shared).await;
        for (name, actor) in &actor_docs {
            let inbox = actor["inbox"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| self.urls.inbox(name));
            self.inbox(&format!("inbox {name}"), &inbox).await;
            let followers = actor["followers"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| self.urls.followers(name));
            self.followers(name, &followers).await;
        }
    }

    /// GET with redirects followed here, each hop through the guarded client.
    async fn get(&self, url: &str, accept: &str) -> Result<Fetched, String> {
        let mut current = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        for hop in 0..=MAX_REDIRECTS {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(accept) {
                headers.insert(ACCEPT, value);
            }
            let response = self
                .client
                .request_raw(Method::GET, current.as_str(), headers, Bytes::new())
                .await
                .map_err(|e| describe_fetch_error(&e))?;
            if response.status.is_redirection() {
                let location = header_text(&response.headers, LOCATION);
                current = current
                    .join(&location)
                    .map_err(|_| format!("redirects to an invalid location {location:?}"))?;
                continue;
            }
            return Ok(Fetched {
                url: current,
                redirected: hop > 0,
                response,
            });
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }

    async fn home(&mut self) -> Option<Fetched> {
        let url = format!("{}/", self.urls.base());
        let https = self.target.base_url.scheme() == "https";
        match self.get(&url, "text/html").await {
            Ok(home) => {
                if https {
                    self.ok("tls", "https with a certificate this machine trusts");
                } else if is_loopback(&self.target.base_url) {
                    self.ok("tls", "http on loopback (a local test)");
                } else {
                    self.warn(
                        "tls",
                        "base_url is http://: Mastodon fetches https only; serve the site over \
                         TLS and set base_url to https://",
                    );
                }
                if home.response.status != StatusCode::OK {
                    self.warn(
                        "home page",
                        format!(
                            "{url} answers {}: deploy the built public/ folder",
                            home.response.status
                        ),
                    );
                } else {
                    self.ok("home page", format!("{url} answers 200"));
                }
                Some(home)
            }
            Err(error) => {
                let tls_problem = https
                    && ["certificate", "tls", "handshake"]
                        .iter()
                        .any(|w| error.to_ascii_lowercase().contains(w));
                if tls_problem {
                    self.fail(
                        "tls",
                        format!(
                            "{url}: the TLS certificate is not valid ({error}): renew it or \
                             let the host issue one for this domain"
                        ),
                    );
                } else {
                    self.fail(
                        "home page",
                        format!("{url} cannot be reached ({error}): check base_url and DNS"),
                    );
                }
                None
            }
        }
    }

    fn clock(&mut self, name: &str, headers: &HeaderMap) {
        let date = header_text(headers, DATE);
        let Ok(remote) = httpdate::parse_http_date(&date) else {
            self.warn(
                name,
                "the answer has no Date header: the clock cannot be compared",
            );
            return;
        };
        let now = SystemTime::now();
        let skew = now
            .duration_since(remote)
            .or_else(|_| remote.duration_since(now))
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let fix = format!(
            "the server's clock is {skew} s away from this machine's: Mastodon refuses \
             signatures dated more than an hour away and others allow less; run NTP \
             (chrony or systemd-timesyncd) on the server (or on this machine)"
        );
        if skew > SKEW_FAIL_SECS {
            self.fail(name, fix);
        } else if skew > SKEW_WARN_SECS {
            self.warn(name, fix);
        } else {
            self.ok(name, format!("{skew} s apart"));
        }
    }

    /// Both encodings of `resource=`: Mastodon's unencoded and Fedify's percent-encoded.
    /// Returns the actor URL the `self` link gives.
    async fn webfinger(&mut self, name: &str) -> Option<String> {
        let host = self.target.base_url.host_str().unwrap_or_default();
        let host = match self.target.base_url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let subject = format!("acct:{name}@{host}");
        let mut actor_url = None;
        for (label, query) in [
            ("acct:", subject.clone()),
            (
                "percent-encoded",
                subject.replace(':', "%3A").replace('@', "%40"),
            ),
        ] {
            let check = format!("webfinger {name} ({label})");
            let url = format!(
                "{}{}?resource={query}",
                self.urls.base(),
                Urls::WEBFINGER_PATH
            );
            let fetched = match self.get(&url, "application/jrd+json").await {
                Ok(f) => f,
                Err(e) => {
                    self.fail(check, format!("{url}: {e}"));
                    continue;
                }
            };
            let status = fetched.response.status;
            if status != StatusCode::OK {
                self.fail(
                    check,
                    format!(
                        "{url} answers {status}: the host's WebFinger rule is missing or does \
                         not match this resource ({}); redeploy public/ with the host rules",
                        rules_hint(self.target.host)
                    ),
                );
                continue;
            }
            let media = fetched.media_type();
            let Some(doc) = fetched.json() else {
                self.fail(
                    check,
                    format!(
                        "{url} is not JSON (served as {media:?}): the host served a page \
                         instead of /webfinger/{name}.json"
                    ),
                );
                continue;
            };
            if doc["subject"].as_str() != Some(subject.as_str()) {
                self.fail(
                    check,
                    format!(
                        "{url}: subject is {:?}, not {subject:?}: base_url's host must be the \
                         domain the site is served on; rebuild with the right base_url",
                        doc["subject"]
                    ),
                );
                continue;
            }
            let link = doc["links"].as_array().and_then(|links| {
                links.iter().find(|l| {
                    l["rel"] == "self"
                        && l["type"].as_str().is_some_and(is_activity_media_type)
                        && l["href"].is_string()
                })
            });
            let Some(href) = link.and_then(|l| l["href"].as_str()) else {
                self.fail(
                    check,
                    format!("{url}: no `self` link of type application/activity+json"),
                );
                continue;
            };
            if media == "application/jrd+json" {
                self.ok(check, format!("{url} → {href}"));
            } else {
                self.warn(
                    check,
                    format!(
                        "{url} is served as {media:?}, not application/jrd+json: {}",
                        headers_hint(self.target.host)
                    ),
                );
            }
            actor_url = Some(href.to_string());
        }
        actor_url
    }

    /// Fetches an ActivityPub document and checks its type and id; names the first problem.
    async fn document(&self, url: &str) -> Result<Value, String> {
        let fetched = self.get(url, ACTIVITY_JSON_ACCEPT).await?;
        let path = Url::parse(url)
            .map(|u| u.path().to_string())
            .unwrap_or_else(|_| url.to_string());
        let status = fetched.response.status;
        if status != StatusCode::OK {
            return Err(format!(
                "{path} answers {status}: deploy the built public/ folder (it holds {path})"
            ));
        }
        let content_type = fetched.content_type();
        if !is_activity_media_type(&content_type) {
            return Err(format!(
                "{path} is served as {:?}: {}",
                content_type,
                headers_hint(self.target.host)
            ));
        }
        let Some(doc) = fetched.json() else {
            return Err(format!(
                "{path} is not JSON{}",
                if fetched.looks_like_html() {
                    ": the host served a page"
                } else {
                    ""
                }
            ));
        };
        let id = doc["id"].as_str().unwrap_or_default();
        if id != url {
            let why = if fetched.redirected && id == fetched.url.as_str() {
                format!(
                    "{path} redirects to {:?}, and Mastodon wants each document at its own id: \
                     serve it without a redirect (or set base_url to where it is served)",
                    fetched.url.as_str()
                )
            } else {
                format!(
                    "{path}: its id {id:?} is not the URL it was fetched from: rebuild with \
                     base_url set to the address the site is served at"
                )
            };
            return Err(why);
        }
        Ok(doc)
    }

    async fn actor(&mut self, name: &str, url: &str) -> Option<Value> {
        let check = format!("actor {name}");
        let doc = match self.document(url).await {
            Ok(doc) => doc,
            Err(fix) => {
                self.fail(check, fix);
                return None;
            }
        };
        let missing: Vec<&str> = ["inbox", "outbox", "followers"]
            .into_iter()
            .filter(|k| !doc[*k].is_string())
            .collect();
        if !missing.is_empty() {
            self.fail(
                check,
                format!(
                    "{url} has no {}: rebuild with relais build",
                    missing.join(", ")
                ),
            );
            return None;
        }
        let published = doc["publicKey"]["publicKeyPem"].as_str();
        match (&self.target.public_key_pem, published) {
            (_, None) => {
                self.fail(
                    check,
                    format!("{url} has no publicKey.publicKeyPem: rebuild with relais build"),
                );
                return None;
            }
            (Some(local), Some(remote)) if squash(local) != squash(remote) => {
                self.fail(
                    check,
                    format!(
                        "{url} publishes another publicKeyPem than this site's key: deploy a \
                         build made with the current relais-key.pub.pem, and run the inbox \
                         with the matching relais-key.pem"
                    ),
                );
                return None;
            }
            (Some(_), Some(_)) => self.ok(check, format!("{url}, key matches the site's")),
            (None, Some(_)) => self.ok(check, url.to_string()),
        }
        Some(doc)
    }

    /// Checks the outbox and returns the newest post: its object id and page URL.
    async fn outbox(&mut self, name: &str, actor: &Value) -> Option<(String, Option<String>)> {
        let check = format!("outbox {name}");
        let url = actor["outbox"].as_str()?.to_string();
        let doc = match self.document(&url).await {
            Ok(doc) => doc,
            Err(fix) => {
                self.fail(check, fix);
                return None;
            }
        };
        let Some(total) = doc["totalItems"].as_u64() else {
            self.fail(check, format!("{url} has no totalItems"));
            return None;
        };
        self.ok(check, format!("{total} post(s)"));
        let items = match &doc["first"] {
            Value::String(first) => match self.document(first).await {
                Ok(page) => page["orderedItems"].clone(),
                Err(fix) => {
                    self.fail(format!("outbox {name} (first page)"), fix);
                    return None;
                }
            },
            Value::Object(page) => page.get("orderedItems").cloned().unwrap_or_default(),
            _ => doc["orderedItems"].clone(),
        };
        let object = items.as_array()?.first()?.get("object")?;
        let id = match object {
            Value::String(id) => id.clone(),
            other => other["id"].as_str()?.to_string(),
        };
        let page = object["url"].as_str().map(str::to_string);
        Some((id, page))
    }

    /// A post's page must link its object with `rel=alternate`, as Mastodon finds it when a
    /// post URL is pasted into search; the object must be served as its own id.
    async fn post(&mut self, object_id: &str, page: Option<&str>, actor_ids: &[String]) {
        if let Some(page) = page {
            match self.get(page, "text/html").await {
                Ok(fetched) if fetched.response.status == StatusCode::OK => {
                    let html = String::from_utf8_lossy(&fetched.response.body);
                    let links = alternate_links(&html);
                    if links.iter().any(|l| l == object_id) {
                        self.ok("post page", format!("{page} links its object"));
                    } else {
                        self.fail(
                            "post page",
                            format!(
                                "{page} has no <link rel=\"alternate\" \
                                 type=\"application/activity+json\" href=\"{object_id}\">: \
                                 keep the theme's head block (it is in the default theme)"
                            ),
                        );
                    }
                }
                Ok(fetched) => self.fail(
                    "post page",
                    format!(
                        "{page} answers {}: deploy the built public/ folder",
                        fetched.response.status
                    ),
                ),
                Err(e) => self.fail("post page", format!("{page}: {e}")),
            }
        }
        match self.document(object_id).await {
            Ok(doc) => {
                let by = doc["attributedTo"].as_str().unwrap_or_default();
                if actor_ids.iter().any(|a| a == by) {
                    self.ok("post object", object_id.to_string());
                } else {
                    self.fail(
                        "post object",
                        format!(
                            "{object_id} is attributed to {by:?}, not to one of this site's \
                             actors: rebuild and redeploy"
                        ),
                    );
                }
            }
            Err(fix) => self.fail("post object", fix),
        }
    }

    async fn nodeinfo(&mut self) {
        let url = format!("{}{}", self.urls.base(), Urls::NODEINFO_WELL_KNOWN_PATH);
        let links = match self.get(&url, "application/json").await {
            Ok(f) if f.response.status == StatusCode::OK => f.json(),
            Ok(f) => {
                self.warn(
                    "nodeinfo",
                    format!(
                        "{url} answers {}: deploy public/.well-known/ (some hosts skip dot \
                         folders)",
                        f.response.status
                    ),
                );
                return;
            }
            Err(e) => {
                self.warn("nodeinfo", format!("{url}: {e}"));
                return;
            }
        };
        let href = links.as_ref().and_then(|l| {
            l["links"].as_array()?.iter().find_map(|link| {
                link["rel"]
                    .as_str()
                    .is_some_and(|r| r.ends_with("/schema/2.1"))
                    .then(|| link["href"].as_str())
                    .flatten()
                    .map(str::to_string)
            })
        });
        let Some(href) = href else {
            self.warn("nodeinfo", format!("{url} links no NodeInfo 2.1 document"));
            return;
        };
        match self.get(&href, "application/json").await {
            Ok(f) if f.json().is_some_and(|d| d["version"] == "2.1") => self.ok("nodeinfo", href),
            Ok(f) => self.warn(
                "nodeinfo",
                format!(
                    "{href} answers {} without a NodeInfo 2.1 document",
                    f.response.status
                ),
            ),
            Err(e) => self.warn("nodeinfo", format!("{href}: {e}")),
        }
    }

    /// An unsigned POST must reach the inbox service through the host and be refused there.
    async fn inbox(&mut self, check: &str, url: &str) {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(ACTIVITY_JSON));
        let body = inbox_probe(&self.urls);
        let path = Url::parse(url)
            .map(|u| u.path().to_string())
            .unwrap_or_else(|_| url.to_string());
        let response = match self
            .client
            .request_raw(
                Method::POST,
                url,
                headers,
                Bytes::from(body.to_string().into_bytes()),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.fail(check, format!("POST {path}: {}", describe_fetch_error(&e)));
                return;
            }
        };
        let status = response.status;
        let html = media_type(&header_text(&response.headers, CONTENT_TYPE)) == "text/html";
        let proxy = proxy_hint(self.target.host);
        match status.as_u16() {
            401 if !html => {
                self.ok(check, format!("POST {path} unsigned → 401"));
                if !self.checks.iter().any(|c| c.name == "clock (inbox)") {
                    self.clock("clock (inbox)", &response.headers);
                }
            }
            404 | 405 => self.fail(
                check,
                format!(
                    "POST {path} answers {status}: the proxy rule is missing, so the host \
                     answers instead of the inbox; {proxy}"
                ),
            ),
            _ if html => self.fail(
                check,
                format!(
                    "POST {path} answers {status} with an HTML page: the host served a page \
                     instead of passing the request to the inbox; {proxy}"
                ),
            ),
            200..=299 => self.fail(
                check,
                format!(
                    "POST {path} accepted an unsigned activity ({status}): what answers there \
                     does not check signatures; point it at `relais inbox`"
                ),
            ),
            502..=504 => self.fail(
                check,
                format!(
                    "POST {path} answers {status}: the host cannot reach the inbox; is \
                     `relais inbox` running at fediverse.inbox_url?"
                ),
            ),
            _ => self.warn(
                check,
                format!(
                    "POST {path} answers {status} where the relais inbox answers 401: check \
                     what the host passes it to"
                ),
            ),
        }
    }

    async fn followers(&mut self, name: &str, url: &str) {
        let check = format!("followers {name}");
        match self.get(url, ACTIVITY_JSON_ACCEPT).await {
            Ok(f) if f.response.status == StatusCode::OK && f.json().is_some() => {
                self.ok(check, format!("{url} answers"))
            }
            Ok(f) => self.fail(
                check,
                format!(
                    "GET {url} answers {}{}: {}",
                    f.response.status,
                    if f.looks_like_html() {
                        " with an HTML page"
                    } else {
                        ""
                    },
                    proxy_hint(self.target.host)
                ),
            ),
            Err(e) => self.fail(check, format!("GET {url}: {e}")),
        }
    }
}

/// Usernames of the actors the home page links (`/ap/users/NAME.json`).
fn discover_actors(home: &Fetched) -> Vec<String> {
    let html = String::from_utf8_lossy(&home.response.body);
    let mut names: Vec<String> = alternate_links(&html)
        .iter()
        .filter_map(|href| {
            let url = home.url.join(href).ok()?;
            let name = url
                .path()
                .strip_prefix("/ap/users/")?
                .strip_suffix(".json")?;
            (!name.contains('/')).then(|| name.to_string())
        })
        .collect();
    names.dedup();
    names
}

/// `href`s of `<link rel="alternate" type="application/activity+json">` in a page.
pub fn alternate_links(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut rest = 0;
    while let Some(at) = lower[rest..].find("<link") {
        let start = rest + at;
        let Some(len) = lower[start..].find('>') else {
            break;
        };
        let tag = &html[start..start + len];
        rest = start + len;
        let attr = |name: &str| attribute(tag, name);
        if attr("rel").is_some_and(|r| r.eq_ignore_ascii_case("alternate"))
            && attr("type").is_some_and(|t| is_activity_media_type(&t))
        {
            if let Some(href) = attr("href") {
                found.push(href.replace("&amp;", "&"));
            }
        }
    }
    found
}

/// The value of `name="…"` (or `'…'`) in one tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(name) {
        let start = from + at;
        from = start + name.len();
        let before = lower[..start].chars().last();
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let after = tag[from..].trim_start();
        let Some(value) = after.strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        let quote = value.chars().next()?;
        if quote == '"' || quote == '\'' {
            let inner = &value[1..];
            return inner.find(quote).map(|end| inner[..end].to_string());
        }
        return value
            .split(|c: char| c.is_whitespace() || c == '>')
            .next()
            .map(str::to_string);
    }
    None
}

/// The unsigned `Like` doctor posts to the inbox, which must refuse it.
pub fn inbox_probe(urls: &Urls) -> Value {
    WithContext::activitystreams(Like {
        id: format!("{}/relais-doctor#probe", urls.base()),
        kind: LikeType::Like,
        actor: format!("{}/relais-doctor", urls.base()),
        object: urls.base().to_string(),
    })
    .to_value()
}

fn is_activity_media_type(content_type: &str) -> bool {
    let media = media_type(content_type);
    media == ACTIVITY_JSON || (media == LD_JSON && content_type.contains(AS_CONTEXT))
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn header_text(headers: &HeaderMap, name: http::header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Where the content types come from on each host.
fn headers_hint(host: Option<HostKind>) -> &'static str {
    match host {
        Some(HostKind::Netlify) => {
            "the host does not apply _headers; on Netlify check that public/_headers was \
             deployed (publish = \"public\")"
        }
        Some(HostKind::CloudflarePages) => {
            "the host does not apply _headers; on Cloudflare Pages check that public/_headers \
             was deployed with the site"
        }
        Some(HostKind::GithubPages) => {
            "GitHub Pages cannot set content types: serve the domain through Caddy (the \
             Caddyfile relais writes) or through the inbox with serve_public"
        }
        Some(HostKind::Caddy) => {
            "Caddy does not set the fediverse content types: use the Caddyfile relais writes"
        }
        None => {
            "serve /ap/ as application/activity+json and /webfinger/ as application/jrd+json \
             (public/_headers on Netlify and Cloudflare Pages, the Caddyfile on a server)"
        }
    }
}

fn rules_hint(host: Option<HostKind>) -> &'static str {
    match host {
        Some(HostKind::Netlify) => "public/_redirects on Netlify",
        Some(HostKind::CloudflarePages) => "public/_worker.js on Cloudflare Pages",
        Some(HostKind::GithubPages | HostKind::Caddy) => "the Caddyfile",
        None => "public/_redirects, _worker.js or the Caddyfile",
    }
}

fn proxy_hint(host: Option<HostKind>) -> &'static str {
    match host {
        Some(HostKind::Netlify) => {
            "on Netlify, deploy public/_redirects (its 200 rules proxy the inbox paths to \
             fediverse.inbox_url) and set fediverse.inbox_url before building"
        }
        Some(HostKind::CloudflarePages) => {
            "on Cloudflare Pages, deploy public/_worker.js (it proxies the inbox paths to \
             fediverse.inbox_url)"
        }
        Some(HostKind::GithubPages | HostKind::Caddy) => {
            "the Caddyfile must reverse_proxy the inbox paths to `relais inbox`"
        }
        None => {
            "the host must pass /ap/inbox, /ap/users/*/inbox and /ap/users/*/followers to \
             `relais inbox` (fediverse.inbox_url)"
        }
    }
}

fn describe_fetch_error(error: &FetchError) -> String {
    match error {
        FetchError::Http { source, .. } => {
            // reqwest hides the cause (refused connection, certificate) in the chain.
            let mut text = source.to_string();
            let mut cause = std::error::Error::source(source);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            text
        }
        other => other.to_string(),
    }
}

fn squash(pem: &str) -> String {
    pem.split_whitespace().collect()
}

/// One printable line: control characters and newlines escaped, as anything remote may
/// hold them.
pub fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_alternate_links_in_any_attribute_order() {
        let html = "<head><link rel=\"stylesheet\" href=\"/a.css\">\
                    <LINK href='https://b.example/ap/posts/x.json' type=\"application/activity+json\" rel=alternate>\
                    <link rel=\"alternate\" type=\"application/rss+xml\" href=\"/rss.xml\"></head>";
        assert_eq!(
            alternate_links(html),
            vec!["https://b.example/ap/posts/x.json".to_string()]
        );
    }

    #[test]
    fn activity_types_are_recognised() {
        assert!(is_activity_media_type(
            "application/activity+json; charset=utf-8"
        ));
        assert!(is_activity_media_type(
            "application/ld+json; profile=\"https://www.w3.org/ns/activitystreams\""
        ));
        assert!(!is_activity_media_type("application/ld+json"));
        assert!(!is_activity_media_type("application/json"));
        assert!(!is_activity_media_type("text/html"));
    }

    #[test]
    fn remote_text_is_printed_on_one_line() {
        assert_eq!(one_line("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }
}
