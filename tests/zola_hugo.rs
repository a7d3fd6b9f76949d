//! Content written for Zola and Hugo, built as-is by the real binary: front matter fields
//! keep their meaning, URLs and aliases land where those generators put them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use crate::common::{assert_success, copy_sources, relais_on, snapshot, stderr, write};

const CONFIG: &str = "title = \"Moved\"\nbase_url = \"https://moved.example\"\n\
    [[authors]]\nid = \"ada\"\nname = \"Ada L\"\n\
    [fediverse]\nusername = \"moved\"\ninbox_url = \"https://inbox.moved.example\"\n\
    [deploy]\nhost = \"netlify\"\n";

/// A Zola-shaped blog (TOML) with a Hugo-shaped post (YAML) among a few dozen plain ones.
fn site(root: &Path) {
    write(root, "config.toml", CONFIG);
    for i in 1..=24 {
        write(
            root,
            &format!("content/posts/2024-03-{i:02}-note-{i}.md"),
            format!(
                "+++\ntitle = \"Note {i}\"\n[taxonomies]\ntags = [\"notes\"]\n+++\nNote {i}.\n"
            ),
        );
    }
    write(
        root,
        "content/posts/zola.md",
        "+++\ntitle = \"Zola post\"\ndate = 2024-05-01\ndescription = \"A Zola description\"\n\
         path = \"2024/zola-post\"\naliases = [\"/old/zola/\", \"/old/zola.html\"]\n\
         authors = [\"Grace Hopper\", \"ada\"]\ntemplate = \"page.html\"\n\
         [taxonomies]\ntags = [\"rust\"]\nseries = [\"moving\"]\n\
         [extra]\nmood = \"calm\"\n+++\nBody of the Zola post.\n",
    );
    write(
        root,
        "content/posts/hugo.md",
        "---\ntitle: Hugo post\ndate: 2024-05-02\nlastmod: 2024-05-03\nurl: /blog/hugo-post/\n\
         aliases: [/old/hugo/]\ncategories: [Tech]\nkeywords: [static]\nlinkTitle: Hugo\n\
         params:\n  color: red\n---\nBody of the Hugo post.\n",
    );
    write(
        root,
        "content/about.md",
        "+++\ntitle = \"About\"\nweight = 1\n+++\nAbout.\n",
    );
    write(
        root,
        "content/colophon.md",
        "+++\ntitle = \"Colophon\"\n+++\nColophon.\n",
    );
}

fn read(public: &Path, rel: &str) -> String {
    fs::read_to_string(public.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn zola_and_hugo_front_matter_keep_their_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    site(root);
    let out = relais_on("build", root, &[]);
    assert_success(&out, "relais build");
    let public = root.join("public");

    // Dates and slugs from file names, as Zola takes them.
    let note = read(&public, "posts/note-7/index.html");
    assert!(note.contains("2024-03-07"), "{note}");
    assert!(!public.join("posts/2024-03-07-note-7").exists());

    // `path` (Zola) and `url` (Hugo) are the pages' paths; objects follow them.
    let zola = read(&public, "2024/zola-post/index.html");
    assert!(zola.contains("A Zola description"), "meta description");
    assert!(read(&public, "blog/hugo-post/index.html").contains("Body of the Hugo post"));
    let outbox = fs::read_dir(public.join("ap")).unwrap().count();
    assert!(outbox > 0);

    // Aliases: a redirect page where Zola/Hugo write one, and a Netlify 301.
    for (alias, target) in [
        (
            "old/zola/index.html",
            "https://moved.example/2024/zola-post/",
        ),
        ("old/zola.html", "https://moved.example/2024/zola-post/"),
        (
            "old/hugo/index.html",
            "https://moved.example/blog/hugo-post/",
        ),
    ] {
        let page = read(&public, alias);
        assert!(
            page.contains(&format!("<link rel=\"canonical\" href=\"{target}\">")),
            "{alias}: {page}"
        );
        assert!(
            page.contains(&format!("content=\"0; url={target}\"")),
            "{page}"
        );
    }
    let redirects = read(&public, "_redirects");
    assert!(
        redirects.contains("/old/zola/ /2024/zola-post/ 301!\n"),
        "{redirects}"
    );
    assert!(redirects.contains("/old/hugo/ /blog/hugo-post/ 301!\n"));

    // Kept generator fields: one note per field, not per file.
    let err = stderr(&out);
    assert_eq!(
        err.matches("`template` is a Zola/Hugo field").count(),
        1,
        "{err}"
    );
    assert_eq!(
        err.matches("`keywords` is a Zola/Hugo field").count(),
        1,
        "{err}"
    );
    assert!(err.contains("content/posts/hugo.md: `linkTitle`"), "{err}");

    // A field no generator documents still fails with file:line.
    write(
        root,
        "content/posts/typo.md",
        "+++\ntitle = \"Typo\"\ndate = 2024-01-01\ndraftt = true\n+++\n",
    );
    let out = relais_on("build", root, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("content/posts/typo.md:4: TOML front matter: unknown field `draftt`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn templates_see_extra_taxonomies_and_free_author_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    site(root);
    write(
        root,
        "templates/post.html",
        "{{ page.extra.mood | default(value='-') }}|{{ page.extra.color | default(value='-') }}|\
         {{ page.author_names | join(sep=',') }}|{% for k, v in page.taxonomies %}{{ k }}={{ v | join(sep=',') }};{% endfor %}|{{ page.updated_iso }}\n",
    );
    assert_success(&relais_on("build", root, &[]), "relais build");
    let public = root.join("public");
    assert_eq!(
        read(&public, "2024/zola-post/index.html"),
        "calm|-|Grace Hopper,Ada L|series=moving;|\n"
    );
    assert_eq!(
        read(&public, "blog/hugo-post/index.html"),
        "-|red||categories=Tech;|2024-05-03T00:00:00+00:00\n"
    );
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// What the fixture's marker templates wrote: single pages, list pages (with the posts they
/// list, for relais) and alias pages (with their targets), by site path.
#[derive(Debug, Default)]
struct Outputs {
    singles: BTreeSet<String>,
    lists: BTreeMap<String, String>,
    aliases: BTreeMap<String, String>,
}

fn outputs(public: &Path) -> Outputs {
    let mut out = Outputs::default();
    for (rel, bytes) in snapshot(public) {
        let text = String::from_utf8_lossy(&bytes);
        let path = format!("/{}", rel.display()).replace("index.html", "");
        if text.starts_with("SINGLE") {
            out.singles.insert(path);
        } else if let Some(list) = text.strip_prefix("LIST ") {
            out.lists.insert(path, list.trim().to_string());
        } else if text.contains("http-equiv=\"refresh\"") {
            let target = text
                .split("rel=\"canonical\" href=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default();
            out.aliases.insert(path, target.to_string());
        }
    }
    out
}

/// Whether Hugo can run here; a skip with a message, or a failure when CI requires it.
fn hugo_available() -> bool {
    let problem = match Command::new("hugo").arg("version").output() {
        Ok(out) if out.status.success() => return true,
        Ok(out) => format!("`hugo version` failed: {}", stderr(&out)),
        Err(e) => format!("`hugo` not found: {e}"),
    };
    if std::env::var_os("RELAIS_REQUIRE_GENERATORS").is_some() {
        panic!("RELAIS_REQUIRE_GENERATORS is set but Hugo cannot run: {problem}");
    }
    eprintln!("SKIPPED zola_hugo/hugo: {problem}; install hugo (.ci/run does) to run it");
    false
}

#[test]
fn hugo_layout_builds_to_the_paths_hugo_writes() {
    if !hugo_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("relais"), dir.path().join("hugo"));
    copy_sources(&fixture("hugo-blog"), &ours);
    copy_sources(&fixture("hugo-blog"), &theirs);
    assert_success(&relais_on("build", &ours, &[]), "relais build");
    let hugo = Command::new("hugo")
        .args(["--quiet", "--config", "hugo.toml", "-d", "public", "-s"])
        .arg(&theirs)
        .output()
        .expect("run hugo");
    assert_success(&hugo, "hugo");
    let (ours, theirs) = (
        outputs(&ours.join("public")),
        outputs(&theirs.join("public")),
    );

    assert!(ours.singles.len() >= 30, "{:?}", ours.singles);
    assert_eq!(ours.singles, theirs.singles, "post and page paths");
    // Hugo also lists the home page and its own taxonomy pages; sections are compared.
    let hugo_sections: BTreeSet<&String> = theirs
        .lists
        .keys()
        .filter(|p| *p != "/" && !p.starts_with("/tags/") && !p.starts_with("/categories/"))
        .collect();
    assert_eq!(
        ours.lists.keys().collect::<BTreeSet<_>>(),
        hugo_sections,
        "section list pages"
    );
    assert_eq!(
        ours.aliases, theirs.aliases,
        "alias pages and their targets"
    );
    assert_eq!(ours.aliases.len(), 4);
}

#[test]
fn zola_layout_follows_zolas_rules() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    copy_sources(&fixture("zola-blog"), &site);
    let out = relais_on("build", &site, &[]);
    assert_success(&out, "relais build");
    let got = outputs(&site.join("public"));

    // Zola: a page's path is its section's path and its slug, the file name without a
    // leading date (`2024-01-05-note-5.md`, `2024-03-09_underscored/`), unless `path` says.
    let mut singles: BTreeSet<String> = (1..=18).map(|i| format!("/posts/note-{i}/")).collect();
    singles.extend(
        [
            "/about/",
            "/2024/02/moved/",
            "/posts/inside-rust/topic-1/",
            "/posts/inside-rust/topic-2/",
            "/posts/inside-rust/topic-3/",
            "/posts/inside-rust/topic-4/",
            "/posts/inside-rust/underscored/",
            "/posts/drafts-folder/kept/",
        ]
        .map(String::from),
    );
    assert_eq!(got.singles, singles);

    // `sort_by = "weight"`: lightest first, unweighted last.
    assert_eq!(
        got.lists["/posts/inside-rust/"],
        "Inside Rust /posts/inside-rust/topic-4/ /posts/inside-rust/topic-3/ \
         /posts/inside-rust/topic-2/ /posts/inside-rust/topic-1/ /posts/inside-rust/underscored/"
    );
    // `paginate_by = 5` on `/posts/`, pages at `page/N/`; the transparent inside-rust posts
    // are listed there by date; `render = false` has no list page.
    let posts: Vec<&String> = got.lists.keys().collect();
    assert_eq!(
        posts,
        [
            "/posts/",
            "/posts/inside-rust/",
            "/posts/page/2/",
            "/posts/page/3/",
            "/posts/page/4/",
            "/posts/page/5/"
        ]
    );
    assert_eq!(
        got.lists["/posts/"],
        "Posts /posts/inside-rust/underscored/ /posts/inside-rust/topic-4/ \
         /posts/inside-rust/topic-3/ /posts/inside-rust/topic-2/ /posts/inside-rust/topic-1/"
    );
    assert!(got.lists["/posts/page/2/"].starts_with("Posts /2024/02/moved/ /posts/note-18/"));

    let sitemap = fs::read_to_string(site.join("public/sitemap.xml")).unwrap();
    assert!(sitemap.contains("<loc>https://moved.example/posts/inside-rust/</loc><lastmod>2024-03-09T00:00:00+00:00</lastmod>"), "{sitemap}");
    assert!(!sitemap.contains("drafts-folder/</loc>"), "{sitemap}");

    // Zola's aliases: `old/moved` is a folder, `…/moved.html` a file, both from the root.
    let to = |p: &str| format!("https://moved.example{p}");
    assert_eq!(
        got.aliases,
        BTreeMap::from([
            ("/old/moved.html".to_string(), to("/2024/02/moved/")),
            ("/old/moved/".to_string(), to("/2024/02/moved/")),
            ("/who/".to_string(), to("/about/")),
        ])
    );
}

/// A named edit of a site's sources.
type Edit<'a> = (&'a str, &'a dyn Fn(&Path));

/// Edits to sections, weights and aliases: each incremental build equals a cold build.
#[test]
fn section_edits_build_incrementally_like_cold_builds() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    copy_sources(&fixture("zola-blog"), &site);
    assert_success(&relais_on("build", &site, &[]), "first build");
    let edits: [Edit; 5] = [
        ("pagination", &|s| {
            let p = s.join("content/posts/_index.md");
            let text = fs::read_to_string(&p)
                .unwrap()
                .replace("paginate_by = 5", "paginate_by = 4");
            fs::write(p, text).unwrap();
        }),
        ("transparent off", &|s| {
            let p = s.join("content/posts/inside-rust/_index.md");
            let text = fs::read_to_string(&p)
                .unwrap()
                .replace("transparent = true", "transparent = false");
            fs::write(p, text).unwrap();
        }),
        ("weight", &|s| {
            let p = s.join("content/posts/inside-rust/topic-1.md");
            let text = fs::read_to_string(&p)
                .unwrap()
                .replace("weight = 4", "weight = 0");
            fs::write(p, text).unwrap();
        }),
        ("alias", &|s| {
            let p = s.join("content/posts/moved.md");
            let text = fs::read_to_string(&p)
                .unwrap()
                .replace("\"old/moved\", ", "");
            fs::write(p, text).unwrap();
        }),
        ("new section", &|s| {
            write(
                s,
                "content/posts/fresh/_index.md",
                "+++\ntitle = \"Fresh\"\n+++\n",
            );
            write(
                s,
                "content/posts/fresh/a.md",
                "+++\ntitle = \"A\"\ndate = 2025-01-01\n+++\nA.\n",
            );
        }),
    ];
    for (i, (what, edit)) in edits.iter().enumerate() {
        let before = snapshot(&site.join("public"));
        edit(&site);
        assert_success(&relais_on("build", &site, &[]), what);
        let cold = dir.path().join(format!("cold-{i}"));
        copy_sources(&site, &cold);
        assert_success(&relais_on("build", &cold, &[]), what);
        let incremental = snapshot(&site.join("public"));
        assert_ne!(before, incremental, "{what}: nothing changed");
        assert_eq!(
            incremental.keys().collect::<Vec<_>>(),
            snapshot(&cold.join("public")).keys().collect::<Vec<_>>(),
            "{what}: files"
        );
        assert!(
            incremental == snapshot(&cold.join("public")),
            "{what}: bytes differ"
        );
    }
}

/// The alias rules of `_redirects` through Netlify's own parser and redirect engine
/// (`tests/hosts/netlify`): each alias answers 301 to its page, forced over its own
/// redirect page; the page itself is still served as a file.
#[test]
fn netlify_engine_redirects_aliases() {
    let node = Command::new("node").arg("--version").output();
    let problem = match &node {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("`node --version` failed: {}", stderr(out))),
        Err(e) => Some(format!("`node` not found: {e}")),
    };
    if let Some(problem) = problem {
        if std::env::var_os("RELAIS_REQUIRE_NETLIFY").is_some() {
            panic!("RELAIS_REQUIRE_NETLIFY is set but Netlify's engines cannot run: {problem}");
        }
        eprintln!("SKIPPED zola_hugo/netlify: {problem}");
        return;
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hosts/netlify");
    common::npm_ci(&tools);
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    copy_sources(&fixture("zola-blog"), &site);
    assert_success(&relais_on("build", &site, &[]), "relais build");
    let public = site.join("public");
    let base = "https://moved.example";
    let cases = [
        ("/old/moved/", Some("/2024/02/moved/")),
        ("/old/moved", Some("/2024/02/moved/")),
        ("/old/moved.html", Some("/2024/02/moved/")),
        ("/who/", Some("/about/")),
        ("/2024/02/moved/", None),
    ];
    let output = Command::new("node")
        .arg("evaluate.mjs")
        .arg(&public)
        .args(cases.iter().map(|(path, _)| format!("{base}{path}")))
        .current_dir(&tools)
        .output()
        .expect("run node evaluate.mjs");
    assert_success(&output, "evaluate.mjs");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["redirectErrors"],
        serde_json::json!([]),
        "{report:#}"
    );
    for ((path, target), result) in cases.iter().zip(report["results"].as_array().unwrap()) {
        match target {
            Some(target) => {
                assert_eq!(result["status"], 301, "{path}: {result:#}");
                assert_eq!(result["to"], *target, "{path}: {result:#}");
            }
            None => {
                assert_eq!(result["status"], 200, "{path}: {result:#}");
                assert_eq!(
                    result["rule"],
                    serde_json::Value::Null,
                    "{path}: {result:#}"
                );
            }
        }
    }
}

#[test]
fn import_converts_the_configuration_and_reports_shortcodes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    // Hugo: hugo.toml stays, relais's config.toml is written from it.
    let hugo = root.join("hugo");
    copy_sources(&fixture("hugo-blog"), &hugo);
    fs::remove_file(hugo.join("config.toml")).unwrap();
    write(
        &hugo,
        "content/posts/shorts.md",
        "---\ntitle: Shorts\ndate: 2024-04-01\naliases:\n  - shorts-old\n  - /shorts-abs/\n---\n\
         Intro.\n\n{{< youtube id=\"x\" >}}\n\n```\n{{< not-a-call >}}\n```\n",
    );
    let out = common::relais(&["import", "hugo", hugo.to_str().unwrap()]);
    assert_success(&out, "relais import hugo");
    let config = fs::read_to_string(hugo.join("config.toml")).unwrap();
    assert!(config.contains("title = \"Moved Notes\""), "{config}");
    assert!(
        config.contains("base_url = \"https://moved.example\""),
        "{config}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("content/posts/shorts.md:10: shortcode `youtube` is not rendered"),
        "{err}"
    );
    assert!(!err.contains("not-a-call"), "{err}");
    assert!(
        err.contains("content/posts/shorts.md:5: alias \"shorts-old\" is relative"),
        "{err}"
    );
    assert!(!err.contains("shorts-abs"), "{err}");
    assert_success(&relais_on("build", &hugo, &[]), "build after import");
    // A second import finds a relais site and changes nothing.
    let again = common::relais(&["import", "hugo", hugo.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already a relais site"));
    assert_eq!(
        fs::read_to_string(hugo.join("config.toml")).unwrap(),
        config
    );

    // Zola: its config.toml is kept as config.zola.toml.
    let zola = root.join("zola");
    copy_sources(&fixture("zola-blog"), &zola);
    write(
        &zola,
        "config.toml",
        "base_url = \"https://zola.example/\"\ntitle = \"Zola Notes\"\n\
         description = \"Notes, moved\"\ndefault_language = \"en\"\n\
         [markdown]\nhighlight_code = true\n[extra]\nauthor = \"x\"\n",
    );
    write(
        &zola,
        "content/posts/gist.md",
        "+++\ntitle = \"Gist\"\ndate = 2024-04-02\n+++\n{{ gist(url=\"https://gist.example/1\") }}\n",
    );
    let out = common::relais(&["import", "zola", zola.to_str().unwrap()]);
    assert_success(&out, "relais import zola");
    assert!(zola.join("config.zola.toml").is_file());
    let config = fs::read_to_string(zola.join("config.toml")).unwrap();
    assert!(
        config.contains("description = \"Notes, moved\""),
        "{config}"
    );
    assert!(
        stderr(&out).contains("content/posts/gist.md:5: shortcode `gist`"),
        "{}",
        stderr(&out)
    );
    assert_success(&relais_on("build", &zola, &[]), "build after import");
    let again = common::relais(&["import", "zola", zola.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already a relais site"),
        "{}",
        stderr(&again)
    );
}
