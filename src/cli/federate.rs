//! `relais federate`: the fediverse half for a site built by another generator.

use std::path::PathBuf;

use crate::bridge::{federate, FederateOptions};
use crate::config::SiteConfig;
use crate::federation::keys::SiteKeySource;

#[derive(Debug, clap::Args)]
pub struct FederateArgs {
    /// Site directory (holding config.toml with [fediverse], [inbox], [deploy]).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// The built site to federate, rewritten in place [default: SITE/public].
    #[arg(long, value_name = "DIR")]
    pub site_dir: Option<PathBuf>,
    /// The site's feed (Atom, RSS 2.0 or JSON Feed); repeat for several. [default: the one
    /// the home page links, else feed.xml, atom.xml, index.xml, rss.xml, feed.json…]
    #[arg(long, value_name = "FILE")]
    pub feed: Vec<PathBuf>,
    /// Also add the replies-and-reactions section (and /interactions.js) under each post.
    #[arg(long)]
    pub comments: bool,
}

pub fn run(args: FederateArgs) -> anyhow::Result<()> {
    let config = SiteConfig::load(&args.site)?;
    if !config.fediverse.enabled {
        anyhow::bail!("fediverse.enabled is false in config.toml: there is nothing to federate");
    }
    let out_dir = args.site_dir.unwrap_or_else(|| args.site.join("public"));
    let options = FederateOptions {
        site_dir: args.site.clone(),
        out_dir: out_dir.clone(),
        feeds: args.feed,
        interactions: args.comments,
    };
    let report = federate(&config, &options)?;
    if report.key_source == Some(SiteKeySource::Generated) {
        eprintln!(
            "note: generated a new key pair in {} (keep the private key secret; commit the .pub.pem)",
            args.site.display()
        );
    }
    for skipped in &report.skipped {
        eprintln!("warning: {skipped}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    println!("{}", report.summary(&out_dir));
    Ok(())
}
