//! `relais check` as a new blogger meets it: a fresh `relais init` site passes with setup
//! warnings, warnings can be accepted in config.toml by rule and file, and an edit without
//! `updated` is only flagged once the post went out to followers.

use std::fs;
use std::path::Path;

use crate::common::{
    assert_success, copy_example_site, relais, relais_on, stderr, stdout, warnings, write,
};

#[test]
fn a_fresh_site_passes_with_setup_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("blog");
    assert_success(&relais(&["init", site.to_str().unwrap()]), "relais init");
    let out = relais_on("check", &site, &[]);
    assert_success(&out, "relais check on a fresh site");
    let found = warnings(&out);
    assert!(
        found.iter().any(
            |w| w.contains("base_url is still the placeholder https://example.com")
                && w.ends_with("[placeholder-base-url]")
        ),
        "{found:?}"
    );
    assert!(stdout(&out).contains("setup warning"), "{}", stdout(&out));

    // A real address makes the setup warnings count.
    let config = site.join("config.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("https://example.com", "https://blog.test"),
    )
    .unwrap();
    let out = relais_on("check", &site, &[]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        warnings(&out).iter().all(|w| !w.contains("placeholder")),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("[no-inbox-url]"), "{}", stderr(&out));
}

#[test]
fn warnings_are_accepted_by_rule_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path();
    copy_example_site(site);
    write(
        site,
        "content/posts/no-alt.md",
        "+++\ntitle = \"No alt\"\ndate = 2025-04-01\n+++\n\n![](/favicon.png)\n",
    );
    write(site, "static/favicon.png", b"png");
    let out = relais_on("check", site, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("[image-alt]"), "{}", stderr(&out));

    let config = site.join("config.toml");
    let original = fs::read_to_string(&config).unwrap();
    let accept = |rule: &str, file: &str| {
        fs::write(
            &config,
            format!("{original}\n[[check.accept]]\nrule = \"{rule}\"\nfile = \"{file}\"\n"),
        )
        .unwrap();
    };
    accept("image-alt", "content/posts/other.md");
    assert!(!relais_on("check", site, &[]).status.success());
    accept("image-alt", "content/posts/no-alt.md");
    let out = relais_on("check", site, &[]);
    assert_success(&out, "relais check with the warning accepted");
    assert!(warnings(&out).is_empty(), "{}", stderr(&out));
    assert!(
        // The example's own four (tables and footnotes) and this one.
        stderr(&out).contains("5 warning(s) accepted"),
        "{}",
        stderr(&out)
    );

    accept("image-alt-text", "content/posts/no-alt.md");
    let out = relais_on("check", site, &[]);
    assert!(
        !out.status.success() && stderr(&out).contains("unknown rule \"image-alt-text\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_edit_before_publishing_needs_no_updated() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path();
    copy_example_site(site);
    // The inbox's store exists (as `relais serve` makes it) but nothing was published.
    let store = relais::store::Store::open(&site.join("relais.db")).unwrap();
    drop(store);
    assert_success(&relais_on("build", site, &[]), "relais build");
    let rel = "content/posts/sourdough-log.md";
    let original = fs::read_to_string(site.join(rel)).unwrap();
    fs::write(site.join(rel), format!("{original}\nOne more loaf.\n")).unwrap();
    let out = relais_on("check", site, &[]);
    assert_success(&out, "relais check after editing an unpublished post");
    assert!(!stderr(&out).contains("`updated`"), "{}", stderr(&out));

    // Once published, the same kind of edit is flagged.
    assert_success(&relais_on("build", site, &[]), "relais build");
    assert_success(&relais_on("publish", site, &[]), "relais publish");
    fs::write(site.join(rel), format!("{original}\nTwo more loaves.\n")).unwrap();
    let out = relais_on("check", site, &[]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{}: the post changed", Path::new(rel).display())),
        "{}",
        stderr(&out)
    );
}

/// Each common mistake's message names the fix.
#[test]
fn messages_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let out = relais_on("build", &empty, &[]);
    assert!(
        !out.status.success()
            && stderr(&out).contains("not a relais site")
            && stderr(&out).contains("relais init")
            && stderr(&out).contains("--site"),
        "{}",
        stderr(&out)
    );

    let site = dir.path().join("blog");
    assert_success(&relais(&["init", site.to_str().unwrap()]), "relais init");
    let out = relais_on("keygen", &site, &[]);
    let out = if out.status.success() {
        relais_on("keygen", &site, &[])
    } else {
        out
    };
    assert!(
        !out.status.success() && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );

    let config = site.join("config.toml");
    let original = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        original.replace("https://example.com", "blog.test"),
    )
    .unwrap();
    let out = relais_on("build", &site, &[]);
    assert!(
        stderr(&out).contains("has no scheme: write \"https://blog.test\""),
        "{}",
        stderr(&out)
    );
    fs::write(
        &config,
        original.replace("title = \"My blog\"", "title = \"My blog"),
    )
    .unwrap();
    let out = relais_on("build", &site, &[]);
    assert!(
        stderr(&out).contains("config.toml:1:") && stderr(&out).contains("a quote is not closed"),
        "{}",
        stderr(&out)
    );
    fs::write(&config, &original).unwrap();

    let post = site.join("content/posts/hello.md");
    let text = fs::read_to_string(&post).unwrap();
    fs::write(&post, text.replacen("tags = ", "tgas = ", 1)).unwrap();
    let out = relais_on("build", &site, &[]);
    assert!(
        stderr(&out).contains("unknown field `tgas`: did you mean `tags`?"),
        "{}",
        stderr(&out)
    );
    fs::write(
        &post,
        text.replacen("tags = [\"meta\"]", "tags = \"meta\"", 1),
    )
    .unwrap();
    let out = relais_on("build", &site, &[]);
    assert!(
        stderr(&out).contains("tags = [\"notes\"]"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_on_a_busy_port_suggests_port_zero() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("blog");
    assert_success(&relais(&["init", site.to_str().unwrap()]), "relais init");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = relais_on("serve", &site, &["--port", &port]);
    assert!(
        !out.status.success() && stderr(&out).contains("--port 0"),
        "{}",
        stderr(&out)
    );
}
