//! A section's `_index.md` (Zola and Hugo): the title, order, pagination and transparency
//! of the list of posts in its folder.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::front_matter;
use super::source::section_dir;
use super::{ContentError, Extra};

/// How a section orders its posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// Newest first (Zola's `date`, the default here).
    #[default]
    Date,
    /// Lightest first, unweighted last, then newest (Zola's `weight`, Hugo's default).
    Weight,
    Title,
    Slug,
    /// Source path order.
    None,
}

/// What an `_index.md` says about its section.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionMeta {
    /// Folder under `content/`: `posts/inside-rust`.
    pub dir: String,
    /// The `_index.md`, relative to the site directory.
    pub source: PathBuf,
    pub title: Option<String>,
    pub description: Option<String>,
    pub sort_by: SortBy,
    /// Posts per list page; `None` lists them all on one page.
    pub paginate_by: Option<usize>,
    /// Zola: the section's posts are listed in its parent section too.
    pub transparent: bool,
    /// Zola's `render = false`: no list page.
    pub render: bool,
    pub weight: Option<i64>,
    pub extra: Extra,
}

/// Reads the `_index.md` at `source` (relative to the site directory) from `text`.
pub fn parse_section(source: &Path, text: &str) -> Result<SectionMeta, ContentError> {
    let split = front_matter::split(text).map_err(|e| ContentError::FrontMatter {
        path: source.to_path_buf(),
        line: e.line,
        message: e.message,
    })?;
    let lines: Vec<(String, usize)> = split.key_lines.clone();
    let fm = split.front_matter;
    let extra = fm.generator.extra;
    let invalid = |key: &str, message: String| ContentError::Invalid {
        path: source.to_path_buf(),
        line: lines.iter().find(|(k, _)| k == key).map_or(1, |(_, l)| *l),
        message,
    };
    let sort_by = match extra.get("sort_by") {
        None => SortBy::Date,
        Some(Value::String(s)) => match s.as_str() {
            "date" | "update_date" => SortBy::Date,
            "weight" => SortBy::Weight,
            "title" | "title_bytes" => SortBy::Title,
            "slug" => SortBy::Slug,
            "none" => SortBy::None,
            other => {
                return Err(invalid(
                    "sort_by",
                    format!(
                        "sort_by {other:?}: use date, update_date, weight, title, slug or none"
                    ),
                ))
            }
        },
        Some(_) => return Err(invalid("sort_by", "`sort_by` must be text".into())),
    };
    let paginate_by = match extra.get("paginate_by") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(0) => None,
            Some(n) => usize::try_from(n).ok(),
            None => {
                return Err(invalid(
                    "paginate_by",
                    "`paginate_by` must be a whole number".into(),
                ))
            }
        },
    };
    let flag = |key: &str, default: bool| match extra.get(key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(key, format!("`{key}` must be true or false"))),
    };
    Ok(SectionMeta {
        dir: section_dir(source),
        source: source.to_path_buf(),
        transparent: flag("transparent", false)?,
        render: flag("render", true)?,
        title: fm.title,
        description: fm.generator.description,
        sort_by,
        paginate_by,
        weight: fm.generator.weight,
        extra: Extra(extra),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zola_section_settings() {
        let meta = parse_section(
            Path::new("content/posts/inside-rust/_index.md"),
            "+++\ntitle = \"Inside Rust\"\nsort_by = \"weight\"\npaginate_by = 5\ntransparent = true\n+++\n",
        )
        .unwrap();
        assert_eq!(meta.dir, "posts/inside-rust");
        assert_eq!(meta.title.as_deref(), Some("Inside Rust"));
        assert_eq!(meta.sort_by, SortBy::Weight);
        assert_eq!(meta.paginate_by, Some(5));
        assert!(meta.transparent && meta.render);
    }

    #[test]
    fn bad_sort_names_its_line() {
        let err = parse_section(
            Path::new("content/posts/_index.md"),
            "+++\ntitle = \"P\"\nsort_by = \"random\"\n+++\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("content/posts/_index.md:3:"),
            "{err}"
        );
    }
}
