//! `relais new post "Title"` / `relais new note`: starts a Markdown file with its front
//! matter (`crate::content::new_post`) and prints its path.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::content::{new_post, NewKind};

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    #[command(subcommand)]
    pub what: NewWhat,
    /// Site directory (holding config.toml).
    #[arg(long, default_value = ".", global = true)]
    pub site: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub enum NewWhat {
    /// A post with a title: content/posts/<slug-of-title>.md.
    Post {
        /// The post's title, which also makes its file name.
        title: String,
    },
    /// A short note without a title (Mastodon shows just its text): content/posts/<date-time>.md.
    Note,
}

pub fn run(args: NewArgs) -> anyhow::Result<()> {
    // Only to fail early, with the usual hint, outside a site.
    crate::config::SiteConfig::load(&args.site)?;
    let kind = match args.what {
        NewWhat::Post { title } => NewKind::Post { title },
        NewWhat::Note => NewKind::Note,
    };
    let now = chrono::Local::now().fixed_offset();
    let path = new_post(&args.site, &kind, now).context("relais new")?;
    println!("{}", path.display());
    Ok(())
}
