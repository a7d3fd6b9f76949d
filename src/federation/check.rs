//! What will look wrong on Mastodon, found at build time: `relais build` prints these as
//! warnings and `relais check` fails on them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{NoteContent, ObjectType, SiteConfig};
use crate::content::Document;
use crate::federation::documents::{
    note_content, note_source_html, object_type, MASTODON_MAX_ATTACHMENTS,
};
use crate::federation::note_markup::Markup;
use crate::federation::urls::Urls;

/// Mastodon's default status length; longer remote Notes are shown, but a site that asked
/// for short Notes wants them to fit.
pub const MASTODON_CHARACTER_BUDGET: usize = 500;

/// `MediaAttachment::IMAGE_MIME_TYPES` of Mastodon (`app/models/media_attachment.rb`): an
/// attachment of another type is not downloaded and shows as a bare link.
pub const MASTODON_IMAGE_TYPES: [&str; 7] = [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/heic",
    "image/heif",
    "image/webp",
    "image/avif",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FediverseWarning {
    /// Source file the warning is about, or `config.toml`.
    pub source: PathBuf,
    /// Short name of the check (`image-alt`), which `[[check.accept]]` in config.toml names.
    pub rule: String,
    pub message: String,
    /// Whether `relais check` fails on it; advice (a site not set up yet) only prints.
    pub blocking: bool,
}

/// The rules, by the name config.toml's `[[check.accept]]` uses.
pub mod rules {
    pub const PLACEHOLDER_BASE_URL: &str = "placeholder-base-url";
    pub const NO_INBOX_URL: &str = "no-inbox-url";
    pub const IMAGE_ALT: &str = "image-alt";
    pub const IMAGE_TYPE: &str = "image-type";
    pub const TOO_MANY_IMAGES: &str = "too-many-images";
    pub const ARTICLE_WARNING: &str = "article-content-warning";
    pub const NOTE_LENGTH: &str = "note-length";
    pub const UNKNOWN_AUTHOR: &str = "unknown-author";
    pub const EDITED_WITHOUT_UPDATED: &str = "edited-without-updated";
    pub const GENERATOR_FIELD: &str = "generator-field";
    pub const NOTE_TABLE: &str = "note-table";
    pub const NOTE_FOOTNOTE: &str = "note-footnote";
    pub const ALL: [&str; 12] = [
        PLACEHOLDER_BASE_URL,
        NO_INBOX_URL,
        IMAGE_ALT,
        IMAGE_TYPE,
        TOO_MANY_IMAGES,
        ARTICLE_WARNING,
        NOTE_LENGTH,
        UNKNOWN_AUTHOR,
        EDITED_WITHOUT_UPDATED,
        GENERATOR_FIELD,
        NOTE_TABLE,
        NOTE_FOOTNOTE,
    ];
}

/// Hosts of example addresses (RFC 2606) that `relais init` writes as placeholders.
const PLACEHOLDER_HOSTS: [&str; 3] = ["example.com", "example.org", "example.net"];

/// Whether `base_url` is still a placeholder such as `https://example.com`.
pub fn placeholder_base_url(config: &SiteConfig) -> bool {
    url::Url::parse(&config.base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|host| {
            PLACEHOLDER_HOSTS
                .iter()
                .any(|p| host == *p || host.ends_with(&format!(".{p}")))
        })
}

/// Splits `warnings` into those that stand and those `config.check.accept` accepts.
pub fn split_accepted(
    config: &SiteConfig,
    warnings: Vec<FediverseWarning>,
) -> (Vec<FediverseWarning>, Vec<FediverseWarning>) {
    warnings.into_iter().partition(|w| {
        !config
            .check
            .accept
            .iter()
            .any(|a| a.rule == w.rule && a.file.as_ref().is_none_or(|f| Path::new(f) == w.source))
    })
}

impl fmt::Display for FediverseWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source.display(), self.message)
    }
}

/// What the previous build federated of a post, to notice edits that forgot `updated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederatedPostState {
    pub source_hash: String,
    pub updated: Option<String>,
}

/// Post states keyed by object id; kept in `<site>/.relais/federation-state` (bincode: a
/// build after a one-post edit reads and writes it whole, and JSON took 10 ms of that at 10k
/// posts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationState {
    pub posts: BTreeMap<String, FederatedPostState>,
}

pub const STATE_FILE: &str = ".relais/federation-state";

impl FederationState {
    pub fn of_posts(urls: &Urls, posts: &[Document]) -> FederationState {
        FederationState {
            posts: posts
                .iter()
                .map(|p| {
                    (
                        urls.object(&p.path),
                        FederatedPostState {
                            source_hash: p.source_hash.clone(),
                            updated: p.updated.map(|u| u.to_rfc3339()),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The saved state, or an empty one when there is none or it cannot be read (it is
    /// only used for warnings, so a lost file costs nothing but one missed warning).
    pub fn load(site_dir: &Path) -> FederationState {
        FederationState::read(site_dir).unwrap_or_default()
    }

    /// The saved state; `None` when there is none or it cannot be read.
    pub fn read(site_dir: &Path) -> Option<FederationState> {
        let bytes = std::fs::read(site_dir.join(STATE_FILE)).ok()?;
        bincode::deserialize(&bytes).ok()
    }

    pub fn save(&self, site_dir: &Path) -> std::io::Result<()> {
        let path = site_dir.join(STATE_FILE);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let bytes = bincode::serialize(self).map_err(std::io::Error::other)?;
        // Older versions kept it as JSON.
        let _ = std::fs::remove_file(site_dir.join(".relais/federation-state.json"));
        std::fs::write(path, bytes)
    }
}

/// Warnings for the published posts of a site.
pub fn check_site(
    config: &SiteConfig,
    posts: &[Document],
    previous: &FederationState,
) -> Vec<FediverseWarning> {
    let urls = Urls::new(config);
    let mut warnings = Vec::new();
    // A site fresh from `relais init` is not set up to go live yet: say what to set, but
    // let `relais check` pass until `base_url` is real.
    let placeholder = placeholder_base_url(config);
    let setup = |rule: &str, message: String| FediverseWarning {
        source: PathBuf::from(crate::config::CONFIG_FILE),
        rule: rule.into(),
        message,
        blocking: !placeholder,
    };
    if placeholder {
        warnings.push(setup(
            rules::PLACEHOLDER_BASE_URL,
            format!(
                "base_url is still the placeholder {}: set it to the address the site will be served at",
                config.base_url
            ),
        ));
    }
    if !config.fediverse.enabled {
        return warnings;
    }
    if config.fediverse.inbox_url.is_none() {
        warnings.push(setup(
            rules::NO_INBOX_URL,
            "fediverse.inbox_url is not set: the host rules cannot route follows and replies to `relais inbox`".into(),
        ));
    }
    // Free author names (Zola's and Hugo's `authors`) are accepted: said once per name, as
    // advice, so a blog of hundreds of posts by "Jane" gets one line, not hundreds.
    let mut unknown_authors: std::collections::BTreeMap<&str, &std::path::Path> =
        std::collections::BTreeMap::new();
    for post in posts {
        let warn = |rule: &str, message: String| FediverseWarning {
            source: post.source.clone(),
            rule: rule.into(),
            message,
            blocking: true,
        };
        for image in post.images.iter().filter(|i| i.alt.trim().is_empty()) {
            warnings.push(warn(rules::IMAGE_ALT, format!(
                "image {} has no alt text: Mastodon users relying on descriptions will not know what it shows",
                image.src
            )));
        }
        let mut distinct = std::collections::HashSet::new();
        for image in post
            .images
            .iter()
            .filter(|i| distinct.insert(i.src.as_str()))
        {
            if !MASTODON_IMAGE_TYPES.contains(&image.media_type.as_str()) {
                warnings.push(warn(rules::IMAGE_TYPE, format!(
                    "image {} is {}: Mastodon shows only JPEG, PNG, GIF, HEIC, WebP and AVIF attachments, others as a bare link",
                    image.src, image.media_type
                )));
            }
        }
        let distinct_images = distinct.len();
        if distinct_images > MASTODON_MAX_ATTACHMENTS {
            warnings.push(warn(rules::TOO_MANY_IMAGES, format!(
                "{distinct_images} images: Mastodon shows only the first {MASTODON_MAX_ATTACHMENTS} as attachments"
            )));
        }
        if object_type(config, post) == ObjectType::Article && post.content_warning.is_some() {
            // `processed_spoiler_text` in Mastodon's `status_parser.rb` is empty for converted
            // types: the warning would be shown as the post's text, hiding nothing.
            warnings.push(warn(
                rules::ARTICLE_WARNING,
                "content warning on an Article: Mastodon shows it as text, not as a warning; federate the post as a Note".into(),
            ));
        }
        if object_type(config, post) == ObjectType::Note
            && config.fediverse.note_content == NoteContent::Excerpt
        {
            let len = crate::content::plain_text(&note_content(config, &urls, post))
                .chars()
                .count();
            if len > MASTODON_CHARACTER_BUDGET {
                warnings.push(warn(rules::NOTE_LENGTH, format!(
                    "the Note is {len} characters, over Mastodon's usual {MASTODON_CHARACTER_BUDGET}: shorten its summary"
                )));
            }
        }
        if object_type(config, post) == ObjectType::Note {
            let markup = Markup::of(&note_source_html(config, post));
            if markup.table {
                warnings.push(warn(rules::NOTE_TABLE, "has a table: Mastodon shows no tables, so the Note gives it as lines of text (a row per line, cells separated by |); check it reads well or federate the post as an Article".into()));
            }
            if markup.footnote {
                warnings.push(warn(rules::NOTE_FOOTNOTE, "has footnotes: Mastodon shows none, so the Note gives markers as [1] and the notes as numbered paragraphs at the end".into()));
            }
        }
        for author in post.authors.iter().filter(|a| config.author(a).is_none()) {
            unknown_authors
                .entry(author.as_str())
                .or_insert(&post.source);
        }
        if let Some(before) = previous.posts.get(&urls.object(&post.path)) {
            let updated_now = post.updated.map(|u| u.to_rfc3339());
            if before.source_hash != post.source_hash && before.updated == updated_now {
                warnings.push(warn(
                    rules::EDITED_WITHOUT_UPDATED,
                    "the post changed but its `updated` date did not: followers' servers will not show it as edited".into(),
                ));
            }
        }
    }
    for (author, source) in unknown_authors {
        warnings.push(FediverseWarning {
            source: source.to_path_buf(),
            rule: rules::UNKNOWN_AUTHOR.into(),
            message: format!(
                "author {author:?} is not in config.toml [[authors]]: shown as a name, and the \
                 posts are federated as the site actor (add an [[authors]] entry to give them \
                 an account)"
            ),
            blocking: false,
        });
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::documents::tests::{config, post};

    fn messages(w: &[FediverseWarning]) -> Vec<String> {
        w.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn clean_site_has_no_warnings() {
        let c = config("[fediverse]\ninbox_url = \"https://inbox.example\"\n");
        let w = check_site(&c, &[post("a", &["ann"])], &FederationState::default());
        assert!(w.is_empty(), "{:?}", messages(&w));
    }

    #[test]
    fn warns_on_missing_alt_unknown_author_and_no_inbox() {
        let c = config("");
        let mut p = post("a", &["zed"]);
        p.images[0].alt = String::new();
        let all = check_site(&c, &[p, post("b", &["zed"])], &FederationState::default());
        let zed: Vec<&FediverseWarning> = all
            .iter()
            .filter(|w| w.rule == rules::UNKNOWN_AUTHOR)
            .collect();
        assert_eq!(zed.len(), 1, "one line per free author name, not per post");
        assert!(!zed[0].blocking, "a free author name is advice");
        let w = messages(&all);
        assert!(w.iter().any(|m| m.contains("inbox_url")), "{w:?}");
        assert!(
            w.iter().any(
                |m| m.starts_with("content/posts/a.md: image /posts/a/cat.png has no alt text")
            ),
            "{w:?}"
        );
        assert!(w.iter().any(|m| m.contains("author \"zed\"")), "{w:?}");
    }

    #[test]
    fn warns_on_images_mastodon_cannot_show_and_warned_articles() {
        let c = config("[fediverse]\ninbox_url = \"https://i.example\"\n");
        let mut p = post("a", &[]);
        p.images[0].src = "/posts/a/plan.svg".into();
        p.images[0].media_type = "image/svg+xml".into();
        p.content_warning = Some("spoilers".into());
        let w = messages(&check_site(
            &c,
            std::slice::from_ref(&p),
            &FederationState::default(),
        ));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("content/posts/a.md: image /posts/a/plan.svg is image/svg+xml"),
            "{w:?}"
        );
        p.federate_as = Some(ObjectType::Article);
        let w = messages(&check_site(&c, &[p], &FederationState::default()));
        assert!(
            w.iter()
                .any(|m| m.contains("content warning on an Article")),
            "{w:?}"
        );
    }

    #[test]
    fn warns_on_long_short_notes() {
        let c =
            config("[fediverse]\ninbox_url = \"https://i.example\"\nnote_content = \"excerpt\"\n");
        let mut p = post("a", &[]);
        p.summary = Some(format!("<p>{}</p>", "long ".repeat(150)));
        let w = messages(&check_site(&c, &[p], &FederationState::default()));
        assert!(
            w.iter().any(|m| m.contains("over Mastodon's usual 500")),
            "{w:?}"
        );
    }

    #[test]
    fn warns_on_tables_and_footnotes_in_notes_only() {
        let c = config("[fediverse]\ninbox_url = \"https://i.example\"\n");
        let mut p = post("a", &[]);
        p.content = "<p>x<sup class=\"footnote-reference\"><a href=\"#n\">1</a></sup></p>\n<table><tr><td>1</td></tr></table>\n".into();
        let w = check_site(&c, std::slice::from_ref(&p), &FederationState::default());
        let rules: Vec<&str> = w.iter().map(|w| w.rule.as_str()).collect();
        assert_eq!(rules, [rules::NOTE_TABLE, rules::NOTE_FOOTNOTE]);
        assert!(w
            .iter()
            .all(|w| w.source == Path::new("content/posts/a.md")));
        p.federate_as = Some(ObjectType::Article);
        assert!(check_site(&c, &[p], &FederationState::default()).is_empty());
    }

    #[test]
    fn warns_on_edit_without_updated() {
        let c = config("[fediverse]\ninbox_url = \"https://i.example\"\n");
        let before = post("a", &[]);
        let urls = Urls::new(&c);
        let state = FederationState::of_posts(&urls, std::slice::from_ref(&before));
        let mut edited = before.clone();
        edited.source_hash = "changed".into();
        let w = messages(&check_site(&c, std::slice::from_ref(&edited), &state));
        assert!(w.iter().any(|m| m.contains("`updated`")), "{w:?}");
        edited.updated =
            Some(chrono::DateTime::parse_from_rfc3339("2026-04-01T00:00:00Z").unwrap());
        assert!(check_site(&c, &[edited], &state).is_empty());
    }

    #[test]
    fn state_round_trips_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let c = config("");
        let state = FederationState::of_posts(&Urls::new(&c), &[post("a", &[])]);
        state.save(dir.path()).unwrap();
        assert_eq!(FederationState::load(dir.path()), state);
    }
}
