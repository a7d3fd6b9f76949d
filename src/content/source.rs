//! Where content lives: `content/posts/*.md` and `content/posts/SLUG/index.md` are posts,
//! `content/*.md` and `content/NAME/index.md` are pages. Other files of a bundle directory are
//! its assets; other files elsewhere under `content/` are published at the same path.
//!
//! Sections, as Zola and Hugo lay them out: folders below `posts/` (or below any top folder
//! with an `_index.md`) hold posts too, published under the folder's path
//! (`content/posts/inside-rust/x.md` is `/posts/inside-rust/x/`); a folder's `_index.md`
//! describes its section (title, sort, pagination, `transparent`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{ContentError, DocumentKind};

/// A Markdown file to parse.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFile {
    /// Relative to the site directory: `content/posts/hello.md`.
    pub path: PathBuf,
    pub kind: DocumentKind,
    /// `true` for `NAME/index.md`: the directory name is the default slug and its other
    /// files are assets.
    pub bundle: bool,
    /// Files of the bundle, relative to the site directory.
    pub assets: Vec<PathBuf>,
}

impl SourceFile {
    /// Slug used when the front matter sets none: the file (or bundle folder) name, without
    /// a leading `YYYY-MM-DD-` or `YYYY-MM-DD_` date as Zola drops it.
    pub fn default_slug(&self) -> String {
        let name = self.name();
        let name = match split_date(&name) {
            Some((_, rest)) if !slug::slugify(rest).is_empty() => rest,
            _ => &name,
        };
        slug::slugify(name)
    }

    /// The date a file name starts with (`2024-05-01-slug.md`), at midnight UTC.
    pub fn file_name_date(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        let name = self.name();
        let (date, _) = split_date(&name)?;
        super::parse_date(date)
    }

    /// Site path of a document whose front matter sets none: in its section's folder.
    pub fn site_path(&self, slug: &str) -> String {
        match section_of(&self.path, self.kind) {
            Some(section) if !section.is_empty() => format!("/{section}/{slug}/"),
            _ => format!("/{slug}/"),
        }
    }

    fn name(&self) -> String {
        let name = if self.bundle {
            self.path.parent().and_then(Path::file_name)
        } else {
            self.path.file_stem()
        };
        name.map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A file of `content/` outside any bundle, published as is.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentAsset {
    /// Relative to the site directory.
    pub source: PathBuf,
    /// Site path, e.g. `/files/talk.pdf`.
    pub path: String,
}

#[derive(Debug, Default, Clone)]
pub struct Discovered {
    pub sources: Vec<SourceFile>,
    /// Each source's size and modification time, read while listing (`None` when that
    /// failed: the build stats it again to report why).
    pub stats: Vec<Option<Stat>>,
    pub assets: Vec<ContentAsset>,
    /// The sections' `_index.md` files, relative to the site directory.
    pub section_indexes: Vec<PathBuf>,
}

/// A file's size and modification time.
pub type Stat = (u64, std::time::SystemTime);

/// A file under `content/`: its path relative to that folder and its directory entry.
struct Found {
    rel: PathBuf,
    entry: std::fs::DirEntry,
}

/// Lists the files under `dir` (`rel` inside `content/`), sorted by name in each folder,
/// skipping ignored names and not following symbolic links.
fn walk(dir: &Path, rel: &Path, files: &mut Vec<Found>) -> Result<(), (PathBuf, std::io::Error)> {
    let fail = |e: std::io::Error| (rel.to_path_buf(), e);
    let mut entries: Vec<(std::ffi::OsString, std::fs::DirEntry)> = std::fs::read_dir(dir)
        .map_err(fail)?
        .map(|entry| entry.map(|e| (e.file_name(), e)))
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    entries.retain(|(name, _)| !is_ignored(name));
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (name, entry) in entries {
        let kind = entry.file_type().map_err(|e| (rel.join(&name), e))?;
        if kind.is_dir() {
            walk(&entry.path(), &rel.join(&name), files)?;
        } else if kind.is_file() {
            files.push(Found {
                rel: rel.join(&name),
                entry,
            });
        }
    }
    Ok(())
}

/// Section folder of a document (`posts/inside-rust`) from its source path, `None` for a
/// page: the folder of the file, or of its bundle.
pub fn section_of(source: &Path, kind: DocumentKind) -> Option<String> {
    if kind != DocumentKind::Post {
        return None;
    }
    let rel = source.strip_prefix(CONTENT_DIR).unwrap_or(source);
    let mut dir = rel.parent()?;
    if rel.file_name().is_some_and(|n| n == "index.md") {
        dir = dir.parent()?;
    }
    Some(parts(dir).join("/"))
}

/// Section folder of an `_index.md` (relative to the site directory): `posts/inside-rust`.
pub fn section_dir(index: &Path) -> String {
    let rel = index.strip_prefix(CONTENT_DIR).unwrap_or(index);
    rel.parent().map(|d| parts(d).join("/")).unwrap_or_default()
}

pub const CONTENT_DIR: &str = "content";
pub const POSTS_DIR: &str = "posts";

/// Lists the sources and assets under `<site_dir>/content`, sorted by path. Hidden files and
/// editor backups (`~` suffix) are skipped.
pub fn discover(site_dir: &Path) -> Result<Discovered, Vec<ContentError>> {
    let content = site_dir.join(CONTENT_DIR);
    if !content.is_dir() {
        return Ok(Discovered::default());
    }
    let mut found = Vec::new();
    walk(&content, Path::new(""), &mut found).map_err(|(rel, source)| {
        vec![ContentError::Read {
            path: Path::new(CONTENT_DIR).join(rel),
            source,
        }]
    })?;
    // Top folders with an `_index.md` hold posts, like `posts/`.
    let roots: BTreeSet<String> = found
        .iter()
        .filter(|f| f.rel.file_name().is_some_and(|n| n == SECTION_INDEX))
        .filter_map(|f| f.rel.components().next())
        .map(|top| top.as_os_str().to_string_lossy().into_owned())
        .filter(|top| top != SECTION_INDEX)
        .chain([POSTS_DIR.to_string()])
        .collect();
    // Sizes and times through the open folders (no path lookup per file), and what each
    // Markdown file is, in parallel: every build needs them to tell what changed.
    let classified: Vec<(Option<Class>, Option<Stat>)> = {
        use rayon::prelude::*;
        found
            .par_iter()
            .map(|f| {
                if !is_markdown(&f.rel) {
                    return (None, None);
                }
                let stat = f
                    .entry
                    .metadata()
                    .ok()
                    .and_then(|meta| Some((meta.len(), meta.modified().ok()?)));
                (classify(&f.rel, &roots), stat)
            })
            .collect()
    };
    let files: Vec<PathBuf> = found.into_iter().map(|f| f.rel).collect();

    let bundles: BTreeSet<PathBuf> = files
        .iter()
        .zip(&classified)
        .filter(|(_, (class, _))| matches!(class, Some(Class::Doc(_, true))))
        .filter_map(|(f, _)| f.parent().map(Path::to_path_buf))
        .collect();
    // The outermost bundle folder holding the file.
    let bundle_of = |file: &Path| {
        file.ancestors()
            .skip(1)
            .filter(|dir| bundles.contains(*dir))
            .last()
            .map(Path::to_path_buf)
    };

    let mut discovered = Discovered::default();
    let mut errors = Vec::new();
    for (file, (class, stat)) in files.iter().zip(classified).filter(|(f, _)| is_markdown(f)) {
        let path = Path::new(CONTENT_DIR).join(file);
        match class {
            Some(Class::Doc(kind, bundle)) => {
                discovered.sources.push(SourceFile {
                    path,
                    kind,
                    bundle,
                    assets: Vec::new(),
                });
                discovered.stats.push(stat);
            }
            Some(Class::SectionIndex) => discovered.section_indexes.push(path),
            None => errors.push(ContentError::Invalid {
                path,
                line: 1,
                message: "not a place for content: use content/NAME.md or \
                          content/NAME/index.md for pages, content/posts/NAME.md or \
                          content/posts/NAME/index.md for posts (also in folders below \
                          posts/, or below a folder with an _index.md)"
                    .into(),
            }),
        }
    }
    // Bundles' sources by path: a site of 10k bundles with images each must not search
    // every source for every image.
    let by_path: std::collections::HashMap<PathBuf, usize> = discovered
        .sources
        .iter()
        .enumerate()
        .filter(|(_, s)| s.bundle)
        .map(|(i, s)| (s.path.clone(), i))
        .collect();
    for file in files.iter().filter(|f| !is_markdown(f)) {
        let source = Path::new(CONTENT_DIR).join(file);
        let owner = bundle_of(file).and_then(|bundle| {
            let index = Path::new(CONTENT_DIR).join(bundle).join("index.md");
            by_path.get(&index).copied()
        });
        match owner {
            Some(owner) => discovered.sources[owner].assets.push(source),
            None => discovered.assets.push(ContentAsset {
                path: site_path(file),
                source,
            }),
        }
    }
    if errors.is_empty() {
        Ok(discovered)
    } else {
        Err(errors)
    }
}

/// `("2024-05-01", "slug")` for `2024-05-01-slug` or `2024-05-01_slug`.
fn split_date(name: &str) -> Option<(&str, &str)> {
    let date = name.get(..10)?;
    let rest = name.get(10..)?;
    let shaped = date.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        _ => b.is_ascii_digit(),
    });
    let rest = rest.strip_prefix(['-', '_'])?;
    (shaped && !rest.is_empty()).then_some((date, rest))
}

fn is_ignored(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') || name.ends_with('~')
}

fn is_markdown(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "md")
}

fn parts(file: &Path) -> Vec<String> {
    file.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect()
}

pub const SECTION_INDEX: &str = "_index.md";

enum Class {
    /// A document: its kind and whether it is a bundle's `index.md`.
    Doc(DocumentKind, bool),
    SectionIndex,
}

/// What a Markdown file at `file` (relative to `content/`) is, given the top folders that
/// hold posts.
fn classify(file: &Path, roots: &BTreeSet<String>) -> Option<Class> {
    // Borrowed parts: this runs for every file of every build.
    let parts: Vec<std::borrow::Cow<str>> = file
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect();
    let parts: Vec<&str> = parts.iter().map(|p| p.as_ref()).collect();
    let in_root = |top: &str| roots.contains(top);
    match parts.as_slice() {
        [.., SECTION_INDEX] => Some(Class::SectionIndex),
        [name] if *name != "index.md" => Some(Class::Doc(DocumentKind::Page, false)),
        [dir, "index.md"] if !in_root(dir) => Some(Class::Doc(DocumentKind::Page, true)),
        [top, .., _, "index.md"] if in_root(top) => Some(Class::Doc(DocumentKind::Post, true)),
        [top, .., name] if in_root(top) && *name != "index.md" => {
            Some(Class::Doc(DocumentKind::Post, false))
        }
        _ => None,
    }
}

/// `/a/b c.pdf` for `a/b c.pdf`, with URL-unsafe spaces escaped.
fn site_path(rel: &Path) -> String {
    let joined = parts(rel).join("/");
    format!("/{}", joined.replace(' ', "%20"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        crate::test_support::write(root, rel, "x");
    }

    #[test]
    fn classifies_posts_pages_bundles_and_assets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "content/about.md",
            "content/posts/flat-post.md",
            "content/posts/Bundled Post/index.md",
            "content/posts/Bundled Post/cat.png",
            "content/posts/Bundled Post/img/dog.jpg",
            "content/talks/index.md",
            "content/files/slides.pdf",
            "content/.hidden.md",
            "content/posts/draft.md~",
        ] {
            touch(root, f);
        }
        let d = discover(root).unwrap();
        let got: Vec<(String, DocumentKind, bool, String)> = d
            .sources
            .iter()
            .map(|s| {
                (
                    s.path.to_string_lossy().into_owned(),
                    s.kind,
                    s.bundle,
                    s.default_slug(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "content/about.md".into(),
                    DocumentKind::Page,
                    false,
                    "about".into()
                ),
                (
                    "content/posts/Bundled Post/index.md".into(),
                    DocumentKind::Post,
                    true,
                    "bundled-post".into()
                ),
                (
                    "content/posts/flat-post.md".into(),
                    DocumentKind::Post,
                    false,
                    "flat-post".into()
                ),
                (
                    "content/talks/index.md".into(),
                    DocumentKind::Page,
                    true,
                    "talks".into()
                ),
            ]
        );
        assert_eq!(
            d.sources[1].assets,
            vec![
                PathBuf::from("content/posts/Bundled Post/cat.png"),
                PathBuf::from("content/posts/Bundled Post/img/dog.jpg")
            ]
        );
        assert_eq!(
            d.assets,
            vec![ContentAsset {
                source: "content/files/slides.pdf".into(),
                path: "/files/slides.pdf".into()
            }]
        );
    }

    #[test]
    fn markdown_in_an_unknown_place_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "content/notes/2024/deep.md");
        touch(dir.path(), "content/index.md");
        let errors = discover(dir.path()).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(
            errors[0].to_string().starts_with("content/index.md:1:"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn nested_folders_are_sections_of_posts() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "content/_index.md",
            "content/posts/_index.md",
            "content/posts/inside-rust/_index.md",
            "content/posts/inside-rust/2024-05-01-x.md",
            "content/posts/inside-rust/deep/y/index.md",
            "content/blog/_index.md",
            "content/blog/z.md",
            "content/talks/index.md",
        ] {
            touch(dir.path(), f);
        }
        let d = discover(dir.path()).unwrap();
        let got: Vec<(String, DocumentKind, String)> = d
            .sources
            .iter()
            .map(|s| {
                let slug = s.default_slug();
                (s.path.display().to_string(), s.kind, s.site_path(&slug))
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "content/blog/z.md".into(),
                    DocumentKind::Post,
                    "/blog/z/".into()
                ),
                (
                    "content/posts/inside-rust/2024-05-01-x.md".into(),
                    DocumentKind::Post,
                    "/posts/inside-rust/x/".into()
                ),
                (
                    "content/posts/inside-rust/deep/y/index.md".into(),
                    DocumentKind::Post,
                    "/posts/inside-rust/deep/y/".into()
                ),
                (
                    "content/talks/index.md".into(),
                    DocumentKind::Page,
                    "/talks/".into()
                ),
            ]
        );
        assert_eq!(d.section_indexes.len(), 4);
        assert_eq!(
            d.sources[1].file_name_date().unwrap().to_rfc3339(),
            "2024-05-01T00:00:00+00:00"
        );
    }

    #[test]
    fn no_content_dir_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(discover(dir.path()).unwrap().sources.is_empty());
    }
}
