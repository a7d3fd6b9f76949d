//! `relais check`: everything `build` checks, plus failing on what Mastodon would show badly.

use std::path::PathBuf;

use super::build::{build_site, print_notices, BuildOptions, BuildState};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Site directory (holding config.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Check drafts too.
    #[arg(long)]
    pub drafts: bool,
    /// Check posts dated in the future too.
    #[arg(long)]
    pub future: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let options = BuildOptions {
        out_dir: args.site.join("public"),
        site_dir: args.site.clone(),
        drafts: args.drafts,
        future: args.future,
        base_url: None,
        progress: false,
        dry_run: true,
        remote_interactions: false,
    };
    let report = build_site(&options, &mut BuildState::on_disk(&args.site))?;
    print_notices(&report, &args.site);
    let blocking = report.warnings.iter().filter(|w| w.blocking).count();
    if blocking == 0 {
        let advice = report.warnings.len();
        println!(
            "Checked {} posts and {} pages: nothing Mastodon would show badly{}",
            report.posts,
            report.pages,
            if advice > 0 {
                format!(" ({advice} setup warning(s) to fix before going live)")
            } else {
                String::new()
            }
        );
        Ok(())
    } else {
        anyhow::bail!(
            "{blocking} warning(s): fix them, or accept one in config.toml with \
             [[check.accept]] rule = \"RULE\" (the name in brackets) and file = \"PATH\""
        )
    }
}
