//! A new blogger's first hour, with the real binary on sites made in temp dirs: `relais
//! new`, untitled notes, tables and footnotes on Mastodon, image sizes.

use std::fs;
use std::path::Path;

mod common;

use common::{assert_success, read_json, relais, relais_on, stderr, stdout};

fn init(dir: &Path) -> std::path::PathBuf {
    let site = dir.join("blog");
    assert_success(
        &relais(&[
            "init",
            site.to_str().unwrap(),
            "--base-url",
            "https://notes.test",
        ]),
        "relais init",
    );
    site
}

#[test]
fn new_writes_posts_and_notes_and_a_note_federates_without_a_title() {
    let dir = tempfile::tempdir().unwrap();
    let site = init(dir.path());

    let made = relais_on("new", &site, &["post", "Walking to Lisbon"]);
    assert_success(&made, "relais new post");
    let post = site.join("content/posts/walking-to-lisbon.md");
    assert_eq!(stdout(&made).trim(), post.display().to_string());
    let text = fs::read_to_string(&post).unwrap();
    assert!(text.contains("title = \"Walking to Lisbon\""), "{text}");
    let today = chrono::Local::now().format("date = %Y-%m-%d").to_string();
    assert!(text.contains(&today), "{text}");

    fs::write(&post, "keep me").unwrap();
    let again = relais_on("new", &site, &["post", "Walking to Lisbon"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(fs::read_to_string(&post).unwrap(), "keep me");
    fs::remove_file(&post).unwrap();

    let made = relais_on("new", &site, &["note"]);
    assert_success(&made, "relais new note");
    let note = std::path::PathBuf::from(stdout(&made).trim());
    let slug = note.file_stem().unwrap().to_str().unwrap().to_string();
    assert!(
        slug.len() == 15 && slug.starts_with(&chrono::Local::now().format("%Y-").to_string()),
        "{slug}"
    );
    let front = fs::read_to_string(&note).unwrap();
    let front = front.split("+++").nth(1).unwrap();
    fs::write(
        &note,
        format!("+++{front}+++\nJust planted the tomatoes, three weeks late as every year, and the neighbours laughed.\n"),
    )
    .unwrap();
    assert_success(&relais_on("build", &site, &[]), "relais build");

    let public = site.join("public");
    let object = read_json(&public.join(format!("ap/posts/{slug}.json")));
    assert_eq!(object["type"], "Note");
    assert!(object.get("name").is_none(), "{object}");
    let content = object["content"].as_str().unwrap();
    assert!(
        content.starts_with("<p>Just planted the tomatoes"),
        "{content}"
    );
    assert!(!content.contains("<strong>"), "{content}");

    let page = fs::read_to_string(public.join(format!("posts/{slug}/index.html"))).unwrap();
    let title = "Just planted the tomatoes, three weeks late as every year,…";
    assert!(
        page.contains(&format!("<title>{title} · ")),
        "{}",
        &page[..page.len().min(600)]
    );
    assert!(!page.contains("class=\"p-name\""), "a note has no name");
    let home = fs::read_to_string(public.join("index.html")).unwrap();
    assert!(
        home.contains(title),
        "the list names the note by its first words"
    );
    let atom = fs::read_to_string(public.join("atom.xml")).unwrap();
    assert!(atom.contains(title), "{atom}");
}
