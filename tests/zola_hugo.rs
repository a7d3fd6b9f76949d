//! Content written for Zola and Hugo, built as-is by the real binary: front matter fields
//! keep their meaning, URLs and aliases land where those generators put them.

use std::fs;
use std::path::Path;

mod common;
use common::{assert_success, relais_on, stderr, write};

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
