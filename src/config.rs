//! `config.toml`: what the user declares about the site, its actors and its inbox service.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no {CONFIG_FILE} in {}: this is not a relais site. Create one with `relais init {}`, or point at one with `--site DIR`",
        dir.display(),
        dir.display()
    )]
    NotASite { dir: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub title: String,
    /// Absolute URL of the published site, without trailing slash after normalisation.
    pub base_url: String,
    #[serde(default = "default_language")]
    pub language: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_theme")]
    pub theme: String,
    #[serde(default = "default_paginate_by")]
    pub paginate_by: usize,
    /// Syntect theme for inline-styled code; `None` emits CSS classes the theme styles.
    #[serde(default)]
    pub highlight_theme: Option<String>,
    #[serde(default)]
    pub authors: Vec<AuthorConfig>,
    #[serde(default)]
    pub fediverse: FediverseConfig,
    #[serde(default)]
    pub inbox: InboxConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub deploy: DeployConfig,
    #[serde(default)]
    pub check: CheckConfig,
    /// Free-form values handed to templates as `config.extra`.
    #[serde(default)]
    pub extra: toml::Table,
    /// What `relais build` resolved of the posts' replies and mentions
    /// (`.relais/resolved.json`, read by `load`); not a configuration key.
    #[serde(skip)]
    pub resolved: std::sync::Arc<crate::federation::mentions::Resolved>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorConfig {
    /// Short name: the fediverse username (`@id@host`) and the key used in front matter `authors`.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub summary: String,
    /// Avatar: a path under `static/` or an absolute URL.
    #[serde(default)]
    pub avatar: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    /// Whether this author gets a fediverse actor of its own.
    #[serde(default = "yes")]
    pub actor: bool,
    #[serde(default)]
    pub also_known_as: Vec<String>,
    #[serde(default)]
    pub profile_links: Vec<ProfileLink>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ActorType {
    #[default]
    Person,
    Service,
    Organization,
    Group,
    Application,
}

impl ActorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::Person => "Person",
            ActorType::Service => "Service",
            ActorType::Organization => "Organization",
            ActorType::Group => "Group",
            ActorType::Application => "Application",
        }
    }
}

/// How a post is federated: Mastodon renders a `Note` in full, an `Article` only as title + link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ObjectType {
    #[default]
    Note,
    Article,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NoteContent {
    /// Title, the whole post and the link.
    #[default]
    Full,
    /// Title, the summary (or the first `excerpt_chars` of text) and the link.
    Excerpt,
}

/// Who may quote a post (FEP-044f `interactionPolicy.canQuote`): Mastodon reads a post
/// without a policy as "nobody", so relais publishes one on every post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum QuotePolicy {
    /// Anyone, approved automatically.
    #[default]
    Public,
    /// Accepted followers of the post's actor.
    Followers,
    /// Nobody but the author.
    Nobody,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileLink {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FediverseConfig {
    pub enabled: bool,
    /// Username of the site actor: `@username@host`.
    pub username: String,
    pub actor_type: ActorType,
    pub display_name: Option<String>,
    pub summary: Option<String>,
    pub icon: Option<String>,
    pub image: Option<String>,
    pub object_type: ObjectType,
    pub note_content: NoteContent,
    pub excerpt_chars: usize,
    /// Private key, relative to the site directory; never inside the output folder.
    pub key_path: PathBuf,
    /// Where the inbox service runs (the static host proxies inbox paths to it).
    pub inbox_url: Option<String>,
    pub also_known_as: Vec<String>,
    pub profile_links: Vec<ProfileLink>,
    pub manually_approves_followers: bool,
    pub discoverable: bool,
    pub followers_public: bool,
    /// Slugs of pinned posts, shown in `featured`.
    pub pinned: Vec<String>,
    pub outbox_page_size: usize,
    /// Who may quote posts, unless a post's front matter says otherwise.
    pub quotes: QuotePolicy,
    /// The account the site actor moved to (`relais move` sets it): published as `movedTo`.
    pub moved_to: Option<String>,
}

impl Default for FediverseConfig {
    fn default() -> Self {
        FediverseConfig {
            enabled: true,
            username: "blog".into(),
            actor_type: ActorType::Person,
            display_name: None,
            summary: None,
            icon: None,
            image: None,
            object_type: ObjectType::Note,
            note_content: NoteContent::Full,
            excerpt_chars: 500,
            key_path: PathBuf::from("relais-key.pem"),
            inbox_url: None,
            also_known_as: Vec::new(),
            profile_links: Vec::new(),
            manually_approves_followers: false,
            discoverable: true,
            followers_public: false,
            pinned: Vec::new(),
            outbox_page_size: 20,
            quotes: QuotePolicy::Public,
            moved_to: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxConfig {
    pub listen: String,
    /// SQLite file, relative to the site directory, or a PostgreSQL URL
    /// (`postgres://…` or `postgresql://…`, see `store::StoreLocation`).
    pub store: PathBuf,
    /// Lets outbound fetches reach loopback and private networks: for tests and LANs only.
    pub allow_private_addresses: bool,
    pub blocked_domains: Vec<String>,
    pub blocked_actors: Vec<String>,
    /// Replies wait for `relais moderate approve` before they are shown.
    pub approve_replies: bool,
    pub max_body_bytes: usize,
    /// Signed requests per minute accepted from one remote server, counted once the
    /// signature has verified.
    pub rate_limit_per_minute: u32,
    /// Requests per minute accepted from one client address before any signature check.
    pub client_rate_limit_per_minute: u32,
    /// Proxies (addresses or networks such as `10.0.0.0/8`) in front of the inbox whose
    /// `X-Forwarded-For` / `Forwarded` headers name the real client. Behind a static host's
    /// proxy every request comes from the proxy: list it so clients are told apart.
    pub trusted_proxies: Vec<String>,
    /// Name of the environment variable holding the deploy webhook's bearer token.
    pub deploy_token_env: String,
    /// Name of the environment variable holding the "JWS secret token" of Netlify's
    /// deploy-succeeded notification (`X-Webhook-Signature`).
    pub netlify_jws_secret_env: String,
    /// Name of the environment variable holding the HMAC secret of GitHub-style
    /// `X-Hub-Signature-256` deploy hooks (a CI workflow).
    pub deploy_hmac_secret_env: String,
    /// Without webhooks: how often the live outbox is checked for new, edited and deleted
    /// posts, as `30s`, `10m` or `1h`. Off when unset.
    pub poll_interval: Option<String>,
    /// Serve the built site's federation documents too (for hosts without header rules).
    pub serve_public: bool,
    /// Seconds a client has to send a request's headers, counted from when it connects or
    /// when its previous answer was sent: the idle keep-alive timeout too.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body once its headers are in.
    pub body_timeout_secs: u64,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            listen: "127.0.0.1:8787".into(),
            store: PathBuf::from("relais.db"),
            allow_private_addresses: false,
            blocked_domains: Vec::new(),
            blocked_actors: Vec::new(),
            approve_replies: false,
            max_body_bytes: 1024 * 1024,
            rate_limit_per_minute: 300,
            client_rate_limit_per_minute: 1200,
            trusted_proxies: Vec::new(),
            deploy_token_env: "RELAIS_DEPLOY_TOKEN".into(),
            netlify_jws_secret_env: "RELAIS_NETLIFY_JWS_SECRET".into(),
            deploy_hmac_secret_env: "RELAIS_DEPLOY_HMAC_SECRET".into(),
            poll_interval: None,
            serve_public: true,
            header_timeout_secs: 10,
            body_timeout_secs: 10,
            max_connections: 4096,
        }
    }
}

impl InboxConfig {
    /// `trusted_proxies` parsed: each an address or a network.
    pub fn trusted_proxy_networks(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{entry:?} is not an IP address or network"))
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// On the first publish, only posts newer than this many days are sent.
    pub first_publish_max_age_days: u32,
    pub concurrency: usize,
    pub per_host_connections: usize,
    pub max_attempts: u32,
    pub timeout_secs: u64,
    /// A publish that would delete more than this share of the published posts (and more
    /// than one post) waits for `relais publish --confirm-deletes`: a broken deploy looks
    /// like mass deletion, and a sent `Delete` cannot be taken back.
    pub max_delete_share: f64,
    /// Deliveries held for a server set aside as unavailable are dropped once they are this
    /// many days old (Mastodon gives up on such a server after a week of failures).
    pub held_expiry_days: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            first_publish_max_age_days: 7,
            concurrency: 64,
            per_host_connections: 4,
            max_attempts: 17,
            timeout_secs: 10,
            max_delete_share: 0.25,
            held_expiry_days: 7,
        }
    }
}

/// What `relais check` accepts: `[[check.accept]]` entries, each a rule and optionally one
/// file (relative to the site, e.g. `content/posts/x.md`); without `file`, everywhere.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CheckConfig {
    pub accept: Vec<AcceptedWarning>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedWarning {
    pub rule: String,
    #[serde(default)]
    pub file: Option<String>,
}

/// Where the built site is deployed: decides which host files the build writes.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DeployConfig {
    pub host: HostKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HostKind {
    /// `_headers` and `_redirects` (query rules, 200 proxies to the inbox).
    #[default]
    Netlify,
    /// `_headers` and an advanced-mode `_worker.js`: Pages rejects query rules and proxies.
    CloudflarePages,
    /// Built and pushed by a GitHub Actions workflow; GitHub Pages sets no headers, so the
    /// domain is served by Caddy (or the inbox) in front.
    GithubPages,
    /// A server of one's own: Caddy serves the folder and proxies the inbox paths.
    Caddy,
}

impl HostKind {
    pub const ALL: [HostKind; 4] = [
        HostKind::Netlify,
        HostKind::CloudflarePages,
        HostKind::GithubPages,
        HostKind::Caddy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HostKind::Netlify => "netlify",
            HostKind::CloudflarePages => "cloudflare-pages",
            HostKind::GithubPages => "github-pages",
            HostKind::Caddy => "caddy",
        }
    }
}

/// Parses `30s`, `10m`, `2h` or a bare number of seconds.
pub fn parse_interval(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    (secs > 0).then(|| std::time::Duration::from_secs(secs))
}

fn default_language() -> String {
    "en".into()
}
fn default_theme() -> String {
    "default".into()
}
fn default_paginate_by() -> usize {
    10
}
fn yes() -> bool {
    true
}

pub const CONFIG_FILE: &str = "config.toml";

/// A serde/TOML error message in plain words, with the fix when it is a known one: an
/// unknown field gets the closest known name ("did you mean `tags`?").
pub fn plain_serde_message(message: &str) -> String {
    let message = message.trim_end();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once("`, expected one of ") {
            let known: Vec<&str> = expected.split(", ").map(|k| k.trim_matches('`')).collect();
            if let Some(best) = closest(field, &known) {
                return format!("unknown field `{field}`: did you mean `{best}`?");
            }
            return format!(
                "unknown field `{field}`; known fields: {}",
                known.join(", ")
            );
        }
    }
    if message.starts_with("invalid basic string") || message.contains("unterminated") {
        return format!("{message}: a quote is not closed on this line");
    }
    if message.contains("expected a sequence") || message.contains("expected an array") {
        return format!("{message}: write a list in brackets, e.g. tags = [\"notes\"]");
    }
    message.to_string()
}

/// The name in `known` nearest to `word`, if it is close enough to be a typo.
pub fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

impl SiteConfig {
    /// Reads and validates `config.toml` in `site_dir`.
    pub fn load(site_dir: &Path) -> Result<SiteConfig, ConfigError> {
        SiteConfig::load_with_text(site_dir).map(|(config, _)| config)
    }

    /// [`SiteConfig::load`], with the text it was parsed from.
    pub fn load_with_text(site_dir: &Path) -> Result<(SiteConfig, String), ConfigError> {
        let path = site_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotASite {
                    dir: site_dir.to_path_buf(),
                }
            } else {
                ConfigError::Read {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let mut config = SiteConfig::parse(&text, &path)?;
        config.resolved =
            std::sync::Arc::new(crate::federation::mentions::Resolved::load(site_dir));
        Ok((config, text))
    }

    pub fn parse(text: &str, path: &Path) -> Result<SiteConfig, ConfigError> {
        let mut config: SiteConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: e.span().map(|s| line_of_offset(text, s.start)).unwrap_or(1),
            message: plain_serde_message(e.message()),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&mut self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let rules = crate::federation::check::rules::ALL;
        if let Some(unknown) = self
            .check
            .accept
            .iter()
            .find(|a| !rules.contains(&a.rule.as_str()))
        {
            return Err(invalid(format!(
                "check.accept: unknown rule {:?}; the rules are {}",
                unknown.rule,
                rules.join(", ")
            )));
        }
        let url = url::Url::parse(&self.base_url).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => invalid(format!(
                "base_url {:?} has no scheme: write \"https://{}\"",
                self.base_url,
                self.base_url.trim_start_matches('/')
            )),
            e => invalid(format!(
                "base_url {:?} is not an absolute URL: {e}",
                self.base_url
            )),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(format!(
                "base_url {:?} must be an http(s) URL with a host",
                self.base_url
            )));
        }
        self.base_url = self.base_url.trim_end_matches('/').to_string();
        if self.paginate_by == 0 {
            return Err(invalid("paginate_by must be at least 1".into()));
        }
        if self.fediverse.outbox_page_size == 0 {
            return Err(invalid(
                "fediverse.outbox_page_size must be at least 1".into(),
            ));
        }
        let valid_user = |u: &str| {
            !u.is_empty()
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        if !valid_user(&self.fediverse.username) {
            return Err(invalid(format!(
                "fediverse.username {:?} may hold only letters, digits, '_', '-' and '.'",
                self.fediverse.username
            )));
        }
        let mut seen = std::collections::HashSet::new();
        seen.insert(self.fediverse.username.clone());
        for author in &self.authors {
            if !valid_user(&author.id) {
                return Err(invalid(format!(
                    "author id {:?} may hold only letters, digits, '_', '-' and '.'",
                    author.id
                )));
            }
            if !seen.insert(author.id.clone()) {
                return Err(invalid(format!(
                    "author id {:?} is used twice (or equals fediverse.username)",
                    author.id
                )));
            }
        }
        if let Some(interval) = &self.inbox.poll_interval {
            if parse_interval(interval).is_none() {
                return Err(invalid(format!(
                    "inbox.poll_interval {interval:?} is not a duration such as \"30s\", \"10m\" or \"1h\""
                )));
            }
        }
        self.inbox
            .trusted_proxy_networks()
            .map_err(|e| invalid(format!("inbox.trusted_proxies: {e}")))?;
        if !(0.0..=1.0).contains(&self.delivery.max_delete_share) {
            return Err(invalid(format!(
                "delivery.max_delete_share {} must be between 0 and 1",
                self.delivery.max_delete_share
            )));
        }
        if let Some(inbox) = &self.fediverse.inbox_url {
            url::Url::parse(inbox)
                .map_err(|e| invalid(format!("fediverse.inbox_url {inbox:?} is not a URL: {e}")))?;
        }
        if let Some(target) = &self.fediverse.moved_to {
            match url::Url::parse(target) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Err(invalid(format!(
                        "fediverse.moved_to {target:?} is not the http(s) id of an actor"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Host (with port when not default) of the published site: the WebFinger domain.
    /// `validate` guarantees a parseable URL; a `base_url` replaced later (`relais serve`)
    /// that is not one gives an empty host rather than a panic.
    pub fn host(&self) -> String {
        let Ok(url) = url::Url::parse(&self.base_url) else {
            return String::new();
        };
        match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        }
    }

    /// Absolute URL of a site path such as `/posts/hello/`.
    pub fn absolute(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_string();
        }
        if path.starts_with('/') {
            format!("{}{path}", self.base_url)
        } else {
            format!("{}/{path}", self.base_url)
        }
    }

    pub fn author(&self, id: &str) -> Option<&AuthorConfig> {
        self.authors.iter().find(|a| a.id == id)
    }
}

/// Settings taken from the environment, for containers and platforms that configure a
/// process through variables rather than files. Applied in one place, after `config.toml`
/// is read; an empty variable counts as unset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvOverrides {
    /// `RELAIS_LISTEN`: replaces `inbox.listen` (containers use `0.0.0.0:8787`).
    pub listen: Option<String>,
    /// `RELAIS_STORE`: replaces `inbox.store` (relative to the site directory).
    pub store: Option<PathBuf>,
    /// `RELAIS_STORE_URL`: a PostgreSQL URL; wins over `RELAIS_STORE` and `inbox.store`.
    pub store_url: Option<String>,
    /// `RELAIS_KEY`: the private key PEM itself; never written anywhere.
    pub key_pem: Option<String>,
    /// `RELAIS_KEY_FILE`: replaces `fediverse.key_path`.
    pub key_file: Option<PathBuf>,
}

/// Where the site's private key comes from once the environment is applied.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The PEM text from `RELAIS_KEY`.
    Pem(String),
    File(PathBuf),
}

// Key material must never reach a log: only the variable names are shown.
impl std::fmt::Debug for EnvOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvOverrides")
            .field("listen", &self.listen)
            .field("store", &self.store)
            .field(
                "store_url",
                &self.store_url.as_deref().map(crate::store::redact_url),
            )
            .field("key_pem", &self.key_pem.as_ref().map(|_| "(set)"))
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Pem(_) => f.write_str("KeySource::Pem(..)"),
            KeySource::File(path) => f.debug_tuple("KeySource::File").field(path).finish(),
        }
    }
}

impl EnvOverrides {
    pub const LISTEN: &'static str = "RELAIS_LISTEN";
    pub const STORE: &'static str = "RELAIS_STORE";
    pub const STORE_URL: &'static str = "RELAIS_STORE_URL";
    pub const KEY: &'static str = "RELAIS_KEY";
    pub const KEY_FILE: &'static str = "RELAIS_KEY_FILE";

    /// Reads the process environment.
    pub fn from_env() -> EnvOverrides {
        EnvOverrides::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> EnvOverrides {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        EnvOverrides {
            listen: get(Self::LISTEN).map(|v| v.trim().to_string()),
            store: get(Self::STORE).map(PathBuf::from),
            store_url: get(Self::STORE_URL).map(|v| v.trim().to_string()),
            // Platforms that take one-line secrets get the PEM with `\n` for its newlines.
            key_pem: get(Self::KEY).map(|v| {
                if v.contains('\n') {
                    v
                } else {
                    v.replace("\\n", "\n")
                }
            }),
            key_file: get(Self::KEY_FILE).map(PathBuf::from),
        }
    }

    /// Replaces the settings the environment gives.
    pub fn apply(&self, config: &mut SiteConfig) {
        if let Some(listen) = &self.listen {
            config.inbox.listen = listen.clone();
        }
        self.apply_store(config);
        if let Some(key_file) = &self.key_file {
            config.fediverse.key_path = key_file.clone();
        }
    }

    /// Replaces the store setting only: for commands that sign nothing and listen nowhere.
    pub fn apply_store(&self, config: &mut SiteConfig) {
        if let Some(url) = &self.store_url {
            config.inbox.store = PathBuf::from(url);
        } else if let Some(store) = &self.store {
            config.inbox.store = store.clone();
        }
    }

    /// The private key to sign with: `RELAIS_KEY` wins over any file.
    pub fn key_source(&self, site_dir: &Path, config: &SiteConfig) -> KeySource {
        match (&self.key_pem, &self.key_file) {
            (Some(pem), _) => KeySource::Pem(pem.clone()),
            (None, Some(file)) => KeySource::File(site_dir.join(file)),
            (None, None) => KeySource::File(site_dir.join(&config.fediverse.key_path)),
        }
    }
}

/// 1-based line number of a byte offset.
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = SiteConfig::parse(
            "title = \"T\"\nbase_url = \"https://example.com/\"\n",
            Path::new("config.toml"),
        )
        .unwrap();
        assert_eq!(c.base_url, "https://example.com");
        assert_eq!(c.fediverse.username, "blog");
        assert_eq!(c.host(), "example.com");
        assert_eq!(c.absolute("/posts/a/"), "https://example.com/posts/a/");
    }

    #[test]
    fn parse_error_names_line() {
        let err = SiteConfig::parse(
            "title = \"T\"\nbase_url = \"https://example.com\"\npaginate_by = \"x\"\n",
            Path::new("site/config.toml"),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("site/config.toml:3:"), "{text}");
    }

    #[test]
    fn rejects_relative_base_url_and_bad_username() {
        assert!(
            SiteConfig::parse("title = \"T\"\nbase_url = \"/blog\"\n", Path::new("c")).is_err()
        );
        assert!(SiteConfig::parse(
            "title = \"T\"\nbase_url = \"https://e.com\"\n[fediverse]\nusername = \"a b\"\n",
            Path::new("c")
        )
        .is_err());
    }

    #[test]
    fn intervals_and_hosts_parse() {
        assert_eq!(
            parse_interval("90"),
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_interval("10m"),
            Some(std::time::Duration::from_secs(600))
        );
        assert_eq!(
            parse_interval("1h"),
            Some(std::time::Duration::from_secs(3600))
        );
        assert_eq!(parse_interval("0s"), None);
        assert_eq!(parse_interval("ten"), None);
        let c = SiteConfig::parse(
            "title = \"T\"\nbase_url = \"https://e.com\"\n[deploy]\nhost = \"cloudflare-pages\"\n\
             [inbox]\npoll_interval = \"5m\"\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(c.deploy.host, HostKind::CloudflarePages);
        let err = SiteConfig::parse(
            "title = \"T\"\nbase_url = \"https://e.com\"\n[inbox]\npoll_interval = \"soon\"\n",
            Path::new("c"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("poll_interval"), "{err}");
    }

    #[test]
    fn environment_overrides_listen_store_and_key() {
        let vars = std::collections::HashMap::from([
            ("RELAIS_LISTEN", "0.0.0.0:8787"),
            ("RELAIS_STORE", "/data/relais.db"),
            (
                "RELAIS_KEY",
                "-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----",
            ),
            ("RELAIS_KEY_FILE", ""),
        ]);
        let env = EnvOverrides::from_lookup(|name| vars.get(name).map(|v| v.to_string()));
        let mut c = SiteConfig::parse(
            "title = \"T\"\nbase_url = \"https://e.com\"\n",
            Path::new("c"),
        )
        .unwrap();
        env.apply(&mut c);
        assert_eq!(c.inbox.listen, "0.0.0.0:8787");
        assert_eq!(c.inbox.store, PathBuf::from("/data/relais.db"));
        assert_eq!(env.key_file, None, "an empty variable is unset");
        assert_eq!(
            env.key_source(Path::new("/site"), &c),
            KeySource::Pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".into())
        );
        assert!(!format!("{env:?}").contains("AAAA"), "{env:?}");

        let none = EnvOverrides::from_lookup(|_| None);
        none.apply(&mut c);
        assert_eq!(c.inbox.listen, "0.0.0.0:8787");
        assert_eq!(
            none.key_source(Path::new("/site"), &c),
            KeySource::File(PathBuf::from("/site/relais-key.pem"))
        );
        let file =
            EnvOverrides::from_lookup(|n| (n == "RELAIS_KEY_FILE").then(|| "/run/k.pem".into()));
        assert_eq!(
            file.key_source(Path::new("/site"), &c),
            KeySource::File(PathBuf::from("/run/k.pem"))
        );
    }

    #[test]
    fn port_is_part_of_host() {
        let c = SiteConfig::parse(
            "title = \"T\"\nbase_url = \"http://127.0.0.1:8080\"\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(c.host(), "127.0.0.1:8080");
    }
}
