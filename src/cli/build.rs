//! `relais build`: arguments and printing; the pipeline is `crate::build`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub use crate::build::{build_site, BuildOptions, BuildReport, BuildState};
use crate::federation::keys::SiteKeySource;

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
    /// Include posts dated in the future (held back until their date otherwise).
    #[arg(long)]
    pub future: bool,
    /// Fetch replies, likes and boosts from `fediverse.inbox_url` instead of the local
    /// store file: for builds on a static host (Netlify) while the inbox runs elsewhere.
    #[arg(long)]
    pub remote_interactions: bool,
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
        eprintln!("warning: {warning} [{}]", warning.rule);
    }
    if !report.accepted.is_empty() {
        eprintln!(
            "note: {} warning(s) accepted by [[check.accept]] in config.toml",
            report.accepted.len()
        );
    }
}

pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let out_dir = args.out.unwrap_or_else(|| args.site.join("public"));
    let options = BuildOptions {
        site_dir: args.site.clone(),
        out_dir,
        drafts: args.drafts,
        future: args.future,
        base_url: None,
        progress: std::io::stderr().is_terminal(),
        dry_run: false,
        remote_interactions: args.remote_interactions,
    };
    // Replies and mentions are resolved over the network first (of the sources that
    // changed or reference something); the build itself stays offline.
    let mut state = BuildState::on_disk(&args.site).resolving_references();
    let report = build_site(&options, &mut state);
    // The process ends here: freeing the index's many small allocations one by one would
    // only add to the time of a small rebuild.
    std::mem::forget(state);
    let report = report?;
    for warning in &report.reference_warnings {
        eprintln!("warning: {warning}");
    }
    print_notices(&report, &args.site);
    println!("{}", report.summary());
    Ok(())
}
