//! The files `relais init --host` writes beside a site so it can go live: the static host's
//! build or CI workflow (install relais, build, deploy, tell the inbox) and the recipes that
//! run the inbox (a Dockerfile, a systemd unit, the secrets it reads).
//!
//! The templates are files in this folder, filled in with the site's values; nothing here
//! touches the disk: `cli::init` writes what [`deploy_files`] returns.

use std::path::PathBuf;

use crate::config::{HostKind, SiteConfig};

/// The relais release the generated builds install.
pub const RELAIS_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The repository the generated builds install relais from with `cargo install --git`;
/// empty installs the crates.io release of [`RELAIS_VERSION`].
pub const RELAIS_GIT: &str = "";
/// Pinned majors of the deploy tools a CI workflow runs through `npx`.
const NETLIFY_CLI_MAJOR: &str = "26";
const WRANGLER_MAJOR: &str = "4";
/// Written when `fediverse.inbox_url` is not set yet.
const INBOX_PLACEHOLDER: &str = "https://inbox.example.com";

const DOCKERFILE: &str = include_str!("Dockerfile");
const DOCKERIGNORE: &str = include_str!("dockerignore");
const SYSTEMD_UNIT: &str = include_str!("relais-inbox.service");
const INBOX_ENV: &str = include_str!("inbox.env.example");
const NETLIFY_TOML: &str = include_str!("netlify.toml");
const NETLIFY_CACHE_PLUGIN: &str = include_str!("netlify-cache-plugin.js");
const RUST_TOOLCHAIN: &str = include_str!("rust-toolchain.toml");
const WORKFLOW: &str = include_str!("workflow.yml");

/// One file to write, relative to the site directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployFile {
    pub path: PathBuf,
    pub contents: String,
    /// What it is for, shown when it is written.
    pub purpose: &'static str,
}

/// Where a GitHub Actions workflow deploys the built site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiTarget {
    GithubPages,
    Netlify,
    CloudflarePages,
}

pub const WORKFLOW_PATH: &str = ".github/workflows/relais.yml";

/// Where the generated Caddyfile expects the built site (the systemd unit's site folder).
pub const CADDY_ROOT: &str = "/srv/blog/public";

/// Every file for `host`. `ci` asks for a GitHub Actions workflow where the host could
/// build by itself (Netlify); GitHub Pages and Cloudflare Pages always get one, as neither
/// build image can install relais.
pub fn deploy_files(config: &SiteConfig, host: HostKind, ci: bool) -> Vec<DeployFile> {
    let mut files = Vec::new();
    match host {
        HostKind::Netlify if ci => files.push(workflow_file(config, CiTarget::Netlify)),
        HostKind::Netlify => files.extend(netlify_build_files(config)),
        HostKind::CloudflarePages => files.push(workflow_file(config, CiTarget::CloudflarePages)),
        HostKind::GithubPages => files.push(workflow_file(config, CiTarget::GithubPages)),
        HostKind::Caddy => {}
    }
    if matches!(host, HostKind::GithubPages | HostKind::Caddy) {
        files.push(DeployFile {
            path: "Caddyfile".into(),
            contents: crate::federation::hostrules::caddyfile(config, CADDY_ROOT),
            purpose: "Caddy: serves public/ with the fediverse content types and proxies \
                      the inbox paths",
        });
    }
    files.extend(inbox_files(config));
    files
}

/// `netlify.toml`, the toolchain file and the cache plugin: Netlify builds the site itself.
pub fn netlify_build_files(config: &SiteConfig) -> Vec<DeployFile> {
    vec![
        DeployFile {
            path: "netlify.toml".into(),
            contents: fill(NETLIFY_TOML, config),
            purpose: "Netlify: installs relais (cached), builds, publishes public/",
        },
        DeployFile {
            path: "rust-toolchain.toml".into(),
            contents: RUST_TOOLCHAIN.to_string(),
            purpose: "the Rust channel Netlify's build installs relais with",
        },
        DeployFile {
            path: "netlify/plugins/relais-cache/manifest.yml".into(),
            contents: "name: relais-cache\n".into(),
            purpose: "Netlify build plugin keeping relais in the build cache",
        },
        DeployFile {
            path: "netlify/plugins/relais-cache/index.js".into(),
            contents: NETLIFY_CACHE_PLUGIN.to_string(),
            purpose: "Netlify build plugin keeping relais in the build cache",
        },
    ]
}

/// What runs the inbox, whatever the host: a container image and a systemd unit.
pub fn inbox_files(config: &SiteConfig) -> Vec<DeployFile> {
    vec![
        DeployFile {
            path: "deploy/Dockerfile".into(),
            contents: fill(DOCKERFILE, config),
            purpose: "the inbox as a container (docker build -f deploy/Dockerfile .)",
        },
        DeployFile {
            path: ".dockerignore".into(),
            contents: DOCKERIGNORE.to_string(),
            purpose: "keeps the private key and the store out of the image",
        },
        DeployFile {
            path: "deploy/relais-inbox.service".into(),
            contents: SYSTEMD_UNIT.to_string(),
            purpose: "the inbox as a hardened systemd service",
        },
        DeployFile {
            path: "deploy/inbox.env.example".into(),
            contents: INBOX_ENV.to_string(),
            purpose: "the inbox's webhook secrets, for systemd or docker --env-file",
        },
    ]
}

/// The GitHub Actions workflow: install relais (cached), build, deploy, call the deploy
/// hook with an `X-Hub-Signature-256` HMAC of its body.
pub fn workflow(config: &SiteConfig, target: CiTarget) -> String {
    let (host, name, settings, job, deploy) = match target {
        CiTarget::GithubPages => (
            HostKind::GithubPages,
            "GitHub Pages",
            "#   Settings > Pages > Source: GitHub Actions.",
            "    permissions:\n      contents: read\n      pages: write\n      id-token: write\n    \
             environment:\n      name: github-pages\n      \
             url: ${{ steps.deployment.outputs.page_url }}",
            "      - uses: actions/configure-pages@v6\n      \
             - uses: actions/upload-pages-artifact@v4\n        with:\n          path: public\n      \
             - name: Deploy to GitHub Pages\n        id: deployment\n        \
             uses: actions/deploy-pages@v5"
                .to_string(),
        ),
        CiTarget::Netlify => (
            HostKind::Netlify,
            "Netlify",
            "#   secret NETLIFY_AUTH_TOKEN (a personal access token), variable NETLIFY_SITE_ID;\n\
             #   turn off Netlify's own builds (Build settings > Stop builds).",
            "    permissions:\n      contents: read",
            format!(
                "      - name: Deploy to Netlify\n        env:\n          \
                 NETLIFY_AUTH_TOKEN: ${{{{ secrets.NETLIFY_AUTH_TOKEN }}}}\n          \
                 NETLIFY_SITE_ID: ${{{{ vars.NETLIFY_SITE_ID }}}}\n        \
                 run: npx --yes netlify-cli@{NETLIFY_CLI_MAJOR} deploy --prod --no-build --dir public"
            ),
        ),
        CiTarget::CloudflarePages => (
            HostKind::CloudflarePages,
            "Cloudflare Pages",
            "#   secret CLOUDFLARE_API_TOKEN (Pages: Edit), variables CLOUDFLARE_ACCOUNT_ID and\n\
             #   CLOUDFLARE_PAGES_PROJECT (a Pages project with no Git connection).",
            "    permissions:\n      contents: read",
            format!(
                "      - name: Deploy to Cloudflare Pages\n        env:\n          \
                 CLOUDFLARE_API_TOKEN: ${{{{ secrets.CLOUDFLARE_API_TOKEN }}}}\n          \
                 CLOUDFLARE_ACCOUNT_ID: ${{{{ vars.CLOUDFLARE_ACCOUNT_ID }}}}\n          \
                 PAGES_PROJECT: ${{{{ vars.CLOUDFLARE_PAGES_PROJECT }}}}\n        \
                 run: npx --yes wrangler@{WRANGLER_MAJOR} pages deploy public \
                 --project-name \"$PAGES_PROJECT\" --branch main"
            ),
        ),
    };
    let build_flags = if config.fediverse.inbox_url.is_some() {
        " --remote-interactions"
    } else {
        ""
    };
    fill(WORKFLOW, config)
        .replace("{{HOST}}", host.as_str())
        .replace("{{DEPLOY_NAME}}", name)
        .replace("{{SETTINGS}}", settings)
        .replace("{{JOB_SETTINGS}}", job)
        .replace("{{DEPLOY}}", &deploy)
        .replace("{{BUILD_ARGS}}", build_flags)
}

fn workflow_file(config: &SiteConfig, target: CiTarget) -> DeployFile {
    DeployFile {
        path: WORKFLOW_PATH.into(),
        contents: workflow(config, target),
        purpose: "GitHub Actions: installs relais (cached), builds, deploys, tells the inbox",
    }
}

/// The values every template shares.
fn fill(template: &str, config: &SiteConfig) -> String {
    let inbox_url = config
        .fediverse
        .inbox_url
        .as_deref()
        .unwrap_or(INBOX_PLACEHOLDER)
        .trim_end_matches('/');
    let build_flags = if config.fediverse.inbox_url.is_some() {
        "--remote-interactions"
    } else {
        ""
    };
    template
        .replace("{{RELAIS_VERSION}}", RELAIS_VERSION)
        .replace("{{RELAIS_GIT}}", RELAIS_GIT)
        .replace("{{INBOX_URL}}", &sanitize_for_template(inbox_url))
        .replace("{{BUILD_FLAGS}}", build_flags)
}

/// The inbox URL lands in TOML and YAML strings and a shell: keep only URL characters that
/// are safe in all three (a validated URL has no quote or space, this makes sure).
fn sanitize_for_template(url: &str) -> String {
    url.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-._~:/?#[]@+,=%".contains(*c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> SiteConfig {
        SiteConfig::parse(
            &format!("title = \"T\"\nbase_url = \"https://blog.example\"\n{extra}"),
            Path::new("config.toml"),
        )
        .unwrap()
    }

    fn paths(files: &[DeployFile]) -> Vec<String> {
        files
            .iter()
            .map(|f| f.path.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn each_host_gets_its_build_and_the_inbox_recipes() {
        let c = config("");
        let netlify = paths(&deploy_files(&c, HostKind::Netlify, false));
        assert!(netlify.contains(&"netlify.toml".to_string()));
        assert!(netlify.contains(&"rust-toolchain.toml".to_string()));
        assert!(!netlify.contains(&WORKFLOW_PATH.to_string()));
        let netlify_ci = paths(&deploy_files(&c, HostKind::Netlify, true));
        assert!(netlify_ci.contains(&WORKFLOW_PATH.to_string()));
        assert!(!netlify_ci.contains(&"netlify.toml".to_string()));
        for host in [HostKind::CloudflarePages, HostKind::GithubPages] {
            assert!(paths(&deploy_files(&c, host, false)).contains(&WORKFLOW_PATH.to_string()));
        }
        for host in HostKind::ALL {
            let files = paths(&deploy_files(&c, host, false));
            for inbox in [
                "deploy/Dockerfile",
                "deploy/relais-inbox.service",
                ".dockerignore",
            ] {
                assert!(files.contains(&inbox.to_string()), "{host:?}: {files:?}");
            }
            for file in deploy_files(&c, host, false) {
                let unfilled = file.contents.match_indices("{{").any(|(at, _)| {
                    file.contents[at + 2..].starts_with(|c: char| c.is_ascii_uppercase())
                });
                assert!(!unfilled, "{}", file.path.display());
            }
        }
    }

    #[test]
    fn netlify_toml_installs_only_when_missing_then_builds() {
        let files = netlify_build_files(&config(
            "[fediverse]\ninbox_url = \"https://inbox.blog.example/\"\n",
        ));
        let toml_text = &files[0].contents;
        let parsed: toml::Table = toml::from_str(toml_text).unwrap();
        let build = parsed["build"].as_table().unwrap();
        assert_eq!(build["publish"].as_str(), Some("public"));
        let command = build["command"].as_str().unwrap();
        let install = command.find("cargo install").unwrap();
        let check = command.find("relais --version").unwrap();
        let run = command.find("relais build").unwrap();
        assert!(check < install && install < run, "{command}");
        let env = build["environment"].as_table().unwrap();
        assert_eq!(env["RELAIS_VERSION"].as_str(), Some(RELAIS_VERSION));
        assert_eq!(
            env["RELAIS_BUILD_FLAGS"].as_str(),
            Some("--remote-interactions")
        );
        assert_eq!(
            parsed["plugins"][0]["package"].as_str(),
            Some("./netlify/plugins/relais-cache")
        );
        assert!(toml_text.contains("https://inbox.blog.example/relais/deploy"));
        let toolchain: toml::Table = toml::from_str(&files[1].contents).unwrap();
        assert_eq!(toolchain["toolchain"]["channel"].as_str(), Some("stable"));
        assert!(files[3].contents.contains("utils.cache.save(TOOLS)"));
    }

    #[test]
    fn dockerfile_builds_then_runs_the_inbox_slim_and_unprivileged() {
        // No Docker engine here: the structure is checked instead of a real build.
        let dockerfile = fill(DOCKERFILE, &config(""));
        let instructions: Vec<&str> = dockerfile
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with(' ') && !l.trim().is_empty())
            .collect();
        let froms: Vec<&&str> = instructions
            .iter()
            .filter(|l| l.starts_with("FROM "))
            .collect();
        assert_eq!(froms.len(), 2, "{instructions:?}");
        assert!(froms[0].starts_with("FROM rust:1-slim") && froms[0].ends_with("AS build"));
        assert!(froms[1].starts_with("FROM debian:") && froms[1].contains("slim"));
        let runtime = dockerfile.split("FROM debian:").nth(1).unwrap();
        assert!(runtime.contains("ca-certificates"));
        assert!(runtime.contains("RELAIS_LISTEN=0.0.0.0:8787"));
        assert!(runtime.contains("RELAIS_STORE=/data/"));
        assert!(runtime.contains("VOLUME /data"));
        assert!(runtime.contains("USER relais"));
        assert!(instructions
            .last()
            .unwrap()
            .starts_with("CMD [\"relais\", \"inbox\""));
        assert!(dockerfile.contains(&format!("ARG RELAIS_VERSION={RELAIS_VERSION}")));
        // The private key is neither in the build context nor in the image.
        assert!(DOCKERIGNORE.lines().any(|l| l == "relais-key.pem"));
        assert!(dockerfile.contains("rm -f relais-key.pem"));
    }

    #[test]
    fn systemd_unit_is_hardened_and_reads_its_secrets_from_files() {
        for line in [
            "DynamicUser=yes",
            "StateDirectory=relais",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "Restart=on-failure",
            "EnvironmentFile=-/etc/relais/inbox.env",
            "LoadCredential=relais-key.pem:/etc/relais/relais-key.pem",
            "Environment=RELAIS_KEY_FILE=%d/relais-key.pem",
        ] {
            assert!(SYSTEMD_UNIT.lines().any(|l| l == line), "missing {line}");
        }
        assert!(SYSTEMD_UNIT
            .lines()
            .any(|l| l.starts_with("ReadWritePaths=")));
    }

    #[test]
    fn workflow_signs_the_hook_and_deploys_to_its_target() {
        let c = config("[fediverse]\ninbox_url = \"https://inbox.blog.example\"\n");
        let pages = workflow(&c, CiTarget::GithubPages);
        assert!(pages.contains("actions/deploy-pages@v5"));
        assert!(pages.contains("id-token: write"));
        assert!(pages.contains("X-Hub-Signature-256: sha256=$signature"));
        assert!(pages.contains("secrets.RELAIS_DEPLOY_HMAC_SECRET"));
        assert!(pages.contains("RELAIS_INBOX_URL: \"https://inbox.blog.example\""));
        assert!(pages.contains("relais build --remote-interactions"));
        let netlify = workflow(&c, CiTarget::Netlify);
        assert!(netlify.contains("netlify-cli@26 deploy --prod"));
        assert!(!netlify.contains("pages: write"));
        let cloudflare = workflow(&config(""), CiTarget::CloudflarePages);
        assert!(cloudflare.contains("wrangler@4 pages deploy public"));
        assert!(cloudflare.contains(INBOX_PLACEHOLDER));
        assert!(cloudflare.contains("run: ~/.relais-tools/bin/relais build\n"));
    }

    #[test]
    fn template_values_cannot_break_out_of_their_strings() {
        assert_eq!(
            sanitize_for_template("https://x.example/a\"b $(id)`;"),
            "https://x.example/abid"
        );
    }
}
