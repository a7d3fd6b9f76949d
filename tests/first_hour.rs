//! A new blogger's first hour, with the real binary on sites made in temp dirs: `relais
//! new`, untitled notes, tables and footnotes on Mastodon, image sizes.

use std::fs;
use std::path::Path;

use crate::common;

use crate::common::{assert_success, read_json, relais, relais_on, stderr, stdout};

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

/// A valid 3×2 PNG (RGBA, zlib-compressed zero rows).
fn png_3x2() -> Vec<u8> {
    fn crc(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for b in bytes {
            c ^= u32::from(*b);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc(&body).to_be_bytes());
    }
    fn adler(bytes: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for x in bytes {
            a = (a + u32::from(*x)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }
    let raw = vec![0u8; 2 * (1 + 3 * 4)];
    // A stored (uncompressed) deflate block.
    let mut zlib = vec![0x78, 0x01, 0x01];
    zlib.extend((raw.len() as u16).to_le_bytes());
    zlib.extend((!(raw.len() as u16)).to_le_bytes());
    zlib.extend(&raw);
    zlib.extend(adler(&raw).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(3u32.to_be_bytes());
    ihdr.extend(2u32.to_be_bytes());
    ihdr.extend([8, 6, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &zlib);
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn images_carry_their_size_and_load_lazily() {
    let dir = tempfile::tempdir().unwrap();
    let site = init(dir.path());
    let bundle = site.join("content/posts/pics");
    fs::create_dir_all(&bundle).unwrap();
    fs::write(bundle.join("dot.png"), png_3x2()).unwrap();
    fs::write(bundle.join("broken.png"), b"not a picture").unwrap();
    fs::write(
        bundle.join("index.md"),
        "+++\ntitle = \"Pics\"\ndate = 2024-01-01\nimage = \"dot.png\"\nimage_alt = \"Lead dot\"\n+++\n![A dot](dot.png)\n\n![Broken](broken.png)\n\n![Remote](https://images.test/r.png)\n",
    )
    .unwrap();
    let built = relais_on("build", &site, &[]);
    assert_success(&built, "relais build");
    let page = fs::read_to_string(site.join("public/posts/pics/index.html")).unwrap();
    for img in [
        "<img src=\"/posts/pics/dot.png\" alt=\"A dot\" width=\"3\" height=\"2\" loading=\"lazy\" />",
        "<img src=\"/posts/pics/broken.png\" alt=\"Broken\" loading=\"lazy\" />",
        "<img src=\"https://images.test/r.png\" alt=\"Remote\" loading=\"lazy\" />",
    ] {
        assert!(page.contains(img), "{img} in\n{page}");
    }
    // The lead image from the front matter gets its size too.
    assert!(
        page.contains(
            "<img src=\"/posts/pics/dot.png\" alt=\"Lead dot\" width=\"3\" height=\"2\">"
        ),
        "{page}"
    );
}

#[test]
fn tables_and_footnotes_reach_mastodon_as_text_and_check_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path();
    common::copy_example_site(site);
    assert_success(
        &relais_on("check", site, &[]),
        "relais check on the example",
    );
    common::write(
        site,
        "content/posts/tea.md",
        "+++\ntitle = \"Tea\"\ndate = 2025-04-01\n+++\nSteep it well[^time].\n\n[^time]: Three minutes, no more.\n\n| Tea | Minutes |\n|---|--:|\n| Green | 2 |\n| Black | 4 |\n\nEnjoy.\n",
    );
    let out = relais_on("check", site, &[]);
    assert!(!out.status.success(), "{}", stderr(&out));
    for rule in ["[note-table]", "[note-footnote]"] {
        assert!(
            stderr(&out)
                .lines()
                .any(|l| l.contains("content/posts/tea.md") && l.ends_with(rule)),
            "{rule}: {}",
            stderr(&out)
        );
    }
    let config = site.join("config.toml");
    let mut text = fs::read_to_string(&config).unwrap();
    for rule in ["note-table", "note-footnote"] {
        text.push_str(&format!(
            "\n[[check.accept]]\nrule = \"{rule}\"\nfile = \"content/posts/tea.md\"\n"
        ));
    }
    fs::write(&config, text).unwrap();
    assert_success(&relais_on("check", site, &[]), "relais check, accepted");

    assert_success(&relais_on("build", site, &[]), "relais build");
    let object = read_json(&site.join("public/ap/posts/tea.json"));
    let content = object["content"].as_str().unwrap();
    let page = format!("{}/posts/tea/", common::BASE_URL);
    let body = format!(
        "<p>Steep it well<a href=\"{page}#time\">[1]</a>.</p>\n\
         <p><strong>Tea</strong> | <strong>Minutes</strong><br>Green | 2<br>Black | 4</p>\n\
         <p>Enjoy.</p><p>[1] Three minutes, no more.</p>"
    );
    assert!(content.contains(&body), "{content}");
    assert!(
        !content.contains("<table") && !content.contains("<sup"),
        "{content}"
    );
}
