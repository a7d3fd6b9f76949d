//! `relais init DIR`: a new site with a first post, an about page and a `.gitignore`;
//! with `--host`, also the files that deploy it there and run its inbox
//! (`deploy_files`), added to an existing site without overwriting anything.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::config::{HostKind, SiteConfig};
use crate::deploy_files::{deploy_files, DeployFile};
use crate::render::theme::{EMBEDDED_DEFAULT_THEME, THEMES_DIR};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Directory to create the site in (may exist, but must not hold a config.toml).
    pub dir: PathBuf,
    #[arg(long, default_value = "My blog")]
    pub title: String,
    /// Public address of the site.
    #[arg(long, default_value = "https://example.com")]
    pub base_url: String,
    #[arg(long, default_value = "Your Name")]
    pub author: String,
    #[arg(long, default_value = "en")]
    pub language: String,
    #[arg(long, default_value = "Notes and essays.")]
    pub description: String,
    /// Copy the built-in default theme into DIR/themes/default to edit it.
    #[arg(long)]
    pub eject_theme: bool,
    /// Also write the files that deploy the site there (netlify, cloudflare-pages,
    /// github-pages, caddy) and run its inbox; on an existing site, only the missing ones.
    #[arg(long, value_parser = parse_host)]
    pub host: Option<HostKind>,
    /// With `--host netlify`: build and deploy from a GitHub Actions workflow instead of
    /// Netlify's own build.
    #[arg(long, requires = "host")]
    pub ci: bool,
}

fn parse_host(text: &str) -> Result<HostKind, String> {
    HostKind::ALL
        .into_iter()
        .find(|host| host.as_str() == text)
        .ok_or_else(|| {
            let names: Vec<&str> = HostKind::ALL.iter().map(|h| h.as_str()).collect();
            format!("unknown host {text:?}; one of {}", names.join(", "))
        })
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let config_path = args.dir.join(crate::config::CONFIG_FILE);
    if config_path.exists() {
        let Some(host) = args.host else {
            bail!(
                "{}: already exists; not overwriting a site (add --host HOST to write only \
                 its deploy files)",
                config_path.display()
            );
        };
        return add_deploy_files(&args.dir, host, args.ci);
    }
    let author_id = author_id(&args.author);
    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    let config = format!(
        "title = {title}\n\
         base_url = {base_url}\n\
         language = {language}\n\
         description = {description}\n\
         \n\
         [[authors]]\n\
         id = {id}\n\
         name = {name}\n\
         \n\
         [fediverse]\n\
         # Followers find the site as @blog@<host of base_url>.\n\
         username = \"blog\"\n\
         {deploy}",
        title = toml_string(&args.title),
        base_url = toml_string(&args.base_url),
        language = toml_string(&args.language),
        description = toml_string(&args.description),
        id = toml_string(&author_id),
        name = toml_string(&args.author),
        deploy = args
            .host
            .map(|host| format!("\n[deploy]\nhost = \"{}\"\n", host.as_str()))
            .unwrap_or_default(),
    );
    // Checked before anything is written, so a bad value leaves no half-made site.
    let parsed = SiteConfig::parse(&config, &config_path)?;

    let hello = format!(
        "+++\n\
         title = \"Hello, world\"\n\
         date = {today}\n\
         tags = [\"meta\"]\n\
         authors = [{id}]\n\
         +++\n\
         \n\
         This is the first post of {title}. Edit `content/posts/hello.md`, or add more files\n\
         next to it: each Markdown file in `content/posts/` is a post.\n\
         \n\
         <!-- more -->\n\
         \n\
         Run `relais serve` to see changes as you type, and `relais build` to write the site\n\
         into `public/`.\n\
         \n\
         ```rust\n\
         fn main() {{\n    println!(\"Hello, fediverse!\");\n}}\n\
         ```\n",
        id = toml_string(&author_id),
        title = args.title,
    );
    let about = format!(
        "+++\ntitle = \"About\"\n+++\n\n{} writes here. Tell your readers who you are.\n",
        args.author
    );
    let gitignore = "/public/\n/.relais/\n/.relais-tools/\n/relais-key.pem\n/relais.db*\n";

    let files: Vec<(PathBuf, Vec<u8>)> = vec![
        (config_path.clone(), config.into_bytes()),
        (args.dir.join("content/posts/hello.md"), hello.into_bytes()),
        (args.dir.join("content/about.md"), about.into_bytes()),
        (args.dir.join(".gitignore"), gitignore.as_bytes().to_vec()),
    ];
    if let Some((path, _)) = files.iter().find(|(path, _)| path.exists()) {
        bail!("{}: already exists; not overwriting it", path.display());
    }
    for (path, bytes) in &files {
        write_new(path, bytes)?;
    }
    // The key pair: the private half stays here (ignored by git), the public half is
    // committed so a static host's build can publish it.
    crate::federation::keys::generate_site_key(
        &args
            .dir
            .join(crate::config::FediverseConfig::default().key_path),
        false,
    )?;
    if args.eject_theme {
        let theme_dir = args.dir.join(THEMES_DIR).join("default");
        for (rel, bytes) in EMBEDDED_DEFAULT_THEME {
            write_new(&theme_dir.join(rel), bytes)?;
        }
    }
    if let Some(host) = args.host {
        write_deploy_files(&args.dir, &deploy_files(&parsed, host, args.ci))?;
    }
    println!(
        "Created a site in {}. Next: cd {} && relais serve",
        args.dir.display(),
        args.dir.display()
    );
    Ok(())
}

/// `relais init --host` on an existing site: the deploy files that are missing.
fn add_deploy_files(dir: &Path, host: HostKind, ci: bool) -> anyhow::Result<()> {
    let config = SiteConfig::load(dir)?;
    write_deploy_files(dir, &deploy_files(&config, host, ci))?;
    if config.deploy.host != host {
        println!(
            "config.toml deploys to {:?}: set `[deploy] host = \"{}\"` so the build writes \
             that host's rules",
            config.deploy.host.as_str(),
            host.as_str()
        );
    }
    Ok(())
}

/// Writes each file that does not exist yet and says which it kept.
fn write_deploy_files(dir: &Path, files: &[DeployFile]) -> anyhow::Result<()> {
    for file in files {
        let path = dir.join(&file.path);
        if path.exists() {
            println!("kept    {} (already there)", file.path.display());
            continue;
        }
        write_new(&path, file.contents.as_bytes())?;
        println!("wrote   {}: {}", file.path.display(), file.purpose);
    }
    Ok(())
}

/// The fediverse username of the author: letters, digits and `-` from the name.
fn author_id(name: &str) -> String {
    let id = slug::slugify(name);
    match id.as_str() {
        "" => "author".into(),
        // `blog` is the site actor's username.
        "blog" => "blog-author".into(),
        _ => id,
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        bail!("{}: already exists; not overwriting it", path.display());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create directory", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))
}
