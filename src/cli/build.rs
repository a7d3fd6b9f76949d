//! `relais build`: the whole pipeline, from `config.toml` to a synced output folder.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::SiteConfig;
use crate::content::{DocumentCache, Highlighter};
use crate::federation::{
    self,
    check::{FederationState, FediverseWarning},
    keys::{self, SiteKeySource},
};
use crate::render::{self, OutputFile, Theme, WriteReport};
use crate::site::interactions::Interactions;
use crate::site::{LoadOptions, Site};

/// Where `relais build` keeps parsed documents between runs.
pub const CACHE_DIR: &str = ".relais/cache";
/// A build shorter than this shows no progress spinner.
const SPINNER_DELAY: Duration = Duration::from_millis(400);

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Site directory (holding config.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Output directory [default: SITE/public].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Include posts and pages marked `draft = true`.
    #[arg(long)]
    pub drafts: bool,
    /// Fetch replies, likes and boosts from `fediverse.inbox_url` instead of the local
    /// store file: for builds on a static host (Netlify) while the inbox runs elsewhere.
    #[arg(long)]
    pub remote_interactions: bool,
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub site_dir: PathBuf,
    pub out_dir: PathBuf,
    pub drafts: bool,
    /// Replaces `base_url` of config.toml (`relais serve` points links at itself).
    pub base_url: Option<String>,
    /// Show a spinner on stderr when the build takes a while.
    pub progress: bool,
    /// Render and check everything but write nothing (`relais check`).
    pub dry_run: bool,
    /// Read replies, likes and boosts from the inbox service's public endpoint instead of
    /// the store file (for a build host that does not have the store).
    pub remote_interactions: bool,
}

#[derive(Debug, Clone)]
pub struct BuildReport {
    /// HTML pages rendered, posts and pages among them, tags.
    pub html_pages: usize,
    pub posts: usize,
    pub pages: usize,
    pub tags: usize,
    /// Documents parsed this time, and reused from the cache.
    pub parsed: usize,
    pub reused: usize,
    pub files: usize,
    pub write: WriteReport,
    pub elapsed: Duration,
    pub out_dir: PathBuf,
    /// What will look wrong on Mastodon (`relais check` fails on these).
    pub warnings: Vec<FediverseWarning>,
    pub key_source: Option<SiteKeySource>,
}

impl BuildReport {
    pub fn summary(&self) -> String {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "Built {}, {}, {} in {} ms → {} ({} written, {} removed)",
            plural(self.html_pages, "page", "pages"),
            plural(self.posts, "post", "posts"),
            plural(self.tags, "tag", "tags"),
            self.elapsed.as_millis(),
            self.out_dir.display(),
            plural(self.write.written, "file", "files"),
            self.write.removed,
        )
    }
}

/// What survives between builds of one process: parsed documents and the highlighter's
/// loaded syntaxes.
#[derive(Debug, Default)]
pub struct BuildState {
    pub cache: DocumentCache,
    highlighter: Option<Highlighter>,
}

impl BuildState {
    pub fn in_memory() -> BuildState {
        BuildState::default()
    }

    /// State whose document cache also lives in `<site_dir>/.relais/cache`.
    pub fn on_disk(site_dir: &Path) -> BuildState {
        BuildState {
            cache: DocumentCache::on_disk(site_dir.join(CACHE_DIR)),
            highlighter: None,
        }
    }
}

/// Builds the site: everything is rendered in memory, and the output folder is only touched
/// when no error occurred.
pub fn build_site(options: &BuildOptions, state: &mut BuildState) -> anyhow::Result<BuildReport> {
    let started = Instant::now();
    let spinner = Spinner::start(options.progress);
    let site_dir = &options.site_dir;
    let mut config = SiteConfig::load(site_dir)?;
    if let Some(base_url) = &options.base_url {
        config.base_url = base_url.trim_end_matches('/').to_string();
    }
    let theme = Theme::load(site_dir, &config)?;
    let BuildState {
        cache,
        highlighter: kept,
    } = state;
    let wanted = Highlighter::new(config.highlight_theme.clone());
    if kept.as_ref().map(Highlighter::fingerprint) != Some(wanted.fingerprint()) {
        *kept = Some(wanted);
    }
    let highlighter = kept.get_or_insert_with(|| Highlighter::new(None));
    highlighter.validate().map_err(|message| {
        anyhow::anyhow!(
            "{}: {message}",
            site_dir.join(crate::config::CONFIG_FILE).display()
        )
    })?;

    spinner.message("Reading content");
    let site = Site::load(
        site_dir,
        config,
        LoadOptions {
            drafts: options.drafts,
        },
        highlighter,
        cache,
    )?;

    spinner.message("Rendering");
    let interactions = if options.remote_interactions {
        remote_interactions(&site.config)?
    } else {
        stored_interactions(site_dir, &site)?
    };
    let mut files = render::render_site(&site, &theme, &interactions)?;
    files.extend(render::highlight_stylesheet(highlighter)?);
    let fediverse = federation_stage(site_dir, &options.out_dir, &site)?;
    files.extend(
        fediverse
            .files
            .into_iter()
            .map(|f| OutputFile::bytes(OutputFile::path_for(&f.path), f.bytes)),
    );

    let write = if options.dry_run {
        WriteReport::default()
    } else {
        spinner.message("Writing");
        render::write_output(&options.out_dir, &files)
            .with_context(|| format!("writing {}", options.out_dir.display()))?
    };
    spinner.finish();
    // A build for another base_url (serve) has other object ids: it must not replace the
    // state the next real build compares with.
    if !options.dry_run && options.base_url.is_none() {
        if let Err(err) = fediverse.state.save(site_dir) {
            // Only warnings depend on it: a build that wrote its output has succeeded.
            eprintln!(
                "warning: cannot save {}: {err}",
                federation::check::STATE_FILE
            );
        }
    }
    Ok(BuildReport {
        warnings: fediverse.warnings,
        key_source: fediverse.key_source,
        html_pages: site.home_page_count()
            + site.posts.len()
            + site.pages.len()
            + site.tags.len()
            + 2,
        posts: site.posts.len(),
        pages: site.pages.len(),
        tags: site.tags.len(),
        parsed: site.parsed,
        reused: site.reused,
        files: files.len(),
        write,
        elapsed: started.elapsed(),
        out_dir: options.out_dir.clone(),
    })
}

/// Replies, likes and boosts the inbox stored for the site's posts. A site whose inbox
/// never ran (no store file) has none.
fn stored_interactions(site_dir: &Path, site: &Site) -> anyhow::Result<Interactions> {
    let path = site_dir.join(&site.config.inbox.store);
    if !site.config.fediverse.enabled || !path.exists() {
        return Ok(Interactions::new());
    }
    let urls = federation::urls::Urls::new(&site.config);
    let ids: Vec<String> = site.posts.iter().map(|p| urls.object(&p.path)).collect();
    let store = crate::store::Store::open(&path)?;
    Ok(store.interactions(&ids)?)
}

/// Bound on the interactions document: generous, a big site's comments are text.
const MAX_INTERACTIONS_BYTES: usize = 64 * 1024 * 1024;

/// Replies, likes and boosts of every post, from the inbox service's public endpoint.
fn remote_interactions(config: &SiteConfig) -> anyhow::Result<Interactions> {
    let Some(service) = config.fediverse.inbox_url.as_deref() else {
        anyhow::bail!("--remote-interactions needs fediverse.inbox_url in config.toml");
    };
    let url = format!(
        "{}{}",
        service.trim_end_matches('/'),
        federation::urls::Urls::INTERACTIONS_PATH
    );
    let mut options = federation::fetch::ClientOptions::from_config(config);
    options.max_response_bytes = MAX_INTERACTIONS_BYTES;
    let client = federation::fetch::FederationClient::new(options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let json = runtime
        .block_on(client.fetch_json(&url, None, federation::fetch::IdCheck::Skip))
        .with_context(|| format!("fetching replies and reactions from {url}"))?;
    serde_json::from_value(json).with_context(|| format!("{url}: not an interactions document"))
}

/// What the federation stage adds to a build.
struct FederationStage {
    files: Vec<federation::FederationOutput>,
    warnings: Vec<FediverseWarning>,
    state: FederationState,
    key_source: Option<SiteKeySource>,
}

/// Actor, WebFinger, outbox and object documents plus host rules, and the Mastodon checks.
fn federation_stage(
    site_dir: &Path,
    out_dir: &Path,
    site: &Site,
) -> anyhow::Result<FederationStage> {
    let config = &site.config;
    let urls = federation::urls::Urls::new(config);
    let state = FederationState::of_posts(&urls, &site.posts);
    if !config.fediverse.enabled {
        return Ok(FederationStage {
            files: Vec::new(),
            warnings: Vec::new(),
            state,
            key_source: None,
        });
    }
    let key_path = site_dir.join(&config.fediverse.key_path);
    // The output folder, and every folder whose files the build copies into it.
    for published in [
        out_dir.to_path_buf(),
        site_dir.join("static"),
        site_dir.join("content"),
        site_dir.join(crate::render::theme::THEMES_DIR),
    ] {
        keys::ensure_outside(&key_path, &published)?;
    }
    let (public_key_pem, key_source) = keys::site_public_key(&key_path)?;
    let previous = FederationState::load(site_dir);
    Ok(FederationStage {
        files: federation::output_files(config, &site.posts, &public_key_pem),
        warnings: federation::check::check_site(config, &site.posts, &previous),
        state,
        key_source: Some(key_source),
    })
}

/// Prints the build's warnings and key notice on stderr.
pub fn print_notices(report: &BuildReport, site_dir: &Path) {
    if report.key_source == Some(SiteKeySource::Generated) {
        eprintln!(
            "note: generated a new key pair in {} (keep the private key secret; commit the .pub.pem)",
            site_dir.display()
        );
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
}

pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let out_dir = args.out.unwrap_or_else(|| args.site.join("public"));
    let options = BuildOptions {
        site_dir: args.site.clone(),
        out_dir,
        drafts: args.drafts,
        base_url: None,
        progress: std::io::stderr().is_terminal(),
        dry_run: false,
        remote_interactions: args.remote_interactions,
    };
    let report = build_site(&options, &mut BuildState::on_disk(&args.site))?;
    print_notices(&report, &args.site);
    println!("{}", report.summary());
    Ok(())
}

/// A spinner on stderr that appears only once the build has run for `SPINNER_DELAY`.
struct Spinner {
    bar: ProgressBar,
    stop: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Spinner {
    fn start(enabled: bool) -> Spinner {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if !enabled {
            return Spinner { bar, stop: None };
        }
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        let (tx, rx) = mpsc::channel();
        let shown = bar.clone();
        let handle = std::thread::spawn(move || {
            if rx.recv_timeout(SPINNER_DELAY) == Err(mpsc::RecvTimeoutError::Timeout) {
                shown.set_draw_target(ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Duration::from_millis(120));
            }
        });
        Spinner {
            bar,
            stop: Some((tx, handle)),
        }
    }

    fn message(&self, text: &'static str) {
        self.bar.set_message(text);
    }

    fn finish(mut self) {
        self.stop_thread();
        self.bar.finish_and_clear();
    }

    fn stop_thread(&mut self) {
        if let Some((tx, handle)) = self.stop.take() {
            let _ = tx.send(());
            let _ = handle.join();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop_thread();
        self.bar.finish_and_clear();
    }
}
