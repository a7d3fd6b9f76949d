//! Tera templates → the site's files: one page at a time (`render_job`) for the build, which
//! writes each through `output`.

mod context;
pub mod dates;
pub mod output;
pub mod theme;

use std::collections::HashMap;
use std::path::PathBuf;

use rayon::prelude::*;

pub use context::Views;
pub use output::{OutputError, OutputFile, OutputSource, WriteReport, MANIFEST};
pub use theme::{StaticSource, Theme, ThemeError};

use crate::content::Highlighter;
use crate::interactions::Interactions;
use crate::site::{feeds, Site};

/// Site path of the stylesheet for class-highlighted code.
pub const HIGHLIGHT_CSS_PATH: &str = "/highlight.css";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Theme(#[from] ThemeError),
    /// Tera reports no line for errors found while rendering.
    #[error("{template}: rendering {page}: {message}")]
    Template {
        template: PathBuf,
        page: String,
        message: String,
    },
    #[error("{second}: {path} is also produced by {first}")]
    Duplicate {
        path: String,
        first: String,
        second: String,
    },
    #[error("highlight stylesheet: {0}")]
    Highlight(String),
}

/// One HTML page to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Home(usize),
    Post(usize),
    Page(usize),
    Tags,
    Tag(usize),
    NotFound,
    /// List page `.1` (1-based) of section `.0` (Zola/Hugo folders of posts).
    Section(usize, usize),
}

/// Renders every page, feed and copied file of `site`. Pages render in parallel.
pub fn render_site(
    site: &Site,
    theme: &Theme,
    interactions: &Interactions,
) -> Result<Vec<OutputFile>, RenderError> {
    let views = Views::new(site, interactions);
    let pages: Vec<(OutputFile, &'static str)> = page_jobs(site)
        .par_iter()
        .map(|&job| render_job(site, theme, &views, job))
        .collect::<Result<_, _>>()?;

    let mut files = Vec::with_capacity(pages.len() + site.assets.len() + 8);
    let mut origins: HashMap<String, String> = HashMap::new();
    let mut add = |file: OutputFile, origin: String, files: &mut Vec<OutputFile>| {
        if let Some(first) = origins.insert(file.path.clone(), origin.clone()) {
            return Err(RenderError::Duplicate {
                path: format!("/{}", file.path),
                first,
                second: origin,
            });
        }
        files.push(file);
        Ok(())
    };
    for (file, template) in pages {
        add(
            file,
            theme.origin(template).display().to_string(),
            &mut files,
        )?;
    }
    for (path, text) in [
        (feeds::ATOM_PATH, feeds::atom(site)),
        (feeds::RSS_PATH, feeds::rss(site)),
        (feeds::SITEMAP_PATH, feeds::sitemap(site)),
        (feeds::ROBOTS_PATH, feeds::robots(site)),
    ] {
        add(
            OutputFile::bytes(OutputFile::path_for(path), text),
            format!("the generated {path}"),
            &mut files,
        )?;
    }
    for asset in &site.assets {
        add(
            OutputFile::copy(
                OutputFile::path_for(&asset.path),
                site.dir.join(&asset.source),
            ),
            asset.source.display().to_string(),
            &mut files,
        )?;
    }
    for file in &theme.static_files {
        let path = OutputFile::path_for(&file.path);
        // The site's static/ overrides the theme's, like templates/ does.
        if site.assets.iter().any(|a| a.path == file.path) {
            continue;
        }
        let (out, origin) = match &file.source {
            StaticSource::Embedded(bytes) => (
                OutputFile::bytes(path, bytes.to_vec()),
                format!("theme {} static{}", theme.name, file.path),
            ),
            StaticSource::File(source) => (
                OutputFile::copy(path, source.clone()),
                source.display().to_string(),
            ),
        };
        add(out, origin, &mut files)?;
    }
    Ok(files)
}

/// The stylesheet for class-highlighted code, or nothing when code is styled inline.
pub fn highlight_stylesheet(highlighter: &Highlighter) -> Result<Option<OutputFile>, RenderError> {
    let css = highlighter.stylesheet().map_err(RenderError::Highlight)?;
    Ok((!css.is_empty()).then(|| OutputFile::bytes(OutputFile::path_for(HIGHLIGHT_CSS_PATH), css)))
}

/// Every HTML page of `site`.
pub fn page_jobs(site: &Site) -> Vec<Job> {
    let mut jobs: Vec<Job> = (1..=site.home_page_count()).map(Job::Home).collect();
    jobs.extend((0..site.posts.len()).map(Job::Post));
    jobs.extend((0..site.pages.len()).map(Job::Page));
    jobs.push(Job::Tags);
    jobs.extend((0..site.tags.len()).map(Job::Tag));
    jobs.push(Job::NotFound);
    for i in site.listed_sections() {
        jobs.extend((1..=site.sections[i].page_count()).map(|n| Job::Section(i, n)));
    }
    jobs
}

impl Job {
    /// The template and site path of the page.
    pub fn target(self, site: &Site) -> (&'static str, String) {
        match self {
            Job::Home(n) => ("index.html", Site::home_page_path(n)),
            Job::Post(i) => ("post.html", site.posts[i].path.clone()),
            Job::Page(i) => ("page.html", site.pages[i].path.clone()),
            Job::Tags => ("tags.html", "/tags/".to_string()),
            Job::Tag(i) => ("tag.html", site.tags[i].path()),
            Job::NotFound => ("404.html", "/404.html".to_string()),
            // The home template lists posts with a paginator; `section` tells them apart.
            Job::Section(i, n) => ("index.html", site.sections[i].page_path(n)),
        }
    }
}

/// Renders one page: its output file and the template it used.
pub fn render_job(
    site: &Site,
    theme: &Theme,
    views: &Views,
    job: Job,
) -> Result<(OutputFile, &'static str), RenderError> {
    let (template, path) = job.target(site);
    let context = match job {
        Job::Home(n) => views.home(site, n),
        Job::Post(i) => views.post(site, i),
        Job::Page(i) => views.page(site, i),
        Job::Tags => views.tags(site),
        Job::Tag(i) => views.tag(site, i),
        Job::NotFound => views.not_found(site),
        Job::Section(i, n) => views.section(site, i, n),
    };
    let html = context
        .into_tera()
        .and_then(|context| theme.tera.render(template, &context))
        .map_err(|e| RenderError::Template {
            template: theme.origin(template),
            page: path.clone(),
            message: theme::error_chain(&e),
        })?;
    Ok((
        OutputFile::bytes(OutputFile::path_for(&path), html),
        template,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SiteConfig;
    use crate::content::DocumentCache;
    use crate::interactions::{PostInteractions, Reactor, Reply};
    use crate::site::LoadOptions;
    use std::fs;
    use std::path::Path;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "config.toml",
            "title = \"Test Blog\"\nbase_url = \"https://blog.example\"\npaginate_by = 2\n\
             [[authors]]\nid = \"ada\"\nname = \"Ada\"\n\
             [fediverse]\nusername = \"news\"\nprofile_links = [{ name = \"Code\", url = \"https://code.example/ada\" }]\n",
        );
        for i in 1..=3 {
            write(
                root,
                &format!("content/posts/p{i}.md"),
                &format!("+++\ntitle = \"Post {i}\"\ndate = 2024-01-0{i}\ntags = [\"Rust\"]\nauthors = [\"ada\"]\n+++\nBody {i}.\n"),
            );
        }
        write(
            root,
            "content/about.md",
            "+++\ntitle = \"About\"\n+++\nAbout me.\n",
        );
        write(root, "static/favicon.ico", "ico");
        dir
    }

    fn render(root: &Path, interactions: &Interactions) -> Result<Vec<OutputFile>, RenderError> {
        let config = SiteConfig::load(root).unwrap();
        let theme = Theme::load(root, &config)?;
        let site = Site::load(
            root,
            config,
            LoadOptions::default(),
            &Highlighter::new(None),
            &mut DocumentCache::in_memory(),
        )
        .unwrap();
        render_site(&site, &theme, interactions)
    }

    fn text(files: &[OutputFile], path: &str) -> String {
        let file = files
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no {path}"));
        match &file.source {
            OutputSource::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
            OutputSource::Copy(p) => fs::read_to_string(p).unwrap(),
        }
    }

    #[test]
    fn renders_every_page_with_fediverse_links() {
        let dir = fixture();
        let files = render(dir.path(), &Interactions::new()).unwrap();
        let mut paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            vec![
                "404.html",
                "about/index.html",
                "atom.xml",
                "favicon.ico",
                "index.html",
                "interactions.js",
                "page/2/index.html",
                "posts/p1/index.html",
                "posts/p2/index.html",
                "posts/p3/index.html",
                "remote.js",
                "robots.txt",
                "rss.xml",
                "sitemap.xml",
                "style.css",
                "tags/index.html",
                "tags/rust/index.html",
            ]
        );
        let home = text(&files, "index.html");
        assert!(home.contains("<link rel=\"alternate\" type=\"application/activity+json\" href=\"https://blog.example/ap/users/news.json\">"), "{home}");
        assert!(home.contains("@news@blog.example"), "{home}");
        assert!(home.contains("Follow on the fediverse"));
        assert!(
            home.contains("<a class=\"small-button\" href=\"#follow\" data-interact=\"news@blog.example\" data-interact-title=\"Follow @news@blog.example from your server\">Follow</a>"),
            "{home}"
        );
        assert!(home.contains("<dialog id=\"remote-interact\""), "{home}");
        assert!(home.contains("<link rel=\"me\" href=\"https://code.example/ada\">"));
        assert!(home.contains("href=\"/page/2/\""), "{home}");
        assert!(home.contains("Post 3") && home.contains("Post 2") && !home.contains("Post 1<"));

        let post = text(&files, "posts/p2/index.html");
        assert!(
            post.contains("href=\"https://blog.example/ap/posts/p2.json\""),
            "{post}"
        );
        assert!(
            post.contains("<meta name=\"fediverse:creator\" content=\"@ada@blog.example\">"),
            "{post}"
        );
        assert!(post.contains("<section class=\"fediverse-interactions\" id=\"interactions\""));
        assert!(post.contains("No replies yet."));
        assert!(post.contains("<code class=\"post-address\">https://blog.example/posts/p2/</code>"));
        assert!(
            post.contains("data-interact=\"https://blog.example/ap/posts/p2.json\""),
            "{post}"
        );
        let tag = text(&files, "tags/rust/index.html");
        assert_eq!(tag.matches("class=\"post-item\"").count(), 3);
    }

    #[test]
    fn interactions_show_under_their_post_and_only_reply_content_is_raw() {
        let dir = fixture();
        let when = chrono::DateTime::parse_from_rfc3339("2024-02-01T08:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let reactor = |name: &str| Reactor {
            actor_id: format!("https://m.example/users/{name}"),
            name: name.into(),
            url: format!("https://m.example/@{name}"),
            avatar: Some(format!("https://m.example/{name}.png")),
        };
        let mut interactions = Interactions::new();
        interactions.insert(
            "https://blog.example/ap/posts/p1.json".into(),
            PostInteractions {
                replies: vec![Reply {
                    id: "https://m.example/r/1".into(),
                    url: "https://m.example/@bob/1".into(),
                    in_reply_to: "https://blog.example/ap/posts/p1.json".into(),
                    author_id: "https://m.example/users/bob".into(),
                    author_name: "Bob <script>x</script>".into(),
                    author_handle: "@bob@m.example".into(),
                    author_url: "https://m.example/@bob".into(),
                    author_avatar: None,
                    content: "<p>Nice <em>post</em></p>".into(),
                    published: when,
                    depth: 0,
                }],
                likes: vec![reactor("carol"), reactor("dan")],
                boosts: vec![reactor("erin")],
                quotes: vec![],
            },
        );
        let files = render(dir.path(), &interactions).unwrap();
        let post = text(&files, "posts/p1/index.html");
        assert!(post.contains("<p>Nice <em>post</em></p>"), "{post}");
        assert!(
            post.contains("Bob &lt;script&gt;x&lt;/script&gt;"),
            "{post}"
        );
        assert!(post.contains("2 likes"), "{post}");
        assert!(post.contains("1 boost<"), "{post}");
        assert!(post.contains("https://m.example/erin.png"));
        assert!(post.contains("1 February 2024"));
        assert!(!post.contains("No replies yet."));
        assert!(text(&files, "posts/p2/index.html").contains("No replies yet."));
    }

    #[test]
    fn a_template_error_names_the_template() {
        let dir = fixture();
        write(dir.path(), "templates/page.html", "{{ page.nope.deeper }}");
        let err = render(dir.path(), &Interactions::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("templates/page.html: rendering /about/:"),
            "{err}"
        );
    }

    #[test]
    fn static_file_colliding_with_a_generated_file() {
        let dir = fixture();
        write(dir.path(), "static/rss.xml", "<rss/>");
        let err = render(dir.path(), &Interactions::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("static/rss.xml") && err.contains("/rss.xml"),
            "{err}"
        );
    }
}
