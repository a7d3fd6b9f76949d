//! `relais new`: the Markdown file of a new post or note, with its front matter filled in
//! (title, today's date), written where the build looks for posts.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use super::source::{CONTENT_DIR, POSTS_DIR};

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewKind {
    /// A titled post, its slug made from the title.
    Post { title: String },
    /// An untitled note, its slug made from the date and time.
    Note,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("the title {0:?} has no letter or digit to make a file name from")]
    EmptySlug(String),
    #[error("{}: already exists; not overwriting it (choose another title, or edit that file)", .0.display())]
    Exists(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes `content/posts/<slug>.md` in `site_dir` for `kind`, dated `now`, and returns its
/// path. An existing file is never overwritten.
pub fn new_post(
    site_dir: &Path,
    kind: &NewKind,
    now: DateTime<FixedOffset>,
) -> Result<PathBuf, ScaffoldError> {
    // The full time, not just the day: a date-only post is midnight UTC, which east of
    // Greenwich is still in the future and would be held back.
    let date = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (slug, front_matter, body) = match kind {
        NewKind::Post { title } => {
            let slug = slug::slugify(title);
            if slug.is_empty() {
                return Err(ScaffoldError::EmptySlug(title.clone()));
            }
            let title = toml::Value::String(title.trim().to_string()).to_string();
            (
                slug,
                format!("title = {title}\ndate = {date}\ntags = []\n"),
                "Write the post here. The part before a `<!-- more -->` line is its summary.\n",
            )
        }
        NewKind::Note => {
            // Minutes are enough to tell notes apart; the explicit slug keeps the date in
            // the address (a file name's leading date would otherwise be cut from it).
            let slug = now.format("%Y-%m-%d-%H%M").to_string();
            (
                slug.clone(),
                format!("date = {date}\nslug = \"{slug}\"\n"),
                "A short note: no title, Mastodon shows just this text.\n",
            )
        }
    };
    let dir = site_dir.join(CONTENT_DIR).join(POSTS_DIR);
    let path = dir.join(format!("{slug}.md"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ScaffoldError::Exists(path))
        }
        Err(e) => return Err(io(&path)(e)),
    };
    file.write_all(format!("+++\n{front_matter}+++\n\n{body}").as_bytes())
        .map_err(io(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-03-01T09:05:00+01:00").unwrap()
    }

    #[test]
    fn a_post_is_named_from_its_title_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let kind = NewKind::Post {
            title: "Hello, \"World\"".into(),
        };
        let path = new_post(dir.path(), &kind, now()).unwrap();
        assert_eq!(path, dir.path().join("content/posts/hello-world.md"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("+++\ntitle = 'Hello, \"World\"'\ndate = 2026-03-01T09:05:00+01:00\n"),
            "{text}"
        );
        std::fs::write(&path, "mine").unwrap();
        let err = new_post(dir.path(), &kind, now()).unwrap_err();
        assert!(matches!(err, ScaffoldError::Exists(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
        let err = new_post(dir.path(), &NewKind::Post { title: "!!".into() }, now());
        assert!(matches!(err, Err(ScaffoldError::EmptySlug(_))));
    }

    #[test]
    fn a_note_has_no_title_and_a_date_time_slug() {
        let dir = tempfile::tempdir().unwrap();
        let path = new_post(dir.path(), &NewKind::Note, now()).unwrap();
        assert_eq!(path, dir.path().join("content/posts/2026-03-01-0905.md"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("title ="), "{text}");
        assert!(text.contains("slug = \"2026-03-01-0905\""), "{text}");
    }
}
