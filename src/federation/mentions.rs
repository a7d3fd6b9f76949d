//! Replies and mentions written in Markdown: `in_reply_to = "URL"` in front matter and
//! `@user@host` in the text.
//!
//! The network is only used before a build (`refresh`, from `relais build`): the replied-to
//! post's author and each mentioned account (WebFinger, then its actor document) are
//! fetched through the guarded client and kept in `.relais/resolved.json`, which the build
//! reads with the configuration. The build itself stays offline and repeatable: a post
//! federates `inReplyTo`, the accounts in `cc` and as `Mention` tags, and its mentions as
//! links in Mastodon's markup; an account that could not be resolved stays plain text.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::content::escape_html;
use crate::federation::fetch::{FederationClient, IdCheck};
use crate::federation::signature::SigningKey;
use crate::federation::vocab::{ACTIVITY_JSON, LD_JSON};

/// Where the resolved accounts are kept, under the site folder.
pub const RESOLVED_FILE: &str = ".relais/resolved.json";

/// A remote account a post addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Account {
    /// Actor id: what `cc` and the `Mention` tag's `href` name.
    pub id: String,
    /// `@user@host`.
    pub handle: String,
    /// Profile page, the link in the text.
    pub url: String,
    pub inbox: String,
    pub shared_inbox: Option<String>,
}

/// The post an `in_reply_to` names, as its server serves it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplyTarget {
    /// The object's id (a Mastodon web URL `/@kim/1` resolves to `/users/kim/statuses/1`).
    pub id: String,
    pub author: Account,
}

/// What `refresh` found, read by the build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resolved {
    /// `user@host` (lowercase) → account.
    #[serde(default)]
    pub accounts: BTreeMap<String, Account>,
    /// `in_reply_to` as written → its post.
    #[serde(default)]
    pub replies: BTreeMap<String, ReplyTarget>,
}

impl Resolved {
    /// The file of `site_dir`; nothing resolved when it is missing or unreadable.
    pub fn load(site_dir: &Path) -> Resolved {
        std::fs::read(site_dir.join(RESOLVED_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, site_dir: &Path) -> std::io::Result<()> {
        let path = site_dir.join(RESOLVED_FILE);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }

    pub fn account(&self, handle: &str) -> Option<&Account> {
        self.accounts.get(&handle.to_ascii_lowercase())
    }

    /// The account with this actor id, for delivery.
    pub fn by_actor(&self, id: &str) -> Option<&Account> {
        self.accounts
            .values()
            .chain(self.replies.values().map(|r| &r.author))
            .find(|a| a.id == id)
    }
}

fn is_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':'
}

/// `@user@host` handles in `text`, as `(start, end, "user@host")` byte ranges, the way
/// Mastodon's `MENTION_RE` reads them: not preceded by a word character, `/` or `@`, and
/// ending on a letter or digit (a sentence's full stop is not part of the host). A port is
/// allowed for servers on loopback.
fn handles_in(text: &str) -> Vec<(usize, usize, String)> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find('@').map(|p| p + i) {
        i = at + 1;
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '/' || c == '@') {
            continue;
        }
        let user_end = text[at + 1..]
            .find(|c: char| !is_user_char(c))
            .map_or(text.len(), |p| at + 1 + p);
        let user = text[at + 1..user_end].trim_end_matches(['.', '-']);
        if user.is_empty() || user_end >= text.len() || bytes[user_end] != b'@' {
            continue;
        }
        if user.len() != user_end - at - 1 {
            continue;
        }
        let host_end = text[user_end + 1..]
            .find(|c: char| !is_host_char(c))
            .map_or(text.len(), |p| user_end + 1 + p);
        let host = text[user_end + 1..host_end].trim_end_matches(['.', '-', ':']);
        if !host.contains('.') && !host.contains(':') {
            continue;
        }
        let end = user_end + 1 + host.len();
        found.push((at, end, format!("{user}@{host}").to_ascii_lowercase()));
        i = end;
    }
    found
}

/// The distinct handles (`user@host`) of a Markdown body, code left out.
pub fn handles_in_markdown(markdown: &str) -> Vec<String> {
    let mut handles = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced || line.starts_with("    ") {
            continue;
        }
        // Inline code spans: every other backtick-separated part.
        for (n, part) in line.split('`').enumerate() {
            if n % 2 == 1 {
                continue;
            }
            for (_, _, handle) in handles_in(part) {
                if !handles.contains(&handle) {
                    handles.push(handle);
                }
            }
        }
    }
    handles
}

/// Mastodon's markup of a mention (`TextFormatter`), which it turns back into a mention.
fn mention_html(account: &Account) -> String {
    let user = account
        .handle
        .trim_start_matches('@')
        .split('@')
        .next()
        .unwrap_or_default();
    format!(
        "<span class=\"h-card\" translate=\"no\"><a href=\"{}\" class=\"u-url mention\">@<span>{}</span></a></span>",
        escape_html(&account.url),
        escape_html(user)
    )
}

/// `html` with each resolved `@user@host` outside links and code made a mention link, and
/// the accounts linked, in order. Handles nobody resolved stay as they are.
pub fn link_mentions<'r>(html: &str, resolved: &'r Resolved) -> (String, Vec<&'r Account>) {
    // Most sites resolve nobody, and most posts mention no one: the walk below costs a
    // cold build about 5 % of its CPU when done for nothing.
    if resolved.accounts.is_empty() || !html.contains('@') {
        return (html.to_string(), Vec::new());
    }
    let mut out = String::with_capacity(html.len());
    let mut linked: Vec<&Account> = Vec::new();
    // Depth inside <a>, <code> and <pre>, where text is left alone.
    let mut inside = 0usize;
    let mut rest = html;
    while !rest.is_empty() {
        if rest.starts_with('<') {
            let end = rest.find('>').map_or(rest.len(), |p| p + 1);
            let tag = &rest[..end];
            let name: String = tag
                .trim_start_matches(['<', '/'])
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase();
            if matches!(name.as_str(), "a" | "code" | "pre") && !tag.ends_with("/>") {
                if tag.starts_with("</") {
                    inside = inside.saturating_sub(1);
                } else {
                    inside += 1;
                }
            }
            out.push_str(tag);
            rest = &rest[end..];
            continue;
        }
        let end = rest.find('<').unwrap_or(rest.len());
        let text = &rest[..end];
        if inside > 0 {
            out.push_str(text);
        } else {
            let mut last = 0;
            for (start, stop, handle) in handles_in(text) {
                if let Some(account) = resolved.account(&handle) {
                    out.push_str(&text[last..start]);
                    out.push_str(&mention_html(account));
                    last = stop;
                    if !linked.iter().any(|a| a.id == account.id) {
                        linked.push(account);
                    }
                }
            }
            out.push_str(&text[last..]);
        }
        rest = &rest[end..];
    }
    (out, linked)
}

/// A `Mention` tag (Mastodon's `ActivityPub::NoteSerializer`).
pub fn mention_tag(account: &Account) -> Value {
    serde_json::json!({ "type": "Mention", "href": account.id, "name": account.handle })
}

/// What [`refresh`] did.
#[derive(Debug, Default)]
pub struct RefreshReport {
    pub fetched: usize,
    /// One line per reference left unresolved (its post federates it as plain text).
    pub warnings: Vec<String>,
}

/// An actor document as an [`Account`].
async fn fetch_account(
    client: &FederationClient,
    signer: Option<&SigningKey>,
    id: &str,
) -> Result<Account, String> {
    let doc = client
        .fetch_json(id, signer, IdCheck::MatchUrl)
        .await
        .map_err(|e| e.to_string())?;
    let actor = crate::inbox::remote::actor_from_document(&doc).map_err(|e| e.to_string())?;
    Ok(Account {
        id: actor.id,
        handle: actor.handle,
        url: actor.url,
        inbox: actor.inbox,
        shared_inbox: actor.shared_inbox,
    })
}

/// `user@host` through WebFinger (`acct:` resource, the `self` link of ActivityPub type).
/// Loopback servers are asked over http when the configuration allows private addresses
/// (tests); every other server over https.
async fn webfinger(
    client: &FederationClient,
    signer: Option<&SigningKey>,
    handle: &str,
    plain_http_ok: bool,
) -> Result<Account, String> {
    let host = handle.split('@').nth(1).unwrap_or_default();
    let scheme = if plain_http_ok && (host.starts_with("127.") || host.starts_with("localhost")) {
        "http"
    } else {
        "https"
    };
    let url = format!("{scheme}://{host}/.well-known/webfinger?resource=acct:{handle}");
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/jrd+json, application/json"),
    );
    let answer = client
        .request_raw(http::Method::GET, &url, headers, bytes::Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    if !answer.status.is_success() {
        return Err(format!("WebFinger {url}: HTTP {}", answer.status));
    }
    let jrd: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| format!("WebFinger {url}: not JSON: {e}"))?;
    let actor = jrd["links"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| {
            l["rel"] == "self"
                && l["type"]
                    .as_str()
                    .is_some_and(|t| t == ACTIVITY_JSON || t.starts_with(LD_JSON))
        })
        .and_then(|l| l["href"].as_str())
        .ok_or_else(|| format!("WebFinger {url}: no ActivityPub self link"))?;
    let mut account = fetch_account(client, signer, actor).await?;
    account.handle = format!("@{handle}");
    Ok(account)
}

/// The post `url` names and its author: fetched as ActivityPub (a web URL such as
/// Mastodon's `/@kim/1` answers with the object whose id differs, which is then fetched
/// again by its id, as Mastodon's `FetchRemoteStatusService` does).
async fn fetch_reply_target(
    client: &FederationClient,
    signer: Option<&SigningKey>,
    url: &str,
) -> Result<ReplyTarget, String> {
    let first = client
        .fetch_json(url, signer, IdCheck::Skip)
        .await
        .map_err(|e| e.to_string())?;
    let id = first["id"]
        .as_str()
        .ok_or_else(|| format!("{url}: the document has no id"))?
        .to_string();
    let object = if id == url {
        client
            .fetch_json(url, signer, IdCheck::MatchUrl)
            .await
            .map_err(|e| e.to_string())?
    } else {
        client
            .fetch_json(&id, signer, IdCheck::MatchUrl)
            .await
            .map_err(|e| e.to_string())?
    };
    let author = object
        .get("attributedTo")
        .and_then(crate::inbox::activity::first_id)
        .ok_or_else(|| format!("{id}: no attributedTo"))?;
    if crate::store::host_of(author) != crate::store::host_of(&id) {
        return Err(format!("{id}: its author {author} is on another server"));
    }
    let author = fetch_account(client, signer, author).await?;
    Ok(ReplyTarget { id, author })
}

/// Resolves what `sources` (Markdown files' text) reply to and mention that `resolved`
/// does not know yet. Known entries are kept: an account's inbox rarely moves, and a
/// published post must keep federating the same way.
pub async fn refresh<'a>(
    client: &FederationClient,
    signer: Option<&SigningKey>,
    plain_http_ok: bool,
    sources: impl IntoIterator<Item = (&'a Path, &'a str)>,
    resolved: &mut Resolved,
) -> RefreshReport {
    let mut report = RefreshReport::default();
    for (path, text) in sources {
        let Ok(split) = crate::content::front_matter::split(text) else {
            continue;
        };
        if let Some(url) = &split.front_matter.in_reply_to {
            if !resolved.replies.contains_key(url) {
                match fetch_reply_target(client, signer, url).await {
                    Ok(target) => {
                        resolved.replies.insert(url.clone(), target);
                        report.fetched += 1;
                    }
                    Err(e) => report.warnings.push(format!(
                        "{}: in_reply_to {url:?} cannot be resolved ({e:?}): it is federated \
                         without addressing its author",
                        path.display()
                    )),
                }
            }
        }
        for handle in handles_in_markdown(split.body) {
            if resolved.accounts.contains_key(&handle) {
                continue;
            }
            match webfinger(client, signer, &handle, plain_http_ok).await {
                Ok(account) => {
                    resolved.accounts.insert(handle, account);
                    report.fetched += 1;
                }
                Err(e) => report.warnings.push(format!(
                    "{}: @{handle} cannot be resolved ({e:?}): it stays plain text",
                    path.display()
                )),
            }
        }
    }
    report
}

/// Resolves the replies and mentions of the site's Markdown (`content/`) that
/// `.relais/resolved.json` does not know yet, and saves the file: what `relais build` runs
/// first. Nothing is fetched when nothing new is referenced. Signed with the site key when
/// there is one (servers in authorized-fetch mode require it).
pub fn refresh_site(site_dir: &Path, config: &crate::config::SiteConfig) -> RefreshReport {
    let mut sources: Vec<(std::path::PathBuf, String)> = Vec::new();
    for entry in walkdir::WalkDir::new(site_dir.join("content"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "md"))
    {
        if let Ok(text) = std::fs::read_to_string(entry.path()) {
            if may_reference(&text) {
                sources.push((entry.path().to_path_buf(), text));
            }
        }
    }
    refresh_sources(site_dir, config, &sources)
}

/// Cheap filter: a Markdown file with no `@` and no `in_reply_to` references nothing.
pub fn may_reference(text: &str) -> bool {
    text.contains('@') || text.contains("in_reply_to")
}

/// [`refresh_site`] for the given sources only (path, text): the build passes those it
/// has not seen or that referenced something when it last read them.
pub fn refresh_sources(
    site_dir: &Path,
    config: &crate::config::SiteConfig,
    sources: &[(std::path::PathBuf, String)],
) -> RefreshReport {
    let mut report = RefreshReport::default();
    let mut resolved = Resolved::load(site_dir);
    let unknown = sources.iter().any(|(_, text)| {
        crate::content::front_matter::split(text).is_ok_and(|split| {
            split
                .front_matter
                .in_reply_to
                .as_ref()
                .is_some_and(|u| !resolved.replies.contains_key(u))
                || handles_in_markdown(split.body)
                    .iter()
                    .any(|h| !resolved.accounts.contains_key(h))
        })
    });
    if !unknown {
        return report;
    }
    let options = crate::federation::fetch::ClientOptions::from_config(config);
    let client = match FederationClient::new(options) {
        Ok(client) => client,
        Err(e) => {
            report
                .warnings
                .push(format!("cannot resolve mentions: {e}"));
            return report;
        }
    };
    let key = crate::federation::keys::PrivateKey::load(&site_dir.join(&config.fediverse.key_path));
    let urls = crate::federation::urls::Urls::new(config);
    let signer = key.ok().map(|key| {
        SigningKey::new(
            urls.key_id(&config.fediverse.username),
            std::sync::Arc::new(key),
        )
    });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            report
                .warnings
                .push(format!("cannot resolve mentions: {e}"));
            return report;
        }
    };
    let borrowed = sources.iter().map(|(p, t)| (p.as_path(), t.as_str()));
    report = runtime.block_on(refresh(
        &client,
        signer.as_ref(),
        config.inbox.allow_private_addresses,
        borrowed,
        &mut resolved,
    ));
    if report.fetched > 0 {
        if let Err(e) = resolved.save(site_dir) {
            report
                .warnings
                .push(format!("cannot write {RESOLVED_FILE}: {e}"));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(handle: &str) -> Account {
        let (user, host) = handle.trim_start_matches('@').split_once('@').unwrap();
        Account {
            id: format!("https://{host}/users/{user}"),
            handle: handle.to_string(),
            url: format!("https://{host}/@{user}"),
            inbox: format!("https://{host}/users/{user}/inbox"),
            shared_inbox: None,
        }
    }

    #[test]
    fn handles_are_read_as_mastodon_reads_them() {
        let text = "Hi @kim@m.example. And @Bo_b@x.example:8080, not me@mail.example \
                    nor https://h.example/@kim@m.example nor @solo";
        let found: Vec<String> = handles_in(text).into_iter().map(|h| h.2).collect();
        assert_eq!(found, vec!["kim@m.example", "bo_b@x.example:8080"]);
        let md = "@a@b.example\n```\n@c@d.example\n```\n`@e@f.example` and @g@h.example\n";
        assert_eq!(handles_in_markdown(md), vec!["a@b.example", "g@h.example"]);
    }

    #[test]
    fn resolved_mentions_become_links_outside_code_and_links() {
        let mut resolved = Resolved::default();
        resolved
            .accounts
            .insert("kim@m.example".into(), account("@kim@m.example"));
        let html = "<p>Thanks @kim@m.example and @nobody@z.example!</p>\
                    <pre><code>@kim@m.example</code></pre><a href=\"x\">@kim@m.example</a>";
        let (linked, accounts) = link_mentions(html, &resolved);
        assert_eq!(
            linked,
            "<p>Thanks <span class=\"h-card\" translate=\"no\"><a href=\"https://m.example/@kim\" \
             class=\"u-url mention\">@<span>kim</span></a></span> and @nobody@z.example!</p>\
             <pre><code>@kim@m.example</code></pre><a href=\"x\">@kim@m.example</a>"
        );
        assert_eq!(accounts, vec![&account("@kim@m.example")]);
        assert_eq!(
            mention_tag(accounts[0]),
            serde_json::json!({ "type": "Mention", "href": "https://m.example/users/kim", "name": "@kim@m.example" })
        );
    }
}
