//! One source file → one `Document`.

use std::cell::RefCell;
use std::path::{Component, Path, PathBuf};

use super::front_matter::{self, parse_date, Dated};
use super::markdown::{self, has_scheme, Target};
use super::source::{SourceFile, CONTENT_DIR};
use super::{media_type, ContentError, Document, DocumentKind, Highlighter, ImageRef};

const STATIC_DIR: &str = "static";
const WORDS_PER_MINUTE: usize = 200;

/// A parsed document and the local files its links and images point at, so a cached copy
/// can be rechecked when one of them disappears.
#[derive(Debug)]
pub struct Parsed {
    pub document: Document,
    /// Relative to the site directory.
    pub local_files: Vec<PathBuf>,
    pub links: PageLinks,
}

/// What the site-wide link check needs of one document: where it links inside the site
/// and which anchors it offers. Kept in the build index, so unchanged documents are
/// checked again without being parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PageLinks {
    /// Heading ids and other `id`s of the body.
    pub anchors: Vec<String>,
    /// Links to pages or anchors, made site-absolute (`/posts/x/#part`, `/about/`) except
    /// in-page ones (`#part`).
    pub links: Vec<SiteLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SiteLink {
    /// As written in the source.
    pub written: String,
    /// Site-absolute path with its fragment, or just `#fragment`.
    pub target: String,
    pub line: usize,
}

/// Parses the Markdown `text` of `source`. `source_hash` is stored in the document.
pub fn parse_document(
    site_dir: &Path,
    source: &SourceFile,
    text: &str,
    source_hash: String,
    highlighter: &Highlighter,
) -> Result<Parsed, ContentError> {
    let path = &source.path;
    let split = front_matter::split(text).map_err(|e| ContentError::FrontMatter {
        path: path.clone(),
        line: e.line,
        message: e.message,
    })?;
    let fm = &split.front_matter;
    let invalid = |key: &str, message: String| ContentError::Invalid {
        path: path.clone(),
        line: split.line_of_key(key),
        message,
    };

    // A post without a title is a short note: it federates without a title line and its
    // page is named from its first words, once the body is rendered.
    let title = match fm.title.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => Some(t.to_string()),
        _ if source.kind == DocumentKind::Post => None,
        _ => {
            return Err(ContentError::Missing {
                path: path.clone(),
                line: 1,
                message: "a page needs a `title` (only posts can be untitled notes)".into(),
            })
        }
    };
    let date_of = |dated: &Option<Dated>| {
        dated
            .as_ref()
            .map(|d| {
                parse_date(&d.text).ok_or_else(|| ContentError::Date {
                    path: path.clone(),
                    line: d.line,
                    text: d.text.clone(),
                })
            })
            .transpose()
    };
    let date = match date_of(&fm.date)? {
        Some(date) => Some(date),
        None => source.file_name_date(),
    };
    let updated = date_of(&fm.updated)?;
    if source.kind == DocumentKind::Post && date.is_none() {
        return Err(ContentError::Missing {
            path: path.clone(),
            line: 1,
            message: "a post needs a `date` (YYYY-MM-DD or RFC 3339)".into(),
        });
    }

    let slug = match &fm.slug {
        Some(s) => {
            let slug = slug::slugify(s);
            if slug.is_empty() {
                return Err(invalid(
                    "slug",
                    format!("slug {s:?} has no usable character"),
                ));
            }
            slug
        }
        None => source.default_slug(),
    };
    if slug.is_empty() {
        return Err(invalid(
            "slug",
            "the file name gives an empty slug: set `slug`".into(),
        ));
    }
    let site_path = match &fm.generator.path {
        Some(p) => own_path(p).ok_or_else(|| {
            let key = if split.key_lines.iter().any(|(k, _)| k == "url") {
                "url"
            } else {
                "path"
            };
            invalid(key, format!("page path {p:?} is not a usable site path"))
        })?,
        None => source.site_path(&slug),
    };
    let mut aliases = Vec::with_capacity(fm.generator.aliases.len());
    for alias in &fm.generator.aliases {
        match alias_path(alias) {
            Some(a) if a != site_path => aliases.push(a),
            _ => {
                return Err(invalid(
                    "aliases",
                    format!("alias {alias:?} is not a site path other than the page's"),
                ))
            }
        }
    }

    // Lexically normal paths, so `./site` and `site/../site` compare as prefixes.
    let site_dir = &normalize(site_dir);
    let source_dir = normalize(&site_dir.join(path.parent().unwrap_or(Path::new(""))));
    let links = LinkContext {
        site_dir,
        source_dir: &source_dir,
        bundle_dir: source.bundle.then_some(source_dir.as_path()),
        page_path: &site_path,
        local_files: RefCell::new(Vec::new()),
        image_files: RefCell::new(Vec::new()),
    };
    let resolve = |url: &str, target: Target| links.resolve(url, target);
    let line_at = |offset: usize| split.body_line + split.body[..offset].matches('\n').count();
    let image_size = |url: &str| links.image_size(url);
    let rendered =
        markdown::render(split.body, highlighter, &resolve, &image_size).map_err(|e| {
            ContentError::BrokenLink {
                path: path.clone(),
                line: line_at(e.offset),
                message: e.message,
            }
        })?;
    let page_links = PageLinks {
        anchors: rendered.anchors.clone(),
        links: rendered
            .site_links
            .iter()
            .filter_map(|(url, offset)| {
                Some(SiteLink {
                    written: url.clone(),
                    target: site_target(&site_path, url)?,
                    line: line_at(*offset),
                })
            })
            .collect(),
    };

    let image = match &fm.image {
        Some(src) => {
            let src =
                links
                    .resolve(src, Target::Image)
                    .map_err(|message| ContentError::BrokenLink {
                        path: path.clone(),
                        line: split.line_of_key("image"),
                        message: format!("lead image: {message}"),
                    })?;
            Some(ImageRef {
                media_type: media_type(&src).to_string(),
                size: links.image_size(&src),
                src,
                alt: fm.image_alt.clone().unwrap_or_default(),
            })
        }
        None if fm.image_alt.is_some() => {
            return Err(invalid("image_alt", "`image_alt` without `image`".into()))
        }
        None => None,
    };
    let images: Vec<ImageRef> = image
        .iter()
        .cloned()
        .chain(rendered.images.into_iter().map(|(src, alt)| ImageRef {
            media_type: media_type(&src).to_string(),
            src,
            alt,
            // Body images carry their size in the HTML already.
            size: None,
        }))
        .collect();

    let mut tags: Vec<String> = Vec::new();
    for tag in &fm.tags {
        let tag = tag.trim();
        if slug::slugify(tag).is_empty() {
            return Err(invalid(
                "tags",
                format!("tag {tag:?} has no usable character"),
            ));
        }
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }

    let summary = match (&fm.summary, &fm.generator.description) {
        (Some(s), _) => Some(markdown::render_fragment(s)),
        (None, Some(d)) if rendered.summary_html.is_none() => Some(markdown::render_fragment(d)),
        (None, _) => rendered.summary_html,
    };
    let word_count = rendered.text.split_whitespace().count();
    let untitled = title.is_none();
    let title = match title {
        Some(title) => title,
        None => title_from_words(&rendered.text)
            .or_else(|| images.iter().find_map(|i| title_from_words(&i.alt)))
            .unwrap_or_else(|| slug.clone()),
    };
    let local_files = links.local_files.into_inner();
    Ok(Parsed {
        document: Document {
            kind: source.kind,
            source: path.clone(),
            slug,
            path: site_path,
            title,
            untitled,
            date,
            updated,
            draft: fm.draft,
            tags,
            summary,
            authors: fm.authors.clone(),
            language: fm.language.clone(),
            image,
            content_warning: fm.content_warning.clone(),
            federate_as: fm.federate_as,
            quotes: fm.quotes,
            in_reply_to: fm.in_reply_to.clone(),
            content: rendered.html,
            text: rendered.text,
            images,
            assets: source.assets.clone(),
            word_count,
            reading_minutes: word_count.div_ceil(WORDS_PER_MINUTE).max(1),
            source_hash,
            description: fm.generator.description.clone(),
            aliases,
            weight: fm.generator.weight,
            extra: super::Extra(fm.generator.extra.clone()),
            taxonomies: fm.generator.taxonomies.clone(),
            kept_fields: fm.generator.kept.clone(),
        },
        local_files,
        links: page_links,
    })
}

/// Longest an untitled note's page title gets, in characters, before it is cut at a word.
const UNTITLED_TITLE_CHARS: usize = 60;

/// The first words of `text` as a page title: whole words up to [`UNTITLED_TITLE_CHARS`],
/// with `…` when the text goes on. `None` for text without words.
pub fn title_from_words(text: &str) -> Option<String> {
    let mut title = String::new();
    let mut words = text.split_whitespace();
    for word in words.by_ref() {
        let needed = title.chars().count() + usize::from(!title.is_empty()) + word.chars().count();
        if needed > UNTITLED_TITLE_CHARS {
            if title.is_empty() {
                title = word.chars().take(UNTITLED_TITLE_CHARS).collect();
            }
            title.push('…');
            return Some(title);
        }
        if !title.is_empty() {
            title.push(' ');
        }
        title.push_str(word);
    }
    (!title.is_empty()).then_some(title)
}

/// `/a/b/` for a front matter `path`/`url` such as `a/b`, `/a/b` or `/a/b/`: the page is
/// `a/b/index.html`, as Zola and Hugo write it. `None` for a path that leaves the site.
fn own_path(path: &str) -> Option<String> {
    let inner = path.trim().trim_matches('/');
    let usable = !inner.is_empty()
        && inner
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'))
        && !inner.contains(['?', '#', ' ']);
    usable.then(|| format!("/{inner}/"))
}

/// Site path of an alias: `/old/x.html` stays a file, anything else is a folder `/old/x/`.
fn alias_path(alias: &str) -> Option<String> {
    let trimmed = alias.trim();
    if trimmed.ends_with(".html") || trimmed.ends_with(".htm") {
        let file = own_path(trimmed)?;
        Some(file.trim_end_matches('/').to_string())
    } else {
        own_path(trimmed)
    }
}

/// Where a link of the page at `page_path` leads inside the site: `#part` stays as is,
/// `/x/` too, and a relative `../other/` is joined to the page path as a browser would.
/// `None` for an empty link.
fn site_target(page_path: &str, url: &str) -> Option<String> {
    if url.is_empty() {
        return None;
    }
    if url.starts_with('#') || url.starts_with('/') {
        return Some(url.to_string());
    }
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    let (relative, suffix) = url.split_at(cut);
    let mut segments: Vec<&str> = page_path.split('/').filter(|s| !s.is_empty()).collect();
    let parts: Vec<&str> = relative.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        match *part {
            ".." => {
                segments.pop();
            }
            "." | "" => {}
            other => segments.push(other),
        }
        let last = i + 1 == parts.len();
        if last && matches!(*part, "" | "." | "..") && !segments.is_empty() {
            segments.push("");
        }
    }
    let joined = segments.join("/");
    let suffix = suffix
        .split_once('#')
        .map_or(String::new(), |(_, f)| format!("#{f}"));
    Some(format!("/{joined}{suffix}"))
}

/// Resolves the URLs of one document against the files around it.
struct LinkContext<'a> {
    site_dir: &'a Path,
    source_dir: &'a Path,
    bundle_dir: Option<&'a Path>,
    page_path: &'a str,
    local_files: RefCell<Vec<PathBuf>>,
    /// Resolved image URL → its file, for `image_size`.
    image_files: RefCell<Vec<(String, PathBuf)>>,
}

impl LinkContext<'_> {
    /// Resolves `url` and, for a local image, remembers its file for `image_size`.
    fn resolve(&self, url: &str, target: Target) -> Result<String, String> {
        let known = self.local_files.borrow().len();
        let resolved = self.resolve_url(url, target)?;
        if target == Target::Image {
            if let Some(file) = self.local_files.borrow().get(known) {
                self.image_files
                    .borrow_mut()
                    .push((resolved.clone(), self.site_dir.join(file)));
            }
        }
        Ok(resolved)
    }

    /// Width and height of the local image the page shows at `url`; `None` for a remote
    /// image or a file whose header cannot be read (the page just lacks the size).
    fn image_size(&self, url: &str) -> Option<(u32, u32)> {
        let files = self.image_files.borrow();
        let (_, file) = files.iter().find(|(u, _)| u == url)?;
        let size = imagesize::size(file).ok()?;
        Some((size.width.try_into().ok()?, size.height.try_into().ok()?))
    }

    /// Leaves remote and in-page URLs alone; checks that local files exist and makes
    /// relative ones site-absolute, since a flat `posts/x.md` is served one level deeper
    /// (`/posts/x/`) than the file sits.
    fn resolve_url(&self, url: &str, target: Target) -> Result<String, String> {
        if url.is_empty() || url.starts_with('#') || url.starts_with("//") || has_scheme(url) {
            return Ok(url.to_string());
        }
        let cut = url.find(['?', '#']).unwrap_or(url.len());
        let (file_part, suffix) = url.split_at(cut);
        let decoded = percent_decode(file_part);
        let what = match target {
            Target::Link => "link",
            Target::Image => "image",
        };

        if let Some(rooted) = decoded.strip_prefix('/') {
            // A rooted link may name a generated page (`/tags/rust/`): only images are checked.
            if target == Target::Link {
                return Ok(url.to_string());
            }
            for dir in [STATIC_DIR, CONTENT_DIR] {
                let rel = Path::new(dir).join(rooted);
                if self.site_dir.join(&rel).is_file() {
                    self.local_files.borrow_mut().push(rel);
                    return Ok(url.to_string());
                }
            }
            return Err(format!(
                "{what} {url} not found: no {STATIC_DIR}/{rooted} nor {CONTENT_DIR}/{rooted}"
            ));
        }

        let last = decoded.rsplit('/').next().unwrap_or("");
        if target == Target::Link && !last.contains('.') {
            // `../other-post/` names a page, not a file.
            return Ok(url.to_string());
        }
        let file = normalize(&self.source_dir.join(&decoded));
        let shown = file
            .strip_prefix(self.site_dir)
            .unwrap_or(&file)
            .display()
            .to_string();
        if !file.is_file() {
            return Err(format!("{what} to missing file {url} ({shown})"));
        }
        if file.extension().is_some_and(|e| e == "md") {
            return Err(format!(
                "{what} to the Markdown source {url}: link to the page's path instead"
            ));
        }
        let rel_to_site = file
            .strip_prefix(self.site_dir)
            .map_err(|_| format!("{what} {url} points outside the site directory"))?;
        self.local_files
            .borrow_mut()
            .push(rel_to_site.to_path_buf());

        let published = if let Some(rest) = self.bundle_dir.and_then(|b| file.strip_prefix(b).ok())
        {
            format!("{}{}", self.page_path, url_path(rest))
        } else if let Ok(rest) = rel_to_site.strip_prefix(CONTENT_DIR) {
            format!("/{}", url_path(rest))
        } else if let Ok(rest) = rel_to_site.strip_prefix(STATIC_DIR) {
            format!("/{}", url_path(rest))
        } else {
            return Err(format!(
                "{what} {url} points outside {CONTENT_DIR}/ and {STATIC_DIR}/: it would not be published"
            ));
        };
        Ok(format!("{published}{suffix}"))
    }
}

/// Decodes `%XX` escapes of a URL path or fragment.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Joins the components of a relative path with `/`, escaping spaces.
fn url_path(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().replace(' ', "%20"))
        .collect::<Vec<_>>()
        .join("/")
}

/// Resolves `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn write(&self, rel: &str, text: &str) {
            crate::test_support::write(self.dir.path(), rel, text);
        }
        fn parse(
            &self,
            rel: &str,
            kind: DocumentKind,
            bundle: bool,
        ) -> Result<Parsed, ContentError> {
            let text = fs::read_to_string(self.dir.path().join(rel)).unwrap();
            let source = SourceFile {
                path: rel.into(),
                kind,
                bundle,
                assets: Vec::new(),
            };
            parse_document(
                self.dir.path(),
                &source,
                &text,
                "h".into(),
                &Highlighter::new(None),
            )
        }
    }

    #[test]
    fn post_fields_from_front_matter() {
        let f = Fixture::new();
        f.write(
            "content/posts/First Post.md",
            "+++\ntitle = \"First\"\ndate = 2024-05-01\ntags = [\"Rust\", \"rust\", \"Rust\"]\nauthors = [\"ada\"]\ncontent_warning = \"spoilers\"\n+++\nOne two three.\n\n<!-- more -->\n\nFour.\n",
        );
        let doc = f
            .parse("content/posts/First Post.md", DocumentKind::Post, false)
            .unwrap()
            .document;
        assert_eq!(doc.slug, "first-post");
        assert_eq!(doc.path, "/posts/first-post/");
        assert_eq!(doc.title, "First");
        assert_eq!(doc.date.unwrap().to_rfc3339(), "2024-05-01T00:00:00+00:00");
        assert_eq!(doc.tags, vec!["Rust", "rust"]);
        assert_eq!(doc.authors, vec!["ada"]);
        assert_eq!(doc.summary.as_deref(), Some("<p>One two three.</p>\n"));
        assert_eq!(doc.word_count, 4);
        assert_eq!(doc.reading_minutes, 1);
        assert_eq!(doc.content_warning.as_deref(), Some("spoilers"));
    }

    #[test]
    fn front_matter_slug_wins_and_is_slugified() {
        let f = Fixture::new();
        f.write(
            "content/about.md",
            "---\ntitle: About\nslug: About Me\n---\nHi\n",
        );
        let doc = f
            .parse("content/about.md", DocumentKind::Page, false)
            .unwrap()
            .document;
        assert_eq!(doc.path, "/about-me/");
        assert_eq!(doc.date, None);
    }

    #[test]
    fn bundle_images_become_site_absolute() {
        let f = Fixture::new();
        f.write(
            "content/posts/trip/index.md",
            "+++\ntitle = \"Trip\"\ndate = 2024-01-01\nimage = \"cover.jpg\"\nimage_alt = \"The cover\"\n+++\n![A lake](photos/lake%201.png)\n\n[pdf](notes.pdf#p2)\n",
        );
        f.write("content/posts/trip/cover.jpg", "jpg");
        f.write("content/posts/trip/photos/lake 1.png", "png");
        f.write("content/posts/trip/notes.pdf", "pdf");
        let parsed = f
            .parse("content/posts/trip/index.md", DocumentKind::Post, true)
            .unwrap();
        let doc = parsed.document;
        let images: Vec<(&str, &str, &str)> = doc
            .images
            .iter()
            .map(|i| (i.src.as_str(), i.alt.as_str(), i.media_type.as_str()))
            .collect();
        assert_eq!(
            images,
            vec![
                ("/posts/trip/cover.jpg", "The cover", "image/jpeg"),
                ("/posts/trip/photos/lake%201.png", "A lake", "image/png")
            ]
        );
        assert!(
            doc.content.contains("href=\"/posts/trip/notes.pdf#p2\""),
            "{}",
            doc.content
        );
        assert_eq!(parsed.local_files.len(), 3);
    }

    #[test]
    fn missing_image_names_file_and_line() {
        let f = Fixture::new();
        f.write(
            "content/posts/a.md",
            "+++\ntitle = \"A\"\ndate = 2024-01-01\n+++\n\nText.\n\n![gone](nope.png)\n",
        );
        let err = f
            .parse("content/posts/a.md", DocumentKind::Post, false)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "content/posts/a.md:8: image to missing file nope.png (content/posts/nope.png)"
        );
    }

    #[test]
    fn missing_linked_file_and_rooted_image() {
        let f = Fixture::new();
        f.write(
            "content/about.md",
            "+++\ntitle = \"A\"\n+++\n[ok](/tags/) [remote](https://x.example/a.pdf)\n\n[slides](slides.pdf)\n",
        );
        let err = f
            .parse("content/about.md", DocumentKind::Page, false)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("content/about.md:6: link to missing file slides.pdf"),
            "{err}"
        );

        f.write(
            "content/b.md",
            "+++\ntitle = \"B\"\n+++\n![logo](/logo.png)\n",
        );
        let err = f
            .parse("content/b.md", DocumentKind::Page, false)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("content/b.md:4: image /logo.png not found"),
            "{err}"
        );
        f.write("static/logo.png", "png");
        assert!(f.parse("content/b.md", DocumentKind::Page, false).is_ok());
    }

    #[test]
    fn unknown_date_format_names_line() {
        let f = Fixture::new();
        f.write(
            "content/posts/d.md",
            "---\ntitle: D\ndate: 01/02/2024\n---\n",
        );
        let err = f
            .parse("content/posts/d.md", DocumentKind::Post, false)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("content/posts/d.md:3: unknown date format \"01/02/2024\""),
            "{err}"
        );
    }

    #[test]
    fn an_untitled_post_is_named_from_its_first_words() {
        let f = Fixture::new();
        f.write(
            "content/posts/n.md",
            "+++\ndate = 2024-01-01\n+++\nJust shipped **the new** release of the thing, with fixes for everyone who asked.\n",
        );
        let doc = f
            .parse("content/posts/n.md", DocumentKind::Post, false)
            .unwrap()
            .document;
        assert!(doc.untitled);
        assert_eq!(
            doc.title,
            "Just shipped the new release of the thing, with fixes for…"
        );
        f.write(
            "content/posts/i.md",
            "+++\ndate = 2024-01-01\n+++\n![A heron](/h.png)\n",
        );
        f.write("static/h.png", "x");
        let doc = f
            .parse("content/posts/i.md", DocumentKind::Post, false)
            .unwrap()
            .document;
        assert_eq!((doc.untitled, doc.title.as_str()), (true, "A heron"));
        f.write(
            "content/posts/t.md",
            "+++\ntitle = \"T\"\ndate = 2024-01-01\n+++\nBody\n",
        );
        let doc = f
            .parse("content/posts/t.md", DocumentKind::Post, false)
            .unwrap()
            .document;
        assert_eq!((doc.untitled, doc.title.as_str()), (false, "T"));
    }

    #[test]
    fn title_from_words_cuts_at_a_word() {
        assert_eq!(title_from_words("  a  b\nc "), Some("a b c".into()));
        assert_eq!(title_from_words(" \n "), None);
        let long = "x".repeat(80);
        assert_eq!(title_from_words(&long).map(|t| t.chars().count()), Some(61));
    }

    #[test]
    fn pages_need_a_title_posts_a_date() {
        let f = Fixture::new();
        f.write("content/about.md", "+++\n+++\nAbout me\n");
        let err = f
            .parse("content/about.md", DocumentKind::Page, false)
            .unwrap_err();
        assert!(err.to_string().contains("`title`"), "{err}");
        f.write("content/posts/n.md", "+++\ntitle = \"N\"\n+++\n");
        let err = f
            .parse("content/posts/n.md", DocumentKind::Post, false)
            .unwrap_err();
        assert!(err.to_string().contains("`date`"), "{err}");
    }

    #[test]
    fn links_to_markdown_sources_are_rejected() {
        let f = Fixture::new();
        f.write("content/a.md", "+++\ntitle = \"A\"\n+++\n[b](b.md)\n");
        f.write("content/b.md", "+++\ntitle = \"B\"\n+++\n");
        let err = f
            .parse("content/a.md", DocumentKind::Page, false)
            .unwrap_err();
        assert!(err.to_string().contains("Markdown source"), "{err}");
    }

    #[test]
    fn scheme_detection() {
        assert!(has_scheme("https://a"));
        assert!(has_scheme("mailto:a@b"));
        assert!(!has_scheme("a/b:c"));
        assert!(!has_scheme("photo.png"));
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
        assert_eq!(normalize(Path::new("./a/../b")), Path::new("b"));
        assert_eq!(normalize(Path::new("../s/./c/..")), Path::new("../s"));
    }
}

#[cfg(test)]
mod link_target_tests {
    use super::site_target;

    #[test]
    fn relative_page_links_join_the_page_path() {
        let t = |url| site_target("/posts/a/", url);
        assert_eq!(t("../b/").as_deref(), Some("/posts/b/"));
        assert_eq!(t("../../about/#team").as_deref(), Some("/about/#team"));
        assert_eq!(t("sub?x=1#p").as_deref(), Some("/posts/a/sub#p"));
        assert_eq!(t("..").as_deref(), Some("/posts/"));
        assert_eq!(t("#here").as_deref(), Some("#here"));
        assert_eq!(t("/x/").as_deref(), Some("/x/"));
        assert_eq!(t(""), None);
    }
}
