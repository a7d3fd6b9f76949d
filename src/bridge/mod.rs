//! Bridge mode: the fediverse half for a site another generator built (Hugo, Jekyll,
//! Eleventy, Zola, Astro…). The posts come from the site's feed, gaps filled from each post's
//! own page; they become the same `Document`s `relais build` makes, so
//! `federation::output_files` writes the same actors, WebFinger, NodeInfo, outboxes, objects
//! and host files, and object ids are those `relais build` would give the same page URLs.
//! Each post page is then linked to its object in place (see [`rewrite`]).
//!
//! Feeds often list only the newest posts. A post that once was federated stays in the
//! outbox while its page exists (`.relais/federate-posts.json` in the site folder remembers
//! it): falling out of the feed must not read as a deletion to `relais publish`.

pub mod feed;
pub mod page;
pub mod rewrite;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use crate::config::SiteConfig;
use crate::content::{self, media_type, Document, DocumentKind, ImageRef};
use crate::federation::check::{FederationState, FediverseWarning};
use crate::federation::documents::attributed_actor;
use crate::federation::keys::{self, SiteKeySource};
use crate::federation::urls::Urls;
use feed::FeedEntry;
use page::PageFacts;
use rewrite::{InteractionsBlock, PageLinks};

/// Where the posts federated by earlier runs are remembered, in the site folder.
pub const MEMORY_FILE: &str = ".relais/federate-posts.json";
/// Feed files generators write, tried in order when no `--feed` is given and the home page
/// names none.
pub const FEED_NAMES: &[&str] = &[
    "feed.xml",
    "atom.xml",
    "index.xml",
    "rss.xml",
    "feed.json",
    "feed/index.xml",
    "feed/feed.xml",
    "feed.atom",
    "rss/index.xml",
    "index.rss",
];
/// The replies-and-reactions script, written next to the pages that load it.
pub const INTERACTIONS_SCRIPT_PATH: &str = "/interactions.js";
const INTERACTIONS_SCRIPT: &[u8] = include_bytes!("../../themes/default/static/interactions.js");
/// Marks the lines `relais federate` owns in host files the site may have its own rules in.
pub const HOST_BLOCK_BEGIN: &str = "# relais federate: begin (rewritten on each run)\n";
pub const HOST_BLOCK_END: &str = "# relais federate: end\n";
const WORDS_PER_MINUTE: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{dir}: no feed found (looked for the home page's <link rel=\"alternate\"> and {names}); name it with --feed")]
    NoFeed { dir: PathBuf, names: String },
    #[error(transparent)]
    Feed(#[from] feed::FeedError),
    #[error("{feed}: entry {url:?}: its page is not in {dir} (looked for {file})")]
    PageMissing {
        feed: PathBuf,
        url: String,
        dir: PathBuf,
        file: PathBuf,
    },
    #[error("{path}: {source}")]
    Rewrite {
        path: PathBuf,
        source: rewrite::RewriteError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: exists and was not written by relais: move its rules elsewhere or remove it")]
    ForeignHostFile { path: PathBuf },
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("{feed}: no entry of the feed is a post under base_url {base_url} (config.toml)")]
    NothingToFederate { feed: PathBuf, base_url: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BridgeError + '_ {
    move |source| BridgeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `relais federate` was asked to do.
#[derive(Debug, Clone)]
pub struct FederateOptions {
    /// The folder holding `config.toml` (and the key, the store, `.relais/`).
    pub site_dir: PathBuf,
    /// The built site to federate, rewritten in place.
    pub out_dir: PathBuf,
    /// Feed files; empty means: find one in `out_dir`.
    pub feeds: Vec<PathBuf>,
    /// Add the replies-and-reactions section and script under each post.
    pub interactions: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct FederateReport {
    pub feeds: Vec<PathBuf>,
    /// Posts federated: from the feeds, and remembered from earlier runs.
    pub posts: usize,
    pub remembered: usize,
    /// Post pages changed, and left as they were (already linked).
    pub pages_rewritten: usize,
    pub pages_unchanged: usize,
    /// Federation files written (changed) and unchanged.
    pub files_written: usize,
    pub files_unchanged: usize,
    pub stale_removed: usize,
    /// Feed entries left out, with why.
    pub skipped: Vec<String>,
    pub warnings: Vec<FediverseWarning>,
    pub key_source: Option<SiteKeySource>,
}

impl FederateReport {
    pub fn summary(&self, out_dir: &Path) -> String {
        format!(
            "Federated {} post(s) ({} remembered from earlier runs) into {}: {} page(s) linked, \
             {} already linked; {} file(s) written, {} unchanged, {} stale removed",
            self.posts,
            self.remembered,
            out_dir.display(),
            self.pages_rewritten,
            self.pages_unchanged,
            self.files_written,
            self.files_unchanged,
            self.stale_removed,
        )
    }
}

/// A post found in the site, with its page file.
struct Found {
    document: Document,
    /// The page file, relative to `out_dir`.
    file: PathBuf,
}

/// Federates the built site in `options.out_dir` for the site configured by `config`.
pub fn federate(
    config: &SiteConfig,
    options: &FederateOptions,
) -> Result<FederateReport, BridgeError> {
    let out = &options.out_dir;
    let mut report = FederateReport::default();
    let feeds = if options.feeds.is_empty() {
        vec![find_feed(out)?]
    } else {
        options.feeds.clone()
    };
    let urls = Urls::new(config);

    let mut found: Vec<Found> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for feed_path in &feeds {
        let entries = feed::read_feed(feed_path)?;
        // A new blog's feed may be empty; entries none of which are ours mean a wrong
        // base_url, which would otherwise federate nothing without a word.
        let listed = !entries.is_empty();
        let before = found.len();
        for entry in entries {
            match post_of_entry(config, out, feed_path, &entry)? {
                Ok(post) => {
                    if seen.insert(post.document.path.clone()) {
                        found.push(post);
                    }
                }
                Err(why) => report.skipped.push(why),
            }
        }
        if listed && found.len() == before && config.fediverse.enabled {
            return Err(BridgeError::NothingToFederate {
                feed: feed_path.clone(),
                base_url: config.base_url.clone(),
            });
        }
    }
    // Posts an earlier run federated that the feeds no longer list, while their page is
    // still published.
    let memory_path = options.site_dir.join(MEMORY_FILE);
    for remembered in load_memory(&memory_path) {
        let file = out.join(&remembered.source);
        if !seen.contains(&remembered.path) && file.is_file() {
            seen.insert(remembered.path.clone());
            report.remembered += 1;
            found.push(Found {
                file: remembered.source.clone(),
                document: remembered,
            });
        }
    }
    found.sort_by(|a, b| {
        b.document
            .date
            .cmp(&a.document.date)
            .then_with(|| a.document.path.cmp(&b.document.path))
    });
    let posts: Vec<Document> = found.iter().map(|f| f.document.clone()).collect();
    report.posts = posts.len();
    report.feeds = feeds;

    if config.fediverse.enabled {
        let key_path = options.site_dir.join(&config.fediverse.key_path);
        keys::ensure_outside(&key_path, out)?;
        let (public_key_pem, key_source) = keys::site_public_key(&key_path)?;
        report.key_source = Some(key_source);
        let previous = FederationState::load(&options.site_dir);
        report.warnings = crate::federation::check::check_site(config, &posts, &previous);
        write_federation_files(config, out, &posts, &public_key_pem, &mut report)?;
        if options.interactions {
            let script = out.join(INTERACTIONS_SCRIPT_PATH.trim_start_matches('/'));
            write_if_changed(&script, INTERACTIONS_SCRIPT, &mut report)?;
        }
        for post in &found {
            link_post_page(config, &urls, out, post, options.interactions, &mut report)?;
        }
        // Only warnings depend on it: a run that wrote its output has succeeded.
        let _ = FederationState::of_posts(&urls, &posts).save(&options.site_dir);
    }
    save_memory(&memory_path, &posts)?;
    Ok(report)
}

/// The feed a site's home page announces, else the first of [`FEED_NAMES`] that exists.
pub fn find_feed(out: &Path) -> Result<PathBuf, BridgeError> {
    if let Ok(home) = std::fs::read_to_string(out.join("index.html")) {
        let doc = scraper::Html::parse_document(&home);
        let types = [
            "application/atom+xml",
            "application/rss+xml",
            "application/feed+json",
            "application/json",
        ];
        if let Ok(selector) = scraper::Selector::parse("link[rel~='alternate'][href]") {
            for link in doc.select(&selector) {
                let kind = link.value().attr("type").unwrap_or_default();
                let href = link.value().attr("href").unwrap_or_default();
                if !types.contains(&kind) {
                    continue;
                }
                // Only a feed of this site: its path, with or without the site's origin.
                let path = url::Url::parse(href)
                    .map(|u| u.path().to_string())
                    .unwrap_or_else(|_| href.to_string());
                if let Some(file) = site_file(out, &path) {
                    return Ok(file);
                }
            }
        }
    }
    FEED_NAMES
        .iter()
        .map(|name| out.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| BridgeError::NoFeed {
            dir: out.to_path_buf(),
            names: FEED_NAMES.join(", "),
        })
}

/// The file under `out` serving site path `path`, if there is one.
fn site_file(out: &Path, path: &str) -> Option<PathBuf> {
    candidates(path)
        .into_iter()
        .map(|rel| out.join(rel))
        .find(|p| p.is_file())
}

/// Files a static host would serve for a site path, most likely first.
fn candidates(path: &str) -> Vec<PathBuf> {
    let decoded = percent_decode(path.split(['?', '#']).next().unwrap_or_default());
    let rel = decoded.trim_start_matches('/');
    if rel.split('/').any(|s| s == ".." || s == ".") {
        return Vec::new();
    }
    if rel.is_empty() || rel.ends_with('/') {
        return vec![PathBuf::from(format!("{rel}index.html"))];
    }
    vec![
        PathBuf::from(rel),
        PathBuf::from(format!("{rel}.html")),
        PathBuf::from(format!("{rel}/index.html")),
    ]
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                // Two hex digits make one byte: the cast cannot truncate.
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The post of one feed entry; `Ok(Err(why))` for an entry that is not a post of this site
/// (a warning), `Err` when its page is missing (the site and its feed disagree).
fn post_of_entry(
    config: &SiteConfig,
    out: &Path,
    feed_path: &Path,
    entry: &FeedEntry,
) -> Result<Result<Found, String>, BridgeError> {
    let base = format!("{}/", config.base_url);
    let Ok(page_url) = url::Url::parse(&entry.url) else {
        return Ok(Err(format!(
            "{}: entry {:?} has no page URL",
            feed_path.display(),
            content::printable(&entry.url)
        )));
    };
    let mut bare = page_url.clone();
    bare.set_query(None);
    bare.set_fragment(None);
    let Some(rest) = bare.as_str().strip_prefix(&base) else {
        return Ok(Err(format!(
            "{}: entry {:?} is not under base_url {} (config.toml): left out",
            feed_path.display(),
            content::printable(&entry.url),
            config.base_url
        )));
    };
    let path = format!("/{rest}");
    let candidates = candidates(&path);
    let Some(file) = candidates.iter().find(|rel| out.join(rel).is_file()) else {
        return Err(BridgeError::PageMissing {
            feed: feed_path.to_path_buf(),
            url: content::printable(&entry.url).into_owned(),
            dir: out.to_path_buf(),
            file: candidates.first().cloned().unwrap_or_default(),
        });
    };
    let page_file = out.join(file);
    let html = std::fs::read_to_string(&page_file).map_err(io(&page_file))?;
    let facts = page::read_page(&html);
    let document = document_of(config, &path, file, &bare, entry, &facts);
    Ok(Ok(Found {
        document,
        file: file.clone(),
    }))
}

/// The typed post `relais build` would have made of this page.
fn document_of(
    config: &SiteConfig,
    path: &str,
    file: &Path,
    page_url: &url::Url,
    entry: &FeedEntry,
    facts: &PageFacts,
) -> Document {
    let summary = entry.summary.clone().or_else(|| {
        facts
            .description
            .as_ref()
            .map(|d| format!("<p>{}</p>", content::escape_html(d)))
    });
    // A feed's description may be the summary only (Hugo's RSS): the page has the rest.
    let body = entry
        .content
        .clone()
        .or_else(|| facts.content.clone())
        .or_else(|| entry.summary.clone())
        .unwrap_or_default();
    let body = page::absolute_links(body.trim(), page_url);
    let title = entry
        .title
        .clone()
        .or_else(|| facts.title.clone())
        .unwrap_or_else(|| path.to_string());
    let tags = if entry.tags.is_empty() {
        facts.tags.clone()
    } else {
        entry.tags.clone()
    };
    let names = if entry.authors.is_empty() {
        &facts.authors
    } else {
        &entry.authors
    };
    // Names the feed gives that are config.toml authors (by id or name); others are the site.
    let mut authors: Vec<String> = Vec::new();
    for name in names {
        let found = config
            .authors
            .iter()
            .find(|a| a.id == *name || a.name.eq_ignore_ascii_case(name.trim()));
        if let Some(author) = found {
            if !authors.contains(&author.id) {
                authors.push(author.id.clone());
            }
        }
    }
    let resolve = |src: &str| {
        page_url
            .join(src)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| src.to_string())
    };
    let image = entry
        .image
        .as_deref()
        .or(facts.image.as_deref())
        .map(|src| {
            let src = resolve(src);
            ImageRef {
                media_type: media_type(&src).to_string(),
                alt: facts.image_alt.clone().unwrap_or_default(),
                src,
                size: None,
            }
        });
    let shown: Vec<ImageRef> = page::images_in(&body)
        .into_iter()
        .map(|(src, alt)| {
            let src = resolve(&src);
            ImageRef {
                media_type: media_type(&src).to_string(),
                alt,
                src,
                size: None,
            }
        })
        .collect();
    // og:image has no alt of its own unless og:image:alt is set; the same picture in the
    // text usually has one.
    let image = image.map(|mut lead| {
        if lead.alt.is_empty() {
            if let Some(same) = shown.iter().find(|i| i.src == lead.src) {
                lead.alt = same.alt.clone();
            }
        }
        lead
    });
    let mut images: Vec<ImageRef> = image.iter().cloned().collect();
    images.extend(shown);
    let text = content::plain_text(&body);
    let word_count = text.split_whitespace().count();
    let slug = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".html")
        .to_string();
    let published = entry.published.or(facts.published);
    let updated = entry
        .updated
        .or(facts.updated)
        .filter(|u| Some(*u) != published);
    let language = entry
        .language
        .clone()
        .or_else(|| facts.language.clone())
        .filter(|l| !l.eq_ignore_ascii_case(&config.language));
    let source_hash = content::hex_sha256(
        serde_json::json!([title, body, summary, tags, published, updated, images.len()])
            .to_string()
            .as_bytes(),
    );
    Document {
        kind: DocumentKind::Post,
        source: file.to_path_buf(),
        slug,
        path: path.to_string(),
        title,
        date: published,
        untitled: false,
        updated,
        draft: false,
        tags,
        summary,
        authors,
        language,
        image,
        content_warning: None,
        federate_as: None,
        quotes: None,
        in_reply_to: None,
        content: body,
        text,
        images,
        assets: Vec::new(),
        word_count,
        reading_minutes: word_count.div_ceil(WORDS_PER_MINUTE).max(1),
        source_hash,
        description: None,
        aliases: Vec::new(),
        weight: None,
        extra: content::Extra::default(),
        taxonomies: Default::default(),
        kept_fields: Vec::new(),
    }
}

fn load_memory(path: &Path) -> Vec<Document> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn save_memory(path: &Path, posts: &[Document]) -> Result<(), BridgeError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let bytes = serde_json::to_vec_pretty(posts).unwrap_or_default();
    if std::fs::read(path).ok().as_deref() != Some(bytes.as_slice()) {
        std::fs::write(path, bytes).map_err(io(path))?;
    }
    Ok(())
}

/// Writes `bytes` at `path` unless it holds them already (a second run touches nothing).
fn write_if_changed(
    path: &Path,
    bytes: &[u8],
    report: &mut FederateReport,
) -> Result<(), BridgeError> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        report.files_unchanged += 1;
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(path, bytes).map_err(io(path))?;
    report.files_written += 1;
    Ok(())
}

/// The federation documents and host files, as `relais build` writes them. Host files the
/// site has its own rules in keep them, after relais's block.
fn write_federation_files(
    config: &SiteConfig,
    out: &Path,
    posts: &[Document],
    public_key_pem: &str,
    report: &mut FederateReport,
) -> Result<(), BridgeError> {
    let files = crate::federation::output_files(config, posts, public_key_pem);
    let mut documents: BTreeSet<PathBuf> = BTreeSet::new();
    for file in &files {
        let rel = file.path.trim_start_matches('/');
        let path = out.join(rel);
        let bytes = match file.path.as_str() {
            "/_headers" | "/_redirects" => {
                let existing = std::fs::read_to_string(&path).unwrap_or_default();
                merge_host_file(&existing, &String::from_utf8_lossy(&file.bytes)).into_bytes()
            }
            "/_worker.js" => {
                let existing = std::fs::read(&path).ok();
                if existing.as_ref().is_some_and(|e| {
                    e.as_slice() != file.bytes.as_slice()
                        && !String::from_utf8_lossy(e).contains("relais")
                }) {
                    return Err(BridgeError::ForeignHostFile { path });
                }
                file.bytes.clone()
            }
            _ => file.bytes.clone(),
        };
        if rel.starts_with("ap/") {
            documents.insert(PathBuf::from(rel));
        }
        write_if_changed(&path, &bytes, report)?;
    }
    // Objects of posts gone since the last run: `/ap/` is relais's alone.
    for entry in walkdir::WalkDir::new(out.join("ap")).into_iter().flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(out) else {
            continue;
        };
        let is_json = rel.extension().is_some_and(|e| e == "json");
        if is_json && !documents.contains(rel) {
            std::fs::remove_file(entry.path()).map_err(io(entry.path()))?;
            report.stale_removed += 1;
        }
    }
    Ok(())
}

/// relais's rules first (the first matching `_redirects` rule wins), then the site's own,
/// without the block an earlier run wrote.
pub fn merge_host_file(existing: &str, ours: &str) -> String {
    let theirs = match existing.find(HOST_BLOCK_BEGIN) {
        Some(start) => {
            let end = existing[start..]
                .find(HOST_BLOCK_END)
                .map_or(existing.len(), |i| start + i + HOST_BLOCK_END.len());
            format!("{}{}", &existing[..start], &existing[end..])
        }
        None => existing.to_string(),
    };
    let mut merged = String::with_capacity(ours.len() + theirs.len() + 80);
    merged.push_str(HOST_BLOCK_BEGIN);
    merged.push_str(ours);
    if !ours.ends_with('\n') {
        merged.push('\n');
    }
    merged.push_str(HOST_BLOCK_END);
    merged.push_str(theirs.trim_start_matches('\n'));
    merged
}

fn link_post_page(
    config: &SiteConfig,
    urls: &Urls,
    out: &Path,
    post: &Found,
    interactions: bool,
    report: &mut FederateReport,
) -> Result<(), BridgeError> {
    let path = out.join(&post.file);
    let html = std::fs::read_to_string(&path).map_err(io(&path))?;
    let facts = page::read_page(&html);
    let object_url = urls.object(&post.document.path);
    let interactions = interactions.then(|| InteractionsBlock {
        source: format!(
            "{}?{}",
            Urls::INTERACTIONS_PATH,
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("post", &object_url)
                .finish()
        ),
        permalink: config.absolute(&post.document.path),
        script: INTERACTIONS_SCRIPT_PATH.to_string(),
    });
    let links = PageLinks {
        creator: Urls::handle(attributed_actor(config, &post.document), &config.host()),
        object_url,
        interactions,
    };
    match rewrite::link_page(&html, &facts, &links) {
        Ok(Some(rewritten)) => {
            std::fs::write(&path, rewritten).map_err(io(&path))?;
            report.pages_rewritten += 1;
        }
        Ok(None) => report.pages_unchanged += 1,
        Err(source) => return Err(BridgeError::Rewrite { path, source }),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_files_keep_the_site_s_own_rules() {
        let theirs = "/old /new 301\n";
        let once = merge_host_file(theirs, "/a /b 200\n");
        assert_eq!(
            once,
            format!("{HOST_BLOCK_BEGIN}/a /b 200\n{HOST_BLOCK_END}/old /new 301\n")
        );
        assert_eq!(merge_host_file(&once, "/a /b 200\n"), once);
        let changed = merge_host_file(&once, "/a /c 200\n");
        assert!(changed.contains("/a /c 200") && !changed.contains("/a /b 200"));
        assert!(changed.ends_with("/old /new 301\n"));
    }

    #[test]
    fn page_files_for_site_paths() {
        assert_eq!(
            candidates("/posts/hello/"),
            [PathBuf::from("posts/hello/index.html")]
        );
        assert_eq!(
            candidates("/2024/05/01/a%20b.html")[0],
            PathBuf::from("2024/05/01/a b.html")
        );
        assert!(candidates("/posts/../../etc/passwd").is_empty());
        assert_eq!(percent_decode("%E2%9C%93%"), "✓%");
    }
}
