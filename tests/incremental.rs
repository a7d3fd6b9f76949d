//! Incremental builds are byte-identical to cold builds: a seeded random sequence of post
//! edits, additions, deletions and renames (plus a template edit, a config edit and a static
//! file), each followed by `relais build` on the same site and a cold build of a copy of its
//! sources in a fresh folder; the two output folders must hold the same files and bytes.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{assert_success, copy_sources, relais_on, snapshot, stdout, walk, write};

/// xorshift64*: a fixed sequence without depending on a random crate's stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TAGS: &[&str] = &["rust", "web", "Bread", "notes", "travel"];

fn post_text(rng: &mut Rng, title: &str) -> String {
    let day = 1 + rng.below(28);
    let month = 1 + rng.below(12);
    let tags: Vec<String> = (0..1 + rng.below(3))
        .map(|_| format!("{:?}", TAGS[rng.below(TAGS.len())]))
        .collect();
    let mut body = String::new();
    for p in 0..1 + rng.below(4) {
        body.push_str(&format!(
            "Paragraph {p} of {title}, number {}.\n\n",
            rng.next() % 1000
        ));
        if p == 0 && rng.below(2) == 0 {
            body.push_str("<!-- more -->\n\n");
        }
    }
    if rng.below(2) == 0 {
        body.push_str("```rust\nfn main() {}\n```\n");
    }
    format!(
        "+++\ntitle = \"{title}\"\ndate = 2023-{month:02}-{day:02}\ntags = [{}]\n+++\n\n{body}",
        tags.join(", ")
    )
}

fn posts(site: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(site.join("content/posts"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    names
}

#[test]
fn incremental_builds_equal_cold_builds() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let config = "title = \"Incremental\"\nbase_url = \"https://inc.example\"\npaginate_by = 3\n\
                  [[authors]]\nid = \"ann\"\nname = \"Ann\"\n\
                  [fediverse]\nusername = \"inc\"\noutbox_page_size = 4\n\
                  inbox_url = \"https://inbox.inc.example\"\n";
    write(&site, "config.toml", config);
    write(
        &site,
        "content/about.md",
        "+++\ntitle = \"About\"\n+++\nAbout.\n",
    );
    // The default theme shows no neighbours: this one does, and the site's tags.
    write(
        &site,
        "templates/post.html",
        "<h1>{{ post.title }}</h1>{{ post.content | safe }}\
         {% if post.newer %}<a href=\"{{ post.newer.path }}\">{{ post.newer.title }}</a>{% endif %}\
         {% if post.older %}<a href=\"{{ post.older.path }}\">{{ post.older.title }}: {{ post.older.description }}</a>{% endif %}\
         {% for t in site.tags %}{{ t.name }} {{ t.count }}{% endfor %}",
    );
    // A lasting warning, which every later build must repeat.
    write(
        &site,
        "content/posts/pic.md",
        "+++\ntitle = \"Picture\"\ndate = 2023-06-01\n+++\n\n![](https://img.example/cat.png)\n",
    );
    // Long posts, whose edits past the text lists show are patched without the site: one
    // in the feeds, one far down the outbox.
    for (name, date) in [("long-new", "2024-05-01"), ("long-old", "2020-01-01")] {
        write(
            &site,
            &format!("content/posts/{name}.md"),
            format!(
                "+++\ntitle = \"{name}\"\ndate = {date}\ntags = [\"rust\"]\n+++\n\n{}\n",
                "A first paragraph long enough for every list. ".repeat(12)
            ),
        );
    }
    let mut next = 0;
    for _ in 0..12 {
        let text = post_text(&mut rng, &format!("Post {next}"));
        write(&site, &format!("content/posts/p{next:03}.md"), &text);
        next += 1;
    }
    assert_success(&relais_on("build", &site, &[]), "first build");

    let mut kinds_seen = [0usize; 10];
    let mut patched = 0;
    for step in 0..30 {
        let names = posts(&site);
        let kind = match step {
            13 => 6,
            27 => 7,
            23 => 8,
            3 | 9 | 16 | 20 | 24 | 29 => 9,
            _ => rng.below(6),
        };
        kinds_seen[kind] += 1;
        let pick = |rng: &mut Rng| names[rng.below(names.len())].clone();
        match kind {
            // Body edit, keeping the front matter.
            0 => {
                let name = pick(&mut rng);
                let path = site.join("content/posts").join(&name);
                let mut text = fs::read_to_string(&path).unwrap();
                text.push_str(&format!("\nEdited at step {step}.\n"));
                fs::write(path, text).unwrap();
            }
            // Rewrite: new title, date, tags.
            1 => {
                let name = pick(&mut rng);
                let text = post_text(&mut rng, &format!("Retitled {step}"));
                write(&site, &format!("content/posts/{name}"), &text);
            }
            2 => {
                let text = post_text(&mut rng, &format!("Post {next}"));
                write(&site, &format!("content/posts/p{next:03}.md"), &text);
                next += 1;
            }
            3 if names.len() > 3 => {
                fs::remove_file(site.join("content/posts").join(pick(&mut rng))).unwrap();
            }
            4 | 3 => {
                let name = pick(&mut rng);
                fs::rename(
                    site.join("content/posts").join(&name),
                    site.join("content/posts").join(format!("r{step:03}-{name}")),
                )
                .unwrap();
            }
            // Touch without change, then a same-size edit.
            5 => {
                let name = pick(&mut rng);
                let path = site.join("content/posts").join(&name);
                let text = fs::read_to_string(&path).unwrap();
                fs::write(&path, &text).unwrap();
                fs::write(&path, text.replacen("Paragraph", "Qaragraph", 1)).unwrap();
            }
            6 => write(
                &site,
                "templates/tag.html",
                "<h1>{{ tag.name }} ({{ tag.count }})</h1>{% for p in posts %}<a href=\"{{ p.path }}\">{{ p.title }}</a>{% endfor %}",
            ),
            7 => write(
                &site,
                "config.toml",
                config.replace("Incremental", "Renamed").replace("= 3", "= 2"),
            ),
            // A long post's body edited past what lists show, or touched unchanged.
            9 => {
                // Renames and deletions may have taken them: any name still holding one.
                let long: Vec<&String> = names.iter().filter(|n| n.contains("long-")).collect();
                let name = match long.len() {
                    0 => "long-again.md".to_string(),
                    n => long[rng.below(n)].clone(),
                };
                let path = site.join("content/posts").join(&name);
                if !path.exists() {
                    fs::write(
                        &path,
                        format!(
                            "+++\ntitle = \"again\"\ndate = 2024-06-01\n+++\n\n{}\n",
                            "Long again, for every list. ".repeat(20)
                        ),
                    )
                    .unwrap();
                }
                let mut text = fs::read_to_string(&path).unwrap();
                if rng.below(4) > 0 {
                    text.push_str(&format!("\nLong edit at step {step}.\n"));
                }
                fs::write(path, text).unwrap();
            }
            _ => write(&site, "static/notes.txt", format!("static at step {step}")),
        }
        let (out, was_patched) = timed_build(&site, &format!("incremental build at step {step}"));
        patched += usize::from(was_patched);

        same_as_cold(
            &site,
            &dir.path().join("fresh"),
            &format!("step {step} (kind {kind})"),
            &out,
        );
    }
    assert!(kinds_seen[..6].iter().all(|&n| n > 0), "{kinds_seen:?}");
    // Most long-post edits come right after a build that had to parse them (their times
    // too close to trust) or after a list change, but some are patches.
    assert!(patched >= 2, "{patched} builds patched");

    // Nothing changed: nothing written.
    let again = relais_on("build", &site, &[]);
    assert!(
        stdout(&again).contains("(0 files written, 0 removed)"),
        "{}",
        stdout(&again)
    );

    // Sources old enough to be trusted by size and time (the build that finds nothing
    // changed skips the site): a template, a static file and the config still count.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_success(&relais_on("build", &site, &[]), "build");
    for (what, rel, text) in [
        (
            "template",
            "templates/tags.html",
            "{% for t in tags %}{{ t.name }}{% endfor %}",
        ),
        ("static file", "static/notes.txt", "a new static text"),
        (
            "config",
            "config.toml",
            &config.replace("Incremental", "Third title"),
        ),
    ] {
        write(&site, rel, text);
        let out = relais_on("build", &site, &[]);
        assert_success(&out, what);
        same_as_cold(&site, &dir.path().join("fresh"), what, &out);
    }
}

/// Builds a copy of the sources of `site` in `fresh` and compares the output folders.
fn same_as_cold(site: &Path, fresh: &Path, label: &str, out: &std::process::Output) {
    copy_sources(site, fresh);
    let cold_out = relais_on("build", fresh, &[]);
    assert_success(&cold_out, "cold build");
    // Same warnings, but for the one about edits, which compares with the last build.
    let warnings = |o: &std::process::Output| -> Vec<String> {
        let mut lines: Vec<String> = common::stderr(o)
            .lines()
            .filter(|l| l.starts_with("warning:") && !l.contains("changed but its `updated`"))
            .map(String::from)
            .collect();
        lines.sort();
        lines
    };
    let expected = warnings(&cold_out);
    assert!(
        expected.iter().any(|w| w.contains("no alt text")),
        "{expected:?}"
    );
    assert_eq!(warnings(out), expected, "{label}: warnings");
    let incremental = snapshot(&site.join("public"));
    let cold = snapshot(&fresh.join("public"));
    let a: Vec<&PathBuf> = incremental.keys().collect();
    let b: Vec<&PathBuf> = cold.keys().collect();
    assert_eq!(a, b, "{label}: different files");
    for (path, bytes) in &incremental {
        assert!(
            bytes == &cold[path],
            "{label}: {} differs\n{}",
            path.display(),
            stdout(out)
        );
    }
    fs::remove_dir_all(fresh).unwrap();
}

/// After one post's body is edited, the incremental build rewrites only that post's object
/// and the one outbox page holding it among the federation documents, and `relais publish`
/// plans exactly one Update.
#[test]
fn one_edit_is_one_update() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path();
    write(
        site,
        "config.toml",
        "title = \"Fed\"\nbase_url = \"https://fed.example\"\n\
         [[authors]]\nid = \"ann\"\nname = \"Ann\"\n\
         [fediverse]\nusername = \"fed\"\noutbox_page_size = 4\n\
         inbox_url = \"https://inbox.fed.example\"\n",
    );
    let today = chrono::Utc::now().date_naive();
    for i in 0..14 {
        let date = today - chrono::Duration::days(i);
        write(
            site,
            &format!("content/posts/p{i:02}.md"),
            format!("+++\ntitle = \"Post {i}\"\ndate = {date}\ntags = [\"t{}\"]\n+++\n\nBody of post {i}, long enough to make a Note.\n", i % 3),
        );
    }
    assert_success(&relais_on("build", site, &[]), "first build");
    let first = relais_on("publish", site, &[]);
    assert_success(&first, "first publish");
    assert!(
        stdout(&first).contains("Queued 7 new, 0 edited, 0 deleted post(s)"),
        "{}",
        stdout(&first)
    );
    let before = snapshot(&site.join("public/ap"));

    let edited = site.join("content/posts/p09.md");
    let text = fs::read_to_string(&edited).unwrap();
    fs::write(
        &edited,
        text.replace("Body of post 9", "Corrected body of post 9"),
    )
    .unwrap();
    assert_success(&relais_on("build", site, &[]), "incremental build");
    let after = snapshot(&site.join("public/ap"));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    let changed: Vec<String> = after
        .iter()
        .filter(|(path, bytes)| before[*path] != **bytes)
        .map(|(path, _)| path.display().to_string())
        .collect();
    // Newest first, four a page: post 9 is the second item of page 3.
    assert_eq!(
        changed,
        vec!["posts/p09.json", "users/fed/outbox/page-3.json"],
        "federation documents rewritten"
    );

    let second = relais_on("publish", site, &[]);
    assert_success(&second, "second publish");
    assert!(
        stdout(&second).contains("Queued 0 new, 1 edited, 0 deleted post(s)"),
        "{}",
        stdout(&second)
    );
}

/// A build into another folder keeps its own index (outside that folder too), removes
/// what a deleted post leaves, and nothing but the site is served from either folder.
#[test]
fn custom_output_folder_and_no_manifest_in_the_site() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let out = dir.path().join("elsewhere");
    write(
        &site,
        "config.toml",
        "title = \"Out\"\nbase_url = \"https://out.example\"\n",
    );
    for i in 0..3 {
        write(
            &site,
            &format!("content/posts/p{i}.md"),
            format!(
                "+++\ntitle = \"P{i}\"\ndate = 2024-01-0{}\n+++\nBody {i}.\n",
                i + 1
            ),
        );
    }
    let out_arg = out.to_str().unwrap();
    assert_success(&relais_on("build", &site, &[]), "build into public");
    assert_success(&relais_on("build", &site, &["--out", out_arg]), "build");
    let again = relais_on("build", &site, &["--out", out_arg]);
    assert!(
        stdout(&again).contains("(0 files written, 0 removed)"),
        "{}",
        stdout(&again)
    );
    fs::remove_file(site.join("content/posts/p1.md")).unwrap();
    let after = relais_on("build", &site, &["--out", out_arg]);
    assert_success(&after, "build after a delete");
    assert!(!out.join("posts/p1/index.html").exists());
    assert!(
        site.join("public/posts/p1/index.html").exists(),
        "public/ untouched"
    );
    for folder in [&out, &site.join("public")] {
        let hidden: Vec<PathBuf> = walk(folder)
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "{hidden:?}");
    }
    // The public/ build did not lose its index to the other folder's builds.
    let public = relais_on("build", &site, &[]);
    assert!(
        stdout(&public).contains(" 2 removed)"),
        "{}",
        stdout(&public)
    );
    assert!(!site.join("public/posts/p1/index.html").exists());
}

/// Lists leave out of their signatures the fields that change with every edit (word count,
/// reading time, source hash) only while no template reads them: a theme that shows them
/// in its lists gets its lists rebuilt on every body edit.
#[test]
fn lists_showing_word_counts_follow_body_edits() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    write(
        &site,
        "config.toml",
        "title = \"Counts\"\nbase_url = \"https://counts.example\"\n",
    );
    write(
        &site,
        "templates/tag.html",
        "{% for p in posts %}{{ p.title }} {{ p.word_count }} {{ p.source_hash }}\n{% endfor %}",
    );
    write(
        &site,
        "templates/post.html",
        "{{ post.content | safe }}{% if post.older %}{{ post.older.word_count }}{% endif %}",
    );
    // The warning `same_as_cold` expects.
    write(
        &site,
        "content/posts/pic.md",
        "+++\ntitle = \"Picture\"\ndate = 2023-06-01\n+++\n\n![](https://img.example/cat.png)\n",
    );
    for i in 0..4 {
        write(
            &site,
            &format!("content/posts/p{i}.md"),
            format!(
                "+++\ntitle = \"P{i}\"\ndate = 2023-01-0{}\ntags = [\"t\"]\n+++\n\n{}\n",
                i + 1,
                // Longer than the text the index keeps: an edit at the end changes
                // nothing that lists show but the counts.
                "Many words. ".repeat(60)
            ),
        );
    }
    assert_success(&relais_on("build", &site, &[]), "first build");
    for step in 0..3 {
        let path = site.join(format!("content/posts/p{}.md", 1 + step % 2));
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str(&format!("\nMore words at step {step}.\n"));
        fs::write(&path, text).unwrap();
        let out = relais_on("build", &site, &[]);
        assert_success(&out, &format!("edit {step}"));
        same_as_cold(
            &site,
            &dir.path().join("fresh"),
            &format!("edit {step}"),
            &out,
        );
    }
}

/// A federating site named `name` whose picture post without alt text gives the lasting
/// warning [`same_as_cold`] looks for; outbox pages of 4 posts.
fn federating_site(dir: &Path, name: &str) -> PathBuf {
    let site = dir.join("site");
    write(
        &site,
        "config.toml",
        format!(
            "title = \"{name}\"\nbase_url = \"https://{name}.example\"\n\
             [fediverse]\nusername = \"{name}\"\noutbox_page_size = 4\n\
             inbox_url = \"https://inbox.{name}.example\"\n"
        ),
    );
    write(
        &site,
        "content/posts/pic.md",
        "+++\ntitle = \"Picture\"\ndate = 2023-06-01\n+++\n\n![](https://img.example/cat.png)\n",
    );
    site
}

/// `relais build` of `site` with its phase timings; whether it patched the edit.
fn timed_build(site: &Path, label: &str) -> (std::process::Output, bool) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["build", "--site"])
        .arg(site)
        .env("RELAIS_BUILD_TIMINGS", "1")
        .output()
        .unwrap();
    assert_success(&out, label);
    let patched = common::stderr(&out)
        .lines()
        .any(|l| l.starts_with("timing patch: index save"));
    (out, patched)
}

/// Size of the index's sources log.
fn log_len(site: &Path) -> u64 {
    fs::metadata(site.join(".relais/build-index.sources"))
        .unwrap()
        .len()
}

/// An edit appends one entry to the index's sources log instead of rewriting it; an
/// outbox page holding the edited post keeps the other posts' items from its last file
/// (no other body read); a log grown by a crashed build, or lost, still gives the cold
/// build's output; a log of mostly stale entries is compacted.
#[test]
fn sources_log_appends_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let site = federating_site(dir.path(), "log");
    let mut rng = Rng(0x10c5_0000_0000_0001);
    for i in 0..9 {
        let text = post_text(&mut rng, &format!("Post {i}"));
        write(&site, &format!("content/posts/p{i}.md"), &text);
    }
    // Older than the feeds' posts, so an edit changes no feed (which would read bodies).
    for i in 0..24 {
        write(
            &site,
            &format!("content/posts/old{i}.md"),
            format!(
                "+++\ntitle = \"Old {i}\"\ndate = 2019-01-{:02}\n+++\n\nOld body {i}.\n",
                i + 1
            ),
        );
    }
    // Sources read right after they were written are read again by the next build (their
    // time may not have ticked yet), which then logs them all again.
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_success(&relais_on("build", &site, &[]), "first build");
    let fresh_len = log_len(&site);
    let edit = |i: usize, step: usize| {
        let path = site.join(format!("content/posts/old{i}.md"));
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str(&format!("\nEdited at step {step}.\n"));
        fs::write(path, text).unwrap();
    };
    let build = |label: &str| timed_build(&site, label).0;

    edit(4, 0);
    let out = build("one edit");
    same_as_cold(&site, &dir.path().join("fresh"), "one edit", &out);
    let grown = log_len(&site) - fresh_len;
    assert!(
        grown > 0 && grown * 4 < fresh_len,
        "appended {grown} bytes to a log of {fresh_len}"
    );
    // The neighbours' pages show the edited post's description: their bodies are read;
    // the outbox page's three other posts are not.
    assert!(
        common::stderr(&out).contains(", 2 bodies read:"),
        "{}",
        common::stderr(&out)
    );

    // What a build that crashed after appending leaves.
    let log = site.join(".relais/build-index.sources");
    let mut bytes = fs::read(&log).unwrap();
    bytes.extend_from_slice(&[7; 300]);
    fs::write(&log, bytes).unwrap();
    edit(5, 1);
    let out = build("after a crashed build");
    same_as_cold(&site, &dir.path().join("fresh"), "torn log", &out);

    fs::remove_file(&log).unwrap();
    edit(6, 2);
    let out = build("without a log");
    same_as_cold(&site, &dir.path().join("fresh"), "lost log", &out);
    assert!(
        stdout(&build("again")).contains("(0 files written, 0 removed)"),
        "the rebuilt log knows every source"
    );

    for step in 3..40 {
        edit(step % 9, step);
        build("edit");
    }
    let out = build("last");
    same_as_cold(&site, &dir.path().join("fresh"), "after many edits", &out);
    assert!(
        log_len(&site) < 4 * fresh_len,
        "{} bytes after 37 edits, {fresh_len} fresh",
        log_len(&site)
    );
}

/// An edit past what lists show is patched and appended to the index file as a delta, not
/// written into a new file; a delta torn by a crash is cut off and the next goes in its
/// place; the file is written whole again once its deltas outgrow an eighth of it; every
/// step gives the cold build's output.
#[test]
fn the_index_file_takes_edits_as_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let site = federating_site(dir.path(), "deltas");
    // Long bodies, older than the feeds' posts: an edit at the end changes what neither
    // lists nor feeds show.
    for i in 0..30 {
        write(
            &site,
            &format!("content/posts/old{i}.md"),
            format!(
                "+++\ntitle = \"Old {i}\"\ndate = 2019-01-{:02}\n+++\n\n{}\n",
                i + 1,
                "A paragraph long enough for every list to show only its start. ".repeat(12)
            ),
        );
    }
    // Sources read right after they were written are read again by the next build (their
    // time may not have ticked yet), which is then no patch.
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_success(&relais_on("build", &site, &[]), "first build");
    let index_path = site.join(".relais/build-index");
    let fresh = fs::read(&index_path).unwrap();
    let edit = |i: usize, step: usize| {
        let path = site.join(format!("content/posts/old{i}.md"));
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str(&format!("\nEdited {step}.\n"));
        fs::write(path, text).unwrap();
    };
    let build = |label: &str| timed_build(&site, label);

    edit(3, 0);
    let (out, patched) = build("one edit");
    assert!(patched, "{}", common::stderr(&out));
    same_as_cold(&site, &dir.path().join("cold"), "one edit", &out);
    let index = fs::read(&index_path).unwrap();
    assert!(
        index.len() > fresh.len() && index.starts_with(&fresh),
        "the index file of {} bytes was written anew ({} now), not appended to",
        fresh.len(),
        index.len()
    );

    // A build that crashed while appending its delta.
    let mut bytes = index.clone();
    bytes.extend_from_slice(&[0xff, 0, 0, 0]);
    bytes.extend_from_slice(&[9; 300]);
    fs::write(&index_path, bytes).unwrap();
    edit(4, 1);
    let (out, patched) = build("after a torn delta");
    assert!(patched, "{}", common::stderr(&out));
    same_as_cold(&site, &dir.path().join("cold"), "torn delta", &out);
    let after = fs::read(&index_path).unwrap();
    assert!(
        after.len() > index.len()
            && after.starts_with(&index)
            && !after.windows(300).any(|w| w == [9; 300]),
        "the torn delta was not cut off"
    );

    let mut lengths = Vec::new();
    let mut last = None;
    for step in 2..40 {
        edit(step % 30, step);
        let (out, patched) = build("edit");
        if patched {
            lengths.push(fs::metadata(&index_path).unwrap().len() as usize);
        }
        last = Some(out);
    }
    assert!(lengths.len() > 30, "{} of 38 edits patched", lengths.len());
    let out = last.unwrap();
    same_as_cold(&site, &dir.path().join("cold"), "after many edits", &out);
    assert!(
        lengths.windows(2).any(|w| w[1] < w[0]),
        "never written whole again: {lengths:?}"
    );
    assert!(
        lengths.iter().all(|&len| len <= fresh.len() * 5 / 4),
        "deltas outgrew the file ({} fresh): {lengths:?}",
        fresh.len()
    );
}

/// An edit to a draft or to a post held back until its date, which stays left out, is
/// patched: nothing is rendered, only its entry changes. Once the edit brings it into the
/// site, the whole build runs and shows it. Every step gives the cold build's output.
#[test]
fn edits_to_drafts_and_held_posts_are_patched() {
    let dir = tempfile::tempdir().unwrap();
    let site = federating_site(dir.path(), "left");
    write(
        &site,
        "content/posts/draft.md",
        "+++\ntitle = \"Draft\"\ndate = 2023-07-01\ndraft = true\n+++\n\nNot yet.\n",
    );
    write(
        &site,
        "content/posts/later.md",
        "+++\ntitle = \"Later\"\ndate = 2099-01-01\n+++\n\nIn the future.\n",
    );
    write(
        &site,
        "content/posts/someday.md",
        "+++\ntitle = \"Someday\"\ndate = 2099-01-01\ndraft = true\n+++\n\nA draft.\n",
    );
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_success(&relais_on("build", &site, &[]), "first build");
    let build = |label: &str| timed_build(&site, label);
    let append = |name: &str, text: &str| {
        let path = site.join("content/posts").join(name);
        let mut body = fs::read_to_string(&path).unwrap();
        body.push_str(text);
        fs::write(path, body).unwrap();
    };
    let replace = |name: &str, from: &str, to: &str| {
        let path = site.join("content/posts").join(name);
        let body = fs::read_to_string(&path).unwrap();
        fs::write(path, body.replace(from, to)).unwrap();
    };

    for (name, label) in [("draft.md", "draft"), ("later.md", "held post")] {
        append(name, "\nStill being written.\n");
        let (out, patched) = build(label);
        assert!(patched, "{label}: {}", common::stderr(&out));
        assert!(
            stdout(&out).contains("(0 files written, 0 removed)"),
            "{label}: {}",
            stdout(&out)
        );
        same_as_cold(&site, &dir.path().join("cold"), label, &out);
    }

    // A draft held back whose date moves into the past stays out of the site, but no
    // longer waits for its date, which the inputs' signature keeps: the whole build runs,
    // and the build after it does not (it may read the file again, written just before).
    replace("someday.md", "2099-01-01", "2020-01-01");
    let (out, patched) = build("draft no longer held");
    assert!(!patched, "{}", common::stderr(&out));
    same_as_cold(
        &site,
        &dir.path().join("cold"),
        "draft no longer held",
        &out,
    );
    let (out, _) = build("after it");
    assert!(
        !common::stderr(&out).contains("timing plan "),
        "a whole build again: {}",
        common::stderr(&out)
    );

    // Its date moves into the past: it is published by the whole build.
    replace("later.md", "2099-01-01", "2024-01-01");
    let (out, patched) = build("due");
    assert!(!patched, "{}", common::stderr(&out));
    assert!(site.join("public/posts/later/index.html").is_file());
    same_as_cold(&site, &dir.path().join("cold"), "due", &out);

    replace("draft.md", "draft = true\n", "");
    let (out, patched) = build("undrafted");
    assert!(!patched, "{}", common::stderr(&out));
    assert!(site.join("public/posts/draft/index.html").is_file());
    same_as_cold(&site, &dir.path().join("cold"), "undrafted", &out);
}

/// Replies and mentions are resolved before a build from the sources that changed and
/// those that referenced something when last read, not from every source: an unresolvable
/// mention is retried (and reported) on every build while its post is unchanged, a new one
/// in an edited post is found, and an edit removing it ends the reports.
#[test]
fn references_are_resolved_from_changed_and_referencing_sources() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path();
    write(
        site,
        "config.toml",
        "title = \"Refs\"\nbase_url = \"https://refs.example\"\n\
         [fediverse]\nusername = \"refs\"\ninbox_url = \"https://inbox.refs.example\"\n",
    );
    let post = |title: &str, body: &str| {
        format!("+++\ntitle = \"{title}\"\ndate = 2024-03-01\n+++\n\n{body}\n")
    };
    write(site, "content/posts/a.md", post("A", "Plain text."));
    write(site, "content/posts/b.md", post("B", "Plain too."));
    // The stamps are set in the past so the index trusts unchanged files without reading.
    let age = |rel: &str| {
        let file = fs::File::options()
            .write(true)
            .open(site.join(rel))
            .unwrap();
        file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
            .unwrap();
    };
    age("content/posts/a.md");
    age("content/posts/b.md");
    // A private address is refused without `allow_private_addresses`: never resolved.
    let mention = "@kim@127.0.0.1:9 cannot be resolved";
    let build = |label: &str| {
        let out = relais_on("build", site, &[]);
        assert_success(&out, label);
        common::stderr(&out)
    };
    assert!(!build("first build").contains(mention));

    write(
        site,
        "content/posts/b.md",
        post("B", "Hello @kim@127.0.0.1:9."),
    );
    age("content/posts/b.md");
    let err = build("mention added");
    assert_eq!(err.matches(mention).count(), 1, "{err}");
    let err = build("nothing changed");
    assert_eq!(err.matches(mention).count(), 1, "retried: {err}");
    write(site, "content/posts/a.md", post("A", "Other text."));
    age("content/posts/a.md");
    let err = build("another post edited");
    assert_eq!(err.matches(mention).count(), 1, "retried: {err}");

    write(site, "content/posts/b.md", post("B", "Plain again."));
    age("content/posts/b.md");
    let err = build("mention removed");
    assert!(!err.contains(mention), "{err}");
}

/// A site with a post dated in the future (held back): the build after a cold build finds
/// nothing changed and leaves the index as it was, though the cold build started without
/// the index's list of held posts.
#[test]
fn a_held_post_does_not_make_the_second_build_work() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path();
    write(
        site,
        "config.toml",
        "title = \"Held\"\nbase_url = \"https://held.example\"\n",
    );
    write(
        site,
        "content/posts/now.md",
        "+++\ntitle = \"Now\"\ndate = 2024-01-01\n+++\n\nOut.\n",
    );
    write(
        site,
        "content/posts/later.md",
        "+++\ntitle = \"Later\"\ndate = 2999-01-01\n+++\n\nHeld back.\n",
    );
    // Old stamps: the index trusts the files without reading them again.
    for rel in ["content/posts/now.md", "content/posts/later.md"] {
        fs::File::options()
            .write(true)
            .open(site.join(rel))
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
            .unwrap();
    }
    assert_success(&relais_on("build", site, &[]), "cold build");
    let index = fs::read(site.join(".relais/build-index")).unwrap();
    let again = relais_on("build", site, &[]);
    assert_success(&again, "second build");
    assert!(
        stdout(&again).contains("(0 files written, 0 removed)"),
        "{}",
        stdout(&again)
    );
    assert!(
        fs::read(site.join(".relais/build-index")).unwrap() == index,
        "the second build rewrote the index"
    );
}

/// `relais build` in the site's folder and `relais build --site /full/path` from elsewhere
/// are the same build: the second finds nothing changed instead of rebuilding everything.
#[test]
fn the_site_spelled_two_ways_keeps_one_index() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    write(
        &site,
        "config.toml",
        "title = \"Spelled\"\nbase_url = \"https://spelled.example\"\n",
    );
    write(
        &site,
        "content/posts/one.md",
        "+++\ntitle = \"One\"\ndate = 2024-01-01\n+++\nOne.\n",
    );
    let in_folder = std::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .arg("build")
        .current_dir(&site)
        .output()
        .unwrap();
    assert_success(&in_folder, "build in the site's folder");
    // Past the doubt window, so sources are trusted by size and time alone.
    std::thread::sleep(std::time::Duration::from_millis(150));
    let in_folder = std::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .arg("build")
        .current_dir(&site)
        .output()
        .unwrap();
    assert_success(&in_folder, "second build in the site's folder");
    let full = relais_on("build", &site, &[]);
    assert_success(&full, "build with the full path");
    // An index taken for another folder's would have every file written again.
    assert!(
        stdout(&full).contains("(0 files written, 0 removed)"),
        "{}",
        stdout(&full)
    );
}

/// An output folder emptied by hand (`rm -rf public/*`, a subfolder removed, or the folder
/// made anew) is noticed: the next build writes every file again, and an edit after it is
/// built, where the index's memory of the outputs would have written nothing or failed.
#[test]
fn an_output_folder_emptied_by_hand_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let site = federating_site(dir.path(), "emptied");
    for n in 0..6 {
        write(
            &site,
            &format!("content/posts/p{n}.md"),
            format!(
                "+++\ntitle = \"P{n}\"\ndate = 2024-01-0{}\n+++\nBody {n}.\n",
                n + 1
            ),
        );
    }
    timed_build(&site, "first build");
    let public = site.join("public");
    let built = snapshot(&public);
    std::thread::sleep(std::time::Duration::from_millis(150));
    let emptyings: [(&str, &dyn Fn()); 3] = [
        ("rm -rf public/*", &|| {
            for entry in fs::read_dir(&public).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    fs::remove_dir_all(&path).unwrap();
                } else {
                    fs::remove_file(&path).unwrap();
                }
            }
        }),
        ("rm -rf public/posts", &|| {
            fs::remove_dir_all(public.join("posts")).unwrap()
        }),
        ("rm -rf public && mkdir public", &|| {
            fs::remove_dir_all(&public).unwrap();
            fs::create_dir(&public).unwrap();
        }),
    ];
    for (label, empty) in emptyings {
        empty();
        let (out, _) = timed_build(&site, label);
        let now = snapshot(&public);
        let files = |s: &std::collections::BTreeMap<PathBuf, Vec<u8>>| -> Vec<PathBuf> {
            s.keys().cloned().collect()
        };
        assert_eq!(files(&now), files(&built), "{label}: {}", stdout(&out));
        assert!(now == built, "{label}: other bytes");
    }
    // The folder changed by hand and a post deleted: its page goes, though no output is
    // trusted any more.
    fs::create_dir(public.join("by-hand")).unwrap();
    fs::remove_file(site.join("content/posts/p5.md")).unwrap();
    let (out, _) = timed_build(&site, "changed by hand, p5 deleted");
    assert!(!public.join("posts/p5").exists(), "{}", stdout(&out));
    same_as_cold(&site, &dir.path().join("fresh"), "p5 deleted", &out);
    // Emptied, then one post edited: the patch must not trust the outputs either.
    fs::remove_dir_all(public.join("posts")).unwrap();
    write(
        &site,
        "content/posts/p3.md",
        "+++\ntitle = \"P3\"\ndate = 2024-01-04\n+++\nBody 3, edited.\n",
    );
    let (out, _) = timed_build(&site, "edit after emptying");
    same_as_cold(
        &site,
        &dir.path().join("fresh"),
        "edit after emptying",
        &out,
    );
}

/// A PNG header saying `width` × `height` (what the page's `width` and `height` come from).
fn png_of(width: u32, height: u32) -> Vec<u8> {
    let mut png = common::PNG.to_vec();
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    png
}

/// An image replaced by one of other dimensions gives the unchanged post that shows it
/// its new `width` and `height`, in a patch as in a whole build.
#[test]
fn a_replaced_image_resizes_the_unchanged_posts_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let site = federating_site(dir.path(), "resized");
    write(
        &site,
        "content/posts/cat.md",
        "+++\ntitle = \"Cat\"\ndate = 2024-02-01\n+++\n\n![A cat](/img/cat.png)\n",
    );
    let image = site.join("static/img/cat.png");
    fs::create_dir_all(image.parent().unwrap()).unwrap();
    fs::write(&image, png_of(1, 1)).unwrap();
    timed_build(&site, "first build");
    let page = site.join("public/posts/cat/index.html");
    assert!(fs::read_to_string(&page)
        .unwrap()
        .contains(r#"width="1" height="1""#));
    std::thread::sleep(std::time::Duration::from_millis(150));

    // The same number of bytes, other dimensions.
    fs::write(&image, png_of(640, 480)).unwrap();
    let (out, _) = timed_build(&site, "image replaced");
    assert!(
        fs::read_to_string(&page)
            .unwrap()
            .contains(r#"width="640" height="480""#),
        "{}",
        stdout(&out)
    );
    same_as_cold(&site, &dir.path().join("fresh"), "image replaced", &out);

    // Replaced again while the post is edited: the edit's patch sees it too.
    std::thread::sleep(std::time::Duration::from_millis(150));
    fs::write(&image, png_of(32, 24)).unwrap();
    write(
        &site,
        "content/posts/cat.md",
        "+++\ntitle = \"Cat\"\ndate = 2024-02-01\n+++\n\n![A cat](/img/cat.png)\n\nPurr.\n",
    );
    let (out, _) = timed_build(&site, "image replaced, post edited");
    assert!(fs::read_to_string(&page)
        .unwrap()
        .contains(r#"width="32" height="24""#));
    same_as_cold(&site, &dir.path().join("fresh"), "image and post", &out);
}

/// A build killed after writing outputs but before saving its index leaves the index of
/// the build before and a mark beside it. When the edit is then undone, the next build
/// must not take the outputs for those of the index (they show the undone edit): with the
/// mark, it writes every output again.
#[test]
fn outputs_written_by_a_killed_build_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let site = federating_site(dir.path(), "killed");
    let post = "content/posts/story.md";
    let v1 = "+++\ntitle = \"Story\"\ndate = 2024-03-01\n+++\n\nThe first telling.\n";
    write(&site, post, v1);
    timed_build(&site, "v1");
    let marker = site.join(".relais/build-index.writing");
    assert!(!marker.exists(), "a saved build leaves no mark");
    let saved = dir.path().join("index-v1");
    copy_sources(&site.join(".relais"), &saved);
    std::thread::sleep(std::time::Duration::from_millis(150));

    write(&site, post, v1.replace("first", "second"));
    timed_build(&site, "v2");
    let page = site.join("public/posts/story/index.html");
    assert!(fs::read_to_string(&page)
        .unwrap()
        .contains("second telling"));
    // What the kill leaves: v2's outputs, v1's index, and the mark.
    fs::remove_dir_all(site.join(".relais")).unwrap();
    copy_sources(&saved, &site.join(".relais"));
    fs::write(&marker, b"").unwrap();
    // The edit undone.
    std::thread::sleep(std::time::Duration::from_millis(150));
    write(&site, post, v1);
    let (out, patched) = timed_build(&site, "v1 again");
    assert!(!patched, "a patch trusted the outputs");
    assert!(fs::read_to_string(&page).unwrap().contains("first telling"));
    assert!(!marker.exists());
    same_as_cold(&site, &dir.path().join("fresh"), "after the kill", &out);

    // Killed again, and the output folder removed before the next build.
    fs::write(&marker, b"").unwrap();
    fs::remove_dir_all(site.join("public")).unwrap();
    let (out, _) = timed_build(&site, "killed, then rm -rf public");
    assert!(!marker.exists());
    same_as_cold(&site, &dir.path().join("fresh"), "rm -rf public", &out);
}

/// A body opening with a table padded with spaces: the listing's description, taken from
/// the index's prefix of the text when the post is not parsed again, is the one a cold
/// build takes from the whole text.
#[test]
fn listings_describe_a_padded_post_as_a_cold_build_does() {
    let dir = tempfile::tempdir().unwrap();
    let site = federating_site(dir.path(), "padded");
    let padding = " ".repeat(70);
    let table: String = (0..8)
        .map(|row| format!("    run{row}{padding}{row}.0 s\n"))
        .collect();
    let words = "Then the words go on for a long while after the table. ".repeat(12);
    write(
        &site,
        "content/posts/bench.md",
        format!("+++\ntitle = \"Bench\"\ndate = 2024-04-01\n+++\n\n{table}\n{words}\n"),
    );
    // Newer posts enough that the padded one is out of the feeds (whose bodies are read).
    for n in 0..24 {
        write(
            &site,
            &format!("content/posts/middle{n}.md"),
            format!(
                "+++\ntitle = \"Middle {n}\"\ndate = 2024-04-{:02}\n+++\n\nMiddle.\n",
                n + 2
            ),
        );
    }
    timed_build(&site, "first build");
    std::thread::sleep(std::time::Duration::from_millis(150));
    // A new post: every home page shifts, and lists the padded post from its index entry.
    write(
        &site,
        "content/posts/newer.md",
        "+++\ntitle = \"Newer\"\ndate = 2024-05-01\n+++\n\nNewer.\n",
    );
    let (out, _) = timed_build(&site, "a post added");
    let listed = walk(&site.join("public/page")).iter().any(|page| {
        fs::read_to_string(page)
            .unwrap()
            .contains("run7 7.0 s Then the words")
    });
    assert!(listed, "{}", stdout(&out));
    same_as_cold(&site, &dir.path().join("fresh"), "a post added", &out);
}

/// A static file replaced by one of the same size with its old modification time put
/// back (`cp -p`, `rsync -t`, `touch -r`) is still copied: the inode's change time, which
/// no tool sets, tells it apart.
#[test]
fn a_same_size_edit_with_its_old_time_put_back_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let site = federating_site(dir.path(), "retimed");
    write(&site, "static/notes.txt", "first\n");
    timed_build(&site, "first build");
    let source = site.join("static/notes.txt");
    let modified = fs::metadata(&source).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    fs::write(&source, "other\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&source)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    assert_eq!(fs::metadata(&source).unwrap().modified().unwrap(), modified);
    let (out, _) = timed_build(&site, "same size, old time");
    assert_eq!(
        fs::read_to_string(site.join("public/notes.txt")).unwrap(),
        "other\n",
        "{}",
        stdout(&out)
    );
}

/// A site whose index cannot be written (here `.relais` is a file; a read-only mount is
/// the same) still builds, with warnings.
#[test]
fn a_site_whose_index_cannot_be_written_still_builds() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    write(
        &site,
        "config.toml",
        "title = \"Locked\"\nbase_url = \"https://locked.example\"\n",
    );
    write(
        &site,
        "content/posts/one.md",
        "+++\ntitle = \"One\"\ndate = 2024-01-01\n+++\nOne.\n",
    );
    fs::write(site.join(".relais"), b"not a folder").unwrap();
    for label in ["first build", "second build"] {
        let out = relais_on("build", &site, &[]);
        assert_success(&out, label);
        assert!(common::stderr(&out).contains("warning: cannot"), "{label}");
        assert!(site.join("public/posts/one/index.html").is_file());
    }
}

/// A source replaced by other bytes of the same size with its time put back is trusted
/// by its stamp; the build that then reads its body stops, naming it, and the next one
/// builds it, instead of failing again, and still removes a post deleted meanwhile.
#[test]
fn a_source_replaced_with_its_old_time_is_built_on_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let site = federating_site(dir.path(), "replaced");
    let post = site.join("content/posts/tale.md");
    write(
        &site,
        "content/posts/tale.md",
        "+++\ntitle = \"Tale\"\ndate = 2024-02-02\n+++\n\nOnce upon a time.\n",
    );
    write(
        &site,
        "content/posts/gone.md",
        "+++\ntitle = \"Gone\"\ndate = 2024-02-03\n+++\n\nSoon gone.\n",
    );
    timed_build(&site, "first build");
    assert!(site.join("public/posts/gone/index.html").is_file());
    let modified = fs::metadata(&post).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    fs::write(
        &post,
        "+++\ntitle = \"Tale\"\ndate = 2024-02-02\n+++\n\nTwice upon a time.\n"
            .replacen("Twice", "Twic", 1),
    )
    .unwrap();
    fs::File::options()
        .write(true)
        .open(&post)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    // Another post is deleted, and the site's title changes: every page is rendered
    // again, the replaced one from its body.
    fs::remove_file(site.join("content/posts/gone.md")).unwrap();
    let config = fs::read_to_string(site.join("config.toml")).unwrap();
    fs::write(
        site.join("config.toml"),
        config.replace("title = \"replaced\"", "title = \"Replaced\""),
    )
    .unwrap();
    let out = relais_on("build", &site, &[]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("tale.md: changed while the site was being built"),
        "{}",
        common::stderr(&out)
    );
    let (out, _) = timed_build(&site, "run again");
    let page = fs::read_to_string(site.join("public/posts/tale/index.html")).unwrap();
    assert!(page.contains("Twic upon a time"), "{}", stdout(&out));
    assert!(
        !site.join("public/posts/gone").exists(),
        "the deleted post's files stay"
    );
    same_as_cold(&site, &dir.path().join("fresh"), "run again", &out);
}
