//! The posts of a built site, read back from its output folder: every actor's outbox
//! (`/ap/users/NAME/outbox.json` and the pages it links), whose `Create` items carry the post
//! objects. Reading what was built, rather than rebuilding, sends exactly what is served.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::plan::{content_hash, PublishedPost};
use crate::config::SiteConfig;
use crate::federation::documents::actors;
use crate::federation::urls::Urls;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: no outbox; build the site first (`relais build`)")]
    NoOutbox { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads the posts in the outboxes under `out_dir`, each once, in outbox order.
///
/// Fails rather than returning fewer posts: a post missing from the result would be sent
/// as deleted. Also fails when the output was built for another `base_url` (by
/// `relais serve`, say), whose ids are not the site's.
pub fn load_published_posts(
    config: &SiteConfig,
    out_dir: &Path,
) -> Result<Vec<PublishedPost>, LoadError> {
    let urls = Urls::new(config);
    let names: Vec<String> = actors(config).into_iter().map(|a| a.name).collect();
    let actor_names: HashMap<String, &str> = names
        .iter()
        .map(|name| (urls.actor(name), name.as_str()))
        .collect();
    let reader = Reader {
        out_dir,
        urls: &urls,
        actor_names: &actor_names,
    };
    let mut posts = Vec::new();
    let mut seen = HashSet::new();
    for name in &names {
        let path = reader.file_of_path(&Urls::outbox_path(name));
        if !path.exists() {
            // Every post is in the site actor's outbox; authors' outboxes only repeat theirs.
            if *name == config.fediverse.username {
                return Err(LoadError::NoOutbox { path });
            }
            continue;
        }
        for (item, page) in reader.outbox_items(&path)? {
            let post = reader.post(&item, &page)?;
            if seen.insert(post.object_id.clone()) {
                posts.push(post);
            }
        }
    }
    Ok(posts)
}

struct Reader<'a> {
    out_dir: &'a Path,
    urls: &'a Urls,
    actor_names: &'a HashMap<String, &'a str>,
}

impl Reader<'_> {
    fn file_of_path(&self, site_path: &str) -> PathBuf {
        self.out_dir.join(site_path.trim_start_matches('/'))
    }

    /// The file behind one of the site's own URLs.
    fn file_of_url(&self, url: &str, from: &Path) -> Result<PathBuf, LoadError> {
        let path = url
            .strip_prefix(self.urls.base())
            .filter(|p| p.starts_with('/') && !p.split('/').any(|part| part == ".."))
            .ok_or_else(|| invalid(from, format!("{url} is not a document of this site")))?;
        Ok(self.file_of_path(path.split('#').next().unwrap_or(path)))
    }

    /// Every item of the outbox at `path`, inline or over its pages (`first`, then `next`),
    /// with the file it came from.
    fn outbox_items(&self, path: &Path) -> Result<Vec<(Value, PathBuf)>, LoadError> {
        let outbox = read_json(path)?;
        let mut items = Vec::new();
        if let Some(inline) = outbox.get("orderedItems") {
            items.extend(
                array(inline, path)?
                    .iter()
                    .map(|i| (i.clone(), path.to_path_buf())),
            );
        }
        let mut next = link(outbox.get("first"));
        let mut visited = HashSet::new();
        while let Some(url) = next {
            if !visited.insert(url.clone()) {
                return Err(invalid(path, format!("outbox pages loop back to {url}")));
            }
            let page_path = self.file_of_url(&url, path)?;
            let page = read_json(&page_path)?;
            let page_items = page
                .get("orderedItems")
                .ok_or_else(|| invalid(&page_path, "outbox page without orderedItems".into()))?;
            items.extend(
                array(page_items, &page_path)?
                    .iter()
                    .map(|i| (i.clone(), page_path.clone())),
            );
            next = link(page.get("next"));
        }
        Ok(items)
    }

    /// The post of one outbox item: a `Create` with its object inline or as a link.
    fn post(&self, item: &Value, from: &Path) -> Result<PublishedPost, LoadError> {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind != "Create" {
            return Err(invalid(
                from,
                format!("outbox item of type {kind:?}, not Create"),
            ));
        }
        let mut object = match item.get("object") {
            Some(Value::String(url)) => read_json(&self.file_of_url(url, from)?)?,
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
                    "post {object_id} is not under base_url {}: this output was built for \
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
                    format!("post {object_id} is attributed to {attributed:?}, none of our actors"),
                )
            })?
            .to_string();
        let date = |field: &str| -> Result<Option<DateTime<Utc>>, LoadError> {
            match object.get(field).and_then(Value::as_str) {
                None => Ok(None),
                Some(text) => DateTime::parse_from_rfc3339(text)
                    .map(|d| Some(d.with_timezone(&Utc)))
                    .map_err(|e| invalid(from, format!("post {object_id}: {field} {text:?}: {e}"))),
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

fn array<'v>(value: &'v Value, path: &Path) -> Result<&'v Vec<Value>, LoadError> {
    value
        .as_array()
        .ok_or_else(|| invalid(path, "orderedItems is not an array".into()))
}

fn read_json(path: &Path) -> Result<Value, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| LoadError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, message: String) -> LoadError {
    LoadError::Invalid {
        path: path.to_path_buf(),
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
            matches!(&err, LoadError::Json { path, .. } if *path == page),
            "{err}"
        );
    }
}
