//! Markdown files with front matter → typed `Document`s (posts and standalone pages).

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::config::ObjectType;

/// Where a document lives in the site: posts are dated and federated, pages are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentKind {
    Post,
    Page,
}

/// An image the post shows, with the alt text Mastodon displays as the attachment description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRef {
    /// Site path (`/posts/slug/cat.jpg`) or absolute URL.
    pub src: String,
    pub alt: String,
    /// MIME type guessed from the extension, e.g. `image/jpeg`.
    pub media_type: String,
}

/// One parsed Markdown file.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub kind: DocumentKind,
    /// Path of the source relative to the site directory, for error messages.
    pub source: PathBuf,
    pub slug: String,
    /// Site path with leading and trailing slash: `/posts/slug/`, `/about/`.
    pub path: String,
    pub title: String,
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
}
