//! Pages, taxonomies and feeds assembled from documents.

pub mod feeds;
pub mod sections;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::SiteConfig;
use crate::content::{self, ContentErrors, Document, DocumentKind};

/// Page slugs that would collide with pages the build generates.
const RESERVED_PAGE_SLUGS: &[&str] = &["tags", "page", "ap"];
pub const STATIC_DIR: &str = "static";

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Content(#[from] ContentErrors),
    #[error("{second}:{line}: {what} {path} is also produced by {first}")]
    Duplicate {
        what: &'static str,
        path: String,
        first: PathBuf,
        second: PathBuf,
        line: usize,
    },
    #[error("{path}:{line}: slug {slug:?} is reserved for generated pages")]
    ReservedSlug {
        path: PathBuf,
        line: usize,
        slug: String,
    },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A file published as is.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    /// Relative to the site directory.
    pub source: PathBuf,
    /// Site path, e.g. `/posts/trip/lake.jpg`.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    /// As first written in the newest post using it.
    pub name: String,
    pub slug: String,
    /// Indices into `Site::posts`, newest first.
    pub posts: Vec<usize>,
}

impl Tag {
    pub fn path(&self) -> String {
        format!("/tags/{}/", self.slug)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Include documents marked `draft = true`.
    pub drafts: bool,
    /// Hold back posts dated after this moment (Hugo's default; `--future` shows them).
    pub hold_after: Option<chrono::DateTime<chrono::Utc>>,
}

impl LoadOptions {
    /// Whether `doc` is part of the site: not a draft left out, not a post held back.
    pub fn keeps(&self, doc: &Document) -> bool {
        (self.drafts || !doc.draft)
            && (doc.kind != DocumentKind::Post
                || !matches!((self.hold_after, doc.date), (Some(now), Some(date)) if date > now))
    }
}

/// A whole site, ready to render.
#[derive(Debug)]
pub struct Site {
    pub dir: PathBuf,
    pub config: SiteConfig,
    /// Newest first.
    pub posts: Vec<Document>,
    /// By path.
    pub pages: Vec<Document>,
    /// By name, case-insensitively.
    pub tags: Vec<Tag>,
    /// Bundle files, other content files and `static/`, by path.
    pub assets: Vec<Asset>,
    /// Documents parsed by this load, and documents reused from the cache.
    pub parsed: usize,
    pub reused: usize,
    /// Folders of posts, by folder (see [`Site::set_sections`]).
    pub sections: Vec<sections::Section>,
}

impl Site {
    /// Sorts, filters and indexes documents; checks that no two things share a path.
    pub fn assemble(
        dir: &Path,
        config: SiteConfig,
        documents: Vec<Document>,
        mut assets: Vec<Asset>,
        options: LoadOptions,
    ) -> Result<Site, SiteError> {
        let documents: Vec<Document> = documents.into_iter().filter(|d| options.keeps(d)).collect();

        let mut owners: HashMap<String, PathBuf> = HashMap::new();
        for doc in &documents {
            if doc.kind == DocumentKind::Page && RESERVED_PAGE_SLUGS.contains(&doc.slug.as_str()) {
                return Err(SiteError::ReservedSlug {
                    line: content::key_line(dir, &doc.source, "slug"),
                    path: doc.source.clone(),
                    slug: doc.slug.clone(),
                });
            }
            if let Some(first) = owners.insert(doc.path.clone(), doc.source.clone()) {
                return Err(SiteError::Duplicate {
                    what: "page",
                    line: content::key_line(dir, &doc.source, "slug"),
                    path: doc.path.clone(),
                    first,
                    second: doc.source.clone(),
                });
            }
            let bundle = doc.source.parent().unwrap_or(Path::new(""));
            for file in &doc.assets {
                let rest = file.strip_prefix(bundle).unwrap_or(file);
                let rest: Vec<String> = rest
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().replace(' ', "%20"))
                    .collect();
                assets.push(Asset {
                    source: file.clone(),
                    path: format!("{}{}", doc.path, rest.join("/")),
                });
            }
        }
        assets.sort_by(|a, b| a.path.cmp(&b.path).then(a.source.cmp(&b.source)));
        for pair in assets.windows(2) {
            if pair[0].path == pair[1].path {
                return Err(SiteError::Duplicate {
                    what: "file",
                    line: 1,
                    path: pair[0].path.clone(),
                    first: pair[0].source.clone(),
                    second: pair[1].source.clone(),
                });
            }
        }

        let (mut posts, mut pages): (Vec<Document>, Vec<Document>) = documents
            .into_iter()
            .partition(|d| d.kind == DocumentKind::Post);
        posts.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| a.path.cmp(&b.path)));
        sort_pages(&mut pages);
        let tags = collect_tags(&posts);
        Ok(Site {
            dir: dir.to_path_buf(),
            config,
            posts,
            pages,
            tags,
            assets,
            parsed: 0,
            reused: 0,
            sections: Vec::new(),
        })
    }

    /// Number of home pages (`/`, `/page/2/`, ...); at least one, even without posts.
    /// Groups the posts by folder, with what the `_index.md` files say.
    pub fn set_sections(&mut self, metas: &[content::SectionMeta]) {
        self.sections = sections::sections(&self.posts, metas);
    }

    /// Indices into `sections` of the sections with list pages.
    pub fn listed_sections(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.sections.len()).filter(|&i| self.sections[i].listed)
    }

    pub fn home_page_count(&self) -> usize {
        self.posts.len().div_ceil(self.config.paginate_by).max(1)
    }

    /// Site path of home page `number` (1-based).
    pub fn home_page_path(number: usize) -> String {
        if number <= 1 {
            "/".into()
        } else {
            format!("/page/{number}/")
        }
    }

    pub fn tag(&self, slug: &str) -> Option<&Tag> {
        self.tags.iter().find(|t| t.slug == slug)
    }
}

fn collect_tags(posts: &[Document]) -> Vec<Tag> {
    let mut tags: Vec<Tag> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, post) in posts.iter().enumerate() {
        for name in &post.tags {
            let slug = slug::slugify(name);
            let at = *index.entry(slug.clone()).or_insert_with(|| {
                tags.push(Tag {
                    name: name.clone(),
                    slug,
                    posts: Vec::new(),
                });
                tags.len() - 1
            });
            // "Rust" and "rust" in one post are one tag.
            if tags[at].posts.last() != Some(&i) {
                tags[at].posts.push(i);
            }
        }
    }
    tags.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then(a.slug.cmp(&b.slug))
    });
    tags
}

/// Every file under `<dir>/static`, published at the same path.
pub fn static_files(dir: &Path) -> Result<Vec<Asset>, SiteError> {
    let root = dir.join(STATIC_DIR);
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut assets = Vec::new();
    for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let entry = entry.map_err(|e| SiteError::Read {
            path: e.path().map_or_else(|| root.clone(), Path::to_path_buf),
            source: e.into(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        if let Ok(rel) = entry.path().strip_prefix(&root) {
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            assets.push(Asset {
                source: Path::new(STATIC_DIR).join(rel),
                path: format!("/{}", parts.join("/")),
            });
        }
    }
    Ok(assets)
}

/// Pages by weight (Zola's and Hugo's order: lightest first, unweighted last), then path.
fn sort_pages(pages: &mut [Document]) {
    pages.sort_by(|a, b| {
        (a.weight.is_none(), a.weight, &a.path).cmp(&(b.weight.is_none(), b.weight, &b.path))
    });
}

/// Every alias of the site's posts and pages, as (alias path, page path), sorted.
pub fn aliases(site: &Site) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = site
        .posts
        .iter()
        .chain(&site.pages)
        .flat_map(|d| d.aliases.iter().map(|a| (a.clone(), d.path.clone())))
        .collect();
    all.sort();
    all
}

/// A page that sends browsers (refresh) and search engines (canonical) to `target`, like
/// the alias pages Zola and Hugo write.
pub fn alias_page(target: &str) -> String {
    let url = content::escape_html(target);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{url}</title>\
         <link rel=\"canonical\" href=\"{url}\"><meta name=\"robots\" content=\"noindex\">\
         <meta http-equiv=\"refresh\" content=\"0; url={url}\"></head>\
         <body><a href=\"{url}\">{url}</a></body></html>\n"
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::DateTime;

    pub fn config() -> SiteConfig {
        SiteConfig::parse(
            "title = \"Blog\"\nbase_url = \"https://blog.example\"\npaginate_by = 2\n\
             [[authors]]\nid = \"ada\"\nname = \"Ada L\"\n",
            Path::new("config.toml"),
        )
        .unwrap()
    }

    pub fn post(slug: &str, date: &str, tags: &[&str]) -> Document {
        Document {
            kind: DocumentKind::Post,
            source: format!("content/posts/{slug}.md").into(),
            slug: slug.into(),
            path: format!("/posts/{slug}/"),
            title: format!("Title of {slug}"),
            untitled: false,
            date: Some(DateTime::parse_from_rfc3339(date).unwrap()),
            updated: None,
            draft: false,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            summary: None,
            authors: Vec::new(),
            language: None,
            image: None,
            content_warning: None,
            federate_as: None,
            quotes: None,
            in_reply_to: None,
            content: format!("<p>Body of {slug} &amp; more</p>"),
            text: format!("Body of {slug} & more"),
            images: Vec::new(),
            assets: Vec::new(),
            word_count: 4,
            reading_minutes: 1,
            source_hash: "h".into(),
            description: None,
            aliases: Vec::new(),
            weight: None,
            extra: Default::default(),
            taxonomies: Default::default(),
            kept_fields: Vec::new(),
        }
    }

    fn assemble(docs: Vec<Document>, drafts: bool) -> Result<Site, SiteError> {
        Site::assemble(
            Path::new("/nowhere"),
            config(),
            docs,
            Vec::new(),
            LoadOptions {
                drafts,
                ..LoadOptions::default()
            },
        )
    }

    #[test]
    fn posts_newest_first_drafts_excluded_tags_grouped() {
        let mut draft = post("d", "2024-03-01T00:00:00Z", &["rust"]);
        draft.draft = true;
        let site = assemble(
            vec![
                post("a", "2024-01-01T00:00:00Z", &["Rust", "web"]),
                post("b", "2024-02-01T00:00:00Z", &["rust"]),
                draft.clone(),
            ],
            false,
        )
        .unwrap();
        let slugs: Vec<&str> = site.posts.iter().map(|p| p.slug.as_str()).collect();
        assert_eq!(slugs, vec!["b", "a"]);
        let tags: Vec<(&str, &str, Vec<usize>)> = site
            .tags
            .iter()
            .map(|t| (t.name.as_str(), t.slug.as_str(), t.posts.clone()))
            .collect();
        assert_eq!(
            tags,
            vec![("rust", "rust", vec![0, 1]), ("web", "web", vec![1])]
        );
        assert_eq!(site.home_page_count(), 1);

        let with_drafts =
            assemble(vec![post("a", "2024-01-01T00:00:00Z", &[]), draft], true).unwrap();
        assert_eq!(with_drafts.posts[0].slug, "d");
    }

    #[test]
    fn duplicate_paths_name_both_files() {
        let a = post("same", "2024-01-01T00:00:00Z", &[]);
        let mut b = post("same", "2024-01-02T00:00:00Z", &[]);
        b.source = "content/posts/same/index.md".into();
        let err = assemble(vec![a, b], false).unwrap_err().to_string();
        assert!(err.contains("content/posts/same.md"), "{err}");
        assert!(err.contains("content/posts/same/index.md"), "{err}");
    }

    #[test]
    fn free_author_names_and_reserved_slug() {
        let mut p = post("a", "2024-01-01T00:00:00Z", &[]);
        p.authors = vec!["Bob Smith".into()];
        let site = assemble(vec![p], false).unwrap();
        assert_eq!(site.posts[0].authors, vec!["Bob Smith"]);

        let mut page = post("tags", "2024-01-01T00:00:00Z", &[]);
        page.kind = DocumentKind::Page;
        page.path = "/tags/".into();
        assert!(matches!(
            assemble(vec![page], false),
            Err(SiteError::ReservedSlug { .. })
        ));
    }

    #[test]
    fn pages_by_weight_then_path() {
        let page = |slug: &str, weight: Option<i64>| {
            let mut p = post(slug, "2024-01-01T00:00:00Z", &[]);
            p.kind = DocumentKind::Page;
            p.path = format!("/{slug}/");
            p.weight = weight;
            p
        };
        let site = assemble(
            vec![page("a", None), page("b", Some(2)), page("c", Some(1))],
            false,
        )
        .unwrap();
        let order: Vec<&str> = site.pages.iter().map(|p| p.slug.as_str()).collect();
        assert_eq!(order, vec!["c", "b", "a"]);
    }

    #[test]
    fn pagination_paths() {
        let posts = (1..=5)
            .map(|i| post(&format!("p{i}"), &format!("2024-01-0{i}T00:00:00Z"), &[]))
            .collect();
        let site = assemble(posts, false).unwrap();
        assert_eq!(site.home_page_count(), 3);
        assert_eq!(Site::home_page_path(1), "/");
        assert_eq!(Site::home_page_path(3), "/page/3/");
    }
}
