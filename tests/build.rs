//! `relais init` and `relais build` run as the real binary on sites made in temp dirs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common;

use crate::common::{relais, relais_on, snapshot, stderr, stdout, write, PNG};

fn build(site: &Path, extra: &[&str]) -> Output {
    relais_on("build", site, extra)
}

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "config.toml",
        "title = \"Fixture\"\nbase_url = \"https://fixture.example\"\npaginate_by = 2\n\
         [[authors]]\nid = \"ann\"\nname = \"Ann\"\n",
    );
    for (i, tag) in [(1, "rust"), (2, "web"), (3, "rust")] {
        write(
            root,
            &format!("content/posts/post-{i}.md"),
            format!(
                "+++\ntitle = \"Post {i}\"\ndate = 2024-05-0{i}\ntags = [\"{tag}\"]\nauthors = [\"ann\"]\n+++\n\nText of post {i}.\n\n```rust\nfn main() {{}}\n```\n"
            ),
        );
    }
    write(
        root,
        "content/posts/trip/index.md",
        "---\ntitle: Trip\ndate: 2024-04-01\ntags: [travel]\n---\n\n![A red dot](dot.png)\n",
    );
    fs::write(root.join("content/posts/trip/dot.png"), PNG).unwrap();
    write(
        root,
        "content/about.md",
        "+++\ntitle = \"About\"\n+++\nAbout.\n",
    );
    write(root, "static/robots-note.txt", "static file\n");
    dir
}

#[test]
fn builds_every_kind_of_output() {
    let site = fixture();
    let out = build(site.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("Built 12 pages, 4 posts, 3 tags in "),
        "{}",
        stdout(&out)
    );
    let public = site.path().join("public");
    for file in [
        "index.html",
        "page/2/index.html",
        "posts/post-1/index.html",
        "posts/trip/index.html",
        "posts/trip/dot.png",
        "about/index.html",
        "tags/index.html",
        "tags/rust/index.html",
        "tags/travel/index.html",
        "atom.xml",
        "rss.xml",
        "sitemap.xml",
        "robots.txt",
        "404.html",
        "style.css",
        "highlight.css",
        "robots-note.txt",
    ] {
        assert!(public.join(file).is_file(), "missing {file}");
    }
    assert_eq!(fs::read(public.join("posts/trip/dot.png")).unwrap(), PNG);
    let trip = fs::read_to_string(public.join("posts/trip/index.html")).unwrap();
    assert!(
        trip.contains("<img src=\"/posts/trip/dot.png\" alt=\"A red dot\""),
        "{trip}"
    );
    let post = fs::read_to_string(public.join("posts/post-3/index.html")).unwrap();
    assert!(
        post.contains("class=\"hl-"),
        "code is highlighted with classes"
    );
    // Each colour scheme's rules live in their own media block, so no light rule (some are
    // more specific than their dark counterparts) applies in dark mode.
    let css = fs::read_to_string(public.join("highlight.css")).unwrap();
    assert!(
        css.starts_with("@media (prefers-color-scheme: light) {")
            && css.contains("}\n@media (prefers-color-scheme: dark) {")
            && css.matches("@media").count() == 2
            && css.trim_end().ends_with('}'),
        "{css}"
    );
    let rust_tag = fs::read_to_string(public.join("tags/rust/index.html")).unwrap();
    assert!(
        rust_tag.contains("Post 1") && rust_tag.contains("Post 3") && !rust_tag.contains("Post 2")
    );
}

#[test]
fn rebuilds_write_only_what_changed_and_remove_what_is_gone() {
    let site = fixture();
    assert!(build(site.path(), &[]).status.success());
    let public = site.path().join("public");
    let before = snapshot(&public);

    let again = build(site.path(), &[]);
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("(0 files written, 0 removed)"),
        "{}",
        stdout(&again)
    );
    assert_eq!(snapshot(&public), before);

    fs::remove_file(site.path().join("content/posts/post-2.md")).unwrap();
    let after_delete = build(site.path(), &[]);
    assert!(after_delete.status.success(), "{}", stderr(&after_delete));
    assert!(!public.join("posts/post-2").exists());
    assert!(
        !public.join("tags/web").exists(),
        "the tag only post 2 had is gone"
    );
    assert!(public.join("posts/post-1/index.html").is_file());
}

#[test]
fn drafts_only_with_the_flag() {
    let site = fixture();
    write(
        site.path(),
        "content/posts/wip.md",
        "+++\ntitle = \"WIP\"\ndate = 2024-06-01\ndraft = true\n+++\nSoon.\n",
    );
    assert!(build(site.path(), &[]).status.success());
    assert!(!site.path().join("public/posts/wip").exists());
    let out_dir = site.path().join("preview");
    let out = build(
        site.path(),
        &["--drafts", "--out", out_dir.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out_dir.join("posts/wip/index.html").is_file());
}

#[test]
fn example_site_builds_without_warnings() {
    // A copy: tests must not write keys or caches into the repository's example.
    let example = tempfile::tempdir().unwrap();
    common::copy_example_site(example.path());
    let out_dir = tempfile::tempdir().unwrap();
    let out = build(example.path(), &["--out", out_dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The first build of a fresh copy notes the key pair it generated and the warnings its
    // config.toml accepts (tables and footnotes); nothing else.
    let err = stderr(&out);
    let unexpected: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("note: generated a new key pair"))
        .filter(|l| !l.ends_with("warning(s) accepted by [[check.accept]] in config.toml"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(unexpected.is_empty(), "no warnings: {unexpected:?}");
    let bundle = out_dir.path().join("posts/harbour-at-dawn");
    assert!(bundle.join("index.html").is_file());
    assert!(bundle.join("harbour.png").is_file());
    assert!(!out_dir.path().join("posts/notes-on-a-draft").exists());
}

#[test]
fn init_makes_a_site_that_builds_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("blog");
    let site_arg = site.to_str().unwrap();
    let out = relais(&[
        "init",
        site_arg,
        "--title",
        "My \"quoted\" blog",
        "--author",
        "Zoë Q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let gitignore = fs::read_to_string(site.join(".gitignore")).unwrap();
    for ignored in ["/public/", "/relais-key.pem", "/relais.db*"] {
        assert!(gitignore.lines().any(|l| l == ignored), "{ignored}");
    }
    assert!(
        !site.join("themes").exists(),
        "the theme stays in the binary unless asked"
    );
    let built = build(&site, &[]);
    assert!(built.status.success(), "{}", stderr(&built));
    let home = fs::read_to_string(site.join("public/index.html")).unwrap();
    assert!(home.contains("My &quot;quoted&quot; blog"), "{home}");
    assert!(site.join("public/posts/hello/index.html").is_file());
    assert!(site.join("public/about/index.html").is_file());

    let again = relais(&["init", site_arg]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    let ejected = dir.path().join("ejected");
    let out = relais(&["init", ejected.to_str().unwrap(), "--eject-theme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ejected.join("themes/default/templates/base.html").is_file());
    assert!(build(&ejected, &[]).status.success());
}

/// Builds the fixture, breaks it with `breakage`, and checks that the build fails naming
/// `expected` on stderr while `public/` stays exactly as it was.
fn fails_and_keeps_public(breakage: impl FnOnce(&Path), expected: &[&str]) {
    let site = fixture();
    let first = build(site.path(), &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let public = site.path().join("public");
    let before = snapshot(&public);

    breakage(site.path());
    let out = build(site.path(), &[]);
    assert!(!out.status.success(), "the build should fail");
    let err = stderr(&out);
    for needle in expected {
        assert!(err.contains(needle), "{needle:?} not in stderr: {err}");
    }
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(snapshot(&public), before, "public/ was touched");
}

#[test]
fn malformed_front_matter() {
    fails_and_keeps_public(
        |site| {
            write(
                site,
                "content/posts/post-1.md",
                "+++\ntitle = \"Broken\ndate = 2024-01-01\n+++\n",
            )
        },
        &["error: content/posts/post-1.md:2: TOML front matter"],
    );
    fails_and_keeps_public(
        |site| {
            write(
                site,
                "content/about.md",
                "---\ntitle: About\ntitel: typo\n---\n",
            )
        },
        &["error: content/about.md:3: YAML front matter: unknown field `titel`"],
    );
    fails_and_keeps_public(
        |site| {
            write(
                site,
                "content/about.md",
                "+++\ntitle = \"About\"\n\nNo end.\n",
            )
        },
        &["error: content/about.md:1: front matter opened with `+++` is never closed"],
    );
}

#[test]
fn unknown_date_format() {
    fails_and_keeps_public(
        |site| {
            write(
                site,
                "content/posts/post-2.md",
                "+++\ntitle = \"Dated\"\ntags = []\ndate = \"May 3rd\"\n+++\n",
            )
        },
        &["error: content/posts/post-2.md:4: unknown date format \"May 3rd\""],
    );
}

#[test]
fn template_syntax_error() {
    fails_and_keeps_public(
        |site| {
            write(
                site,
                "templates/post.html",
                "{% extends \"base.html\" %}\n{% block content %}\n{% if %}\n{% endblock content %}\n",
            )
        },
        &["error: templates/post.html:3: template syntax error"],
    );
}

#[test]
fn missing_template() {
    fails_and_keeps_public(
        |site| {
            write(
                site,
                "templates/page.html",
                "{% extends \"base.html\" %}\n{% block content %}{% include \"partials/nope.html\" %}{% endblock content %}\n",
            )
        },
        &["error: templates/page.html:2: template \"partials/nope.html\" does not exist"],
    );
    fails_and_keeps_public(
        |site| {
            let config = fs::read_to_string(site.join("config.toml")).unwrap();
            write(site, "config.toml", format!("theme = \"bare\"\n{config}"));
            for name in [
                "index.html",
                "post.html",
                "page.html",
                "tags.html",
                "404.html",
            ] {
                write(site, &format!("themes/bare/templates/{name}"), "x");
            }
        },
        &["error: templates/tag.html: missing template tag.html"],
    );
}

#[test]
fn duplicate_slugs() {
    fails_and_keeps_public(
        |site| {
            write(
                site,
                "content/posts/another.md",
                "+++\ntitle = \"Another\"\ndate = 2024-01-01\nslug = \"post-1\"\n+++\n",
            )
        },
        &[
            "error: content/posts/post-1.md:1: page /posts/post-1/ is also produced by content/posts/another.md",
        ],
    );
}

#[test]
fn link_to_a_missing_image() {
    fails_and_keeps_public(
        |site| {
            write(
                site,
                "content/posts/trip/index.md",
                "---\ntitle: Trip\ndate: 2024-04-01\n---\n\nFirst.\n\n![Gone](gone.jpg)\n",
            )
        },
        &["error: content/posts/trip/index.md:8: image to missing file gone.jpg"],
    );
}

#[test]
fn every_broken_file_is_reported() {
    fails_and_keeps_public(
        |site| {
            write(site, "content/posts/post-1.md", "+++\ntitle = 1\n+++\n");
            write(
                site,
                "content/posts/post-3.md",
                "+++\ntitle = \"x\"\ndate = \"soon\"\n+++\n",
            );
        },
        &[
            "error: content/posts/post-1.md:2:",
            "error: content/posts/post-3.md:3: unknown date format",
        ],
    );
}

#[test]
fn links_to_missing_pages_and_anchors_fail_with_file_and_line() {
    let site = fixture();
    let root = site.path();
    write(
        root,
        "content/posts/links.md",
        "+++\ntitle = \"Links\"\ndate = 2024-06-01\n+++\n\n## Setup\n\n<a id=\"raw\"></a>\n\n\
         [ok](/posts/post-1/) [ok](/posts/post-1) [ok](../post-2/) [ok](#setup) [ok](#raw)\n\
         [ok](/tags/rust/) [ok](/) [ok](/robots-note.txt) [ok](/about/#about-us) [ok](#interactions)\n\
         [ok](https://elsewhere.example/nowhere/) [ok](mailto:a@b.example) Note[^n] [ok](#n)\n\n\
         [^n]: A note.\n",
    );
    write(
        root,
        "content/about.md",
        "+++\ntitle = \"About\"\n+++\n## About us\n\nAbout.\n",
    );
    let out = build(root, &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Broken: a misspelt page, an in-page anchor, another page's anchor, a relative page.
    write(
        root,
        "content/posts/links.md",
        "+++\ntitle = \"Links\"\ndate = 2024-06-01\n+++\n\n## Setup\n\n[x](/posts/helo/)\n\n\
         [y](#nosuch)\n\n[z](/about/#team)\n\n[w](../post-9/)\n",
    );
    let out = build(root, &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let file = Path::new("content/posts/links.md").display().to_string();
    for (line, what) in [
        (8, "/posts/helo/"),
        (10, "#nosuch"),
        (12, "#team"),
        (14, "/posts/post-9/"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{file}:{line}:")) && l.contains(what)),
            "line {line} {what}: {err}"
        );
    }

    // An unchanged post's link breaks when the page it points at loses the heading.
    write(
        root,
        "content/posts/links.md",
        "+++\ntitle = \"Links\"\ndate = 2024-06-01\n+++\n\n[x](/about/#about-us)\n",
    );
    assert!(build(root, &[]).status.success());
    write(
        root,
        "content/about.md",
        "+++\ntitle = \"About\"\n+++\nAbout.\n",
    );
    let out = build(root, &[]);
    assert!(
        !out.status.success() && stderr(&out).contains(&format!("{file}:6:")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn post_lists_show_the_content_warning_before_the_summary() {
    let site = fixture();
    let root = site.path();
    write(
        root,
        "content/posts/hard.md",
        "+++\ntitle = \"Hard news\"\ndate = 2024-07-01\ntags = [\"rust\"]\n\
         content_warning = \"grief\"\n+++\n\nThe sad part.\n\n<!-- more -->\n\nMore.\n",
    );
    let out = build(root, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in ["index.html", "tags/rust/index.html"] {
        let html = fs::read_to_string(root.join("public").join(page)).unwrap();
        let warning = html
            .find("<summary>Content warning: grief</summary>")
            .unwrap_or_else(|| panic!("{page} has no warning: {html}"));
        let summary = html.find("The sad part.").unwrap();
        let closed = html[summary..].find("</details>").map(|i| i + summary);
        assert!(
            warning < summary && closed.is_some(),
            "{page}: the summary is not inside the warning: {html}"
        );
        // Posts without a warning are listed as before.
        assert_eq!(
            html.matches("class=\"content-warning\"").count(),
            1,
            "{page}"
        );
    }
}

#[test]
fn future_posts_wait_for_their_date_unless_future_is_asked() {
    let site = fixture();
    let root = site.path();
    write(
        root,
        "content/posts/later.md",
        "+++\ntitle = \"From the future\"\ndate = 2999-01-01\n+++\n\nNot yet.\n",
    );
    let mentions = |root: &Path| -> Vec<PathBuf> {
        snapshot(&root.join("public"))
            .into_iter()
            .filter(|(_, bytes)| String::from_utf8_lossy(bytes).contains("later"))
            .map(|(path, _)| path)
            .collect()
    };
    let out = build(root, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!root.join("public/posts/later/index.html").exists());
    // Not on the home page, in feeds, the sitemap or the outbox either.
    assert_eq!(mentions(root), Vec::<PathBuf>::new());

    let out = build(root, &["--future"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(root.join("public/posts/later/index.html").is_file());
    let found = mentions(root);
    for expected in ["index.html", "atom.xml", "sitemap.xml"] {
        assert!(
            found.iter().any(|p| p == Path::new(expected)),
            "{expected} not in {found:?}"
        );
    }
    assert!(
        found.iter().any(|p| p.starts_with("ap")),
        "the outbox or an object names the post: {found:?}"
    );

    // Back without the flag, the post is taken down again.
    assert!(build(root, &[]).status.success());
    assert!(!root.join("public/posts/later/index.html").exists());
    assert_eq!(mentions(root), Vec::<PathBuf>::new());
}
