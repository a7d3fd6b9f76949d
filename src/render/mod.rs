//! Tera templates → the site's files: one page at a time (`render_job`) for the build, which
//! writes each through `output`.

mod context;
pub mod dates;
pub mod output;
pub mod theme;

use std::path::PathBuf;

pub use context::Views;
pub use output::{OutputError, OutputFile, OutputSource, WriteReport, MANIFEST};
pub use theme::{StaticSource, Theme, ThemeError};

use crate::content::Highlighter;
use crate::site::Site;

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
    let tera = theme.tera().map_err(|e| RenderError::Template {
        template: theme.origin(template),
        page: path.clone(),
        message: e.to_string(),
    })?;
    let html = context
        .into_tera()
        .and_then(|context| tera.render(template, &context))
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
    use crate::build::{build_site, BuildOptions, BuildState};
    use crate::config::SiteConfig;
    use crate::interactions::Reply;
    use crate::store::{NewReply, ReactionKind, RemoteActor, ReplyState, Store, StoreLocation};
    use crate::test_support::write;
    use std::fs;
    use std::path::Path;

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

    /// Builds the site at `root` as `relais build` does, into a fresh folder.
    fn build(root: &Path) -> anyhow::Result<tempfile::TempDir> {
        let out = tempfile::tempdir().unwrap();
        let options = BuildOptions::new(root, out.path());
        build_site(&options, &mut BuildState::in_memory())?;
        Ok(out)
    }

    fn text(out: &tempfile::TempDir, path: &str) -> String {
        fs::read_to_string(out.path().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Every file under `root`, as sorted relative paths.
    fn listing(root: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    found.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        found.sort_unstable();
        found
    }

    /// The inbox's store of the site at `root`, as the build finds it.
    fn store(root: &Path) -> Store {
        let config = SiteConfig::load(root).unwrap();
        let StoreLocation::Path(path) = StoreLocation::of(root, &config.inbox.store) else {
            panic!("the fixture's store is a SQLite file");
        };
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        Store::open(&path).unwrap()
    }

    #[test]
    fn renders_every_page_with_fediverse_links() {
        let dir = fixture();
        let files = build(dir.path()).unwrap();
        // The ActivityPub documents and host files are the federation stage's.
        let paths: Vec<String> = listing(files.path())
            .into_iter()
            .filter(|p| !p.ends_with(".json") && !p.starts_with(['.', '_']))
            .collect();
        assert_eq!(
            paths,
            vec![
                "404.html",
                "about/index.html",
                "atom.xml",
                "favicon.ico",
                "highlight.css",
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
        let store = store(dir.path());
        let post = "https://blog.example/ap/posts/p1.json";
        store
            .insert_reply(&NewReply {
                reply: &Reply {
                    id: "https://m.example/r/1".into(),
                    url: "https://m.example/@bob/1".into(),
                    in_reply_to: post.into(),
                    author_id: "https://m.example/users/bob".into(),
                    author_name: "Bob <script>x</script>".into(),
                    author_handle: "@bob@m.example".into(),
                    author_url: "https://m.example/@bob".into(),
                    author_avatar: None,
                    content: "<p>Nice <em>post</em></p>".into(),
                    published: when,
                    depth: 0,
                },
                root_id: post,
                state: ReplyState::Visible,
            })
            .unwrap();
        for (name, kind) in [
            ("carol", ReactionKind::Like),
            ("dan", ReactionKind::Like),
            ("erin", ReactionKind::Announce),
        ] {
            let id = format!("https://m.example/users/{name}");
            store
                .cache_actor(&RemoteActor {
                    id: id.clone(),
                    inbox: format!("{id}/inbox"),
                    shared_inbox: None,
                    name: name.into(),
                    handle: format!("@{name}@m.example"),
                    url: format!("https://m.example/@{name}"),
                    avatar: Some(format!("https://m.example/{name}.png")),
                    public_key_pem: "PEM".into(),
                    key_id: format!("{id}#main-key"),
                    also_known_as: Vec::new(),
                    moved_to: None,
                    fetched_at: "2024-02-01T08:00:00Z".parse().unwrap(),
                })
                .unwrap();
            store
                .add_reaction(&format!("{id}/reactions/1"), &id, post, kind)
                .unwrap();
        }
        drop(store);
        let files = build(dir.path()).unwrap();
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
        let err = build(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with("templates/page.html: rendering /about/:"),
            "{err}"
        );
    }

    #[test]
    fn static_file_colliding_with_a_generated_file() {
        let dir = fixture();
        write(dir.path(), "static/rss.xml", "<rss/>");
        let err = build(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("static/rss.xml") && err.contains("/rss.xml"),
            "{err}"
        );
    }
}
