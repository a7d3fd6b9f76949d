//! The posts of a site, read back from what it publishes: every actor's outbox
//! (`/ap/users/NAME/outbox.json` and the pages it links), whose `Create` items carry the post
//! objects. Reading what was built, rather than rebuilding, sends exactly what is served.
//!
//! The documents come from the output folder (`relais publish` next to the build) or from
//! the live site over HTTP (the inbox, after a deploy elsewhere); one traversal reads both.
//! Whatever is missing or inconsistent is an error, never fewer posts: a post missing from
//! the result would be sent as deleted.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::plan::{content_hash, PublishedPost};
use crate::config::SiteConfig;
use crate::federation::documents::actors;
use crate::federation::fetch::{Conditional, FederationClient, FetchError, IdCheck, Validators};
use crate::federation::urls::Urls;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{at}: no outbox; build the site first (`relais build`)")]
    NoOutbox { at: String },
    #[error("{at}: no outbox (HTTP 404): is the site deployed at base_url?")]
    NoLiveOutbox { at: String },
    #[error("{at}: cannot read: {source}")]
    Read { at: String, source: std::io::Error },
    #[error("{at}: invalid JSON: {source}")]
    Json {
        at: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
}

/// Reads the posts in the outboxes under `out_dir`, each once, in outbox order.
///
/// Fails rather than returning fewer posts. Also fails when the output was built for another
/// `base_url` (by `relais serve`, say), whose ids are not the site's.
pub fn load_published_posts(
    config: &SiteConfig,
    out_dir: &Path,
) -> Result<Vec<PublishedPost>, LoadError> {
    // The folder answers at once: the traversal's futures never wait.
    futures::executor::block_on(read_posts(config, &Source::Folder(out_dir)))
}

/// The posts of the live site, as [`load_published_posts`] reads them from a folder.
#[derive(Debug, Clone)]
pub struct LiveSite {
    pub posts: Vec<PublishedPost>,
    /// The outboxes and pages read, with what identifies their version: asking for them
    /// again conditionally tells whether anything changed.
    pub documents: Vec<(String, Validators)>,
}

/// Reads the posts of the site live at `base_url` over HTTP through `client` (content types,
/// size limit, address guard), every document's `id` checked against its URL. Only a
/// complete outbox counts: any failed fetch, missing page or count that does not add up is
/// an error.
pub async fn load_live_posts(
    config: &SiteConfig,
    client: &FederationClient,
) -> Result<LiveSite, LoadError> {
    let source = Source::Live {
        client,
        base: Urls::new(config).base().to_string(),
        read: Mutex::new(Vec::new()),
    };
    let posts = read_posts(config, &source).await?;
    let documents = match source {
        Source::Live { read, .. } => read.into_inner().unwrap_or_else(|e| e.into_inner()),
        Source::Folder(_) => Vec::new(),
    };
    Ok(LiveSite { posts, documents })
}

/// Where the site's documents are read from, by site path (`/ap/users/blog/outbox.json`).
enum Source<'a> {
    Folder(&'a Path),
    Live {
        client: &'a FederationClient,
        base: String,
        /// Every outbox document fetched, with its validators.
        read: Mutex<Vec<(String, Validators)>>,
    },
}

/// A document and where it came from (a file or a URL), for error messages.
struct Fetched {
    json: Value,
    at: String,
}

impl Source<'_> {
    /// The document at `site_path`; `None` when there is none (no file, HTTP 404 or 410).
    async fn get(&self, site_path: &str, outbox: bool) -> Result<Option<Fetched>, LoadError> {
        match self {
            Source::Folder(dir) => {
                let path = dir.join(site_path.trim_start_matches('/'));
                let at = path.display().to_string();
                let bytes = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => return Err(LoadError::Read { at, source }),
                };
                let json = serde_json::from_slice(&bytes).map_err(|source| LoadError::Json {
                    at: at.clone(),
                    source,
                })?;
                Ok(Some(Fetched { json, at }))
            }
            Source::Live { client, base, read } => {
                let url = format!("{base}{site_path}");
                let answer = client
                    .fetch_json_if_changed(&url, &Validators::default(), IdCheck::MatchUrl)
                    .await;
                match answer {
                    Ok(Conditional::Changed {
                        document,
                        validators,
                    }) => {
                        if outbox {
                            if let Ok(mut read) = read.lock() {
                                read.push((url.clone(), validators));
                            }
                        }
                        Ok(Some(Fetched {
                            json: document,
                            at: url,
                        }))
                    }
                    Ok(Conditional::NotModified) => Err(LoadError::Invalid {
                        at: url,
                        message: "304 Not Modified to an unconditional GET".into(),
                    }),
                    Err(FetchError::Status { status, .. })
                        if status == http::StatusCode::NOT_FOUND
                            || status == http::StatusCode::GONE =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    fn no_outbox(&self, site_path: &str) -> LoadError {
        match self {
            Source::Folder(dir) => LoadError::NoOutbox {
                at: dir
                    .join(site_path.trim_start_matches('/'))
                    .display()
                    .to_string(),
            },
            Source::Live { base, .. } => LoadError::NoLiveOutbox {
                at: format!("{base}{site_path}"),
            },
        }
    }
}

async fn read_posts(
    config: &SiteConfig,
    source: &Source<'_>,
) -> Result<Vec<PublishedPost>, LoadError> {
    let urls = Urls::new(config);
    let names: Vec<String> = actors(config).into_iter().map(|a| a.name).collect();
    let actor_names: HashMap<String, &str> = names
        .iter()
        .map(|name| (urls.actor(name), name.as_str()))
        .collect();
    let reader = Reader {
        source,
        urls: &urls,
        actor_names: &actor_names,
    };
    let mut posts = Vec::new();
    let mut seen = HashSet::new();
    for name in &names {
        let outbox_path = Urls::outbox_path(name);
        let Some(outbox) = source.get(&outbox_path, true).await? else {
            // Every post is in the site actor's outbox; authors' outboxes only repeat theirs.
            if *name == config.fediverse.username {
                return Err(source.no_outbox(&outbox_path));
            }
            continue;
        };
        for (item, at) in reader.outbox_items(outbox).await? {
            let post = reader.post(&item, &at).await?;
            if seen.insert(post.object_id.clone()) {
                posts.push(post);
            }
        }
    }
    Ok(posts)
}

struct Reader<'a> {
    source: &'a Source<'a>,
    urls: &'a Urls,
    actor_names: &'a HashMap<String, &'a str>,
}

impl Reader<'_> {
    /// The site path of one of the site's own URLs, without its fragment.
    fn site_path<'u>(&self, url: &'u str, at: &str) -> Result<&'u str, LoadError> {
        let path = url
            .strip_prefix(self.urls.base())
            .filter(|p| p.starts_with('/') && !p.split('/').any(|part| part == ".."))
            .ok_or_else(|| invalid(at, format!("{url:?} is not a document of this site")))?;
        Ok(path.split('#').next().unwrap_or(path))
    }

    /// A document the outbox links to, which must exist.
    async fn linked(&self, url: &str, at: &str, outbox: bool) -> Result<Fetched, LoadError> {
        let path = self.site_path(url, at)?;
        self.source
            .get(path, outbox)
            .await?
            .ok_or_else(|| invalid(at, format!("it links to {url:?}, which does not exist")))
    }

    /// Every item of `outbox`, inline or over its pages (`first`, then `next`), with where
    /// it came from. The items must add up to the outbox's `totalItems`: a missing or
    /// truncated page would otherwise read as deleted posts.
    async fn outbox_items(&self, outbox: Fetched) -> Result<Vec<(Value, String)>, LoadError> {
        let Fetched { json: outbox, at } = outbox;
        let total = outbox
            .get("totalItems")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid(&at, "outbox without a totalItems count".into()))?;
        let mut items = Vec::new();
        if let Some(inline) = outbox.get("orderedItems") {
            items.extend(array(inline, &at)?.iter().map(|i| (i.clone(), at.clone())));
        }
        let mut next = link(outbox.get("first"));
        let mut visited = HashSet::new();
        while let Some(url) = next {
            if !visited.insert(url.clone()) {
                return Err(invalid(&at, format!("outbox pages loop back to {url:?}")));
            }
            if visited.len() as u64 > total + 1 {
                return Err(invalid(
                    &at,
                    format!("more outbox pages than its {total} items"),
                ));
            }
            let page = self.linked(&url, &at, true).await?;
            let page_items = page
                .json
                .get("orderedItems")
                .ok_or_else(|| invalid(&page.at, "outbox page without orderedItems".into()))?;
            items.extend(
                array(page_items, &page.at)?
                    .iter()
                    .map(|i| (i.clone(), page.at.clone())),
            );
            next = link(page.json.get("next"));
        }
        if items.len() as u64 != total {
            return Err(invalid(
                &at,
                format!(
                    "the outbox counts {total} items but its pages hold {}: a page is missing \
                     or truncated, so nothing is compared",
                    items.len()
                ),
            ));
        }
        Ok(items)
    }

    /// The post of one outbox item: a `Create` with its object inline or as a link.
    async fn post(&self, item: &Value, from: &str) -> Result<PublishedPost, LoadError> {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind != "Create" {
            return Err(invalid(
                from,
                format!("outbox item of type {kind:?}, not Create"),
            ));
        }
        let mut object = match item.get("object") {
            Some(Value::String(url)) => self.linked(url, from, false).await?.json,
            Some(object @ Value::Object(_)) => object.clone(),
            _ => return Err(invalid(from, "a Create without an object".into())),
        };
        if let Value::Object(fields) = &mut object {
            fields.remove("@context");
        }
        let object_id = object
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(from, "a post object without an id".into()))?
            .to_string();
        if !object_id.starts_with(&format!("{}/", self.urls.base())) {
            return Err(invalid(
                from,
                format!(
                    "post {object_id:?} is not under base_url {}: this output was built for \
                     another address",
                    self.urls.base()
                ),
            ));
        }
        let attributed = link(object.get("attributedTo")).unwrap_or_default();
        let actor_name = self
            .actor_names
            .get(&attributed)
            .ok_or_else(|| {
                invalid(
                    from,
                    format!(
                        "post {object_id:?} is attributed to {attributed:?}, none of our actors"
                    ),
                )
            })?
            .to_string();
        let date = |field: &str| -> Result<Option<DateTime<Utc>>, LoadError> {
            match object.get(field).and_then(Value::as_str) {
                None => Ok(None),
                Some(text) => DateTime::parse_from_rfc3339(text)
                    .map(|d| Some(d.with_timezone(&Utc)))
                    .map_err(|e| {
                        invalid(from, format!("post {object_id:?}: {field} {text:?}: {e}"))
                    }),
            }
        };
        Ok(PublishedPost {
            content_hash: content_hash(&object),
            updated: date("updated")?,
            published: date("published")?,
            object_id,
            actor_name,
            object,
        })
    }
}

/// A link as ActivityStreams writes it: a string, or an object with an `id`.
fn link(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(url) => Some(url.clone()),
        Value::Object(fields) => fields.get("id")?.as_str().map(str::to_string),
        Value::Array(items) => link(items.first()),
        _ => None,
    }
}

fn array<'v>(value: &'v Value, at: &str) -> Result<&'v Vec<Value>, LoadError> {
    value
        .as_array()
        .ok_or_else(|| invalid(at, "orderedItems is not an array".into()))
}

fn invalid(at: &str, message: String) -> LoadError {
    LoadError::Invalid {
        at: at.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Document;
    use crate::federation::output_files;

    fn config(extra: &str) -> SiteConfig {
        SiteConfig::parse(
            &format!(
                "title = \"T\"\nbase_url = \"https://blog.example\"\n{extra}\n\
                 [[authors]]\nid = \"alice\"\nname = \"Alice\"\n\
                 [fediverse]\noutbox_page_size = 2\n"
            ),
            Path::new("config.toml"),
        )
        .unwrap()
    }

    fn document(slug: &str, authors: &[&str], date: &str) -> Document {
        Document {
            date: Some(DateTime::parse_from_rfc3339(date).unwrap()),
            source_hash: slug.into(),
            ..crate::federation::documents::tests::post(slug, authors)
        }
    }

    /// Writes the federation documents of `posts` as the build does.
    fn build(config: &SiteConfig, posts: &[Document], out: &Path) {
        for file in output_files(config, posts, "PEM") {
            let path = out.join(file.path.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, file.bytes).unwrap();
        }
    }

    #[test]
    fn reads_every_post_of_every_page_once() {
        let config = config("");
        let dir = tempfile::tempdir().unwrap();
        let posts = vec![
            document("e", &[], "2027-01-05T00:00:00Z"),
            document("d", &["alice"], "2027-01-04T00:00:00Z"),
            document("c", &[], "2027-01-03T00:00:00Z"),
            document("b", &["alice"], "2027-01-02T00:00:00Z"),
            document("a", &[], "2027-01-01T00:00:00Z"),
        ];
        build(&config, &posts, dir.path());
        let loaded = load_published_posts(&config, dir.path()).unwrap();
        let slugs: Vec<&str> = loaded
            .iter()
            .map(|p| p.object_id.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            slugs,
            vec!["e.json", "d.json", "c.json", "b.json", "a.json"]
        );
        let d = &loaded[1];
        assert_eq!(d.actor_name, "alice");
        assert_eq!(loaded[0].actor_name, "blog");
        assert_eq!(d.object["type"], "Note");
        assert!(d.object.get("@context").is_none());
        assert_eq!(
            d.published,
            Some(
                DateTime::parse_from_rfc3339("2027-01-04T00:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
        assert_eq!(d.content_hash, content_hash(&d.object));
    }

    #[test]
    fn an_edit_changes_the_hash_of_that_post_only() {
        let config = config("");
        let dir = tempfile::tempdir().unwrap();
        let mut posts = vec![
            document("b", &[], "2027-01-02T00:00:00Z"),
            document("a", &[], "2027-01-01T00:00:00Z"),
        ];
        build(&config, &posts, dir.path());
        let before = load_published_posts(&config, dir.path()).unwrap();
        posts[1].content = "<p>Edited</p>".into();
        build(&config, &posts, dir.path());
        let after = load_published_posts(&config, dir.path()).unwrap();
        assert!(after[1].object_id.ends_with("/a.json"));
        assert_ne!(before[1].content_hash, after[1].content_hash);
        assert_eq!(before[0].content_hash, after[0].content_hash);
    }

    #[test]
    fn an_empty_site_has_no_posts_but_a_missing_outbox_is_an_error() {
        let config = config("");
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_published_posts(&config, dir.path()),
            Err(LoadError::NoOutbox { .. })
        ));
        build(&config, &[], dir.path());
        assert!(load_published_posts(&config, dir.path())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn output_built_for_another_address_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let local = SiteConfig::parse(
            "title = \"T\"\nbase_url = \"http://127.0.0.1:1111\"\n",
            Path::new("config.toml"),
        )
        .unwrap();
        build(
            &local,
            &[document("a", &[], "2027-01-01T00:00:00Z")],
            dir.path(),
        );
        let mut real = local.clone();
        real.base_url = "https://blog.example".into();
        // The outbox file is where the real site expects it, its ids are not.
        let err = load_published_posts(&real, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a document of this site") || err.contains("another address"),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_or_missing_page_is_an_error_not_fewer_posts() {
        let config = config("");
        let dir = tempfile::tempdir().unwrap();
        let posts: Vec<Document> = ["c", "b", "a"]
            .iter()
            .enumerate()
            .map(|(i, slug)| document(slug, &[], &format!("2027-01-0{}T00:00:00Z", 3 - i)))
            .collect();
        build(&config, &posts, dir.path());
        let page = dir.path().join("ap/users/blog/outbox/page-2.json");
        let full = std::fs::read(&page).unwrap();
        let mut truncated: Value = serde_json::from_slice(&full).unwrap();
        truncated["orderedItems"] = serde_json::json!([]);
        std::fs::write(&page, truncated.to_string()).unwrap();
        let err = load_published_posts(&config, dir.path()).unwrap_err();
        assert!(err.to_string().contains("counts 3 items"), "{err}");
        std::fs::remove_file(&page).unwrap();
        let err = load_published_posts(&config, dir.path()).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn broken_outbox_names_the_file() {
        let config = config("");
        let dir = tempfile::tempdir().unwrap();
        build(
            &config,
            &[document("a", &[], "2027-01-01T00:00:00Z")],
            dir.path(),
        );
        let page = dir.path().join("ap/users/blog/outbox/page-1.json");
        std::fs::write(&page, "{ not json").unwrap();
        let err = load_published_posts(&config, dir.path()).unwrap_err();
        assert!(
            matches!(&err, LoadError::Json { at, .. } if *at == page.display().to_string()),
            "{err}"
        );
    }
}
