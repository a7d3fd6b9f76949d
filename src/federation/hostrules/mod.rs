//! Static host rules: what a host in front of `public/` must do for the fediverse to read the
//! site. One description ([`HostRules`]: the content type per path, the WebFinger resources
//! and their files, the dynamic paths answered by the inbox service) and one writer per host:
//!
//! - [`netlify`]: `_headers` and `_redirects` (query rules, 200 proxies);
//! - [`cloudflare`]: `_headers` and an advanced-mode `_worker.js`, because Pages rejects
//!   query conditions and proxies to other origins in `_redirects`;
//! - [`caddy`]: a Caddyfile, for a server of one's own or in front of GitHub Pages, which
//!   sets no headers at all.
//!
//! [`output_files`] picks the files the build writes for `config.deploy.host`.

pub mod caddy;
pub mod cloudflare;
pub mod netlify;

pub use caddy::caddyfile;

use crate::config::{HostKind, SiteConfig};
use crate::federation::documents::actors;
use crate::federation::urls::Urls;

pub use crate::federation::vocab::ACTIVITY_JSON_UTF8;
pub const JRD_JSON_UTF8: &str = "application/jrd+json; charset=utf-8";
pub const NODEINFO_JSON: &str =
    "application/json; profile=\"http://nodeinfo.diaspora.software/ns/schema/2.1#\"";

/// Headers for every site path matching `pattern`.
///
/// Patterns use Netlify's syntax, which the other writers translate: literal segments,
/// `:name` for exactly one segment, and a final `*` for the rest of the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    pub pattern: String,
    pub headers: Vec<(String, String)>,
}

/// A WebFinger `resource=` value naming one of the site's actors, and the file answering it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebfingerRoute {
    /// Unencoded (`acct:blog@blog.example`): hosts decode the query before comparing.
    pub resource: String,
    /// Site path of the JRD file, `/webfinger/blog.json`.
    pub file: String,
}

/// What every host must do, whatever its configuration language.
#[derive(Debug, Clone, Default)]
pub struct HostRules {
    pub headers: Vec<HeaderRule>,
    pub webfinger: Vec<WebfingerRoute>,
    /// Path patterns answered by the inbox service (same syntax as [`HeaderRule::pattern`]).
    /// Empty without `inbox_url`.
    pub dynamic: Vec<String>,
    /// `fediverse.inbox_url` without its trailing slash. WebFinger resources the site does
    /// not know go there too (it answers 404); without it they get a 404 from the host.
    pub inbox: Option<String>,
}

fn cors() -> (String, String) {
    ("Access-Control-Allow-Origin".into(), "*".into())
}

fn typed(pattern: &str, content_type: &str) -> HeaderRule {
    HeaderRule {
        pattern: pattern.into(),
        headers: vec![("Content-Type".into(), content_type.into()), cors()],
    }
}

/// The rules a site needs on its static host.
pub fn host_rules(config: &SiteConfig) -> HostRules {
    let urls = Urls::new(config);
    let mut activity = typed("/ap/*", ACTIVITY_JSON_UTF8);
    activity.headers.push(("Vary".into(), "Accept".into()));
    let headers = vec![
        activity,
        typed("/webfinger/*", JRD_JSON_UTF8),
        // Netlify may match header rules against the requested path of a rewrite rather
        // than the file it serves: the WebFinger path itself says JRD too.
        typed(Urls::WEBFINGER_PATH, JRD_JSON_UTF8),
        typed(Urls::NODEINFO_WELL_KNOWN_PATH, "application/json"),
        typed(Urls::NODEINFO_PATH, NODEINFO_JSON),
    ];

    // One resource per actor by handle, one by id (what Mastodon asks after reading an actor).
    let mut webfinger = Vec::new();
    for actor in actors(config) {
        let file = Urls::webfinger_file_path(&actor.name);
        for resource in [
            format!("acct:{}@{}", actor.name, config.host()),
            urls.actor(&actor.name),
        ] {
            webfinger.push(WebfingerRoute {
                resource,
                file: file.clone(),
            });
        }
    }

    let inbox = config
        .fediverse
        .inbox_url
        .as_deref()
        .map(|url| url.trim_end_matches('/').to_string());
    let dynamic = match inbox {
        Some(_) => {
            let mut paths = vec![
                Urls::inbox_path(":name"),
                Urls::followers_path(":name"),
                Urls::SHARED_INBOX_PATH.to_string(),
            ];
            // A post's replies live under its page path, which is `/posts/slug/` for relais's
            // own posts but anything for a bridged site (Jekyll's `/2024/05/01/x.html`). Host
            // patterns cannot match several segments in the middle, so one per depth.
            paths.extend((1..=MAX_POST_DEPTH).map(|depth| {
                let segments: String = (1..=depth).map(|n| format!("/:p{n}")).collect();
                Urls::replies_path(&format!("{segments}/"))
            }));
            paths.push(Urls::INTERACTIONS_PATH.to_string());
            paths.push(Urls::quote_authorization_path(":token"));
            paths
        }
        None => Vec::new(),
    };
    HostRules {
        headers,
        webfinger,
        dynamic,
        inbox,
    }
}

/// Deepest page path whose replies collection the host proxies: `/a/b/c/d/e/f/`.
pub const MAX_POST_DEPTH: usize = 6;

impl HostRules {
    /// The headers the rules give a file at `path`, in rule order.
    pub fn headers_for(&self, path: &str) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|rule| pattern_matches(&rule.pattern, path))
            .flat_map(|rule| rule.headers.iter().cloned())
            .collect()
    }

    /// Whether `path` is answered by the inbox service.
    pub fn is_dynamic(&self, path: &str) -> bool {
        self.dynamic.iter().any(|p| pattern_matches(p, path))
    }
}

/// Netlify-syntax matching: a final `*` takes the rest, `:name` one non-empty segment.
pub fn pattern_matches(pattern: &str, path: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        return path.starts_with(prefix);
    }
    let want: Vec<&str> = pattern.split('/').collect();
    let got: Vec<&str> = path.split('/').collect();
    want.len() == got.len()
        && want.iter().zip(&got).all(|(w, g)| {
            if w.starts_with(':') {
                !g.is_empty()
            } else {
                w == g
            }
        })
}

/// A file the host rules add to the build output: a site path and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    pub path: &'static str,
    pub text: String,
}

/// The host files the build writes for `config.deploy.host`.
pub fn output_files(config: &SiteConfig) -> Vec<HostFile> {
    let rules = host_rules(config);
    let headers = || HostFile {
        path: "/_headers",
        text: netlify::headers_file(&rules),
    };
    match config.deploy.host {
        HostKind::Netlify => vec![
            headers(),
            HostFile {
                path: "/_redirects",
                text: netlify::redirects_file(&rules),
            },
        ],
        // Pages applies `Content-Type` from `_headers`; the worker does the routing.
        HostKind::CloudflarePages => vec![
            headers(),
            HostFile {
                path: "/_worker.js",
                text: cloudflare::worker_js(&rules),
            },
        ],
        // Jekyll, on by default, drops dot folders such as `.well-known`. The headers and
        // routing come from the Caddyfile `relais init` writes for the server in front.
        HostKind::GithubPages => vec![HostFile {
            path: "/.nojekyll",
            text: String::new(),
        }],
        HostKind::Caddy => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    pub(crate) fn config(extra: &str) -> SiteConfig {
        SiteConfig::parse(
            &format!(
                "title = \"T\"\nbase_url = \"https://blog.example\"\n\
                 [[authors]]\nid = \"ann\"\nname = \"Ann\"\n{extra}"
            ),
            Path::new("config.toml"),
        )
        .unwrap()
    }

    #[test]
    fn every_document_path_has_its_type() {
        let rules = host_rules(&config(""));
        let content_type = |path: &str| {
            rules
                .headers_for(path)
                .into_iter()
                .find(|(name, _)| name == "Content-Type")
                .map(|(_, value)| value)
        };
        for (path, want) in [
            ("/ap/users/blog.json", ACTIVITY_JSON_UTF8),
            ("/ap/users/blog/outbox/page-1.json", ACTIVITY_JSON_UTF8),
            ("/ap/posts/hello.json", ACTIVITY_JSON_UTF8),
            ("/webfinger/blog.json", JRD_JSON_UTF8),
            ("/.well-known/webfinger", JRD_JSON_UTF8),
            ("/.well-known/nodeinfo", "application/json"),
            ("/nodeinfo/2.1.json", NODEINFO_JSON),
        ] {
            assert_eq!(content_type(path).as_deref(), Some(want), "{path}");
        }
        assert_eq!(content_type("/posts/hello/"), None);
    }

    #[test]
    fn dynamic_paths_only_with_an_inbox() {
        assert!(host_rules(&config("")).dynamic.is_empty());
        let rules = host_rules(&config(
            "[fediverse]\ninbox_url = \"https://inbox.example/\"\n",
        ));
        assert_eq!(rules.inbox.as_deref(), Some("https://inbox.example"));
        for path in [
            "/ap/users/blog/inbox",
            "/ap/inbox",
            "/ap/users/ann/followers",
            "/ap/posts/hello/replies",
            "/ap/2024/05/01/x.html/replies",
            "/ap/interactions",
            "/ap/quote_authorizations/0f3a",
        ] {
            assert!(rules.is_dynamic(path), "{path}");
        }
        for path in [
            "/ap/users/blog.json",
            "/ap/users//inbox",
            "/ap/posts/hello.json",
            "/ap/a/b/c/d/e/f/g/replies",
        ] {
            assert!(!rules.is_dynamic(path), "{path}");
        }
    }

    #[test]
    fn each_host_gets_its_files() {
        let names = |host: &str| -> Vec<&'static str> {
            output_files(&config(&format!("[deploy]\nhost = \"{host}\"\n")))
                .into_iter()
                .map(|f| f.path)
                .collect()
        };
        assert_eq!(names("netlify"), ["/_headers", "/_redirects"]);
        assert_eq!(names("cloudflare-pages"), ["/_headers", "/_worker.js"]);
        assert_eq!(names("github-pages"), ["/.nojekyll"]);
        assert!(names("caddy").is_empty());
    }
}
