//! `relais keygen`: the site's RSA key pair.

use std::path::PathBuf;

use crate::config::SiteConfig;
use crate::federation::keys;

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Site directory (holding config.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Replace an existing key (followers' servers refetch the actor to learn the new one).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    let config = SiteConfig::load(&args.site)?;
    let path = args.site.join(&config.fediverse.key_path);
    keys::generate_site_key(&path, args.force).map_err(|e| match e {
        keys::KeyError::AlreadyExists { path } => anyhow::anyhow!(
            "{}: a key already exists there. `relais keygen --force` replaces it; followers' servers then refetch the actor to learn the new key",
            path.display()
        ),
        other => other.into(),
    })?;
    println!(
        "Wrote {} (private, mode 0600: keep it secret, out of git) and {} (public)",
        path.display(),
        keys::public_key_path(&path).display()
    );
    Ok(())
}
