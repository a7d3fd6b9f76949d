//! Markdown files with front matter → typed `Document`s (posts and standalone pages).

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::config::{ObjectType, QuotePolicy};

/// Where a document lives in the site: posts are dated and federated, pages are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentKind {
    Post,
    Page,
}

/// An image the post shows, with the alt text Mastodon displays as the attachment description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Site path (`/posts/slug/cat.jpg`) or absolute URL.
    pub src: String,
    pub alt: String,
    /// MIME type guessed from the extension, e.g. `image/jpeg`.
    pub media_type: String,
    /// Width and height read from a local file (none for a remote or unreadable image):
    /// the lead image's `width`/`height` on the page, so it does not jump while loading.
    #[serde(default)]
    pub size: Option<(u32, u32)>,
}

/// One parsed Markdown file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document {
    pub kind: DocumentKind,
    /// Path of the source relative to the site directory, for error messages.
    pub source: PathBuf,
    pub slug: String,
    /// Site path with leading and trailing slash: `/posts/slug/`, `/about/`.
    pub path: String,
    /// The front matter `title`, or for an untitled post (a note) its first words.
    pub title: String,
    /// No `title` was given: the post federates as a Note without a title line.
    pub untitled: bool,
    pub date: Option<DateTime<FixedOffset>>,
    pub updated: Option<DateTime<FixedOffset>>,
    pub draft: bool,
    pub tags: Vec<String>,
    /// Summary as HTML: the front matter `summary`, else the part before `<!-- more -->`.
    pub summary: Option<String>,
    /// Author ids (see `config.authors`); empty means the site itself.
    pub authors: Vec<String>,
    pub language: Option<String>,
    /// Lead image from front matter.
    pub image: Option<ImageRef>,
    pub content_warning: Option<String>,
    /// Per-post override of `fediverse.object_type`.
    pub federate_as: Option<ObjectType>,
    /// Per-post override of `fediverse.quotes`.
    pub quotes: Option<QuotePolicy>,
    /// Front matter `in_reply_to`: the post this one answers (federated as `inReplyTo`).
    #[serde(default)]
    pub in_reply_to: Option<String>,
    /// Rendered body HTML (links to bundled assets already made site-absolute).
    pub content: String,
    /// Body as plain text, for excerpts and character budgets.
    pub text: String,
    /// Every image in the body, in order, plus the lead image first when set.
    pub images: Vec<ImageRef>,
    /// Files bundled next to `index.md`, relative to the site directory.
    pub assets: Vec<PathBuf>,
    pub word_count: usize,
    pub reading_minutes: usize,
    /// Hash of the source bytes, for incremental rebuilds and delivery change detection.
    pub source_hash: String,
    /// Front matter `description` (Zola, Hugo), for the meta description.
    #[serde(default)]
    pub description: Option<String>,
    /// Old site paths (`/old/`, `/old.html`) that redirect here.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Ordering weight (Zola, Hugo): lighter first where a list sorts by weight.
    #[serde(default)]
    pub weight: Option<i64>,
    /// `[extra]`/`params` and the kept generator fields, for templates as `page.extra`.
    #[serde(default)]
    pub extra: Extra,
    /// Taxonomies other than tags (`categories`, `series`...), with their terms.
    #[serde(default)]
    pub taxonomies: std::collections::BTreeMap<String, Vec<String>>,
    /// Zola/Hugo keys present that relais keeps without acting on, for the build's notes.
    #[serde(default)]
    pub kept_fields: Vec<String>,
}

/// Free-form template values. Stored as JSON text, since the build index is bincode, which
/// cannot read self-describing values back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra(pub serde_json::Map<String, serde_json::Value>);

impl Serialize for Extra {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&serde_json::Value::Object(self.0.clone()).to_string())
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text)
            .map(Extra)
            .map_err(serde::de::Error::custom)
    }
}

mod cache;
pub(crate) mod front_matter;
mod highlight;
mod markdown;
mod parse;
mod scaffold;
mod section;
mod source;

pub use cache::DocumentCache;
pub use front_matter::parse_date;
pub use front_matter::GENERATOR_KEYS;
pub use highlight::Highlighter;
pub use markdown::html_ids;
pub use parse::{parse_document, percent_decode, title_from_words, PageLinks, Parsed, SiteLink};
pub use scaffold::{new_post, NewKind, ScaffoldError};
pub use section::{parse_section, SectionMeta, SortBy};
pub use source::{discover, section_of, ContentAsset, Discovered, SourceFile};

use std::path::Path;

use rayon::prelude::*;

/// A content problem, named by the file (relative to the site) and, for anything inside a
/// file, the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Reading a file fails as a whole: there is no line to name.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not UTF-8 text")]
    Encoding { path: PathBuf, line: usize },
    #[error("{path}:{line}: {message}")]
    FrontMatter {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: unknown date format {text:?}: use RFC 3339 (2024-05-01T09:30:00+02:00) or YYYY-MM-DD")]
    Date {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{path}:{line}: {message}")]
    Missing {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: {message}")]
    BrokenLink {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl ContentError {
    pub fn path(&self) -> &Path {
        match self {
            ContentError::Read { path, .. }
            | ContentError::Encoding { path, .. }
            | ContentError::FrontMatter { path, .. }
            | ContentError::Date { path, .. }
            | ContentError::Missing { path, .. }
            | ContentError::BrokenLink { path, .. }
            | ContentError::Invalid { path, .. } => path,
        }
    }
}

/// Every error of a load, so one build reports all broken files at once.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ContentErrors(pub Vec<ContentError>);

/// The documents of a site and the files found next to them.
#[derive(Debug)]
pub struct Loaded {
    /// In source path order; drafts included.
    pub documents: Vec<Document>,
    /// Non-Markdown files of `content/` outside bundles.
    pub assets: Vec<ContentAsset>,
    /// How many documents were parsed, and how many came from the cache unchanged.
    pub parsed: usize,
    pub reused: usize,
    /// What the sections' `_index.md` files say.
    pub sections: Vec<SectionMeta>,
}

/// Reads and parses the sections' `_index.md` files; all errors at once.
pub fn load_sections(
    site_dir: &Path,
    indexes: &[PathBuf],
) -> Result<Vec<SectionMeta>, Vec<ContentError>> {
    let mut sections = Vec::with_capacity(indexes.len());
    let mut errors = Vec::new();
    for index in indexes {
        let parsed = std::fs::read_to_string(site_dir.join(index))
            .map_err(|e| ContentError::Read {
                path: index.clone(),
                source: e,
            })
            .and_then(|text| parse_section(index, &text));
        match parsed {
            Ok(meta) => sections.push(meta),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(sections)
    } else {
        Err(errors)
    }
}

/// Discovers and parses every document under `<site_dir>/content`, in parallel, reusing
/// cached documents whose source and local link targets are unchanged.
pub fn load(
    site_dir: &Path,
    highlighter: &Highlighter,
    cache: &mut DocumentCache,
) -> Result<Loaded, ContentErrors> {
    let Discovered {
        sources,
        assets,
        section_indexes,
    } = discover(site_dir).map_err(ContentErrors)?;
    let sections = load_sections(site_dir, &section_indexes).map_err(ContentErrors)?;
    let style = highlighter.fingerprint();
    let results: Vec<Result<(cache::Entry, bool), ContentError>> = sources
        .par_iter()
        .map(|source| {
            let full = site_dir.join(&source.path);
            let bytes = std::fs::read(&full).map_err(|e| ContentError::Read {
                path: source.path.clone(),
                source: e,
            })?;
            let hash = hex_sha256(&bytes);
            let key = cache::key(&source.path, &hash, &style);
            if let Some(entry) = cache.get(&source.path, &key) {
                if entry.local_files.iter().all(|f| site_dir.join(f).is_file()) {
                    return Ok((entry, false));
                }
            }
            let text = std::str::from_utf8(&bytes).map_err(|e| ContentError::Encoding {
                path: source.path.clone(),
                line: bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1,
            })?;
            let parsed = parse_document(site_dir, source, text, hash, highlighter)?;
            Ok((
                cache::Entry {
                    key,
                    document: parsed.document,
                    local_files: parsed.local_files,
                },
                true,
            ))
        })
        .collect();

    let mut errors = Vec::new();
    let mut entries = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(entry) => entries.push(entry),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        errors.sort_by(|a, b| a.path().cmp(b.path()));
        return Err(ContentErrors(errors));
    }
    let parsed = entries.iter().filter(|(_, fresh)| *fresh).count();
    let documents = entries
        .iter()
        .zip(&sources)
        .map(|((entry, _), source)| Document {
            // Bundle listings are not part of the cache key: always take today's.
            assets: source.assets.clone(),
            ..entry.document.clone()
        })
        .collect();
    let reused = entries.len() - parsed;
    cache.replace(entries);
    Ok(Loaded {
        documents,
        assets,
        parsed,
        reused,
        sections,
    })
}

pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// MIME type of an image file from its extension.
pub fn media_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// Line of a front matter `key` in `source`, for problems found after parsing (duplicate
/// slugs, unknown authors); 1 when the key is absent.
pub fn key_line(site_dir: &Path, source: &Path, key: &str) -> usize {
    std::fs::read_to_string(site_dir.join(source))
        .ok()
        .and_then(|text| front_matter::split(&text).ok().map(|s| s.line_of_key(key)))
        .unwrap_or(1)
}

/// Escapes text for HTML content and attribute values (the escaping Tera templates get too).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Remote text made safe for a terminal or a log line: control characters (C0, DEL, C1:
/// escape sequences, bells, line breaks that would forge a log line) and the bidirectional
/// overrides that reorder what is shown are written as `\u{..}` escapes.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Text of HTML for a terminal or a character count: tags dropped, the common entities
/// decoded, whitespace runs made single spaces.
pub fn plain_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_what_would_drive_a_terminal() {
        assert_eq!(printable("Alice 🌻"), "Alice 🌻");
        assert_eq!(
            printable("a\u{1b}]0;owned\u{7}b\nINFO forged"),
            "a\\u{1b}]0;owned\\u{7}b\\u{a}INFO forged"
        );
        assert_eq!(printable("\u{9b}31m\u{202e}x"), "\\u{9b}31m\\u{202e}x");
    }
    use std::fs;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn counts(site: &Path, cache: &mut DocumentCache) -> (usize, usize) {
        let loaded = load(site, &Highlighter::new(None), cache).unwrap();
        (loaded.parsed, loaded.reused)
    }

    #[test]
    fn cache_reparses_only_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path();
        for i in 0..3 {
            write(
                site,
                &format!("content/posts/p{i}.md"),
                &format!("+++\ntitle = \"P{i}\"\ndate = 2024-01-01\n+++\nBody {i}\n"),
            );
        }
        write(
            site,
            "content/posts/pic/index.md",
            "+++\ntitle = \"Pic\"\ndate = 2024-01-01\n+++\n![alt](a.png)\n",
        );
        write(site, "content/posts/pic/a.png", "png");
        let cache_dir = site.join(".relais/cache");

        let mut cache = DocumentCache::on_disk(cache_dir.clone());
        assert_eq!(counts(site, &mut cache), (4, 0));
        assert_eq!(counts(site, &mut cache), (0, 4));
        write(
            site,
            "content/posts/p1.md",
            "+++\ntitle = \"P1\"\ndate = 2024-01-01\n+++\nChanged\n",
        );
        assert_eq!(counts(site, &mut cache), (1, 3));

        // A new process: only the files on disk are there.
        let mut fresh = DocumentCache::on_disk(cache_dir.clone());
        assert_eq!(counts(site, &mut fresh), (0, 4));
        assert_eq!(
            fs::read_dir(&cache_dir).unwrap().count(),
            4,
            "stale entries pruned"
        );

        // A cached document whose image disappeared is parsed again, and fails.
        fs::remove_file(site.join("content/posts/pic/a.png")).unwrap();
        let err = load(site, &Highlighter::new(None), &mut fresh).unwrap_err();
        assert!(
            err.to_string()
                .contains("content/posts/pic/index.md:5: image to missing file a.png"),
            "{err}"
        );

        // Another output style is another key.
        write(site, "content/posts/pic/a.png", "png");
        let inline = Highlighter::new(Some("InspiredGitHub".into()));
        let loaded = load(site, &inline, &mut fresh).unwrap();
        assert_eq!((loaded.parsed, loaded.reused), (4, 0));
    }
}
