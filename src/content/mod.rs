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

pub(crate) mod front_matter;
mod highlight;
mod markdown;
mod parse;
mod scaffold;
mod section;
mod source;

pub use front_matter::parse_date;
pub use front_matter::GENERATOR_KEYS;
pub use highlight::Highlighter;
pub use markdown::html_ids;
pub use parse::{parse_document, percent_decode, title_from_words, PageLinks, Parsed, SiteLink};
pub use scaffold::{new_post, NewKind, ScaffoldError};
pub use section::{parse_section, SectionMeta, SortBy};
pub use source::{discover, section_of, ContentAsset, Discovered, SourceFile};

use std::path::Path;

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
    /// Read twice by one build (its stamp, then its body) with other bytes the second time.
    #[error("{path}: changed while the site was being built; run the build again")]
    ChangedDuringBuild { path: PathBuf },
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
            | ContentError::Invalid { path, .. }
            | ContentError::ChangedDuringBuild { path } => path,
        }
    }
}

/// Every error of a load, so one build reports all broken files at once.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ContentErrors(pub Vec<ContentError>);

/// Reads and parses the sections' `_index.md` files, all errors at once; with the texts
/// they were parsed from, for the build's signature (read once, or an edit between two
/// reads would be signed but never built).
pub fn load_sections(
    site_dir: &Path,
    indexes: &[PathBuf],
) -> Result<(Vec<SectionMeta>, Vec<String>), Vec<ContentError>> {
    let mut sections = Vec::with_capacity(indexes.len());
    let mut texts = Vec::with_capacity(indexes.len());
    let mut errors = Vec::new();
    for index in indexes {
        let read = std::fs::read_to_string(site_dir.join(index)).map_err(|e| ContentError::Read {
            path: index.clone(),
            source: e,
        });
        match read.and_then(|text| Ok((parse_section(index, &text)?, text))) {
            Ok((meta, text)) => {
                sections.push(meta);
                texts.push(text);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok((sections, texts))
    } else {
        Err(errors)
    }
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
}
